"""Chapter 04b's transpose: one thread per element (correct and uncoalesced; the checks judge results only)."""
from __future__ import annotations

import numpy as np

from llmc_kernels.runtime import RawKernel
from ._kit import Correct, Mutant, ceil_div, mutate

BLOCK = 128

TRANSPOSE = r"""
extern "C" __global__ void transpose_naive(float* out, const float* inp, int T, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;      // one element of inp: i = t * C + c
    if (i < T * C) {
        int t = i / C, c = i % C;
        out[c * T + t] = inp[i];
    }
}
"""


def transpose(code=TRANSPOSE):
    k = RawKernel(code, "transpose_naive")

    def transpose(out, inp, T, C):
        k((ceil_div(T * C, BLOCK),), (BLOCK,), (out, inp, np.int32(T), np.int32(C)))
    return transpose


CORRECT = [Correct("transpose", "forward", transpose)]

MUTANTS = [
    Mutant("transpose: a copy, not a transpose (out[t * C + c])", "transpose", "forward",
           lambda: transpose(mutate(TRANSPOSE, ("out[c * T + t] = inp[i];", "out[t * C + c] = inp[i];")))),
    Mutant("transpose: no bounds check", "transpose", "forward",
           lambda: transpose(mutate(TRANSPOSE, ("if (i < T * C) {", "{"))), says=("KernelOutOfBounds",)),
]
