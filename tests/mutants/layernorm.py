"""LayerNorm: forward with one block per row and shared-memory tree reductions (mean, then variance);
backward with one thread per row for dinp and one thread per channel for dweight/dbias."""
from __future__ import annotations

import numpy as np

from llmc_kernels.runtime import RawKernel
from ._kit import Correct, Mutant, ceil_div, mutate

BLOCK = 64          # C is not a multiple of it in most cases: each thread strides over the row

LAYERNORM_FORWARD = r"""
#define BLOCK 64

extern "C" __global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                                    const float* weight, const float* bias, int C) {
    __shared__ float buf[BLOCK];
    int row = blockIdx.x;
    int tid = threadIdx.x;
    const float* x = inp + row * C;

    float s = 0.0f;
    for (int i = tid; i < C; i += BLOCK) s += x[i];
    buf[tid] = s;
    __syncthreads();
    for (int stride = BLOCK / 2; stride > 0; stride /= 2) {
        if (tid < stride) buf[tid] += buf[tid + stride];
        __syncthreads();
    }
    float m = buf[0] / C;
    __syncthreads();   // everyone has read buf[0] before it is reused

    float v = 0.0f;
    for (int i = tid; i < C; i += BLOCK) {
        float d = x[i] - m;
        v += d * d;
    }
    buf[tid] = v;
    __syncthreads();
    for (int stride = BLOCK / 2; stride > 0; stride /= 2) {
        if (tid < stride) buf[tid] += buf[tid + stride];
        __syncthreads();
    }
    float var = buf[0] / C;
    float r = 1.0f / sqrtf(var + 1e-5f);

    for (int i = tid; i < C; i += BLOCK) {
        out[row * C + i] = (x[i] - m) * r * weight[i] + bias[i];
    }
    if (tid == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}
"""

LAYERNORM_BACKWARD = r"""
extern "C" __global__ void layernorm_backward_dinp_kernel(float* dinp, const float* dout, const float* inp,
        const float* weight, const float* mean, const float* rstd, int N, int C) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= N) return;
    const float* x = inp + row * C;
    const float* dy = dout + row * C;
    float m = mean[row], r = rstd[row];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
    for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * r;
        float dnorm = weight[i] * dy[i];
        dnorm_mean += dnorm;
        dnorm_norm_mean += dnorm * norm;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
    for (int i = 0; i < C; i++) {
        float norm = (x[i] - m) * r;
        float dnorm = weight[i] * dy[i];
        dinp[row * C + i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * r;
    }
}

extern "C" __global__ void layernorm_backward_params_kernel(float* dweight, float* dbias, const float* dout,
        const float* inp, const float* mean, const float* rstd, int N, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float dw = 0.0f, db = 0.0f;
    for (int row = 0; row < N; row++) {
        float norm = (inp[row * C + c] - mean[row]) * rstd[row];
        dw += norm * dout[row * C + c];
        db += dout[row * C + c];
    }
    dweight[c] += dw;
    dbias[c] += db;
}
"""


def layernorm_forward(code=LAYERNORM_FORWARD):
    k = RawKernel(code, "layernorm_forward_kernel")

    def layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C):
        k((B * T,), (BLOCK,), (out, mean, rstd, inp, weight, bias, np.int32(C)))
    return layernorm_forward


def layernorm_backward(code=LAYERNORM_BACKWARD):
    k1 = RawKernel(code, "layernorm_backward_dinp_kernel")
    k2 = RawKernel(code, "layernorm_backward_params_kernel")

    def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, T, C):
        N = B * T
        k1((ceil_div(N, 32),), (32,), (dinp, dout, inp, weight, mean, rstd, np.int32(N), np.int32(C)))
        k2((ceil_div(C, 32),), (32,), (dweight, dbias, dout, inp, mean, rstd, np.int32(N), np.int32(C)))
    return layernorm_backward


CORRECT = [Correct("layernorm", "forward", layernorm_forward), Correct("layernorm", "backward", layernorm_backward)]

MUTANTS = [
    Mutant("layernorm forward: unbiased variance (C - 1)", "layernorm", "forward",
           lambda: layernorm_forward(mutate(LAYERNORM_FORWARD, ("float var = buf[0] / C;",
                                                                "float var = buf[0] / (C - 1);")))),
    Mutant("layernorm forward: eps dropped", "layernorm", "forward",
           lambda: layernorm_forward(mutate(LAYERNORM_FORWARD, ("sqrtf(var + 1e-5f)", "sqrtf(var)")))),
    Mutant("layernorm forward: missing __syncthreads() before the reduction", "layernorm", "forward",
           lambda: layernorm_forward(mutate(LAYERNORM_FORWARD, ("buf[tid] = s;\n    __syncthreads();",
                                                                "buf[tid] = s;"))),
           says=("depends on the order in which threads run", "__syncthreads()")),
    Mutant("layernorm forward: missing __syncthreads() before buf is reused", "layernorm", "forward",
           lambda: layernorm_forward(mutate(LAYERNORM_FORWARD,
                                            ("__syncthreads();   // everyone has read buf[0] before it is reused",
                                             ""))),
           says=("depends on the order in which threads run",)),
    Mutant("layernorm backward: dinp without the two mean terms", "layernorm", "backward",
           lambda: layernorm_backward(mutate(LAYERNORM_BACKWARD,
                                             ("(dnorm - dnorm_mean - norm * dnorm_norm_mean) * r", "dnorm * r")))),
    Mutant("layernorm backward: dweight overwritten", "layernorm", "backward",
           lambda: layernorm_backward(mutate(LAYERNORM_BACKWARD, ("dweight[c] += dw;", "dweight[c] = dw;"))),
           says=("dweight:", "overwritten (=) instead of accumulated (+=)")),
]
