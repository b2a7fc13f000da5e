"""Matmul: one thread per output element, plain loops (bias and dbias may be None: a null pointer)."""
from __future__ import annotations

import numpy as np

from llmc_kernels.runtime import RawKernel
from ._kit import Correct, Mutant, ceil_div, mutate

BLOCK = 128

MATMUL_FORWARD = r"""
extern "C" __global__ void matmul_forward_kernel(float* out, const float* inp, const float* weight,
                                                 const float* bias, int BT, int C, int OC) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= BT * OC) return;
    int bt = idx / OC;
    int o = idx % OC;
    float val = (bias != NULL) ? bias[o] : 0.0f;
    for (int i = 0; i < C; i++) {
        val += inp[bt * C + i] * weight[o * C + i];
    }
    out[idx] = val;
}
"""

MATMUL_BACKWARD = r"""
extern "C" __global__ void matmul_backward_dinp_kernel(float* dinp, const float* dout, const float* weight,
                                                       int BT, int C, int OC) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= BT * C) return;
    int bt = idx / C;
    int i = idx % C;
    float s = 0.0f;
    for (int o = 0; o < OC; o++) {
        s += dout[bt * OC + o] * weight[o * C + i];
    }
    dinp[idx] += s;
}

extern "C" __global__ void matmul_backward_dweight_kernel(float* dweight, float* dbias, const float* dout,
                                                          const float* inp, int BT, int C, int OC) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= OC * C) return;
    int o = idx / C;
    int i = idx % C;
    float s = 0.0f;
    for (int bt = 0; bt < BT; bt++) {
        s += dout[bt * OC + o] * inp[bt * C + i];
    }
    dweight[idx] += s;
    if (dbias != NULL && i == 0) {
        float sb = 0.0f;
        for (int bt = 0; bt < BT; bt++) sb += dout[bt * OC + o];
        dbias[o] += sb;
    }
}
"""


def matmul_forward(code=MATMUL_FORWARD, grid=lambda n: ceil_div(n, BLOCK)):
    k = RawKernel(code, "matmul_forward_kernel")

    def matmul_forward(out, inp, weight, bias, B, T, C, OC):
        k((grid(B * T * OC),), (BLOCK,), (out, inp, weight, bias, np.int32(B * T), np.int32(C), np.int32(OC)))
    return matmul_forward


def matmul_backward(code=MATMUL_BACKWARD):
    k1 = RawKernel(code, "matmul_backward_dinp_kernel")
    k2 = RawKernel(code, "matmul_backward_dweight_kernel")

    def matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC):
        BT = np.int32(B * T)
        k1((ceil_div(B * T * C, BLOCK),), (BLOCK,), (dinp, dout, weight, BT, np.int32(C), np.int32(OC)))
        k2((ceil_div(OC * C, BLOCK),), (BLOCK,), (dweight, dbias, dout, inp, BT, np.int32(C), np.int32(OC)))
    return matmul_backward


CORRECT = [Correct("matmul", "forward", matmul_forward), Correct("matmul", "backward", matmul_backward)]

MUTANTS = [
    Mutant("matmul forward: bias ignored", "matmul", "forward",
           lambda: matmul_forward(mutate(MATMUL_FORWARD, ("(bias != NULL) ? bias[o] : 0.0f", "0.0f")))),
    Mutant("matmul forward: weight read transposed", "matmul", "forward",
           lambda: matmul_forward(mutate(MATMUL_FORWARD, ("weight[o * C + i]", "weight[i * OC + o]")))),
    Mutant("matmul forward: only the first block launched", "matmul", "forward",
           lambda: matmul_forward(grid=lambda n: 1), says=("only the first 128 elements",)),
    Mutant("matmul backward: dinp misses the last term", "matmul", "backward",
           lambda: matmul_backward(mutate(MATMUL_BACKWARD, ("for (int o = 0; o < OC; o++)",
                                                            "for (int o = 0; o < OC - 1; o++)")))),
    Mutant("matmul backward: dinp overwritten", "matmul", "backward",
           lambda: matmul_backward(mutate(MATMUL_BACKWARD, ("dinp[idx] += s;", "dinp[idx] = s;"))),
           says=("dinp:", "overwritten (=) instead of accumulated (+=)")),
]
