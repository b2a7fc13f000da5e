"""CUDA semantics the CPU backend promises beyond "the result is right": what a wrong kernel sees (poisoned
shared memory, schedules that expose a missing barrier), what is private to a block, the orders a schedule
runs threads and blocks in, raw pointers that find their bounds again, and launches from threads and
forked processes.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

from llmc_kernels import KernelOutOfBounds, KernelTimeout
from llmc_kernels.runtime import RawKernel, launch_options
from llmc_kernels.runtime.cpu import CpuKernel
from llmc_kernels.runtime.signature import find_kernel

POISON_INT = 0x7FFFA5A5


def cpu(code: str, name: str) -> RawKernel:
    return RawKernel(code, name, backend="cpu")


UNINITIALISED = r"""
extern "C" __global__ void peek(float* f, int* i, unsigned char* bytes) {
    __shared__ float fs[4];
    __shared__ int is[4];
    extern __shared__ unsigned char dyn[];
    f[threadIdx.x] = fs[threadIdx.x];
    i[threadIdx.x] = is[threadIdx.x];
    bytes[threadIdx.x] = dyn[threadIdx.x];
}
"""


def test_shared_memory_starts_poisoned():
    f, i, b = np.zeros(4, np.float32), np.zeros(4, np.int32), np.zeros(4, np.uint8)
    cpu(UNINITIALISED, "peek")((1,), (4,), (f, i, b), shared_mem=16)
    assert np.isnan(f).all()
    assert (i == POISON_INT).all()
    assert list(b) == [0xA5, 0xA5, 0xFF, 0x7F]


PER_BLOCK = r"""
extern "C" __global__ void remember(int* seen) {
    __shared__ int slot;
    if (threadIdx.x == 0) {
        seen[blockIdx.x] = slot;         // what an earlier block left behind: must be poison
        slot = blockIdx.x;
    }
}
"""


@pytest.mark.parametrize("schedule", ["forward", "reverse"])
def test_shared_memory_is_private_to_each_block(schedule):
    seen = np.zeros(6, np.int32)
    with launch_options(schedule=schedule):
        cpu(PER_BLOCK, "remember")((6,), (32,), (seen,))
    assert (seen == POISON_INT).all()


MISSING_BARRIER = r"""
extern "C" __global__ void rotate(float* out, const float* in) {
    __shared__ float s[128];
    int t = threadIdx.x;
    s[t] = in[blockIdx.x * 128 + t];
    // a __syncthreads() belongs here
    out[blockIdx.x * 128 + t] = s[(t + 1) % 128];
}
"""


@pytest.mark.parametrize("schedule", ["forward", "reverse", "shuffle"])
def test_a_missing_barrier_gives_a_wrong_answer_under_every_schedule(schedule):
    x = np.arange(256, dtype=np.float32)
    out = np.zeros_like(x)
    with launch_options(schedule=schedule):
        cpu(MISSING_BARRIER, "rotate")((2,), (128,), (out, x))
    right = np.roll(x.reshape(2, 128), -1, axis=1).ravel()
    assert not np.array_equal(out, right)
    assert np.isnan(out).any()  # the reads that came too early see poison, not stale luck


ORDER = r"""
extern "C" __global__ void order(int* log, int* counter) {
    int k = atomicAdd(counter, 1);
    log[k] = blockIdx.x * 100 + threadIdx.x;
}
"""
ORDER_SYNC = ORDER.replace("int k =", "__syncthreads();\n    int k =")


@pytest.mark.parametrize("code", [ORDER, ORDER_SYNC], ids=["plain_loop", "fibers"])
def test_schedules_order_threads_and_blocks(code):
    def run(schedule, seed=0):
        log, counter = np.zeros(12, np.int32), np.zeros(1, np.int32)
        k = CpuKernel(code, "order", find_kernel(code, "order"))
        k.launch((3, 1, 1), (4, 1, 1), [log, counter], schedule=schedule, seed=seed)
        return list(log)

    forward = [b * 100 + t for b in range(3) for t in range(4)]
    assert run("forward") == forward
    assert run("reverse") == forward[::-1]
    shuffled = run("shuffle", seed=1)
    assert sorted(shuffled) == sorted(forward) and shuffled != forward
    assert run("shuffle", seed=1) == shuffled  # reproducible from the seed
    assert run("shuffle", seed=2) != shuffled


def test_reverse_schedule_restarts_each_phase_from_the_last_thread():
    code = r"""
extern "C" __global__ void phases(int* log, int* counter) {
    for (int phase = 0; phase < 3; phase++) {
        log[atomicAdd(counter, 1)] = phase * 10 + threadIdx.x;
        __syncthreads();
    }
}
"""
    log, counter = np.zeros(12, np.int32), np.zeros(1, np.int32)
    with launch_options(schedule="reverse"):
        cpu(code, "phases")((1,), (4,), (log, counter))
    assert list(log) == [p * 10 + t for p in range(3) for t in (3, 2, 1, 0)]


REDUCE = r"""
extern "C" __global__ void dot(float* out, const float* a, const float* b, int n) {
    __shared__ float s[1024];
    float v = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) v += a[i] * b[i];
    s[threadIdx.x] = v;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) s[threadIdx.x] += s[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = s[0];
}
"""


def test_barriers_in_loops_over_many_launches_and_block_sizes():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)
    k = cpu(REDUCE, "dot")
    for threads in (1, 2, 32, 64, 256, 1024):
        out = np.zeros(1, np.float32)
        k((1,), (threads,), (out, a, b, np.int32(1000)))
        assert out[0] == pytest.approx(float(a.astype(np.float64) @ b), abs=1e-3)


SHFL_EDGES = r"""
extern "C" __global__ void edges(int* up, int* down, int* xr) {
    int t = threadIdx.x;
    up[t] = __shfl_up_sync(0xffffffff, t, 3, 8);      // segments of 8: the first 3 keep their own value
    down[t] = __shfl_down_sync(0xffffffff, t, 5, 16); // segments of 16: the last 5 keep theirs
    xr[t] = __shfl_xor_sync(0xffffffff, t, 9, 8);     // xor into a later segment: own value
}
"""


def test_shuffle_width_and_segment_edges_follow_cuda():
    up, down, xr = (np.zeros(32, np.int32) for _ in range(3))
    cpu(SHFL_EDGES, "edges")((1,), (32,), (up, down, xr))
    t = np.arange(32)
    assert list(up) == list(np.where(t % 8 >= 3, t - 3, t))
    assert list(down) == list(np.where(t % 16 < 11, t + 5, t))
    src = t ^ 9
    assert list(xr) == list(np.where(src < (t // 8 + 1) * 8, src, t))


ACTIVE = r"""
extern "C" __global__ void active(unsigned int* out, float* sums, int n) {
    if (threadIdx.x >= n) return;
    unsigned int mask = __activemask();
    out[threadIdx.x] = mask;
    if (threadIdx.x % 2 == 0) {              // a divergent branch: its own mask, and a reduction under it
        unsigned int even = __activemask();
        float v = 1.0f;
        for (int o = 16; o > 1; o /= 2) v += __shfl_xor_sync(even, v, o);
        sums[threadIdx.x] = v;
        out[40 + threadIdx.x] = even;
    }
}
"""


@pytest.mark.parametrize("schedule", ["forward", "reverse"])
def test_activemask_names_the_lanes_that_are_there_together(schedule):
    out, sums = np.zeros(80, np.uint32), np.zeros(40, np.float32)
    with launch_options(schedule=schedule):
        cpu(ACTIVE, "active")((1,), (40,), (out, sums, np.int32(38)))
    assert (out[:32] == 0xFFFFFFFF).all() and (out[32:38] == 0x3F).all()  # 38 threads: warp 1 has 6 lanes
    assert (out[40:72:2] == 0x55555555).all() and (sums[0:32:2] == 16).all()


RAW = r"""
extern "C" __global__ void raw(float* out, int n, int k) {
    __shared__ float s[8];
    float* p = &out[threadIdx.x];        // a raw address: found again among the arguments
    float* q = &s[0];                    // ... and among the __shared__ arrays
    q[threadIdx.x] = 1.0f;
    p[k] = q[threadIdx.x];
}
"""


def test_raw_addresses_get_their_bounds_back():
    out = np.zeros(8, np.float32)
    cpu(RAW, "raw")((1,), (8,), (out, np.int32(8), np.int32(0)))
    assert (out == 1).all()
    with pytest.raises(KernelOutOfBounds) as info:
        cpu(RAW, "raw")((1,), (8,), (out, np.int32(8), np.int32(5)))
    assert info.value.thread == (3, 0, 0) and info.value.index == 8
    assert "argument 0 'float* out'" in str(info.value)


SHARED_IN_DEVICE_FN = r"""
template <typename T>
__device__ T block_sum(T v) {
    __shared__ T partial[64];             // one array per block, however often the function is called
    partial[threadIdx.x] = v;
    __syncthreads();
    T total = 0;
    for (int i = 0; i < blockDim.x; i++) total += partial[i];
    __syncthreads();
    return total;
}
extern __shared__ float scratch[];        // file scope, as CUDA code often declares it
extern "C" __global__ void sums(float* out, int* iout) {
    scratch[threadIdx.x] = threadIdx.x;
    for (int r = 0; r < 3; r++) {
        float f = block_sum<float>(scratch[threadIdx.x] + r);
        int i = block_sum<int>(1);
        if (threadIdx.x == 0) { out[blockIdx.x * 3 + r] = f; iout[blockIdx.x * 3 + r] = i; }
    }
}
"""


def test_shared_arrays_in_device_templates_and_file_scope():
    out, iout = np.zeros(6, np.float32), np.zeros(6, np.int32)
    cpu(SHARED_IN_DEVICE_FN, "sums")((2,), (64,), (out, iout), shared_mem=64 * 4)
    assert list(out) == [sum(range(64)) + 64 * r for _ in range(2) for r in range(3)]
    assert (iout == 64).all()


def test_fast_path_and_fibers_agree():
    code = r"""
extern "C" __global__ void mix(float* out, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = sinf(in[i]) * (float)(threadIdx.x + 3 * blockIdx.y);
}
"""
    x = np.linspace(-3, 3, 1000).astype(np.float32)
    outs = []
    for c in (code, code.replace("if (i < n)", "__syncwarp();\n    if (i < n)")):
        out = np.zeros_like(x)
        kernel = cpu(c, "mix")
        kernel((8, 2), (128,), (out, x, np.int32(1000)))
        outs.append(out)
    assert RawKernel(code, "mix", backend="cpu").compile()._impls["cpu"].uses_fibers is False
    np.testing.assert_array_equal(outs[0], outs[1])


def test_signed_overflow_wraps_as_on_the_gpu_and_the_check_sees_it():
    code = r"""
extern "C" __global__ void far(float* out, int stride) {
    int i = threadIdx.x * stride;        // 2 * 2^30 wraps to a negative int, as on the GPU
    out[i] = 1.0f;
}
"""
    with pytest.raises(KernelOutOfBounds) as info:
        cpu(code, "far")((1,), (3,), (np.zeros(4, np.float32), np.int32(2**30)))
    assert info.value.thread == (1, 0, 0) and info.value.index == 2**30
    with pytest.raises(KernelOutOfBounds) as info:
        cpu(code, "far")((1,), (3,), (np.zeros(4, np.float32), np.int32(2**30 + 2**29)))
    assert info.value.index == 2**30 + 2**29


def test_empty_argument_arrays_have_no_valid_index():
    code = r"""
extern "C" __global__ void first(float* out, const float* in) {
    out[0] = in[0];
}
"""
    with pytest.raises(KernelOutOfBounds) as info:
        cpu(code, "first")((1,), (1,), (np.zeros(1, np.float32), np.zeros(0, np.float32)))
    assert "the array is empty" in str(info.value)


def test_printf_output_is_capped_like_cudas_buffer(capsys):
    code = r"""
extern "C" __global__ void chatty(int n) {
    for (int i = 0; i < n; i++) printf("%d: 0123456789012345678901234567890123456789\n", i);
}
"""
    cpu(code, "chatty")((1,), (1,), (np.int32(40000),))
    out = capsys.readouterr().out
    assert 1_000_000 < len(out) < 1_100_000
    assert out.startswith("0: 0123") and "printf output beyond 1 MiB was dropped" in out


def test_launches_from_several_python_threads():
    code = r"""
extern "C" __global__ void fill(float* out, float v, int n) {
    for (int base = 0; base < n; base += blockDim.x) {     // every thread runs every round: barrier-safe
        __syncthreads();
        if (base + threadIdx.x < n) out[base + threadIdx.x] = v;
    }
}
"""
    kernel = cpu(code, "fill").compile()
    outs = [np.zeros(5000, np.float32) for _ in range(4)]
    errors = []

    def work(j):
        try:
            for _ in range(5):
                kernel((1,), (64,), (outs[j], np.float32(j + 1), np.int32(5000)))
        except Exception as e:  # reported below: an assert in a thread would be lost
            errors.append(e)

    threads = [threading.Thread(target=work, args=(j,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all((o == j + 1).all() for j, o in enumerate(outs))


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork")
def test_time_limit_works_in_a_forked_child():
    code = r"""
extern "C" __global__ void spin(int* count) { while (count[0] >= 0) count[0] = (count[0] + 1) & 0xFFFF; }
"""
    kernel = cpu(code, "spin").compile()
    with launch_options(timeout=0.2), pytest.raises(KernelTimeout):  # the parent starts its watchdog
        kernel((1,), (1,), (np.zeros(1, np.int32),))
    pid = os.fork()
    if pid == 0:  # the child: its watchdog thread must be started afresh
        try:
            with launch_options(timeout=0.2):
                kernel((1,), (1,), (np.zeros(1, np.int32),))
            os._exit(1)
        except KernelTimeout:
            os._exit(0)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
