"""Launch-configuration helpers shared by the memory-bound ops (encoder, layernorm, gelu, residual, adamw).

Grid-stride kernels need a grid big enough to fill the GPU and no bigger: ``resident_blocks`` is how many
blocks of ``block`` threads fit on the device at once (2048 threads per SM on every GPU from sm_75 to
sm_90, except Turing's 1024).

The CPU backend runs the threads of a launch one after another, which turns the GPU-friendly grid-stride
pattern around: a thread that loops many times strides across the whole array (one cache line per
iteration, evicted before its neighbour thread wants the rest of it), so there ``grid_for`` gives each
thread only a few iterations (CPU_ITERATIONS). Kernels with barriers or warp shuffles make every thread a
fiber (~0.4 us each to start), so for those a handful of blocks (``resident_blocks``) is best.
"""

from __future__ import annotations

import functools

import numpy as np

INT_MAX = 2**31 - 1
# the loops index with 32-bit ints: keep `i + stride` below INT_MAX for every grid we launch
INDEX_LIMIT = INT_MAX - 2**26


@functools.cache
def _device_shape(device_id: int) -> tuple[int, int]:
    import cupy

    attrs = cupy.cuda.Device(device_id).attributes
    return attrs["MultiProcessorCount"], attrs.get("MaxThreadsPerMultiProcessor", 2048)


CPU_ITERATIONS = 4  # grid-stride trips per thread on the cpu backend


def resident_blocks(backend: str, block: int) -> int:
    """Blocks of ``block`` threads that run at once on the active device (cpu: a handful)."""
    if backend != "cuda":
        return 4
    import cupy

    sms, threads = _device_shape(cupy.cuda.Device().id)
    return sms * max(1, threads // block)


def launch_elementwise(backend: str, source: str, name: str, arrays: tuple, N: int, block: int) -> None:
    """Launch ``name``'s float4 kernel (``name_vec4_kernel``, when every array is 16-byte aligned) or its
    scalar one (``name_kernel``) from ``source`` over N elements, grid-stride; both take (*arrays, int N)."""
    from . import _loader

    if aligned16(*arrays):
        kern, work = f"{name}_vec4_kernel", max(1, N // 4)
    else:
        kern, work = f"{name}_kernel", N
    _loader.kernel(source, kern)((grid_for(backend, work, block),), (block,), (*arrays, np.int32(N)))


def grid_for(backend: str, work: int, block: int) -> int:
    """Blocks for a grid-stride loop over ``work`` items (in a kernel without barriers or shuffles): on cuda
    one item per thread, capped at what is resident; on cpu CPU_ITERATIONS items per thread."""
    if backend != "cuda":
        return max(1, -(-work // (block * CPU_ITERATIONS)))
    return max(1, min(-(-work // block), resident_blocks(backend, block)))


def aligned16(*arrays) -> bool:
    """True when every array's data starts on a 16-byte boundary (float4 loads need it)."""
    for a in arrays:
        ptr = a.data.ptr if hasattr(a.data, "ptr") else a.ctypes.data
        if ptr % 16:
            return False
    return True


def fits_int32(fn: str, **counts) -> None:
    """Kernels index with int: refuse element counts the 32-bit grid-stride loops cannot reach."""
    for name, n in counts.items():
        if int(n) > INDEX_LIMIT:
            raise ValueError(
                f"{fn}: {name} = {int(n)} elements is more than these kernels index "
                f"with 32-bit ints (at most {INDEX_LIMIT})"
            )
