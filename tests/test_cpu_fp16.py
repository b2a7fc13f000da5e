"""<cuda_fp16.h> and <cuda_bf16.h> on the CPU backend (include/llmc_fp16.h): an include a kernel does not use
never stops it from running, and half and bfloat16 round as the GPU does (to nearest even, subnormals,
overflow to inf, NaN kept), against NumPy's float16 and a bfloat16 rounding written out on the float32 bits."""

from __future__ import annotations

import numpy as np
import pytest

from llmc_kernels.runtime import RawKernel, nvrtc

UNUSED = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>
extern "C" __global__ void copy(float* out, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i];
}
"""

ROUND_TRIP = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>
// out16[i]: x through half and back; outbf[i]: through bfloat16; sums[i]: __hadd of two halves, in half
extern "C" __global__ void round_trip(float* out16, float* outbf, half* sums, const float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    half h = __float2half(x[i]);
    __nv_bfloat16 b = __float2bfloat16(x[i]);
    out16[i] = __half2float(h);
    outbf[i] = __bfloat162float(b);
    sums[i] = __hadd(h, __float2half_rn(1.0f));
}
"""


def bf16_round(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 -> float32, round to nearest even (NaN kept)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(x), np.float32(np.nan), r)


def values() -> np.ndarray:
    rng = np.random.default_rng(0)
    special = [
        0.0,
        -0.0,
        1.0,
        -2.5,
        65504.0,
        65520.0,
        70000.0,
        6.1e-5,
        5.96e-8,
        2.98e-8,
        1e-10,
        np.inf,
        -np.inf,
        np.nan,
        3.0e38,
        1.0 + 2.0**-11,
        1.0 + 3 * 2.0**-11,
        1.0 + 2.0**-8,
        1.0 + 3 * 2.0**-8,
    ]
    return np.concatenate(
        [
            np.array(special, np.float32),
            rng.standard_normal(300).astype(np.float32) * 100,
            (rng.standard_normal(100) * 1e-5).astype(np.float32),
        ]
    )


def test_an_unused_include_does_not_stop_a_kernel():
    x = np.arange(37, dtype=np.float32)
    out = np.zeros_like(x)
    RawKernel(UNUSED, "copy", backend="cpu")((1,), (64,), (out, x, np.int32(37)))
    assert np.array_equal(out, x)


def test_half_and_bfloat16_round_as_the_gpu_does():
    x = values()
    n = x.size
    out16, outbf, sums = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float16)
    RawKernel(ROUND_TRIP, "round_trip", backend="cpu")((-(-n // 64),), (64,), (out16, outbf, sums, x, np.int32(n)))
    with np.errstate(over="ignore"):
        want16 = x.astype(np.float16)
    np.testing.assert_array_equal(out16, want16.astype(np.float32))  # NaN == NaN here
    np.testing.assert_array_equal(outbf, bf16_round(x))
    with np.errstate(over="ignore", invalid="ignore"):
        np.testing.assert_array_equal(sums, (want16.astype(np.float32) + 1).astype(np.float16))


@pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed")
@pytest.mark.parametrize("code, name", [(UNUSED, "copy"), (ROUND_TRIP, "round_trip")])
def test_the_kernels_are_valid_cuda(code, name):
    if not nvrtc.header_dirs():
        pytest.skip("CUDA's headers (cuda_fp16.h) are not installed for NVRTC")
    nvrtc.check_compile(code, name)


@pytest.mark.gpu
def test_the_gpu_gives_the_same_bits():
    cp = pytest.importorskip("cupy")
    x = values()
    n = x.size
    outs = {}
    for backend, xp in (("cpu", np), ("cuda", cp)):
        o16, obf, s = xp.zeros(n, xp.float32), xp.zeros(n, xp.float32), xp.zeros(n, xp.float16)
        RawKernel(ROUND_TRIP, "round_trip", backend=backend)(
            (-(-n // 64),), (64,), (o16, obf, s, xp.asarray(x), np.int32(n))
        )
        outs[backend] = [np.asarray(cp.asnumpy(a) if backend == "cuda" else a) for a in (o16, obf, s)]
    for a, b in zip(outs["cpu"], outs["cuda"]):
        np.testing.assert_array_equal(a, b)
