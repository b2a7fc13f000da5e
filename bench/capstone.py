"""Chapter 10's guided training on a GPU: what a learner will see, for the package's kernels and for the
solutions' (the learner's kernels, collected from solutions/ by `llmc collect`).

    python bench/capstone.py [--steps 1000] [--only fast,plain,solutions] [-B 8] [-T 1024] [--model d12]
                             [--results bench/RESULTS.md]

Each row is one `llmc train` run on TinyShakespeare (GPT-2 small from scratch, seed 1337, lr 3e-4 constant,
validation every 100 steps, a 64-token sample at the end), in this process, on this GPU:

  package, fast engine   `llmc train --precision tf32` as a user runs it: fused kernels, flash attention,
                         each step one CUDA graph
  package, plain engine  `--engine plain --precision tf32`: the chapters' ops one at a time, cuBLAS matmuls
                         (the run chapter 10 quoted before the learner's kernels ran in it)
  solutions' kernels     `--ops` with the ops collected from solutions/: the exercise kernels of chapters 01-08,
                         the tiled matmul included, fp32 (chapter 10's settings on a GPU)

For each: the median step time (steps after the first), tokens per second, the GPU memory CuPy's pool holds at
the end, the train and validation loss at steps 100, 500 and 1000 (those within --steps) and the sample.
Each row is a section of its own in RESULTS.md (device, date, commit), so rows can be measured in separate
calls (`--only fast,plain` first, then `--only solutions --steps 300`) without erasing each other.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _results import RESULTS, provenance, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MILESTONES = (100, 500, 1000)
SAMPLE_LENGTH = 64
ROWS = {  # key -> (title, extra llmc train options, train with the solutions' ops)
    "fast": ("package, fast engine (TF32)", ["--precision", "tf32"], False),
    "plain": ("package, plain engine (TF32)", ["--engine", "plain", "--precision", "tf32"], False),
    "solutions": ("solutions' kernels (fp32, --ops)", ["--engine", "plain", "--precision", "fp32"], True),
}


def collect_solutions(folder: Path) -> tuple[Path, str]:
    """The solutions' ops as a module (and collect's table): the learner's kernels, as chapter 10 gathers them."""
    from llmc_kernels import collect

    coll = collect.collect(sorted((ROOT / "solutions").glob("*.ipynb")), folder / "solutions_ops.py")
    print(coll.table(), flush=True)
    return coll.out, coll.table()


def run(key: str, args, folder: Path, ops_path: Path | None) -> dict:
    import cupy as cp

    from llmc_kernels import train
    from llmc_kernels.train.log import read_log

    title, extra, _ = ROWS[key]
    out = folder / key
    argv = [
        "--model",
        args.model,
        "--batch-size",
        str(args.B),
        "--seq-len",
        str(args.T),
        "--steps",
        str(args.steps),
        "--lr",
        "3e-4",
        "--seed",
        "1337",
        "--val-every",
        str(min(100, args.steps)),
        "--sample-every",
        str(args.steps),
        "--sample-length",
        str(SAMPLE_LENGTH),
        "--checkpoint-every",
        "0",
        "--out",
        str(out),
        *extra,
        *(["--ops", str(ops_path)] if ops_path else []),
    ]
    print(f"\n=== {title}: llmc train {' '.join(argv)}", flush=True)
    cp.get_default_memory_pool().free_all_blocks()
    started = time.perf_counter()
    summary = train.train(train.parse_args(argv))
    wall = time.perf_counter() - started
    rows = read_log(out / "log.csv")
    by_step = {r["step"]: r for r in rows}
    done = rows[-1]["step"]  # fewer than --steps when a signal (or a time limit) stopped the run
    ms = statistics.median(r["ms"] for r in rows[1:]) if len(rows) > 1 else rows[0]["ms"]
    samples = (out / "samples.txt").read_text(encoding="utf-8") if (out / "samples.txt").exists() else ""
    return {
        "title": title,
        "engine": summary["engine"],
        "ms": ms,
        "tok_s": args.B * args.T / ms * 1e3,
        "pool_gb": summary.get("gpu_pool_gb", float("nan")),
        "wall_s": wall,
        "done": done,
        "losses": {k: (by_step[k]["loss"], by_step[k]["val_loss"]) for k in by_step if k in MILESTONES or k == done},
        "initial_val": summary.get("initial_val_loss"),
        "sample": samples.rsplit("---\n", 1)[-1].strip() if samples else "",
    }


def table(r: dict) -> list[str]:
    last = r["done"]
    marks = [k for k in MILESTONES if k <= last] + ([last] if last not in MILESTONES else [])
    head = [
        "| run | engine | ms/step (median) | tok/s | GPU memory (pool) GB | val loss at step 0 |"
        + "".join(f" loss at {k} (train / val) |" for k in marks)
        + " wall |",
        "|---|---|---|---|---|---|" + "---|" * len(marks) + "---|",
    ]
    cells = "".join(
        f" {r['losses'][k][0]:.3f} / " + (f"{r['losses'][k][1]:.3f}" if r["losses"][k][1] is not None else "-") + " |"
        if k in r["losses"]
        else " - |"
        for k in marks
    )
    initial = f"{r['initial_val']:.3f}" if r["initial_val"] is not None else "-"
    return head + [
        f"| {r['title']} | {r['engine']} | {r['ms']:.1f} | {r['tok_s']:,.0f} | {r['pool_gb']:.1f} | "
        f"{initial} |{cells} {r['wall_s'] / 60:.1f} min |"
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="training steps per run (default 1000)")
    ap.add_argument("--only", default="fast,plain,solutions", help=f"comma-separated rows: {', '.join(ROWS)}")
    ap.add_argument("-B", type=int, default=8, help="batch size (default 8; chapter 10 fits it to the GPU)")
    ap.add_argument("-T", type=int, default=1024, help="sequence length (default 1024)")
    ap.add_argument("--model", choices=("d12", "tiny"), default="d12")
    ap.add_argument("--results", default=RESULTS, help="results file ('' to write nothing)")
    args = ap.parse_args(argv)
    from llmc_kernels.runtime import backend

    if backend() != "cuda":
        print("bench/capstone.py needs a CUDA GPU (the CPU backend's timings say nothing about a GPU).")
        return 2
    keys = [k for k in args.only.split(",") if k]
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        print(f"--only: unknown rows {unknown}; choose from {', '.join(ROWS)}")
        return 2
    import cupy as cp

    with tempfile.TemporaryDirectory(prefix="llmc-capstone-") as tmp:
        folder = Path(tmp)
        ops_path, collected = collect_solutions(folder) if any(ROWS[k][2] for k in keys) else (None, "")
        for key in keys:
            try:
                r = run(key, args, folder, ops_path if ROWS[key][2] else None)
            except Exception as e:  # noqa: BLE001 - one failure must not lose the other rows
                lines = [f"| {ROWS[key][0]} | failed: {type(e).__name__}: {str(e)[:200]} |"]
                r = None
            else:
                lines = table(r) + [""]
                if r["done"] < args.steps:
                    lines.append(f"The run stopped after step {r['done']} of {args.steps} (a signal): no sample.")
                else:
                    lines += [f"Sample after step {args.steps} ({SAMPLE_LENGTH} tokens):", ""]
                    lines += ["```", r["sample"], "```"]
            print("\n".join(lines), flush=True)
            header = (
                f"{provenance(cp)}\n\nChapter 10's guided run: GPT-2 {args.model} from scratch on "
                f"TinyShakespeare, B={args.B}, T={args.T}, {args.steps} steps, lr 3e-4 constant, seed 1337; "
                "step time: the median of log.csv's steps after the first (each step ends in a synchronise); "
                "memory: CuPy's pool at the end of the run. `python bench/capstone.py --only " + key + "`."
            )
            if key == "solutions" and collected:
                header += "\n\nOps collected from solutions/ (`llmc collect`):\n\n```\n" + collected + "\n```"
            if args.results:
                write_section(args.results, f"capstone-{key}", f"Chapter 10's run: {ROWS[key][0]}", header, lines)
            cp.get_default_memory_pool().free_all_blocks()
    if args.results:
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
