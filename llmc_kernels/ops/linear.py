"""The fast model's linear layers: the three products of matmul_forward/matmul_backward as separate calls,
each writing exactly what it should, so no buffer needs zeroing and no bias pass rides along.

    linear_forward(out[M,N], inp[M,K], weight[N,K], bias=None)         out  = inp @ weight^T (+ bias) (written)
    linear_backward_input(dinp[M,K], dout[M,N], weight[N,K], accumulate=False)
                                                                       dinp = dout @ weight          (or +=)
    linear_backward_weight(dweight[N,K], dout[M,N], inp[M,K])          dweight += dout^T @ inp       (accumulates)

Arrays are C-contiguous float32 of the given element counts (any shape: the model passes [B,T,C] views).
The other bias terms live in ops/fused.py (bias_gelu_forward, residual_layernorm_forward, bias_backward),
fused with the pass that follows the product. On cuda every product is one cuBLAS call
(``matmul.cublas_gemm``: beta = 0 to write, beta = 1 to accumulate, TF32 per ``set_matmul_precision``,
linear_forward's bias in the product's epilogue); on cpu NumPy's BLAS.
"""

from __future__ import annotations

import numpy as np

from . import _validate
from .matmul import cublas_gemm


def _ptr(a) -> int:
    """Device address of a CuPy array's first element."""
    return int(a.data.ptr)


def linear_forward(out, inp, weight, M, K, N, bias=None):
    """out[M,N] = inp[M,K] @ weight[N,K]^T (+ bias[N] on every row)."""
    if _validate.arguments("linear_forward", locals())[0] == "cuda":
        fused = cublas_gemm(
            False,
            True,
            M,
            N,
            K,
            1.0,
            _ptr(inp),
            K,
            _ptr(weight),
            K,
            0.0,
            _ptr(out),
            N,
            bias=0 if bias is None else _ptr(bias),
        )
        if bias is not None and not fused:  # cuBLASLt missing: a second pass adds it
            out.reshape(M, N)[...] += bias.reshape(N)
    else:
        np.matmul(inp.reshape(M, K), weight.reshape(N, K).T, out=out.reshape(M, N))
        if bias is not None:
            out.reshape(M, N)[...] += bias.reshape(N)


def linear_backward_input(dinp, dout, weight, M, K, N, accumulate=False):
    """dinp[M,K] = dout[M,N] @ weight[N,K] (``accumulate``: +=)."""
    if _validate.arguments("linear_backward_input", locals())[0] == "cuda":
        cublas_gemm(
            False, False, M, K, N, 1.0, _ptr(dout), N, _ptr(weight), K, 1.0 if accumulate else 0.0, _ptr(dinp), K
        )
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
