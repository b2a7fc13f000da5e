"""Vector addition on the active backend (chapter 00's exercise, the package's own).

    vector_add(out, a, b, N)       out = a + b

The same arithmetic as residual_forward, so it launches ``kernels/residual.cu``'s kernels: 256-thread
blocks, grid-stride, one float4 per thread when every array is 16-byte aligned. Arrays: float32,
C-contiguous, N elements, any shape.
"""

from __future__ import annotations

from . import _validate
from ._grid import fits_int32, launch_elementwise

BLOCK = 256


def vector_add(out, a, b, N):
    backend, _ = _validate.arguments("vector_add", locals())
    fits_int32("vector_add", N=N)
    launch_elementwise(backend, "residual.cu", "residual_forward", (out, a, b), int(N), BLOCK)
