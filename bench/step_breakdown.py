"""Where one GPT-2 124M training step spends its GPU time, op by op, so the next optimisation is chosen by data.

    python bench/step_breakdown.py [--engine fast,plain] [--precision tf32,fp32] [-B 8] [-T 1024] [--steps 3]
                                   [--results bench/RESULTS.md]

Each op the model calls (``model.op_table``: the names of llmc_kernels.ops) is wrapped in a
pair of CUDA events and the steps run eagerly, with the GPU kept behind the host (``instrument``), so an
op's time is GPU time from its first kernel's start to its last kernel's end. The table gives each op's
share of the summed op time and, beside it, the wall time of a whole step: eager and, for the fast engine,
replayed as a CUDA graph (what training runs).
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _results import RESULTS, provenance, write_section  # noqa: E402
from train import BETAS, EPS, LR, WD, batches  # noqa: E402

SPIN = r"""extern "C" __global__ void spin(long long cycles) {
    long long t0 = clock64();
    while (clock64() - t0 < cycles) { }
}"""


def instrument(table: dict, cp, record: list, backlog_ms: float = 50.0) -> dict:
    """Replace every callable of ``table`` by one that brackets it with CUDA events; returns the originals.

    An event interval is pure GPU time only if the op's kernels are already queued when the GPU reaches the
    start event. So whenever the stream has run dry (a host sync, or a slow host) the wrapper first queues a
    spin kernel of ``backlog_ms``: the host then races ahead while the GPU spins, outside every interval."""
    originals = dict(table)
    spin = cp.RawKernel(SPIN, "spin")
    cycles = cp.int64(int(cp.cuda.Device().attributes["ClockRate"] * backlog_ms))  # ClockRate: kHz

    def wrap(name, fn):
        def timed_call(*args, **kwargs):
            if cp.cuda.get_current_stream().done:
                spin((1,), (1,), (cycles,))
            start, end = cp.cuda.Event(), cp.cuda.Event()
            start.record()
            out = fn(*args, **kwargs)
            end.record()
            record.append((name, start, end))
            return out

        return timed_call

    for name, fn in originals.items():
        if callable(fn):
            table[name] = wrap(name, fn)
    return originals


def breakdown(engine: str, precision: str, B: int, T: int, steps: int) -> tuple[list, dict]:
    import cupy as cp

    from llmc_kernels import ops
    from llmc_kernels.model import GPT2
    from llmc_kernels.model.config import GPT2Config
    from llmc_kernels.model.fast import FastGPT2

    cfg = GPT2Config.d12()
    ops.set_matmul_precision(precision)
    data = batches(cfg, B, T, 3 + 2 * steps)
    model = (FastGPT2 if engine == "fast" else GPT2).from_config(cfg, seed=0)
    t = 0

    def step(x, y):
        nonlocal t
        t += 1
        loss = model.step(cp.asarray(x), cp.asarray(y), LR, *BETAS, EPS, WD, t)
        cp.cuda.Stream.null.synchronize()  # the plain engine's update is still queued
        return loss

    def wall(batch_list) -> float:
        ms = []
        for x, y in batch_list:
            t0 = time.perf_counter()
            step(x, y)
            ms.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(ms)

    walls, table, record = {}, model.op_table, []
    if engine == "fast":
        walls["graph"] = wall(data[: 3 + steps])  # eager, capture, then replays
        model.use_graph = False
    else:
        step(*data[0])  # compile every kernel first
    walls["eager"] = wall(data[3 : 3 + steps])
    instrument(table, cp, record)
    for x, y in data[3 + steps :]:
        step(x, y)
    cp.cuda.Device().synchronize()
    per_op = collections.defaultdict(lambda: [0.0, 0])
    for name, start, end in record:
        per_op[name][0] += cp.cuda.get_elapsed_time(start, end) / steps
        per_op[name][1] += 1
    rows = sorted(((name, ms, calls // steps) for name, (ms, calls) in per_op.items()), key=lambda r: -r[1])
    return rows, walls


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", default="fast,plain")
    ap.add_argument("--precision", default="tf32,fp32", help="comma-separated: fp32, tf32")
    ap.add_argument("-B", type=int, default=8)
    ap.add_argument("-T", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--results", default=RESULTS, help="results file ('' to write nothing)")
    args = ap.parse_args(argv)
    from llmc_kernels.runtime import backend

    if backend() != "cuda":
        print("bench/step_breakdown.py needs a CUDA GPU.")
        return 2
    import cupy as cp

    out = []
    runs = [(e, p) for p in args.precision.split(",") if p for e in args.engine.split(",") if e]
    for engine, precision in runs:
        rows, walls = breakdown(engine, precision, args.B, args.T, args.steps)
        total = sum(ms for _, ms, _ in rows)
        walls_text = ", ".join(f"{k} {v:.1f} ms" for k, v in walls.items())
        out += [
            f"**{engine}** ({precision}): summed op time {total:.1f} ms per step; a whole step (wall): {walls_text}.",
            "",
            "| op | calls/step | ms/step | share | us/call |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {name} | {calls} | {ms:.2f} | {100 * ms / total:.1f}% | {1e3 * ms / max(calls, 1):.0f} |"
            for name, ms, calls in rows
        ]
        out.append("")
        print("\n".join(out[-len(rows) - 5 :]), flush=True)
    header = (
        f"{provenance(cp)}\n\nGPT-2 124M, B={args.B}, T={args.T}; GPU time per op from CUDA events "
        f"around each call, mean of {args.steps} eager steps."
    )
    if args.results:
        write_section(args.results, "breakdown", "One training step, op by op", header, out)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
