"""Encoder: one thread per (b, t, c); the backward scatters with atomicAdd (token ids repeat)."""
from __future__ import annotations

import numpy as np

from llmc_kernels.runtime import RawKernel
from ._kit import Correct, Mutant, ceil_div, mutate

BLOCK = 128

ENCODER = r"""
extern "C" __global__ void encoder_forward_kernel(float* out, const int* inp, const float* wte,
                                                  const float* wpe, int B, int T, int C) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < B * T * C) {
        int bt = idx / C;
        int t = bt % T;
        int c = idx % C;
        int ix = inp[bt];
        out[idx] = wte[ix * C + c] + wpe[t * C + c];
    }
}

extern "C" __global__ void encoder_backward_kernel(float* dwte, float* dwpe, const float* dout,
                                                   const int* inp, int B, int T, int C) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < B * T * C) {
        int bt = idx / C;
        int t = bt % T;
        int c = idx % C;
        int ix = inp[bt];
        atomicAdd(&dwte[ix * C + c], dout[idx]);
        atomicAdd(&dwpe[t * C + c], dout[idx]);
    }
}
"""


def encoder_forward(code=ENCODER):
    k = RawKernel(code, "encoder_forward_kernel")

    def encoder_forward(out, inp, wte, wpe, B, T, C):
        k((ceil_div(B * T * C, BLOCK),), (BLOCK,), (out, inp, wte, wpe, np.int32(B), np.int32(T), np.int32(C)))
    return encoder_forward


def encoder_backward(code=ENCODER):
    k = RawKernel(code, "encoder_backward_kernel")

    def encoder_backward(dwte, dwpe, dout, inp, B, T, C):
        k((ceil_div(B * T * C, BLOCK),), (BLOCK,), (dwte, dwpe, dout, inp, np.int32(B), np.int32(T), np.int32(C)))
    return encoder_backward


CORRECT = [Correct("encoder", "forward", encoder_forward), Correct("encoder", "backward", encoder_backward)]

MUTANTS = [
    Mutant("encoder forward: position row from b*T+t instead of t", "encoder", "forward",
           lambda: encoder_forward(mutate(ENCODER, ("+ wpe[t * C + c];", "+ wpe[bt * C + c];")))),
    Mutant("encoder backward: ignores wpe", "encoder", "backward",
           lambda: encoder_backward(mutate(ENCODER, ("atomicAdd(&dwpe[t * C + c], dout[idx]);", ""))),
           says=("dwpe:", "nothing was added")),
    Mutant("encoder backward: dwte overwritten", "encoder", "backward",
           lambda: encoder_backward(mutate(ENCODER, ("atomicAdd(&dwte[ix * C + c], dout[idx]);",
                                                     "dwte[ix * C + c] = dout[idx];"))),
           says=("dwte", "a race", "atomicAdd")),
]
