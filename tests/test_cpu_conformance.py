"""Conformance of the CPU backend: one small kernel per CUDA feature the course uses, compared with NumPy.

Each case runs on the cpu backend under every thread schedule (forward, reverse, shuffled), and, marked
`gpu`, the same test body runs on the cuda backend with CuPy arrays: both must match the NumPy reference
up to float tolerance. Every kernel string also has to compile with NVRTC (when installed), so the cpu
backend is never tested on something that is not CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from llmc_kernels.runtime import RawKernel, launch_options

FULL = 0xFFFFFFFF


@dataclass(frozen=True)
class Case:
    id: str
    code: str
    kernel: str
    grid: tuple
    block: tuple
    inputs: Callable[[np.random.Generator], list]  # launch arguments (NumPy arrays and scalars)
    expect: Callable[[list], dict]  # argument position -> expected content afterwards
    shared_mem: int = 0
    atol: float = 1e-6
    rtol: float = 1e-6
    extra: dict = field(default_factory=dict)


def f32(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


CASES: list[Case] = []


def case(**kw):
    CASES.append(Case(**kw))


# ---------------------------------------------------------------------------------------- functions
case(
    id="extern_c_global_grid_stride",
    kernel="vadd",
    grid=(3,),
    block=(64,),
    code=r"""
extern "C" __global__ void vadd(float* out, const float* a, const float* b, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}
""",
    inputs=lambda r: [np.zeros(1000, np.float32), f32(r, 1000), f32(r, 1000), np.int32(1000)],
    expect=lambda a: {0: a[1] + a[2]},
)

case(
    id="device_function",
    kernel="k",
    grid=(4,),
    block=(32,),
    code=r"""
__device__ float square(float x) { return x * x; }
__device__ float plus_one(float x) { return square(x) + 1.0f; }
extern "C" __global__ void k(float* out, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = plus_one(in[i]);
}
""",
    inputs=lambda r: [np.zeros(100, np.float32), f32(r, 100), np.int32(100)],
    expect=lambda a: {0: a[1] * a[1] + np.float32(1)},
)

case(
    id="forceinline_device_function",
    kernel="k",
    grid=(2,),
    block=(64,),
    code=r"""
__device__ __forceinline__ float cube(float x) { return x * x * x; }
extern "C" __global__ void k(float* out, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = cube(in[i]);
}
""",
    inputs=lambda r: [np.zeros(100, np.float32), f32(r, 100), np.int32(100)],
    expect=lambda a: {0: a[1] * a[1] * a[1]},
)

case(
    id="template_device_function",
    kernel="k",
    grid=(1,),
    block=(64,),
    code=r"""
template <typename T>
__device__ T axpy(T alpha, T x, T y) { return alpha * x + y; }
extern "C" __global__ void k(float* of, int* oi, const float* x, const int* xi, int n) {
    int i = threadIdx.x;
    if (i < n) {
        of[i] = axpy<float>(2.0f, x[i], 1.0f);
        oi[i] = axpy(3, xi[i], -1);
    }
}
""",
    inputs=lambda r: [
        np.zeros(50, np.float32),
        np.zeros(50, np.int32),
        f32(r, 50),
        r.integers(-100, 100, 50).astype(np.int32),
        np.int32(50),
    ],
    expect=lambda a: {0: np.float32(2) * a[2] + np.float32(1), 1: 3 * a[3] - 1},
)

case(
    id="define_macros",
    kernel="k",
    grid=(2, 3),
    block=(8, 4),
    code=r"""
#define IDX(r, c, ld) ((r) * (ld) + (c))
#define SCALE 0.5f
extern "C" __global__ void k(float* out, const float* in, int rows, int cols) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int r = blockIdx.y * blockDim.y + threadIdx.y;
    if (r < rows && c < cols) out[IDX(r, c, cols)] = SCALE * in[IDX(r, c, cols)];
}
""",
    inputs=lambda r: [np.zeros((10, 13), np.float32), f32(r, 10, 13), np.int32(10), np.int32(13)],
    expect=lambda a: {0: np.float32(0.5) * a[1]},
)

case(
    id="pragma_unroll_local_array",
    kernel="k",
    grid=(2,),
    block=(32,),
    code=r"""
extern "C" __global__ void k(float* out, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v[4];
    #pragma unroll
    for (int j = 0; j < 4; j++) v[j] = in[4 * i + j];
    float s = 0.0f;
#pragma unroll 4
    for (int j = 0; j < 4; j++) s += v[j] * (j + 1);
    out[i] = s;
}
""",
    inputs=lambda r: [np.zeros(60, np.float32), f32(r, 240), np.int32(60)],
    expect=lambda a: {0: (a[1].reshape(60, 4) * np.arange(1, 5, dtype=np.float32)).sum(1)},
    atol=1e-5,
)

# -------------------------------------------------------------------------------- shared memory, barriers
case(
    id="static_shared_and_syncthreads",
    kernel="reverse_blocks",
    grid=(5,),
    block=(64,),
    code=r"""
extern "C" __global__ void reverse_blocks(float* out, const float* in) {
    __shared__ float tile[64];
    int t = threadIdx.x;
    int base = blockIdx.x * blockDim.x;
    tile[t] = in[base + t];
    __syncthreads();
    out[base + t] = tile[blockDim.x - 1 - t];
}
""",
    inputs=lambda r: [np.zeros(320, np.float32), f32(r, 320)],
    expect=lambda a: {0: a[1].reshape(5, 64)[:, ::-1].ravel()},
)

case(
    id="extern_shared_dynamic_size",
    kernel="block_sum",
    grid=(7,),
    block=(128,),
    shared_mem=128 * 4,
    code=r"""
extern "C" __global__ void block_sum(float* out, const float* in, int n) {
    extern __shared__ float buf[];
    int t = threadIdx.x;
    int i = blockIdx.x * blockDim.x + t;
    buf[t] = i < n ? in[i] : 0.0f;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (t < stride) buf[t] += buf[t + stride];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = buf[0];
}
""",
    inputs=lambda r: [np.zeros(7, np.float32), f32(r, 850), np.int32(850)],
    expect=lambda a: {0: np.pad(a[1], (0, 7 * 128 - 850)).reshape(7, 128).astype(np.float64).sum(1)},
    atol=1e-5,
)

case(
    id="syncthreads_tree_max_with_infinity",
    kernel="block_max",
    grid=(3,),
    block=(256,),
    code=r"""
extern "C" __global__ void block_max(float* out, const float* in, int n) {
    __shared__ float s[256];
    int t = threadIdx.x;
    int i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? in[i] : -INFINITY;
    __syncthreads();
    for (int stride = 128; stride > 0; stride /= 2) {
        if (t < stride) s[t] = fmaxf(s[t], s[t + stride]);
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}
""",
    inputs=lambda r: [np.zeros(3, np.float32), f32(r, 700, lo=-50, hi=50), np.int32(700)],
    expect=lambda a: {0: np.array([a[1][:256].max(), a[1][256:512].max(), a[1][512:].max()])},
)

case(
    id="syncwarp_shared_exchange",
    kernel="k",
    grid=(2,),
    block=(64,),
    code=r"""
extern "C" __global__ void k(float* out, const float* in) {
    __shared__ float s[64];
    int t = threadIdx.x;
    int lane = t % 32, warp = t / 32;
    int i = blockIdx.x * blockDim.x + t;
    s[t] = in[i];
    __syncwarp();
    out[i] = s[warp * 32 + (31 - lane)];
}
""",
    inputs=lambda r: [np.zeros(128, np.float32), f32(r, 128)],
    expect=lambda a: {0: a[1].reshape(4, 32)[:, ::-1].ravel()},
)

case(
    id="syncthreads_count_and_or",
    kernel="k",
    grid=(3,),
    block=(96,),
    code=r"""
extern "C" __global__ void k(int* out, const float* in) {
    float x = in[blockIdx.x * blockDim.x + threadIdx.x];
    int count = __syncthreads_count(x > 0.0f);
    int all = __syncthreads_and(x > -0.5f);
    int any = __syncthreads_or(x > 0.9f);
    if (threadIdx.x == 0) {
        out[3 * blockIdx.x] = count;
        out[3 * blockIdx.x + 1] = all;
        out[3 * blockIdx.x + 2] = any;
    }
}
""",
    inputs=lambda r: [np.zeros(9, np.int32), np.concatenate([f32(r, 96), f32(r, 96, lo=-0.4), f32(r, 96, hi=0.8)])],
    expect=lambda a: {
        0: np.array([[(b > 0).sum(), (b > -0.5).all(), (b > 0.9).any()] for b in a[1].reshape(3, 96)], np.int32).ravel()
    },
)

# ------------------------------------------------------------------------------------- warp operations
case(
    id="shfl_sync_broadcast_and_width",
    kernel="k",
    grid=(1,),
    block=(64,),
    code=r"""
extern "C" __global__ void k(float* out, const float* in) {
    int t = threadIdx.x;
    float x = in[t];
    out[t] = __shfl_sync(0xffffffff, x, 3);            // lane 3 of each warp
    out[64 + t] = __shfl_sync(0xffffffff, x, 0, 8);    // lane 0 of each group of 8
    out[128 + t] = __shfl_sync(0xffffffff, x, 33);     // 33 % 32 = lane 1
}
""",
    inputs=lambda r: [np.zeros(192, np.float32), f32(r, 64)],
    expect=lambda a: {
        0: np.concatenate(
            [
                np.repeat(a[1].reshape(2, 32)[:, 3], 32),
                np.repeat(a[1].reshape(8, 8)[:, 0], 8),
                np.repeat(a[1].reshape(2, 32)[:, 1], 32),
            ]
        )
    },
)

case(
    id="shfl_up_sync_inclusive_scan",
    kernel="scan",
    grid=(2,),
    block=(64,),
    code=r"""
extern "C" __global__ void scan(int* out, const int* in) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31;
    int v = in[i];
    for (int d = 1; d < 32; d *= 2) {
        int other = __shfl_up_sync(0xffffffff, v, d);
        if (lane >= d) v += other;
    }
    out[i] = v;
}
""",
    inputs=lambda r: [np.zeros(128, np.int32), r.integers(-50, 50, 128).astype(np.int32)],
    expect=lambda a: {0: np.cumsum(a[1].reshape(4, 32), axis=1).astype(np.int32).ravel()},
)

case(
    id="shfl_down_sync_warp_sum",
    kernel="warp_sum",
    grid=(3,),
    block=(96,),
    code=r"""
extern "C" __global__ void warp_sum(float* out, const float* in) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = in[i];
    for (int offset = warpSize / 2; offset > 0; offset /= 2)
        v += __shfl_down_sync(0xffffffff, v, offset);
    if ((threadIdx.x & 31) == 0) out[i / 32] = v;
}
""",
    inputs=lambda r: [np.zeros(9, np.float32), f32(r, 288)],
    expect=lambda a: {0: a[1].reshape(9, 32).astype(np.float64).sum(1)},
    atol=1e-5,
)

case(
    id="shfl_xor_sync_butterfly",
    kernel="allreduce",
    grid=(2,),
    block=(32,),
    code=r"""
extern "C" __global__ void allreduce(float* out, const float* in) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = in[i];
    #pragma unroll
    for (int mask = 16; mask > 0; mask >>= 1) v += __shfl_xor_sync(0xffffffff, v, mask);
    out[i] = v;
}
""",
    inputs=lambda r: [np.zeros(64, np.float32), f32(r, 64)],
    expect=lambda a: {0: np.repeat(a[1].reshape(2, 32).astype(np.float64).sum(1), 32)},
    atol=1e-5,
)

case(
    id="ballot_sync_popc",
    kernel="k",
    grid=(1,),
    block=(128,),
    code=r"""
extern "C" __global__ void k(int* count, unsigned int* bits, const float* in) {
    int t = threadIdx.x;
    unsigned int b = __ballot_sync(0xffffffff, in[t] > 0.0f);
    if ((t & 31) == 0) { bits[t / 32] = b; count[t / 32] = __popc(b); }
}
""",
    inputs=lambda r: [np.zeros(4, np.int32), np.zeros(4, np.uint32), f32(r, 128)],
    expect=lambda a: {
        0: (a[2].reshape(4, 32) > 0).sum(1).astype(np.int32),
        1: np.array([sum(1 << j for j in range(32) if w[j] > 0) for w in a[2].reshape(4, 32)], np.uint32),
    },
)

case(
    id="any_sync_all_sync",
    kernel="k",
    grid=(1,),
    block=(96,),
    code=r"""
extern "C" __global__ void k(int* out, const float* in) {
    int t = threadIdx.x;
    int any = __any_sync(0xffffffff, in[t] > 0.9f);
    int all = __all_sync(0xffffffff, in[t] > -0.9f);
    if ((t & 31) == 0) { out[2 * (t / 32)] = any != 0; out[2 * (t / 32) + 1] = all != 0; }
}
""",
    inputs=lambda r: [
        np.zeros(6, np.int32),
        np.concatenate([f32(r, 32, hi=0.5), f32(r, 32, lo=-0.5, hi=2), f32(r, 32, lo=-2)]),
    ],
    expect=lambda a: {
        0: np.array([[(w > 0.9).any(), (w > -0.9).all()] for w in a[1].reshape(3, 32)], np.int32).ravel()
    },
)

# ------------------------------------------------------------------------------------------- atomics
case(
    id="atomic_add_float",
    kernel="total",
    grid=(4,),
    block=(128,),
    code=r"""
extern "C" __global__ void total(float* sum, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(sum, in[i]);
}
""",
    inputs=lambda r: [np.zeros(1, np.float32), f32(r, 500), np.int32(500)],
    expect=lambda a: {0: np.array([a[1].astype(np.float64).sum()])},
    atol=1e-4,
)

case(
    id="atomic_add_int_histogram",
    kernel="hist",
    grid=(4,),
    block=(64,),
    code=r"""
extern "C" __global__ void hist(int* bins, const int* values, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(&bins[values[i]], 1);
}
""",
    inputs=lambda r: [np.zeros(10, np.int32), r.integers(0, 10, 250).astype(np.int32), np.int32(250)],
    expect=lambda a: {0: np.bincount(a[1], minlength=10).astype(np.int32)},
)

case(
    id="atomic_max_min_int",
    kernel="k",
    grid=(2,),
    block=(100,),
    code=r"""
extern "C" __global__ void k(int* result, const int* v) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    atomicMax(&result[0], v[i]);
    atomicMin(result + 1, v[i]);
}
""",
    inputs=lambda r: [np.array([-(2**31), 2**31 - 1], np.int32), r.integers(-1000, 1000, 200).astype(np.int32)],
    expect=lambda a: {0: np.array([a[1].max(), a[1].min()], np.int32)},
)

case(
    id="atomic_cas_float_max",
    kernel="k",
    grid=(3,),
    block=(64,),
    code=r"""
__device__ void atomic_max_float(float* addr, float value) {
    int* as_int = (int*)addr;
    int old = *as_int;
    while (__int_as_float(old) < value) {
        int assumed = old;
        old = atomicCAS(as_int, assumed, __float_as_int(value));
        if (old == assumed) break;
    }
}
extern "C" __global__ void k(float* result, const float* v) {
    atomic_max_float(result, v[blockIdx.x * blockDim.x + threadIdx.x]);
}
""",
    inputs=lambda r: [np.array([-1e30], np.float32), f32(r, 192, lo=-5, hi=5)],
    expect=lambda a: {0: np.array([a[1].max()], np.float32)},
)

case(
    id="atomic_exch_int_and_float",
    kernel="k",
    grid=(1,),
    block=(32,),
    code=r"""
extern "C" __global__ void k(int* slots, int* old_i, float* fslots, float* old_f) {
    int t = threadIdx.x;
    old_i[t] = atomicExch(&slots[t], t * 10);
    old_f[t] = atomicExch(fslots + t, 0.5f * t);
}
""",
    inputs=lambda r: [np.arange(32, dtype=np.int32) - 7, np.zeros(32, np.int32), f32(r, 32), np.zeros(32, np.float32)],
    expect=lambda a: {
        0: np.arange(32, dtype=np.int32) * 10,
        1: a[0],
        2: np.arange(32, dtype=np.float32) * 0.5,
        3: a[2],
    },
)

# ------------------------------------------------------------------------------------- vector types
case(
    id="float2_and_make_float2",
    kernel="k",
    grid=(2,),
    block=(32,),
    code=r"""
extern "C" __global__ void k(float2* out, const float2* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float2 v = in[i];
        out[i] = make_float2(v.x + v.y, v.x * v.y);
    }
}
""",
    inputs=lambda r: [np.zeros((50, 2), np.float32), f32(r, 50, 2), np.int32(50)],
    expect=lambda a: {0: np.stack([a[1][:, 0] + a[1][:, 1], a[1][:, 0] * a[1][:, 1]], 1)},
)

case(
    id="float4_reinterpret_cast_and_make_float4",
    kernel="k",
    grid=(2,),
    block=(64,),
    code=r"""
extern "C" __global__ void k(float* out, const float* in, int n4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) {
        float4 v = reinterpret_cast<const float4*>(in)[i];
        reinterpret_cast<float4*>(out)[i] = make_float4(v.w, v.z, v.y, v.x + 1.0f);
    }
}
""",
    inputs=lambda r: [np.zeros(400, np.float32), f32(r, 400), np.int32(100)],
    expect=lambda a: {0: (a[1].reshape(100, 4)[:, ::-1] + np.array([0, 0, 0, 1], np.float32)).ravel()},
)

# ------------------------------------------------------------------------------------- thread indexing
case(
    id="blocks_2d_shared_tile_transpose",
    kernel="transpose",
    grid=(3, 2),
    block=(16, 16),
    code=r"""
#define TILE 16
extern "C" __global__ void transpose(float* out, const float* in, int rows, int cols) {
    __shared__ float tile[TILE][TILE + 1];
    int x = blockIdx.x * TILE + threadIdx.x;
    int y = blockIdx.y * TILE + threadIdx.y;
    if (x < cols && y < rows) tile[threadIdx.y][threadIdx.x] = in[y * cols + x];
    __syncthreads();
    x = blockIdx.y * TILE + threadIdx.x;
    y = blockIdx.x * TILE + threadIdx.y;
    if (x < rows && y < cols) out[y * rows + x] = tile[threadIdx.x][threadIdx.y];
}
""",
    inputs=lambda r: [np.zeros((45, 30), np.float32), f32(r, 30, 45), np.int32(30), np.int32(45)],
    expect=lambda a: {0: a[1].T},
)

case(
    id="grid_and_block_3d",
    kernel="k",
    grid=(2, 3, 2),
    block=(4, 2, 3),
    code=r"""
extern "C" __global__ void k(int* out) {
    int block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    int thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    int code = threadIdx.x + 10 * threadIdx.y + 100 * threadIdx.z
             + 1000 * blockIdx.x + 10000 * blockIdx.y + 100000 * blockIdx.z;
    out[block * (blockDim.x * blockDim.y * blockDim.z) + thread] = code;
}
""",
    inputs=lambda r: [np.zeros(12 * 24, np.int32)],
    expect=lambda a: {
        0: np.array(
            [
                tx + 10 * ty + 100 * tz + 1000 * bx + 10000 * by + 100000 * bz
                for bz in range(2)
                for by in range(3)
                for bx in range(2)
                for tz in range(3)
                for ty in range(2)
                for tx in range(4)
            ],
            np.int32,
        )
    },
)

case(
    id="warpsize",
    kernel="k",
    grid=(1,),
    block=(96,),
    code=r"""
extern "C" __global__ void k(int* out) {
    int t = threadIdx.x;
    out[t] = (t / warpSize) * 100 + t % warpSize;
}
""",
    inputs=lambda r: [np.zeros(96, np.int32)],
    expect=lambda a: {0: (np.arange(96) // 32 * 100 + np.arange(96) % 32).astype(np.int32)},
)

# ------------------------------------------------------------------------------------------ math
_MATH = [
    ("expf(x)", np.exp),
    ("__expf(x)", np.exp),
    ("logf(y)", lambda x: np.log(1.5 + x)),
    ("sqrtf(y)", lambda x: np.sqrt(1.5 + x)),
    ("rsqrtf(y)", lambda x: 1 / np.sqrt(1.5 + x)),
    ("tanhf(x)", np.tanh),
    ("coshf(x)", np.cosh),
    ("powf(y, 1.5f)", lambda x: (1.5 + x) ** 1.5),
    ("fabsf(x)", np.abs),
    ("erff(x)", None),
    ("fmaxf(x, 0.25f)", lambda x: np.maximum(x, 0.25)),
    ("fminf(x, 0.25f)", lambda x: np.minimum(x, 0.25)),
]


def _erf(x):
    import math

    return np.array([math.erf(v) for v in x])


case(
    id="math_functions",
    kernel="k",
    grid=(1,),
    block=(64,),
    atol=2e-6,
    rtol=2e-6,
    code=r"""
extern "C" __global__ void k(float* out, const float* in, int n) {
    int i = threadIdx.x;
    if (i >= n) return;
    float x = in[i];
    float y = 1.5f + x;
    float r[12] = {expf(x), __expf(x), logf(y), sqrtf(y), rsqrtf(y), tanhf(x), coshf(x), powf(y, 1.5f),
                   fabsf(x), erff(x), fmaxf(x, 0.25f), fminf(x, 0.25f)};
    for (int k = 0; k < 12; k++) out[k * n + i] = r[k];
}
""",
    inputs=lambda r: [np.zeros((12, 64), np.float32), f32(r, 64), np.int32(64)],
    expect=lambda a: {
        0: np.stack([(_erf(a[1].astype(np.float64)) if fn is None else fn(a[1].astype(np.float64))) for _, fn in _MATH])
    },
)

case(
    id="flt_max_and_infinity",
    kernel="k",
    grid=(1,),
    block=(8,),
    code=r"""
extern "C" __global__ void k(float* out, const float* in, int cols) {
    int row = threadIdx.x;
    float hi = -INFINITY, lo = FLT_MAX;
    for (int c = 0; c < cols; c++) { hi = fmaxf(hi, in[row * cols + c]); lo = fminf(lo, in[row * cols + c]); }
    out[2 * row] = hi;
    out[2 * row + 1] = lo;
    if (row == 0) { out[16] = INFINITY; out[17] = -FLT_MAX; }
}
""",
    inputs=lambda r: [np.zeros(18, np.float32), f32(r, 8, 21, lo=-100, hi=100), np.int32(21)],
    expect=lambda a: {
        0: np.concatenate(
            [np.stack([a[1].max(1), a[1].min(1)], 1).ravel(), [np.inf, -np.finfo(np.float32).max]]
        ).astype(np.float32)
    },
)

case(
    id="global_min_max",
    kernel="k",
    grid=(1,),
    block=(64,),
    code=r"""
extern "C" __global__ void k(int* oi, float* of, const int* a, const float* x) {
    int t = threadIdx.x;
    oi[t] = max(min(a[t], 5), -5);
    of[2 * t] = max(x[t], 0.0f);
    of[2 * t + 1] = min(x[t], 0.5f);
}
""",
    inputs=lambda r: [
        np.zeros(64, np.int32),
        np.zeros(128, np.float32),
        r.integers(-20, 20, 64).astype(np.int32),
        f32(r, 64),
    ],
    expect=lambda a: {
        0: np.clip(a[2], -5, 5).astype(np.int32),
        1: np.stack([np.maximum(a[3], 0), np.minimum(a[3], 0.5)], 1).ravel(),
    },
)

case(
    id="restrict_and_launch_bounds",
    kernel="scale",
    grid=(2,),
    block=(128,),
    code=r"""
extern "C" __global__ void __launch_bounds__(128) scale(float* __restrict__ out, const float* __restrict__ in,
                                                        float s, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = s * in[i];
}
""",
    inputs=lambda r: [np.zeros(200, np.float32), f32(r, 200), np.float32(-2.5), np.int32(200)],
    expect=lambda a: {0: np.float32(-2.5) * a[1]},
)

case(
    id="double_precision",
    kernel="k",
    grid=(1,),
    block=(32,),
    code=r"""
extern "C" __global__ void k(double* out, const double* in, int n) {
    int i = threadIdx.x;
    if (i < n) out[i] = sqrt(in[i] * in[i] + 1.0) - exp(-in[i]);
}
""",
    inputs=lambda r: [np.zeros(20, np.float64), r.standard_normal(20), np.int32(20)],
    atol=1e-12,
    rtol=1e-12,
    expect=lambda a: {0: np.sqrt(a[1] ** 2 + 1) - np.exp(-a[1])},
)

# ---------------------------------------------------------------------------------- pointers in C
case(
    id="pointer_arithmetic_deref_and_arrow",
    kernel="k",
    grid=(1,),
    block=(16,),
    code=r"""
struct Pair { float a; float b; };
extern "C" __global__ void k(float* out, const float* inp, const float* pairs, int C) {
    int r = threadIdx.x;
    const float* row = inp + r * C;
    float *o = out + r * C, *last = o + C - 1;
    *o = *row;
    *(o + 1) = row[1] * 2.0f;
    *last = *(row + C - 1) + 1.0f;
    const Pair* p = reinterpret_cast<const Pair*>(pairs) + r;
    o[2] = p->a - (*p).b;
}
""",
    inputs=lambda r: [np.zeros((16, 5), np.float32), f32(r, 16, 5), f32(r, 16, 2), np.int32(5)],
    expect=lambda a: {
        0: np.stack([a[1][:, 0], a[1][:, 1] * 2, a[2][:, 0] - a[2][:, 1], np.zeros(16, np.float32), a[1][:, 4] + 1], 1)
    },
)

case(
    id="printf_from_a_kernel",
    kernel="hello",
    grid=(2,),
    block=(3,),
    code=r"""
extern "C" __global__ void hello(const float* x) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    printf("block %d thread %d x=%.2f\n", blockIdx.x, threadIdx.x, x[i]);
}
""",
    inputs=lambda r: [np.arange(6, dtype=np.float32) / 4],
    expect=lambda a: {},
    extra={"stdout": {f"block {b} thread {t} x={(3 * b + t) / 4:.2f}" for b in range(2) for t in range(3)}},
)

# ------------------------------------------------------------------------------ real kernels, small
case(
    id="tiled_matmul_two_barriers_per_tile",
    kernel="matmul",
    grid=(2, 3),
    block=(16, 16),
    atol=1e-5,
    code=r"""
#define T 16
// C[M,N] = A[M,K] @ B[K,N]; sizes need not be multiples of the tile
extern "C" __global__ void matmul(float* Cm, const float* A, const float* B, int M, int N, int K) {
    __shared__ float As[T][T];
    __shared__ float Bs[T][T];
    int row = blockIdx.y * T + threadIdx.y, col = blockIdx.x * T + threadIdx.x;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += T) {
        As[threadIdx.y][threadIdx.x] = (row < M && k0 + threadIdx.x < K) ? A[row * K + k0 + threadIdx.x] : 0.0f;
        Bs[threadIdx.y][threadIdx.x] = (col < N && k0 + threadIdx.y < K) ? B[(k0 + threadIdx.y) * N + col] : 0.0f;
        __syncthreads();
        for (int k = 0; k < T; k++) acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
        __syncthreads();
    }
    if (row < M && col < N) Cm[row * N + col] = acc;
}
""",
    inputs=lambda r: [
        np.zeros((37, 29), np.float32),
        f32(r, 37, 45),
        f32(r, 45, 29),
        np.int32(37),
        np.int32(29),
        np.int32(45),
    ],
    expect=lambda a: {0: a[1].astype(np.float64) @ a[2].astype(np.float64)},
)

case(
    id="softmax_rows_warps_and_shared",
    kernel="softmax",
    grid=(5,),
    block=(128,),
    atol=1e-6,
    code=r"""
__device__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}
__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
// one block per row: per-warp partials, combined through shared memory
extern "C" __global__ void softmax(float* out, const float* in, int C) {
    __shared__ float partial[32];
    __shared__ float total;
    const float* x = in + blockIdx.x * C;
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    float m = -FLT_MAX;
    for (int i = threadIdx.x; i < C; i += blockDim.x) m = fmaxf(m, x[i]);
    m = warp_max(m);
    if (lane == 0) partial[warp] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
        float v = partial[0];
        for (int w = 1; w < nwarps; w++) v = fmaxf(v, partial[w]);
        total = v;
    }
    __syncthreads();
    m = total;
    float s = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) s += expf(x[i] - m);
    s = warp_sum(s);
    __syncthreads();
    if (lane == 0) partial[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float v = 0.0f;
        for (int w = 0; w < nwarps; w++) v += partial[w];
        total = v;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < C; i += blockDim.x) out[blockIdx.x * C + i] = expf(x[i] - m) / total;
}
""",
    inputs=lambda r: [np.zeros((5, 300), np.float32), f32(r, 5, 300, lo=-8, hi=8), np.int32(300)],
    expect=lambda a: {
        0: (lambda e: e / e.sum(1, keepdims=True))(np.exp(a[1].astype(np.float64) - a[1].max(1, keepdims=True)))
    },
)


def _launch(c: Case, backend: str, schedule: str):
    rng = np.random.default_rng(2024)
    args = c.inputs(rng)
    expected = c.expect([a.copy() if isinstance(a, np.ndarray) else a for a in args])
    if backend == "cuda":
        import cupy

        dev = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    else:
        dev = list(args)
    kernel = RawKernel(c.code, c.kernel, backend=backend)
    with launch_options(schedule=schedule):
        kernel(c.grid, c.block, tuple(dev), shared_mem=c.shared_mem)
    for i, want in expected.items():
        got = dev[i].get() if backend == "cuda" else dev[i]
        np.testing.assert_allclose(got, want, rtol=c.rtol, atol=c.atol, err_msg=f"{c.id}: argument {i}")


def test_suite_covers_at_least_thirty_features():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("schedule", ["forward", "reverse", "shuffle"])
@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_cpu_matches_numpy(c: Case, schedule: str, capsys):
    _launch(c, "cpu", schedule)
    if "stdout" in c.extra:
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == len(c.extra["stdout"]) and set(lines) == c.extra["stdout"]


@pytest.mark.gpu
@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_gpu_matches_numpy(c: Case):
    pytest.importorskip("cupy")
    _launch(c, "cuda", "forward")


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_kernel_is_valid_cuda_for_nvrtc(c: Case):
    from llmc_kernels.runtime import nvrtc

    if not nvrtc.available():
        pytest.skip(f"NVRTC not available: {nvrtc.unavailable_reason()}")
    nvrtc.check_compile(c.code, c.kernel)
