"""The race conformance kernels on a GPU (not a test): what each racy kernel does there, next to what the CPU
backend's race detector reports for it.

    PYTHONPATH=. python3 bench/races_gpu.py [--runs N]
    PYTHONPATH=. compute-sanitizer --tool racecheck python3 bench/races_gpu.py --shared-only --runs 1

Each kernel of tests/race_kernels.py runs --runs times on the cuda backend; the table says in how many runs
the result equalled what a race-free execution gives, and how many distinct results the runs gave. A race
need not show on every run (or at all) on one GPU: that is the point of detecting it by the model instead.
compute-sanitizer's racecheck checks shared memory only; run it with --shared-only and read its report on
stderr (it should name the shared-memory cases, and none of the clean ones).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
os.environ.setdefault("LLMC_BACKEND", "cuda")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--shared-only", action="store_true", help="only the shared-memory cases (racecheck)")
    opts = ap.parse_args()
    import cupy as cp
    from race_kernels import CLEAN, RACY

    from llmc_kernels.runtime import RawKernel

    print(f"{'kernel':<36} {'cpu detector reports':<34} {'race-free result':>17} {'distinct':>9}")
    for case in RACY + CLEAN:
        if opts.shared_only and not (case.shared or case.kernel in ("block_sum", "histogram", "sum_last_block")):
            continue
        kernel = RawKernel(case.code, case.kernel, backend="cuda")
        want = case.expect(case.args()) if case.expect else None
        right, seen = 0, set()
        for _ in range(opts.runs):
            args = [cp.asarray(a) if isinstance(a, np.ndarray) else a for a in case.args()]
            kernel(case.grid, case.block, tuple(args))
            cp.cuda.get_current_stream().synchronize()
            host = [cp.asnumpy(a) if isinstance(a, cp.ndarray) else a for a in args]
            seen.add(b"".join(h.tobytes() for h in host if isinstance(h, np.ndarray)))
            if want is not None and all(np.allclose(host[i], v, rtol=1e-5, atol=1e-5) for i, v in want.items()):
                right += 1
        cpu = f"{case.kind} {case.lines}" if case.kind else ("clean (same-value warning)" if case.warning else "clean")
        ok = f"{right}/{opts.runs}" if want is not None else "n/a"
        print(f"{case.id:<36} {cpu:<34} {ok:>17} {len(seen):>9}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
