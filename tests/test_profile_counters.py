"""llmc_kernels.profile on real kernels: the analytic cases of Nsight Compute's definitions (a coalesced float
copy is 4 sectors per request, stride 32 is 32, float4 is 16; shared ``buf[tid]`` is 1 wavefront,
``buf[2*tid]`` 2, ``buf[32*tid]`` 32, ``buf[0]`` 1), requests per warp and site, divergence, atomics,
barriers, unique bytes, the table and its hints."""

import numpy as np
import pytest

import llmc_kernels
from llmc_kernels.runtime import RawKernel

i32 = np.int32

SRC = r"""
extern "C" __global__ void strided_copy(float* out, const float* inp, int n, int stride) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = inp[i * stride];
}
extern "C" __global__ void float4_copy(float4* out, const float4* inp, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = inp[i];
}
extern "C" __global__ void shared_stride(float* out, int stride) {
    __shared__ float buf[1024];
    for (int i = threadIdx.x; i < 1024; i += blockDim.x) buf[i] = i;
    __syncthreads();
    out[threadIdx.x] = buf[(threadIdx.x * stride) & 1023];
}
extern "C" __global__ void shared_float4(float* out) {
    __shared__ float4 buf[32];
    buf[threadIdx.x] = make_float4(1.f, 2.f, 3.f, 4.f);
    __syncthreads();
    out[threadIdx.x] = buf[threadIdx.x].y;
}
extern "C" __global__ void divergent(float* out, const float* a, const float* b) {
    int i = threadIdx.x;
    if (i < 16) out[i] = a[i];
    else out[i] = b[i];
}
extern "C" __global__ void looped(float* out, const float* inp, int n) {
    float s = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) s += inp[j];
    out[threadIdx.x] = s;
}
extern "C" __global__ void histogram(int* counts, const int* keys, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(&counts[keys[i]], 1);
}
extern "C" __global__ void accumulate(float* acc, const float* inp, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) acc[i] += inp[i];
}
"""


def kernel(name):
    return RawKernel(SRC, name)


def one(fn, *args):
    prof = llmc_kernels.profile(fn, *args)
    assert len(prof.kernels) == 1
    return prof.kernels[0]


@pytest.mark.parametrize("stride, sectors", [(1, 4), (2, 8), (4, 16), (8, 32), (16, 32), (32, 32)])
def test_strided_copy_sectors_per_request(stride, sectors):
    n, k = 64, kernel("strided_copy")
    inp, out = np.arange(n * 32, dtype=np.float32), np.zeros(n, np.float32)
    c = one(lambda: k((2,), (32,), (out, inp, i32(n), i32(stride))))
    assert (c.global_load_requests, c.global_load_sectors) == (2, 2 * sectors)
    assert (c.global_store_requests, c.global_store_sectors) == (2, 8)
    assert c.bytes_requested == 2 * 4 * n and c.unique_bytes == 8 * n
    assert np.array_equal(out, inp[::stride][:n])  # profiling runs the kernel for real


def test_float4_copy_is_16_sectors_per_request():
    k = kernel("float4_copy")
    inp, out = np.ones(4 * 96, np.float32), np.zeros(4 * 96, np.float32)
    c = one(lambda: k((3,), (32,), (out, inp, i32(96))))
    assert (c.global_load_requests, c.global_load_sectors) == (3, 48)
    assert (c.global_store_requests, c.global_store_sectors) == (3, 48)


@pytest.mark.parametrize(
    "stride, wavefronts", [(0, 1), (1, 1), (2, 2), (3, 1), (4, 4), (8, 8), (16, 16), (32, 32), (33, 1)]
)
def test_shared_memory_strides(stride, wavefronts):
    k = kernel("shared_stride")
    out = np.zeros(64, np.float32)
    c = one(lambda: k((1,), (64,), (out, i32(stride))))
    # the fill loop: 16 conflict-free stores per warp; the read: one request per warp
    assert (c.shared_store_requests, c.shared_store_wavefronts) == (32, 32)
    assert (c.shared_load_requests, c.shared_load_wavefronts) == (2, 2 * wavefronts)
    assert c.barriers == 1


def test_float4_shared_accesses_are_served_in_quarters():
    k = kernel("shared_float4")
    c = one(lambda: k((1,), (32,), (np.zeros(32, np.float32),)))
    assert (c.shared_store_requests, c.shared_store_wavefronts) == (1, 4)


def test_divergent_branches_are_requests_of_their_own():
    k = kernel("divergent")
    a, b, out = np.ones(32, np.float32), np.ones(32, np.float32), np.zeros(32, np.float32)
    c = one(lambda: k((1,), (32,), (out, a, b)))
    assert (c.global_load_requests, c.global_load_sectors) == (2, 4)
    assert c.global_store_requests == 2


def test_a_loop_issues_one_request_per_iteration_and_partial_warps_count():
    k = kernel("looped")
    inp, out = np.ones(100, np.float32), np.zeros(40, np.float32)
    c = one(lambda: k((1,), (40,), (out, inp, i32(100))))
    # warp 0 (32 lanes): j = 0..31, 40..71, 80..99 (20 lanes); warp 1 (8 lanes): 32..39, 72..79
    assert c.global_load_requests == 5
    assert c.global_store_requests == 2 and c.unique_bytes == 4 * 100 + 4 * 40


def test_atomics_and_updates():
    k = kernel("histogram")
    keys, counts = np.zeros(64, np.int32), np.zeros(4, np.int32)
    c = one(lambda: k((2,), (32,), (counts, keys, i32(64))))
    assert c.atomics == 2 and counts[0] == 64
    k = kernel("accumulate")
    acc, inp = np.zeros(32, np.float32), np.ones(32, np.float32)
    c = one(lambda: k((1,), (32,), (acc, inp, i32(32))))
    assert (c.global_load_requests, c.global_store_requests) == (2, 1)  # acc and inp read, acc written


def test_the_table_names_the_stride_and_the_fix(capsys):
    k = kernel("strided_copy")
    inp, out = np.arange(64 * 32, dtype=np.float32), np.zeros(64, np.float32)
    prof = llmc_kernels.profile(lambda: k((2,), (32,), (out, inp, i32(64), i32(24))))
    text = prof.table()
    assert capsys.readouterr().out == text
    assert "strided_copy" in text and "'inp'" in text and "24 elements" in text and "threadIdx.x" in text
    assert "out[i] = inp[i * stride];" in text
    k = kernel("shared_stride")
    text = llmc_kernels.profile(lambda: k((1,), (32,), (np.zeros(32, np.float32), i32(32)))).table()
    assert "32-way bank conflict" in text


def test_profile_refuses_gpu_arrays_and_is_off_outside_profile():
    class FakeGpuArray:
        __cuda_array_interface__ = {}

    with pytest.raises(ValueError, match="NumPy"):
        llmc_kernels.profile(lambda a: None, FakeGpuArray())
    from llmc_kernels.profiling import recording

    assert recording() is None
