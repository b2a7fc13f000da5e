"""The fast model's linear layers: the three products of matmul_forward/matmul_backward as separate calls,
each writing exactly what it should, so no buffer needs zeroing and no bias pass rides along.

    linear_forward(out[M,N], inp[M,K], weight[N,K], bias=None, split=None)
                                                                       out  = inp @ weight^T (+ bias) (written)
    linear_backward_input(dinp[M,K], dout[M,N], weight[N,K], accumulate=False, split=None)
                                                                       dinp = dout @ weight          (or +=)
    linear_backward_weight(dweight[N,K], dout[M,N], inp[M,K])          dweight += dout^T @ inp       (accumulates)

Arrays are C-contiguous float32 of the given element counts (any shape: the model passes [B,T,C] views).
The other bias terms live in ops/fused.py (bias_gelu_forward, residual_layernorm_forward, bias_backward),
fused with the pass that follows the product. On cuda every product is one cuBLAS call
(``matmul.cublas_gemm``: beta = 0 to write, beta = 1 to accumulate, TF32 per ``set_matmul_precision``,
linear_forward's bias in the product's epilogue); on cpu NumPy's BLAS.

3xTF32 (``split``, cuda, precision "fp32", a GPU with TF32): a product whose reduction is at most
SPLIT_MAX_K long runs as ONE TF32 product over a reduction three times as long, on operands written by
``kernels/tf32_split.cu`` into ``split`` (a float32 scratch of at least ``split_numel`` elements):
A' = [A_lo | A_hi | A_hi] and B' = [B_hi ; B_lo ; B_hi] along the reduction, so A' B' = A_lo B_hi + A_hi B_lo
+ A_hi B_hi, the fp32 product up to A_lo B_lo (2^-22 of it): "accurate like fp32 FMA", as the flash
attention's products in fp32 mode. Longer reductions keep SGEMM: the tensor cores' fp32 accumulation loses
more than an FMA's as the reduction grows. bench/linear_products.py measures it (H100, 8192 rows, random
normal operands; max error over max |exact|, SGEMM -> 3xTF32; time in us, 3xTF32 with both splits):
reduction 768 1.1-1.4e-6 -> 2.2-2.6e-6, 2304 1.4e-6 -> 6.2e-6, 3072 0.7-0.8e-6 -> 7.3-8.5e-6 (TF32: 3e-4);
qkv forward 655 -> 295, fc forward 781 -> 374, fcproj input gradient 817 -> 404. So the fast model passes
``split`` to every product of its layers and those with K = C = 768 take it (the forward's qkv, attproj and
fc, the input gradients of attproj and fcproj); the weight gradients reduce over B*T rows.
"""

from __future__ import annotations

import numpy as np

from . import _loader, _validate
from ._grid import grid_for
from .matmul import cublas_gemm, matmul_precision, tf32_supported

SPLIT_MAX_K = 1024  # the longest reduction a 3xTF32 product takes (see above)
SPLIT_BLOCK = 256
_ALIGN = 64  # floats: B' starts 256-byte aligned after A' in the scratch


def _ptr(a) -> int:
    """Device address of a CuPy array's first element."""
    return int(a.data.ptr)


def _b_offset(rows_a: int, k: int) -> int:
    """Where B' starts in the scratch: after A' (3 rows_a k floats), rounded up to _ALIGN."""
    return -(-3 * rows_a * k // _ALIGN) * _ALIGN


def split_numel(rows_a: int, k: int, rows_b: int) -> int:
    """Floats of ``split`` scratch a 3xTF32 product needs: A' (3 rows_a k) and B' (3 rows_b k), B' aligned."""
    return _b_offset(rows_a, k) + 3 * rows_b * k


def _use_split(fn: str, split, reduction: int, need: int, *operands) -> bool:
    """Whether this cuda product runs as 3xTF32 (see the module doc). A ``split`` that is not a contiguous
    1-D CuPy float32 array of ``need`` elements, or that overlaps the product's arrays, is a ValueError."""
    if split is None or reduction > SPLIT_MAX_K or matmul_precision() != "fp32" or not tf32_supported():
        return False
    import cupy

    ok = isinstance(split, cupy.ndarray) and split.dtype == np.float32 and split.ndim == 1
    if not ok or not split.flags.c_contiguous or split.size < need:
        raise ValueError(
            f"{fn}: split must be a contiguous 1-D CuPy float32 array of at least {need} elements (split_numel) "
            f"for a 3xTF32 product; got {type(split).__name__} {getattr(split, 'dtype', '')} of shape "
            f"{getattr(split, 'shape', '?')}"
        )
    if any(a is not None and cupy.may_share_memory(split, a) for a in operands):
        raise ValueError(f"{fn}: split is scratch the product writes; it must not overlap its arrays")
    return True


def tf32_parts(out, x, rows: int, cols: int, lo_parts: int, stacked: bool, backend: str = "cuda") -> None:
    """out = the three TF32 copies of x [rows, cols] (bit s of ``lo_parts``: copy s is lo, else hi), side by
    side per row ([rows, 3 cols]) or stacked ([3 rows, cols]): kernels/tf32_split.cu."""
    grid = grid_for(backend, rows * cols, SPLIT_BLOCK)
    _loader.kernel("tf32_split.cu", "tf32_split3_kernel")(
        (grid,), (SPLIT_BLOCK,), (out, x, np.int32(rows), np.int32(cols), np.int32(lo_parts), np.int32(stacked))
    )


def _split_operands(split, a, a_rows: int, k: int, b, b_rows: int, b_stacked: bool):
    """A' = [A_lo | A_hi | A_hi] (a is [a_rows, k]) and B' = the hi, lo, hi copies of b (b_rows rows; side by
    side when b is [b_rows, k], stacked when it is [k, b_rows]) in ``split``: their addresses."""
    a3, at = split[: 3 * a_rows * k], _b_offset(a_rows, k)
    b3 = split[at : at + 3 * b_rows * k]
    tf32_parts(a3, a, a_rows, k, 0b001, False)
    tf32_parts(b3, b, k if b_stacked else b_rows, b_rows if b_stacked else k, 0b010, b_stacked)
    return _ptr(a3), _ptr(b3)


def linear_forward(out, inp, weight, M, K, N, bias=None, split=None):
    """out[M,N] = inp[M,K] @ weight[N,K]^T (+ bias[N] on every row); ``split``: 3xTF32 scratch (module doc)."""
    if _validate.arguments("linear_forward", locals())[0] == "cuda":
        b = 0 if bias is None else _ptr(bias)
        if _use_split("linear_forward", split, K, split_numel(M, K, N), out, inp, weight, bias):
            a3, w3 = _split_operands(split, inp, M, K, weight, N, False)
            fused = cublas_gemm(
                False, True, M, N, 3 * K, 1.0, a3, 3 * K, w3, 3 * K, 0.0, _ptr(out), N, bias=b, tf32=True
            )
        else:
            fused = cublas_gemm(False, True, M, N, K, 1.0, _ptr(inp), K, _ptr(weight), K, 0.0, _ptr(out), N, bias=b)
        if bias is not None and not fused:  # cuBLASLt missing: a second pass adds it
            out.reshape(M, N)[...] += bias.reshape(N)
    else:
        np.matmul(inp.reshape(M, K), weight.reshape(N, K).T, out=out.reshape(M, N))
        if bias is not None:
            out.reshape(M, N)[...] += bias.reshape(N)


def linear_backward_input(dinp, dout, weight, M, K, N, accumulate=False, split=None):
    """dinp[M,K] = dout[M,N] @ weight[N,K] (``accumulate``: +=); ``split``: 3xTF32 scratch (module doc)."""
    if _validate.arguments("linear_backward_input", locals())[0] == "cuda":
        beta = 1.0 if accumulate else 0.0
        if _use_split("linear_backward_input", split, N, split_numel(M, N, K), dinp, dout, weight):
            d3, w3 = _split_operands(split, dout, M, N, weight, K, True)
            cublas_gemm(False, False, M, K, 3 * N, 1.0, d3, 3 * N, w3, K, beta, _ptr(dinp), K, tf32=True)
        else:
            cublas_gemm(False, False, M, K, N, 1.0, _ptr(dout), N, _ptr(weight), K, beta, _ptr(dinp), K)
    elif accumulate:
        dinp.reshape(M, K)[...] += dout.reshape(M, N) @ weight.reshape(N, K)
    else:
        np.matmul(dout.reshape(M, N), weight.reshape(N, K), out=dinp.reshape(M, K))


def linear_backward_weight(dweight, dout, inp, M, K, N):
    """dweight[N,K] += dout[M,N]^T @ inp[M,K]."""
    if _validate.arguments("linear_backward_weight", locals())[0] == "cuda":
        cublas_gemm(True, False, N, K, M, 1.0, _ptr(dout), N, _ptr(inp), K, 1.0, _ptr(dweight), K)
    else:
        dweight.reshape(N, K)[...] += dout.reshape(M, N).T @ inp.reshape(M, K)
