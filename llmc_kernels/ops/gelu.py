"""GELU (tanh approximation) on the active backend: ``kernels/gelu.cu``.

    gelu_forward(out, inp, N)            out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    gelu_backward(dinp, inp, dout, N)    dinp += gelu'(inp) * dout

Arrays: float32, C-contiguous, N elements, any shape (the model passes [B,T,4C]).
Launch: 256-thread blocks, grid-stride, grid = min(ceil(work/256), resident blocks) (cpu backend: 4 items
per thread, see _grid.py). One float4 per thread when every array is 16-byte aligned (whole allocations
always are; the N % 4 tail is done in the same launch), else one float per thread. The kernel evaluates
0.5 (1 + tanh(u)) as sigmoid(2u) (the same function, see gelu.cu).
"""

from __future__ import annotations

from . import _validate
from ._grid import fits_int32, launch_elementwise

BLOCK = 256

BENCH = {
    "gelu_forward": {"sizes": {"N": 8 * 1024 * 4 * 768}, "bytes": lambda N: 8 * N},
    "gelu_backward": {"sizes": {"N": 8 * 1024 * 4 * 768}, "bytes": lambda N: 16 * N},
}


def gelu_forward(out, inp, N):
    backend, _ = _validate.arguments("gelu_forward", locals())
    fits_int32("gelu_forward", N=N)
    launch_elementwise(backend, "gelu.cu", "gelu_forward", (out, inp), int(N), BLOCK)


def gelu_backward(dinp, inp, dout, N):
    backend, _ = _validate.arguments("gelu_backward", locals())
    fits_int32("gelu_backward", N=N)
    launch_elementwise(backend, "gelu.cu", "gelu_backward", (dinp, inp, dout), int(N), BLOCK)
