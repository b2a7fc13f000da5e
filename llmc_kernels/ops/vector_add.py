"""Vector addition on the active backend: ``kernels/vector_add.cu`` (chapter 00's exercise, the package's own).

    vector_add(out, a, b, N)       out = a + b

Arrays: float32, C-contiguous, N elements, any shape. Launch as residual_forward: 256-thread blocks,
grid-stride, one float4 per thread when every array is 16-byte aligned.
"""
from __future__ import annotations

from . import _validate
from ._grid import fits_int32, launch_elementwise

BLOCK = 256


def vector_add(out, a, b, N):
    backend, _ = _validate.arguments("vector_add", locals())
    fits_int32("vector_add", N=N)
    launch_elementwise(backend, "vector_add.cu", "vector_add", (out, a, b), int(N), BLOCK)
