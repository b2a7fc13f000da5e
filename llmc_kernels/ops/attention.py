"""Causal multi-head self-attention as llm.c's train_gpt2.c (SPEC signatures; math in kernels/attention.cu).

    attention_forward(out[B,T,C], preatt[B,NH,T,T], att[B,NH,T,T], inp[B,T,3C], B, T, C, NH)
    attention_backward(dinp[B,T,3C], dpreatt, datt, dout[B,T,C], inp, att, B, T, C, NH)   (accumulate)

Masked entries (t2 > t): preatt, datt and dpreatt keep what they held, att gets 0 (forward) and is never
read there (backward). The backward's softmax step reads the whole datt after its +=, the q.k step the
whole dpreatt after its += (llm.c's order; reference.attention_backward says why).

Two paths, the same results:
- kernels (cpu default; ``path="kernels"``): everything in kernels/attention.cu.
  forward:  attention_scores_softmax_kernel (a group of G lanes per row (b,h,t): scores, online
            softmax, att) + attention_value_kernel (a thread per out element).
  backward: attention_backward_rows_kernel (a group per row: datt, dpreatt, dq) +
            attention_backward_kv_kernel (a thread per dk/dv element, summing its column: no atomics).
  G = 32 (a warp per row, 256-thread blocks) on cuda; G = 1 (a thread per row, 32-thread blocks) on the
  cpu backend, where cooperating lanes would cost a fiber switch per shuffle and a thread alone runs as
  a plain loop.
- blas (cuda default; ``path="blas"``): the batched products through cuBLAS (matmul.strided_gemm, one
  strided-batched call per b over the NH heads, operands read in place from inp/dout/dinp with their row
  strides), the softmax parts in attention_softmax_forward_kernel / attention_softmax_backward_kernel
  (a warp per row). Scratch: NH*T*T floats (forward), 2*NH*T*T (backward). On cpu the same code runs
  with NumPy products, which is how the tests prove it without a GPU.
"""

from __future__ import annotations

import math

import numpy as np

from . import _loader, _validate
from ._grid import aligned16
from .matmul import strided_gemm

GPU_LANES, GPU_BLOCK = 32, 256
CPU_LANES, CPU_BLOCK = 1, 32
ELEMENT_BLOCK = 256


def _config(backend: str) -> tuple[int, int]:
    return (GPU_LANES, GPU_BLOCK) if backend == "cuda" else (CPU_LANES, CPU_BLOCK)


def _row_grid(rows: int, lanes: int, block: int) -> int:
    if block % 32 or not 1 <= lanes <= 32 or lanes & (lanes - 1):
        raise ValueError(
            f"attention: lanes must be a power of two <= 32 and the block a multiple of 32; "
            f"got lanes={lanes}, block={block}"
        )
    return -(-rows * lanes // block)


def _vec(C: int, NH: int, *arrays) -> np.int32:
    """float4 dot products: every q/k/v/dout head slice 16-byte aligned."""
    return np.int32(C % 4 == 0 and (C // NH) % 4 == 0 and aligned16(*arrays))


# -------------------------------------------------------------------------------------------- forward


def forward_kernels(out, preatt, att, inp, B, T, C, NH, lanes, block) -> None:
    rows = B * NH * T
    _loader.kernel("attention.cu", "attention_scores_softmax_kernel")(
        (_row_grid(rows, lanes, block),),
        (block,),
        (preatt, att, inp, np.int32(B), np.int32(T), np.int32(C), np.int32(NH), np.int32(lanes), _vec(C, NH, inp)),
    )
    _loader.kernel("attention.cu", "attention_value_kernel")(
        (-(-B * T * C // ELEMENT_BLOCK),),
        (ELEMENT_BLOCK,),
        (out, att, inp, np.int32(B), np.int32(T), np.int32(C), np.int32(NH)),
    )


def forward_blas(out, preatt, att, inp, B, T, C, NH, lanes, block) -> None:
    xp = _array_module(out)
    hs, C3, TT = C // NH, 3 * C, T * T
    scores = xp.empty((NH, T, T), dtype=np.float32)
    softmax = _loader.kernel("attention.cu", "attention_softmax_forward_kernel")
    for b in range(B):
        x = b * T * C3  # inp's (b, t=0) row
        # scores[h] = (1/sqrt(hs)) q_h k_h^T, q_h/k_h: T x hs at column h*hs (+C) of inp, row stride 3C
        strided_gemm(
            False,
            True,
            T,
            T,
            hs,
            1.0 / math.sqrt(hs),
            inp,
            x,
            C3,
            hs,
            inp,
            x + C,
            C3,
            hs,
            0.0,
            scores,
            0,
            T,
            TT,
            batch=NH,
        )
        softmax(
            (_row_grid(NH * T, lanes, block),),
            (block,),
            (preatt[b], att[b], scores, np.int32(NH * T), np.int32(T), np.int32(lanes)),
        )
        # out[b, :, h*hs:(h+1)*hs] = att[b,h] @ v_h   (att is 0 where t2 > t)
        strided_gemm(
            False,
            False,
            T,
            hs,
            T,
            1.0,
            att,
            b * NH * TT,
            T,
            TT,
            inp,
            x + 2 * C,
            C3,
            hs,
            0.0,
            out,
            b * T * C,
            C,
            hs,
            batch=NH,
        )


def _array_module(a):
    if isinstance(a, np.ndarray):
        return np
    import cupy

    return cupy


def attention_forward(out, preatt, att, inp, B, T, C, NH, *, path=None):
    """out = softmax(causal(q k^T / sqrt(hs))) v per head; preatt/att kept for the backward."""
    fn = "attention_forward"
    backend, _ = _validate.arguments(fn, locals())
    run = _pick(fn, backend, path, forward_kernels, forward_blas)
    run(out, preatt, att, inp, B, T, C, NH, *_config(backend))


# ------------------------------------------------------------------------------------------- backward


def backward_kernels(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH, lanes, block) -> None:
    rows = B * NH * T
    sizes = (np.int32(B), np.int32(T), np.int32(C), np.int32(NH))
    _loader.kernel("attention.cu", "attention_backward_rows_kernel")(
        (_row_grid(rows, lanes, block),),
        (block,),
        (dinp, dpreatt, datt, dout, inp, att, *sizes, np.int32(lanes), _vec(C, NH, inp, dout)),
    )
    _loader.kernel("attention.cu", "attention_backward_kv_kernel")(
        (-(-B * T * C // ELEMENT_BLOCK),), (ELEMENT_BLOCK,), (dinp, dpreatt, dout, inp, att, *sizes)
    )


def backward_blas(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH, lanes, block) -> None:
    xp = _array_module(dinp)
    hs, C3, TT = C // NH, 3 * C, T * T
    scale = 1.0 / math.sqrt(hs)
    dS = xp.empty((NH, T, T), dtype=np.float32)  # dout.v^T, then the causal total dpreatt
    attm = xp.empty((NH, T, T), dtype=np.float32)  # att with its masked entries 0
    softmax = _loader.kernel("attention.cu", "attention_softmax_backward_kernel")
    for b in range(B):
        x, y = b * T * C3, b * T * C  # inp/dinp and dout rows of (b, t=0)
        # dS[h] = dout_h v_h^T
        strided_gemm(False, True, T, T, hs, 1.0, dout, y, C, hs, inp, x + 2 * C, C3, hs, 0.0, dS, 0, T, TT, batch=NH)
        softmax(
            (_row_grid(NH * T, lanes, block),),
            (block,),
            (dpreatt[b], datt[b], dS, attm, att[b], np.int32(NH * T), np.int32(T), np.int32(lanes)),
        )
        # dv_h += attm_h^T dout_h,  dq_h += scale dS_h k_h,  dk_h += scale dS_h^T q_h   (beta = 1: add)
        strided_gemm(True, False, T, hs, T, 1.0, attm, 0, T, TT, dout, y, C, hs, 1.0, dinp, x + 2 * C, C3, hs, batch=NH)
        strided_gemm(False, False, T, hs, T, scale, dS, 0, T, TT, inp, x + C, C3, hs, 1.0, dinp, x, C3, hs, batch=NH)
        strided_gemm(True, False, T, hs, T, scale, dS, 0, T, TT, inp, x, C3, hs, 1.0, dinp, x + C, C3, hs, batch=NH)


def attention_backward(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH, *, path=None):
    """dinp, dpreatt, datt += the gradients (causal entries only for the T x T buffers)."""
    fn = "attention_backward"
    backend, _ = _validate.arguments(fn, locals())
    run = _pick(fn, backend, path, backward_kernels, backward_blas)
    run(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH, *_config(backend))


def _pick(fn, backend, path, kernels, blas):
    if path is None:
        path = "blas" if backend == "cuda" else "kernels"
    if path not in ("kernels", "blas"):
        raise ValueError(f"{fn}: path must be 'kernels' or 'blas'; got {path!r}")
    return kernels if path == "kernels" else blas
