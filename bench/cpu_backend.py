"""Benchmark the CPU backend (not a test): compile time, a barrier-heavy layernorm, an elementwise kernel, and the
race detector's overhead on both (checks run it; ``launch_options(races=False)`` turns it off).

    PYTHONPATH=. python bench/cpu_backend.py [--repeat N]

Targets (from the CPU-backend issue): a new kernel compiles in under 1 s; a layernorm forward with one
128-thread block per row, B*T = 1024 rows, C = 768, two barriers per reduction step, in under 0.3 s; an
elementwise kernel over 2**20 elements in under 0.2 s. Results are checked against NumPy, so a fast but
wrong backend does not pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from llmc_kernels.runtime import RawKernel, launch_options

LAYERNORM = r"""
// One block of 128 threads per row; block reductions in shared memory with two barriers per step
// (read the partner's value, barrier, write, barrier), as a first CUDA layernorm would do it.
extern "C" __global__ void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                             const float* weight, const float* bias, int N, int C) {
    __shared__ float buf[128];
    int row = blockIdx.x;
    int tid = threadIdx.x;
    if (row >= N) return;                       // the whole block leaves together
    const float* x = inp + (size_t)row * C;
    float s = 0.0f;
    for (int i = tid; i < C; i += blockDim.x) s += x[i];
    buf[tid] = s;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        float other = tid < stride ? buf[tid + stride] : 0.0f;
        __syncthreads();
        if (tid < stride) buf[tid] += other;
        __syncthreads();
    }
    float m = buf[0] / C;
    __syncthreads();
    float v = 0.0f;
    for (int i = tid; i < C; i += blockDim.x) { float d = x[i] - m; v += d * d; }
    buf[tid] = v;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        float other = tid < stride ? buf[tid + stride] : 0.0f;
        __syncthreads();
        if (tid < stride) buf[tid] += other;
        __syncthreads();
    }
    float r = rsqrtf(buf[0] / C + 1e-5f);
    float* o = out + (size_t)row * C;
    for (int i = tid; i < C; i += blockDim.x) o[i] = (x[i] - m) * r * weight[i] + bias[i];
    if (tid == 0) { mean[row] = m; rstd[row] = r; }
}
"""

ELEMENTWISE = r"""
// GELU (tanh approximation), one element per thread.
extern "C" __global__ void gelu_forward(float* out, const float* inp, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        out[i] = 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + cube)));
    }
}
"""


def best_of(fn, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time (the machine may be shared: CPU time shows the cost itself)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu)


def _compile_time(compile_fn) -> tuple[float, float]:
    """Wall time of a first compile, and the CPU time of the compiler (a child process)."""
    before = os.times()
    t = time.perf_counter()
    compile_fn()
    wall = time.perf_counter() - t
    after = os.times()
    return wall, (after.children_user + after.children_system) - (before.children_user + before.children_system)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    opts = ap.parse_args()
    rng = np.random.default_rng(0)

    # compile time of a kernel the cache has never seen (a fresh cache directory)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LLMC_CACHE_DIR"] = tmp
        from llmc_kernels.runtime.cpu import build

        t_rt = _compile_time(lambda: (build.runtime_library(), build.precompiled_header()))
        ln = RawKernel(LAYERNORM, "layernorm_forward", backend="cpu")
        t_ln = _compile_time(ln.compile)
        ew = RawKernel(ELEMENTWISE, "gelu_forward", backend="cpu")
        t_ew = _compile_time(ew.compile)

        N, C = 1024, 768
        inp = rng.standard_normal((N, C), dtype=np.float32)
        w = rng.standard_normal(C, dtype=np.float32)
        b = rng.standard_normal(C, dtype=np.float32)
        out = np.empty_like(inp)
        mean = np.empty(N, np.float32)
        rstd = np.empty(N, np.float32)
        args = (out, mean, rstd, inp, w, b, np.int32(N), np.int32(C))
        t_layernorm = best_of(lambda: ln((N,), (128,), args), opts.repeat)
        mu = inp.astype(np.float64).mean(1, keepdims=True)
        rs = 1 / np.sqrt(((inp - mu) ** 2).mean(1, keepdims=True) + 1e-5)
        assert np.allclose(out, (inp - mu) * rs * w + b, atol=1e-4), "layernorm result is wrong"

        n = 1 << 20
        x = rng.standard_normal(n, dtype=np.float32)
        y = np.empty_like(x)
        t_elementwise = best_of(lambda: ew(((n + 255) // 256,), (256,), (y, x, np.int32(n))), opts.repeat)
        with launch_options(races=True):  # the race detector: every access recorded and analysed
            t_layernorm_races = best_of(lambda: ln((N,), (128,), args), max(1, opts.repeat // 2))
            t_elementwise_races = best_of(
                lambda: ew(((n + 255) // 256,), (256,), (y, x, np.int32(n))), max(1, opts.repeat // 2)
            )
        # llmc_kernels.profile: every access recorded and counted as Nsight Compute would (target: under 5x)
        from llmc_kernels import profile

        with launch_options(races=False):
            t_layernorm_profile = best_of(lambda: profile(lambda: ln((N,), (128,), args)), max(1, opts.repeat // 2))
            t_elementwise_profile = best_of(
                lambda: profile(lambda: ew(((n + 255) // 256,), (256,), (y, x, np.int32(n)))), max(1, opts.repeat // 2)
            )
        xd = x.astype(np.float64)
        ref = 0.5 * xd * (1 + np.tanh(0.7978845608 * (xd + 0.044715 * xd**3)))
        assert np.allclose(y, ref, atol=1e-5), "elementwise result is wrong"

    rows = [
        ("runtime library + precompiled header (once per machine)", t_rt, None),
        ("new kernel compile: layernorm", t_ln, 1.0),
        ("new kernel compile: elementwise", t_ew, 1.0),
        ("layernorm fwd, 1024 rows x 768, 128-thread blocks, 32 barriers", t_layernorm, 0.3),
        ("elementwise (GELU) over 2**20 elements", t_elementwise, 0.2),
        ("layernorm fwd as above, race detector on", t_layernorm_races, None),
        ("elementwise as above, race detector on", t_elementwise_races, None),
        ("layernorm fwd as above, profiled (memory counters)", t_layernorm_profile, None),
        ("elementwise as above, profiled (memory counters)", t_elementwise_profile, None),
    ]
    ok = True
    print(f"{'':<62} {'wall':>9} {'cpu':>9}   (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for name, (wall, cpu), target in rows:
        verdict = "" if target is None else ("  ok" if wall < target else f"  SLOWER than {target} s")
        ok &= target is None or wall < target
        print(f"{name:<62} {wall * 1000:6.1f} ms {cpu * 1000:6.1f} ms{verdict}")
    for name, off, on in (
        ("layernorm", t_layernorm, t_layernorm_races),
        ("elementwise", t_elementwise, t_elementwise_races),
    ):
        print(f"race detector overhead, {name}: {on[0] / off[0]:.1f}x wall, {on[1] / off[1]:.1f}x cpu")
    for name, off, on in (
        ("layernorm", t_layernorm, t_layernorm_profile),
        ("elementwise", t_elementwise, t_elementwise_profile),
    ):
        ratio = on[0] / off[0]
        ok &= ratio < 5
        print(f"profile overhead, {name}: {ratio:.1f}x wall, {on[1] / off[1]:.1f}x cpu (target < 5x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
