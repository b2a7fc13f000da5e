"""Fused ops of the fast model (``model.fast.FastGPT2``): fewer passes over the activations, no host in a step.

    residual_layernorm_forward(res_out, out, mean, rstd, inp1, inp2, bias2, weight, bias, B, T, C)
        x = inp1 + inp2 + bias2; res_out = x; out, mean, rstd = layernorm_forward(x)      (kernels/fused_layernorm.cu)
        inp2 = bias2 = res_out = None: layernorm_forward(inp1) alone
    bias_gelu_forward(pre, out, bias, B, T, OC)       pre += bias; out = gelu(pre)   (kernels/fused_bias_gelu.cu)
    gelu_backward_inplace(d, pre, N)                  d = gelu'(pre) * d            (overwrites: no zeroed buffer)
    bias_backward(dbias, dout, B, T, OC)              dbias += sum over rows of dout (accumulates)
    mean_loss(out, losses, N)                         out[0] = mean(losses)         (kernels/fused_step.cu)
    adamw_update_device(params, grads, m, v, hyper, num_params)
        adamw_update with [lr, beta1, beta2, 1-beta1^t, 1-beta2^t, eps, weight_decay] read from the device
        array ``hyper`` (``adamw_hyper`` builds it), so a captured CUDA graph takes new values every step.

Each is checked against the SPEC ops / references it replaces in tests/test_fast_fused.py. Launch shapes follow
the plain ops: grid-stride elementwise kernels (256 threads, float4 when every array is 16-byte aligned), a
warp per layernorm row on cuda and a thread per row on cpu (see ops/layernorm.py for why).
"""

from __future__ import annotations

import numpy as np

from . import _loader, _validate
from ._grid import aligned16, fits_int32, grid_for, launch_elementwise, resident_blocks

BLOCK = 256
LN_BLOCK = 256


def _lanes(backend: str, C: int) -> int:
    if backend != "cuda":
        return 1
    if C >= 256:
        return 32
    return 1 << max(0, (C // 8).bit_length() - 1) if C >= 8 else 1


def residual_layernorm_forward(res_out, out, mean, rstd, inp1, inp2, bias2, weight, bias, B, T, C):
    """res_out = inp1 + inp2 + bias2 and out = layernorm(res_out); with inp2 None, out = layernorm(inp1)."""
    fn = "residual_layernorm_forward"
    has2 = inp2 is not None
    if has2 and (bias2 is None or res_out is None):
        raise ValueError(f"{fn}: with inp2, pass bias2 and res_out too")
    backend, _ = _validate.arguments(fn, locals())
    fits_int32(fn, rows=B * T)
    rows = [a for a in (res_out, out, inp1, inp2, bias2, weight, bias) if a is not None]
    vec = np.int32(C % 4 == 0 and aligned16(*rows))
    lanes = _lanes(backend, C)
    grid = max(1, min(-(-B * T * lanes // LN_BLOCK), resident_blocks(backend, LN_BLOCK)))
    res_arg = res_out if has2 else out  # never touched without inp2
    _loader.kernel("fused_layernorm.cu", "residual_layernorm_forward_kernel")(
        (grid,),
        (LN_BLOCK,),
        (
            res_arg,
            out,
            mean,
            rstd,
            inp1,
            inp2 if has2 else inp1,
            bias2 if has2 else bias,
            weight,
            bias,
            np.int32(B * T),
            np.int32(C),
            np.int32(has2),
            np.int32(lanes),
            vec,
        ),
    )


def _rows_op(fn, backend, name, arrays, N, OC):
    """Launch a [rows, OC] elementwise kernel of fused_bias_gelu.cu, float4 when possible."""
    if OC % 4 == 0 and aligned16(*arrays):
        kern, work = f"{name}_vec4_kernel", max(1, N // 4)
    else:
        kern, work = f"{name}_kernel", N
    _loader.kernel("fused_bias_gelu.cu", kern)(
        (grid_for(backend, work, BLOCK),), (BLOCK,), (*arrays, np.int32(N), np.int32(OC))
    )


def bias_gelu_forward(pre, out, bias, B, T, OC):
    """pre += bias (in place: the pre-activation the backward needs); out = gelu(pre)."""
    fn = "bias_gelu_forward"
    backend, _ = _validate.arguments(fn, locals())
    fits_int32(fn, N=B * T * OC)
    _rows_op(fn, backend, "bias_gelu_forward", (pre, out, bias), B * T * OC, OC)


def gelu_backward_inplace(d, pre, N):
    """d = gelu'(pre) * d: the gradient through GELU, written over the incoming gradient."""
    fn = "gelu_backward_inplace"
    backend, _ = _validate.arguments(fn, locals())
    fits_int32(fn, N=N)
    launch_elementwise(backend, "fused_bias_gelu.cu", "gelu_backward_inplace", (d, pre), int(N), BLOCK)


def bias_backward(dbias, dout, B, T, OC):
    """dbias += the column sums of dout viewed as [B*T, OC]."""
    fn = "bias_backward"
    backend, _ = _validate.arguments(fn, locals())
    fits_int32(fn, N=B * T * OC)
    M = B * T
    rows = 8 if backend == "cuda" else 1  # cpu: blocks of 32 fibers, no partial sums to combine
    vec = OC % 4 == 0 and aligned16(dbias, dout)
    gx = -(-OC // (128 if vec else 32))  # a block's 32 threads along x take 32 (or 32 float4) columns
    if backend == "cuda":  # ~8 blocks of 256 threads per SM, >= 16 rows per thread
        gy = max(1, min(-(-M // (rows * 16)), -(-8 * resident_blocks(backend, 2048) // gx)))
    else:
        gy = max(1, min(-(-M // 64), 4))
    kern = "bias_backward_vec4_kernel" if vec else "bias_backward_kernel"
    _loader.kernel("fused_bias_gelu.cu", kern)((gx, gy), (32, rows), (dbias, dout, np.int32(M), np.int32(OC)))


def mean_loss(out, losses, N):
    """out[0] = the mean of the N losses (summed in double), on the device: no host sync."""
    fn = "mean_loss"
    _validate.entry(fn)
    _validate.positive(fn, N=N)
    backend = _validate.same_backend(fn, out=out, losses=losses)
    _validate.expect_flat(fn, "losses", losses, N)
    if int(out.size) < 1 or out.dtype != np.float32:
        raise ValueError(f"{fn}: 'out' must be a float32 array of at least 1 element")
    block = 1024 if backend == "cuda" else 32
    _loader.kernel("fused_step.cu", "mean_loss_kernel")((1,), (block,), (out, losses, np.int32(N)))


def adamw_hyper(lr, beta1, beta2, eps, weight_decay, t) -> np.ndarray:
    """The 7 float32 numbers adamw_update_device reads: the bias corrections computed in double precision,
    as ops.adamw_update does."""
    t = int(t)
    if t < 1:
        raise ValueError(f"adamw_hyper: t counts from 1; got {t}")
    return np.array([lr, beta1, beta2, 1.0 - beta1**t, 1.0 - beta2**t, eps, weight_decay], dtype=np.float32)


def adamw_update_device(params, grads, m, v, hyper, num_params):
    """AdamW (kernels/adamw.cu's arithmetic) with its hyperparameters read from the device array ``hyper``."""
    fn = "adamw_update_device"
    backend, _ = _validate.arguments(fn, locals())
    fits_int32(fn, num_params=num_params)
    vec = aligned16(params, grads, m, v)
    work = max(1, int(num_params) // 4) if vec else int(num_params)
    _loader.kernel("fused_step.cu", "adamw_device_kernel")(
        (grid_for(backend, work, BLOCK),), (BLOCK,), (params, grads, m, v, hyper, np.int32(num_params), np.int32(vec))
    )
