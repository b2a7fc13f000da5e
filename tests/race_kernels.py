"""The race conformance set: racy kernels (each with the kind and lines the CPU backend must report) and
race-free kernels of the patterns that must not be reported. Shared by tests/test_cpu_races.py (cpu),
tests/test_races_gpu.py (cuda) and bench/races_gpu.py (a table on a GPU, also under compute-sanitizer).

Lines are lines of the kernel string (its first line is line 1: the strings start with a newline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RaceCase:
    id: str
    code: str
    kernel: str
    grid: tuple
    block: tuple
    args: Callable[[], list]  # fresh NumPy launch arguments
    kind: str | None = None  # what the CPU backend reports (None: clean)
    lines: tuple = ()  # the reported accesses' kernel lines, in the report's order
    buffer: str | None = None
    shared: bool = False  # a shared-memory race (compute-sanitizer's racecheck sees those)
    hint: str = ""  # a phrase of the hint
    warning: bool = False  # clean, but a same-value write-write warning
    expect: Callable[[list], dict] | None = None  # for the GPU table: argument -> what a race-free run gives


def f32(n, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, n).astype(np.float32)


N_TOK, C = 256, 8
TOKENS = (np.arange(N_TOK) % 5).astype(np.int32)

RACY: list[RaceCase] = [
    RaceCase(
        "global_plus_equals",
        r"""
extern "C" __global__ void encoder_backward_racy(float* dwte, const float* dout, const int* inp, int N, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N * C) return;
    int n = i / C, c = i % C;
    int ix = inp[n];
    dwte[ix * C + c] += dout[i];
}
""",
        "encoder_backward_racy",
        (N_TOK * C // 128,),
        (128,),
        lambda: [np.zeros(5 * C, np.float32), np.ones(N_TOK * C, np.float32), TOKENS, np.int32(N_TOK), np.int32(C)],
        kind="write-write",
        lines=(7, 7),
        buffer="dwte",
        hint="atomicAdd",
        expect=lambda a: {
            0: np.bincount(np.repeat(TOKENS, C) * C + np.tile(np.arange(C), N_TOK), minlength=5 * C).astype(np.float32)
        },
    ),
    RaceCase(
        "cross_block_read_after_write",
        r"""
extern "C" __global__ void neighbour(float* partial, float* out) {
    if (threadIdx.x == 0) partial[blockIdx.x] = blockIdx.x + 1.0f;
    __syncthreads();
    if (threadIdx.x == 0 && blockIdx.x > 0) out[blockIdx.x] = partial[blockIdx.x - 1];
}
""",
        "neighbour",
        (64,),
        (32,),
        lambda: [np.zeros(64, np.float32), np.zeros(64, np.float32)],
        kind="read-after-write",
        lines=(3, 5),
        buffer="partial",
        hint="different blocks",
        expect=lambda a: {1: np.concatenate([[0], np.arange(1, 64)]).astype(np.float32)},
    ),
    RaceCase(
        "shared_missing_barrier",
        r"""
extern "C" __global__ void reverse(float* out, const float* in) {
    __shared__ float s[64];
    int t = threadIdx.x;
    s[t] = in[blockIdx.x * 64 + t];
    out[blockIdx.x * 64 + t] = s[63 - t];
}
""",
        "reverse",
        (4,),
        (64,),
        lambda: [np.zeros(256, np.float32), f32(256)],
        kind="read-after-write",
        lines=(5, 6),
        buffer="s",
        shared=True,
        hint="add __syncthreads() between line 5 and line 6",
        expect=lambda a: {0: a[1].reshape(4, 64)[:, ::-1].ravel()},
    ),
    RaceCase(
        "shared_write_after_read",
        r"""
extern "C" __global__ void rotate_twice(float* out, const float* in) {
    __shared__ float s[64];
    int t = threadIdx.x;
    s[t] = in[t];
    __syncthreads();
    float v = s[(t + 1) % 64];
    s[t] = 2.0f * v;
    __syncthreads();
    out[t] = s[t];
}
""",
        "rotate_twice",
        (1,),
        (64,),
        lambda: [np.zeros(64, np.float32), f32(64)],
        kind="write-after-read",
        lines=(7, 8),
        buffer="s",
        shared=True,
        hint="add __syncthreads() between line 7 and line 8",
        expect=lambda a: {0: 2 * np.roll(a[1], -1)},
    ),
    RaceCase(
        "warp_synchronous_without_syncwarp",
        r"""
__device__ void warp_reduce(volatile float* s, int t) {
    s[t] += s[t + 32];
    s[t] += s[t + 16];
    s[t] += s[t + 8];
    s[t] += s[t + 4];
    s[t] += s[t + 2];
    s[t] += s[t + 1];
}
extern "C" __global__ void block_sum(float* out, const float* in) {
    __shared__ float s[64];
    int t = threadIdx.x;
    s[t] = in[blockIdx.x * 64 + t];
    __syncthreads();
    if (t < 32) warp_reduce(s, t);
    if (t == 0) out[blockIdx.x] = s[0];
}
""",
        "block_sum",
        (8,),
        (64,),
        lambda: [np.zeros(8, np.float32), f32(512)],
        kind="read-after-write",
        lines=(3, 4),
        buffer="s",
        shared=True,
        hint="__syncwarp()",
        expect=lambda a: {0: a[1].reshape(8, 64).sum(axis=1)},
    ),
    RaceCase(
        "atomic_and_plain_store",
        r"""
extern "C" __global__ void count(int* counter) {
    if (threadIdx.x == 0) counter[0] = 0;
    atomicAdd(&counter[0], 1);
}
""",
        "count",
        (2,),
        (64,),
        lambda: [np.zeros(1, np.int32)],
        kind="write-write",
        lines=(3, 4),
        buffer="counter",
        hint="atomics",
        expect=lambda a: {0: np.array([128], np.int32)},
    ),
    RaceCase(
        "uninitialised_shared_read",
        r"""
extern "C" __global__ void half_filled(float* out, const float* in) {
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t < 32) s[t] = in[t];
    __syncthreads();
    out[t] = s[63 - t];
}
""",
        "half_filled",
        (1,),
        (64,),
        lambda: [np.zeros(64, np.float32), f32(64)],
        kind="uninitialised-read",
        lines=(7,),
        buffer="s",
        shared=True,
        hint="uninitialised",
    ),
]

CLEAN: list[RaceCase] = [
    RaceCase(
        "disjoint_writes",
        r"""
extern "C" __global__ void vadd(float* out, const float* a, const float* b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}
""",
        "vadd",
        (4,),
        (64,),
        lambda: [np.zeros(250, np.float32), f32(250), f32(250, 1), np.int32(250)],
    ),
    RaceCase(
        "grid_stride_loop",
        r"""
extern "C" __global__ void scale(float* x, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        x[i] *= 2.0f;
}
""",
        "scale",
        (3,),
        (32,),
        lambda: [f32(1000), np.int32(1000)],
    ),
    RaceCase(
        "shared_tree_reduction",
        r"""
extern "C" __global__ void block_sum(float* out, const float* in, int n) {
    __shared__ float buf[128];
    int t = threadIdx.x;
    int i = blockIdx.x * 128 + t;
    buf[t] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (int s = 64; s > 0; s >>= 1) {
        if (t < s) buf[t] += buf[t + s];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = buf[0];
}
""",
        "block_sum",
        (3,),
        (128,),
        lambda: [np.zeros(3, np.float32), f32(300), np.int32(300)],
    ),
    RaceCase(
        "atomics",
        r"""
extern "C" __global__ void histogram(int* hist, const int* keys, int n) {
    __shared__ int local[8];
    int t = threadIdx.x;
    if (t < 8) local[t] = 0;
    __syncthreads();
    for (int i = blockIdx.x * blockDim.x + t; i < n; i += gridDim.x * blockDim.x) atomicAdd(&local[keys[i] & 7], 1);
    __syncthreads();
    if (t < 8) atomicAdd(&hist[t], local[t]);
}
""",
        "histogram",
        (4,),
        (64,),
        lambda: [np.zeros(8, np.int32), np.arange(1000, dtype=np.int32), np.int32(1000)],
    ),
    RaceCase(
        "shuffles",
        r"""
extern "C" __global__ void warp_sums(float* out, const float* in) {
    float v = in[blockIdx.x * blockDim.x + threadIdx.x];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) out[(blockIdx.x * blockDim.x + threadIdx.x) / 32] = v;
}
""",
        "warp_sums",
        (2,),
        (64,),
        lambda: [np.zeros(4, np.float32), f32(128)],
    ),
    RaceCase(
        "warp_synchronous_with_syncwarp",
        r"""
extern "C" __global__ void block_sum(float* out, const float* in) {
    __shared__ float s[64];
    int t = threadIdx.x;
    s[t] = in[blockIdx.x * 64 + t];
    __syncthreads();
    if (t < 32) {
        float v = s[t] + s[t + 32];
        for (int o = 16; o > 0; o >>= 1) {
            __syncwarp();
            s[t] = v;
            __syncwarp();
            v += s[t ^ o];
        }
        if (t == 0) out[blockIdx.x] = v;
    }
}
""",
        "block_sum",
        (4,),
        (64,),
        lambda: [np.zeros(4, np.float32), f32(256)],
    ),
    RaceCase(
        "last_block",
        r"""
extern "C" __global__ void sum_last_block(float* partial, float* total, unsigned int* count, const float* in, int n) {
    __shared__ float buf[64];
    __shared__ bool am_last;
    int t = threadIdx.x;
    int i = blockIdx.x * 64 + t;
    buf[t] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (int s = 32; s > 0; s >>= 1) {
        if (t < s) buf[t] += buf[t + s];
        __syncthreads();
    }
    if (t == 0) {
        partial[blockIdx.x] = buf[0];
        __threadfence();
        unsigned int ticket = atomicInc(&count[0], gridDim.x);
        am_last = (ticket == gridDim.x - 1);
    }
    __syncthreads();
    if (am_last) {
        float v = 0.0f;
        for (int b = t; b < gridDim.x; b += 64) v += partial[b];
        buf[t] = v;
        __syncthreads();
        for (int s = 32; s > 0; s >>= 1) {
            if (t < s) buf[t] += buf[t + s];
            __syncthreads();
        }
        if (t == 0) {
            total[0] = buf[0];
            count[0] = 0;
        }
    }
}
""",
        "sum_last_block",
        (6,),
        (64,),
        lambda: [np.zeros(6, np.float32), np.zeros(1, np.float32), np.zeros(1, np.uint32), f32(380), np.int32(380)],
    ),
    RaceCase(
        "same_value_writes",
        r"""
extern "C" __global__ void row_mean(float* mean, const float* x, int C) {
    float s = 0.0f;
    for (int c = 0; c < C; c++) s += x[blockIdx.x * C + c];
    mean[blockIdx.x] = s / C;
}
""",
        "row_mean",
        (4,),
        (32,),
        lambda: [np.zeros(4, np.float32), f32(4 * 16), np.int32(16)],
        warning=True,
    ),
]
