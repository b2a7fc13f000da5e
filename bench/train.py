"""GPT-2 124M training throughput: llmc_kernels against PyTorch, on the same GPU, in the same process.

    python bench/train.py [-B 8] [-T 1024] [--steps 20] [--warmup 3] [--only fast,torch] [--no-compile]
                          [--results bench/RESULTS.md]

Every row times whole training steps (forward, backward, AdamW) of GPT-2 124M on the same random tokens:
the median of ``--steps`` steps after ``--warmup`` untimed ones, each step ending in a device synchronise
(the loss is read back, as a training loop does). Rows:

  llmc fast   FastGPT2.step: fused kernels, flash attention, the whole step replayed as one CUDA graph
  llmc fast (forced sm_75 path: SIMT flash attention, fp32)
              the same with LLMC_FORCE_SM75=1 for that row only (ops/arch.py): the path a T4 runs (no TF32:
              the SIMT flash attention, fp32 products), forced on this GPU as the best available stand-in
              for a T4, not a T4's figure
  llmc plain  GPT2 forward / zero_grad / backward / update: the learner-facing kernels, one launch at a time
  PyTorch     bench/torch_gpt2.py (nanoGPT's GPT-2: nn.Linear, scaled_dot_product_attention, fused AdamW),
              eager and under torch.compile

each in fp32 (PyTorch with TF32 off: IEEE products; llmc fast: SGEMM, and 3xTF32, accurate like fp32, for
its flash attention and the products over short reductions: ops/linear.py) and TF32. Peak memory:
PyTorch's max_memory_allocated; ours, the bytes CuPy's pool holds at the end of the run (FastGPT2
allocates everything before its first step, so that is its peak). The ratios printed at the end are the
issue's targets: llmc fast TF32 / torch.compile TF32 and llmc fast fp32 / PyTorch eager fp32 and
torch.compile fp32, in tokens per second (> 1: ours is faster); the forced sm_75 row against PyTorch fp32
(eager and compiled) on the same GPU; and llmc fast's peak memory against torch.compile's at each
precision (< 1: ours holds less).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from _results import RESULTS, provenance, write_section  # noqa: E402

LR, BETAS, EPS, WD = 3e-4, (0.9, 0.999), 1e-8, 0.0
SM75 = "llmc fast (forced sm_75 path: SIMT flash attention, fp32)"
STAND_IN = "the sm_75 path forced on this GPU, a stand-in for a T4"


def batches(cfg, B: int, T: int, n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        tok = rng.integers(0, cfg.vocab_size, size=(B, T + 1), dtype=np.int32)
        out.append((np.ascontiguousarray(tok[:, :-1]), np.ascontiguousarray(tok[:, 1:])))
    return out


def timed(step, data, warmup: int) -> dict:
    """{"ms": the timed steps' milliseconds, "warmup_s": the warm-up steps' seconds, "losses": every loss}."""
    ms, losses, warm = [], [], 0.0
    for i, (x, y) in enumerate(data):
        t0 = time.perf_counter()
        losses.append(step(i + 1, x, y))  # returns a Python float: the step has finished on the GPU
        dt = time.perf_counter() - t0
        if i >= warmup:
            ms.append(1e3 * dt)
        else:
            warm += dt
    return {"ms": ms, "warmup_s": warm, "losses": losses}


# ------------------------------------------------------------------------------------------------ ours
def run_ours(engine: str, precision: str, cfg, data, warmup: int) -> dict:
    import cupy as cp

    from llmc_kernels import ops
    from llmc_kernels.model import GPT2
    from llmc_kernels.model.fast import FastGPT2

    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    ops.set_matmul_precision(precision)
    model = (FastGPT2 if engine == "fast" else GPT2).from_config(cfg, seed=0)

    def step(t, x, y):
        loss = model.step(cp.asarray(x), cp.asarray(y), LR, *BETAS, EPS, WD, t)
        cp.cuda.Stream.null.synchronize()  # the plain engine's update is still queued
        return loss

    row = timed(step, data, warmup)
    row["bytes"] = pool.total_bytes()
    row["note"] = (
        (f"last step: {model.last_step_mode}" + (f" ({model.graph_failure})" if model.graph_failure else ""))
        if engine == "fast"
        else "one launch per op"
    )
    return row


def run_forced_sm75(cfg, data, warmup: int) -> dict:
    """The fast engine in fp32 with the sm_75 path forced (LLMC_FORCE_SM75=1) for this row only."""
    from llmc_kernels.ops.arch import FORCE_ENV, simt_path

    before = os.environ.get(FORCE_ENV)
    os.environ[FORCE_ENV] = "1"
    try:
        assert simt_path()
        row = run_ours("fast", "fp32", cfg, data, warmup)
    finally:
        if before is None:
            del os.environ[FORCE_ENV]
        else:
            os.environ[FORCE_ENV] = before
    row["note"] = f"{STAND_IN}; {row['note']}"
    return row


# ------------------------------------------------------------------------------------------------ PyTorch
def run_torch(torch, compiled: bool, precision: str, cfg, data, warmup: int) -> dict:
    from torch_gpt2 import TorchGPT2

    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = TorchGPT2(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD, fused=True)
    fwd = torch.compile(model) if compiled else model

    def step(t, x, y):
        x, y = (torch.from_numpy(a).cuda(non_blocking=True).long() for a in (x, y))
        loss = fwd(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    row = timed(step, data, warmup)
    row["bytes"] = torch.cuda.max_memory_allocated()
    row["note"] = f"warm-up incl. compilation {row['warmup_s']:.0f} s" if compiled else "eager"
    return row


def release(cp, torch) -> None:
    """Give the last row's memory back, so that each row starts from an empty device."""
    gc.collect()
    cp.get_default_memory_pool().free_all_blocks()
    if torch is not None:
        torch.cuda.empty_cache()


def _torch():
    try:
        import torch

        return torch if torch.cuda.is_available() else None
    except ImportError:
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-B", type=int, default=8)
    ap.add_argument("-T", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, graph capture)")
    ap.add_argument("--only", default="", help="comma-separated substrings of row names")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    ap.add_argument("--results", default=RESULTS, help="results file ('' to write nothing)")
    args = ap.parse_args(argv)
    from llmc_kernels.runtime import backend

    if backend() != "cuda":
        print("bench/train.py needs a CUDA GPU (the CPU backend's timings say nothing about a GPU).")
        return 2
    import cupy as cp

    from llmc_kernels.model.config import GPT2Config

    cfg, B, T = GPT2Config.d12(), args.B, args.T
    torch = _torch()
    data = batches(cfg, B, T, args.warmup + args.steps)

    rows = [
        (f"llmc {engine} {prec}", lambda e=engine, p=prec: run_ours(e, p, cfg, data, args.warmup))
        for engine in ("fast", "plain")
        for prec in ("fp32", "tf32")
    ]
    rows.insert(2, (SM75, lambda: run_forced_sm75(cfg, data, args.warmup)))
    if torch is not None:
        rows += [
            (f"PyTorch eager {prec}", lambda p=prec: run_torch(torch, False, p, cfg, data, args.warmup))
            for prec in ("fp32", "tf32")
        ]
        if not args.no_compile:
            rows += [
                (f"torch.compile {prec}", lambda p=prec: run_torch(torch, True, p, cfg, data, args.warmup))
                for prec in ("fp32", "tf32")
            ]
    only = [s for s in args.only.split(",") if s]
    peak = {}  # name -> peak bytes
    results, table = (
        {},
        [
            "| run | ms/step (median) | tok/s | peak memory GiB | loss first -> last | note |",
            "|---|---|---|---|---|---|",
        ],
    )
    for name, fn in rows:
        if only and not any(s in name for s in only):
            continue
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001 - one failure must not lose the table
            table.append(f"| {name} | failed: {type(e).__name__}: {str(e)[:100]} | | | | |")
            print(table[-1], flush=True)
            continue
        finally:
            release(cp, torch)
        med = statistics.median(r["ms"])
        results[name] = B * T / med * 1e3
        peak[name] = r["bytes"]
        table.append(
            f"| {name} | {med:.1f} | {results[name]:,.0f} | {r['bytes'] / 2**30:.1f} | "
            f"{r['losses'][0]:.3f} -> {r['losses'][-1]:.3f} | {r['note']} |"
        )
        print(table[-1], flush=True)

    ratios = []
    for ours, theirs in (
        ("llmc fast tf32", "torch.compile tf32"),
        ("llmc fast fp32", "PyTorch eager fp32"),
        ("llmc fast tf32", "PyTorch eager tf32"),
        ("llmc fast fp32", "torch.compile fp32"),
        ("llmc plain tf32", "PyTorch eager tf32"),
        (SM75, "PyTorch eager fp32"),
        (SM75, "torch.compile fp32"),
    ):
        if ours in results and theirs in results:
            label = f"{ours} / {theirs}" + (f" ({STAND_IN})" if ours == SM75 else "")
            ratios.append(f"- {label}: **{results[ours] / results[theirs]:.2f}x** tokens/s")
    for prec in ("fp32", "tf32"):  # the memory target: the fast engine's peak at most torch.compile's
        ours, theirs = f"llmc fast {prec}", f"torch.compile {prec}"
        if ours in peak and theirs in peak:
            ratios.append(
                f"- peak memory, {ours} / {theirs}: **{peak[ours] / 2**30:.2f} GiB** against "
                f"{peak[theirs] / 2**30:.2f} GiB (**{peak[ours] / peak[theirs]:.2f}x**)"
            )
    header = (
        f"{provenance(cp, torch)}\n\nGPT-2 124M (d12), B={B}, T={T}, random tokens, forward + backward + "
        f"AdamW; median of {args.steps} steps after {args.warmup} warm-up steps, each ending in a "
        "synchronise. Peak memory: PyTorch's max_memory_allocated; ours, CuPy's pool at the end of the run."
    )
    print("\n".join(["", header, "", *ratios]))
    if args.results:
        write_section(
            args.results, "train", "Training throughput: llmc_kernels against PyTorch", header, table + [""] + ratios
        )
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
