"""The fast model's products at GPT-2 124M sizes: SGEMM, 3xTF32 and TF32, time and error (ops/linear.py).

    python bench/linear_products.py [-M 8192] [--repeat 15] [--results bench/RESULTS.md]

For each product of a layer (qkv, attproj, fc, fcproj; the forward ``linear_forward`` and the input gradient
``linear_backward_input``; the weight gradients reduce over M = B*T rows and are SGEMM in every engine) on
random normal operands (weights scaled by 0.02, as GPT-2's), three ways through the package's own op:
  SGEMM   precision "fp32", no ``split``: cuBLASLt, CUBLAS_COMPUTE_32F
  3xTF32  precision "fp32" with ``split``: the two tf32_split3_kernel passes + one TF32 product over 3K
          (``SPLIT_MAX_K`` raised for the run, so the long reductions the fast model leaves to SGEMM are
          measured too: the table says which products the fast model splits)
  TF32    precision "tf32": one TF32 product (operands truncated to 10 mantissa bits)
Times are the median of ``--repeat`` CUDA-graph replays, L2 flushed before each (llmc_kernels.speed.time_gpu),
the splits included; the error is max |result - float64 product| / max |float64 product|.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _results import RESULTS, provenance, write_section  # noqa: E402

from llmc_kernels.model.fast import layer_products  # noqa: E402

C = 768
# name, K (reduction of the forward), N: the forward is [M, K] x [N, K]^T, the input gradient [M, N] x [N, K]
LAYERS = layer_products(C)


def _products(cp, M: int):
    """(label, reduction, run(split) -> result array, float64 product) per product, on fresh operands."""
    from llmc_kernels import ops

    rng = cp.random.default_rng(0)
    for name, K, N in LAYERS:
        x = rng.standard_normal((M, K), dtype=cp.float32)
        w = rng.standard_normal((N, K), dtype=cp.float32) * 0.02
        dy = rng.standard_normal((M, N), dtype=cp.float32)
        out, dx = cp.empty((M, N), cp.float32), cp.empty((M, K), cp.float32)
        x64, w64, dy64 = x.astype(cp.float64), w.astype(cp.float64), dy.astype(cp.float64)
        yield (
            f"{name} forward",
            K,
            lambda s, x=x, w=w, out=out, K=K, N=N: ops.linear_forward(out, x, w, M, K, N, split=s),
            out,
            x64 @ w64.T,
        )
        yield (
            f"{name} input gradient",
            N,
            lambda s, dy=dy, w=w, dx=dx, K=K, N=N: ops.linear_backward_input(dx, dy, w, M, K, N, split=s),
            dx,
            dy64 @ w64,
        )


def run(M: int, repeat: int):
    import cupy as cp

    from llmc_kernels import speed
    from llmc_kernels.ops import linear
    from llmc_kernels.ops.matmul import matmul_precision, set_matmul_precision

    used_max_k, before = linear.SPLIT_MAX_K, matmul_precision()
    need = max(max(linear.split_numel(M, K, N), linear.split_numel(M, N, K)) for _, K, N in LAYERS)
    split = cp.empty(need, cp.float32)
    rows = []
    try:
        linear.SPLIT_MAX_K = 1 << 30
        for label, k, fn, result, exact in _products(cp, M):
            scale = float(cp.abs(exact).max())
            row = [label, k, "yes" if k <= used_max_k else "no (SGEMM)"]
            for precision, s in (("fp32", None), ("fp32", split), ("tf32", None)):
                set_matmul_precision(precision)
                fn(s)
                err = float(cp.abs(result - exact).max()) / scale
                ms = statistics.median(speed.time_gpu(lambda fn=fn, s=s: fn(s), repeat=repeat, graph="cupy"))
                row += [ms, err]
            rows.append(row)
            print(_row(row), flush=True)
            del exact
            cp.get_default_memory_pool().free_all_blocks()
    finally:
        linear.SPLIT_MAX_K = used_max_k
        set_matmul_precision(before)
    return rows


def _row(r) -> str:
    label, k, used, t32, e32, t3, e3, tt, et = r
    return (
        f"| {label} | {k} | {used} | {1e3 * t32:.0f} | {1e3 * t3:.0f} ({t32 / t3:.2f}x) | {1e3 * tt:.0f} | "
        f"{e32:.1e} | {e3:.1e} | {et:.1e} |"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-M", type=int, default=8192, help="rows: B*T (8 x 1024)")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--results", default=RESULTS, help="results file ('' to write nothing)")
    args = ap.parse_args(argv)
    from llmc_kernels.ops.matmul import tf32_supported
    from llmc_kernels.runtime import backend

    if backend() != "cuda":
        print("bench/linear_products.py needs a CUDA GPU (the CPU backend's timings say nothing about a GPU).")
        return 2
    if not tf32_supported():
        print("bench/linear_products.py needs TF32 tensor cores (compute capability 8.0 or later).")
        return 2
    import cupy as cp

    rows = run(args.M, args.repeat)
    header = (
        f"{provenance(cp, None)}\n\nM = {args.M} rows, C = {C}; random normal operands (weights x 0.02); median of "
        f"{args.repeat} CUDA-graph replays, L2 flushed, in us (3xTF32: the two split passes included; in "
        'brackets SGEMM\'s time over it); error: max |result - float64| / max |float64|. "fast model splits": '
        "whether FastGPT2 runs this product as 3xTF32 (reduction <= ops.linear.SPLIT_MAX_K)."
    )
    table = [
        "| product | reduction | fast model splits | SGEMM us | 3xTF32 us | TF32 us | SGEMM error | 3xTF32 error "
        "| TF32 error |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(r) for r in rows),
    ]
    print(header)
    if args.results:
        write_section(args.results, "linear-products", "The fast model's products: SGEMM, 3xTF32, TF32", header, table)
        print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
