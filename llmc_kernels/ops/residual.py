"""Residual connection on the active backend: ``kernels/residual.cu``.

    residual_forward(out, inp1, inp2, N)       out = inp1 + inp2
    residual_backward(dinp1, dinp2, dout, N)   dinp1 += dout; dinp2 += dout

Arrays: float32, C-contiguous, N elements, any shape. Launch: 256-thread blocks, grid-stride,
grid = min(ceil(work/256), resident blocks) (cpu backend: 4 items per thread); one float4 per thread
when every array is 16-byte aligned (the N % 4 tail in the same launch), else one float.
"""
from __future__ import annotations

import numpy as np

from . import _loader, _validate
from ._grid import aligned16, elementwise_args, grid_for

BLOCK = 256

BENCH = {
    "residual_forward": {"sizes": {"N": 8 * 1024 * 768}, "bytes": lambda N: 12 * N},
    "residual_backward": {"sizes": {"N": 8 * 1024 * 768}, "bytes": lambda N: 20 * N},
}


def _launch(backend: str, name: str, arrays: tuple, N: int) -> None:
    if aligned16(*arrays):
        kern, work = f"{name}_vec4_kernel", max(1, N // 4)
    else:
        kern, work = f"{name}_kernel", N
    grid = grid_for(backend, work, BLOCK)
    _loader.kernel("residual.cu", kern)((grid,), (BLOCK,), (*arrays, np.int32(N)))


def residual_forward(out, inp1, inp2, N):
    fn = "residual_forward"
    _validate.entry(fn)
    backend = elementwise_args(fn, N, out=out, inp1=inp1, inp2=inp2)
    _launch(backend, "residual_forward", (out, inp1, inp2), int(N))


def residual_backward(dinp1, dinp2, dout, N):
    fn = "residual_backward"
    _validate.entry(fn)
    backend = elementwise_args(fn, N, dinp1=dinp1, dinp2=dinp2, dout=dout)
    _launch(backend, "residual_backward", (dinp1, dinp2, dout), int(N))
