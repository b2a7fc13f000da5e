"""Which path a GPU gets: the sm_75 path on GPUs without TF32 tensor cores (compute capability < 8.0: a T4,
a V100), the tensor-core path on newer ones.

The sm_75 path is flash attention's SIMT kernels (``kernels/flash_attention_simt.cu``: fp32 FMA instead of
TF32 mma) and fp32 products (``tf32_supported()`` is False, so ``--precision tf32`` falls back to fp32).
``LLMC_FORCE_SM75=1`` forces it on any GPU, and on the cpu backend, read at every call: on an H100 it is the
stand-in for a T4 that the tests and bench/train.py use. Without it, the cpu backend keeps the tensor-core
kernels (their mma emulated from its fragments), and the ops' ``simt=True`` picks the SIMT kernels there.
"""

from __future__ import annotations

import functools
import os

FORCE_ENV = "LLMC_FORCE_SM75"


def forced() -> bool:
    """True while ``LLMC_FORCE_SM75`` is set to anything but "", 0, false, no or off."""
    return os.environ.get(FORCE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


@functools.cache
def _compute_capability(device_id: int) -> int:
    import cupy

    return int(cupy.cuda.Device(device_id).compute_capability)


def compute_capability() -> int:
    """The current CUDA device's compute capability as major * 10 + minor (75: T4, 80: A100, 90: H100)."""
    import cupy

    return _compute_capability(cupy.cuda.Device().id)


def simt_path(backend: str | None = None) -> bool:
    """True where the sm_75 path runs: forced (``LLMC_FORCE_SM75=1``: the SIMT flash attention and fp32
    products, as on a T4), or on the cuda backend with a GPU of compute capability < 8.0. ``backend`` defaults
    to the active one."""
    if forced():
        return True
    if backend is None:
        from ..runtime import backend as active

        backend = active()
    return backend == "cuda" and compute_capability() < 80
