"""Encoder (token + position embedding) on the active backend: ``kernels/encoder.cu``.

    encoder_forward(out[B,T,C], inp[B,T] int32, wte[V,C], wpe[maxT,C], B, T, C)
        out[b,t,:] = wte[inp[b,t],:] + wpe[t,:]
    encoder_backward(dwte[V,C], dwpe[maxT,C], dout[B,T,C], inp[B,T], B, T, C)
        dwte[inp[b,t],:] += dout[b,t,:];  dwpe[t,:] += sum_b dout[b,t,:]

Launch: 256-thread blocks, grid-stride, grid capped at what the GPU holds at once (cpu backend: 4 items
per thread, see _grid.py). The forward moves one float4 per thread when C % 4 == 0 and the arrays are
16-byte aligned (always true for whole CuPy/NumPy allocations), else one float. The backward runs one
thread per (t, c): a deterministic sum over b for dwpe and atomicAdd scatters into dwte (the order of
float additions into dwte varies from run to run).
"""

from __future__ import annotations

import numpy as np

from . import _loader, _validate
from ._grid import aligned16, fits_int32, grid_for

BLOCK = 256
# Token ids outside [0, V) would read/write outside wte (on a GPU that kills the CUDA context), so the
# wrappers check them first: one small reduction over B*T ints (a host sync on cuda). Set False to time
# the kernels alone; a caller that validated the ids on the host passes check_ids=False (FastGPT2).
CHECK_TOKEN_IDS = True

BENCH = {  # GPT-2 124M sizes and the bytes each call must move at least (for bandwidth figures)
    "encoder_forward": {
        "sizes": {"B": 8, "T": 1024, "C": 768, "V": 50304, "maxT": 1024},
        "bytes": lambda B, T, C, **_: 4 * (3 * B * T * C + B * T),
    },
    "encoder_backward": {
        "sizes": {"B": 8, "T": 1024, "C": 768, "V": 50304, "maxT": 1024},
        "bytes": lambda B, T, C, **_: 4 * (3 * B * T * C + 2 * T * C + B * T),
    },
}


def _check_tokens(fn: str, inp, V: int, check_ids: bool) -> None:
    if check_ids and CHECK_TOKEN_IDS and bool(((inp < 0) | (inp >= V)).any()):
        lo, hi = int(inp.min()), int(inp.max())
        raise ValueError(
            f"{fn}: token ids in 'inp' must lie in [0, V) = [0, {V}) (V = rows of the token "
            f"embedding); got ids from {lo} to {hi}"
        )


def encoder_forward(out, inp, wte, wpe, B, T, C, *, check_ids=True):
    fn = "encoder_forward"
    backend, dims = _validate.arguments(fn, locals())
    V, maxT = dims["V"], dims["maxT"]  # the rows of wte and wpe (no arguments of their own)
    fits_int32(fn, out=B * T * C, wte=V * C, wpe=maxT * C)
    _check_tokens(fn, inp, V, check_ids)
    args = (out, inp, wte, wpe, np.int32(B), np.int32(T), np.int32(C))
    if C % 4 == 0 and aligned16(out, wte, wpe):
        grid = grid_for(backend, B * T * C // 4, BLOCK)
        _loader.kernel("encoder.cu", "encoder_forward_vec4_kernel")((grid,), (BLOCK,), args)
    else:
        grid = grid_for(backend, B * T * C, BLOCK)
        _loader.kernel("encoder.cu", "encoder_forward_kernel")((grid,), (BLOCK,), args)


def encoder_backward(dwte, dwpe, dout, inp, B, T, C, *, check_ids=True):
    fn = "encoder_backward"
    backend, dims = _validate.arguments(fn, locals())
    V, maxT = dims["V"], dims["maxT"]
    fits_int32(fn, dout=B * T * C, dwte=V * C, dwpe=maxT * C)
    _check_tokens(fn, inp, V, check_ids)
    grid = grid_for(backend, T * C, BLOCK)
    _loader.kernel("encoder.cu", "encoder_backward_kernel")(
        (grid,), (BLOCK,), (dwte, dwpe, dout, inp, np.int32(B), np.int32(T), np.int32(C))
    )
