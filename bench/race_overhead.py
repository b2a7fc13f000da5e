"""What the race detector costs the checks (not a test): every chapter's checks, timed with the detector on
(the default in checks) and off, on the CPU backend.

    PYTHONPATH=. python bench/race_overhead.py [--repeat N]
    PYTHONPATH=. LLMC_CPU_RACES=0 python bench/race_overhead.py --only off     # before/after: also runs on a
                                                                              # tree without the detector

The checked functions are the mutation suite's correct kernels (tests/mutants), one per exercise, grouped by
the chapter that has the exercise; the issue's budget: under 2x today's time and under 10 s per chapter.
Compilation is excluded (each function runs once first); the time is the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CHAPTER = {
    "vector_add": "00",
    "encoder": "01",
    "layernorm": "02",
    "matmul": "03",
    "attention": "04",
    "gelu": "05",
    "residual": "06",
    "softmax": "07",
    "crossentropy": "07",
    "adamw": "08",
}


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", choices=("on", "off"), help="time one mode only (off: LLMC_CPU_RACES=0)")
    opts = ap.parse_args()
    os.environ.setdefault("LLMC_BACKEND", "cpu")
    import mutants

    from llmc_kernels import check, runtime

    modes = [opts.only] if opts.only else ["off", "on"]
    totals: dict = {}
    for c in mutants.ALL_CORRECT:
        fn = c.make()
        run = lambda c=c, fn=fn: getattr(check, c.direction)(c.op, fn)  # noqa: E731
        with contextlib.redirect_stdout(io.StringIO()):
            run()  # compile
        for mode in modes:
            ctx = contextlib.nullcontext()
            if "races" in inspect.signature(runtime.launch_options).parameters:
                ctx = runtime.launch_options(races=(mode == "on"))
            with ctx:
                t = timed(run, opts.repeat)
            key = (CHAPTER[c.op], mode)
            totals[key] = totals.get(key, 0.0) + t
            print(f"  {c.op:<13} {c.direction:<8} races {mode:<3} {t * 1000:8.0f} ms", flush=True)
    print(f"\nper chapter (s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for ch in sorted({k[0] for k in totals}):
        row = "  ".join(f"{m} {totals[(ch, m)]:6.2f}" for m in modes)
        ratio = f"  x{totals[(ch, 'on')] / totals[(ch, 'off')]:.2f}" if len(modes) == 2 else ""
        print(f"  chapter {ch}: {row}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
