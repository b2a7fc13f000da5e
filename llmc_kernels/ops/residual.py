"""Residual connection on the active backend: ``kernels/residual.cu``.

    residual_forward(out, inp1, inp2, N)       out = inp1 + inp2
    residual_backward(dinp1, dinp2, dout, N)   dinp1 += dout; dinp2 += dout

Arrays: float32, C-contiguous, N elements, any shape. Launch: 256-thread blocks, grid-stride,
grid = min(ceil(work/256), resident blocks) (cpu backend: 4 items per thread); one float4 per thread
when every array is 16-byte aligned (the N % 4 tail in the same launch), else one float.
"""

from __future__ import annotations

from . import _validate
from ._grid import fits_int32, launch_elementwise

BLOCK = 256

BENCH = {
    "residual_forward": {"sizes": {"N": 8 * 1024 * 768}, "bytes": lambda N: 12 * N},
    "residual_backward": {"sizes": {"N": 8 * 1024 * 768}, "bytes": lambda N: 20 * N},
}


def residual_forward(out, inp1, inp2, N):
    backend, _ = _validate.arguments("residual_forward", locals())
    fits_int32("residual_forward", N=N)
    launch_elementwise(backend, "residual.cu", "residual_forward", (out, inp1, inp2), int(N), BLOCK)


def residual_backward(dinp1, dinp2, dout, N):
    backend, _ = _validate.arguments("residual_backward", locals())
    fits_int32("residual_backward", N=N)
    launch_elementwise(backend, "residual.cu", "residual_backward", (dinp1, dinp2, dout), int(N), BLOCK)
