"""vector_add, GELU and the residual: one thread per element."""
from __future__ import annotations

import numpy as np

from llmc_kernels.runtime import RawKernel
from ._kit import Correct, Mutant, ceil_div, mutate

BLOCK = 128

VECTOR_ADD = r"""
extern "C" __global__ void vector_add_kernel(float* out, const float* a, const float* b, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) {
        out[i] = a[i] + b[i];
    }
}
"""

GELU = r"""
#define GELU_SCALING_FACTOR 0.7978845608028654f   // sqrt(2/pi)

extern "C" __global__ void gelu_forward_kernel(float* out, const float* inp, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) {
        float x = inp[i];
        float u = GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x);
        float th = tanhf(u);
        out[i] = 0.5f * x * (1.0f + th);
    }
}

extern "C" __global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) {
        float x = inp[i];
        float th = tanhf(GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x));
        float sech2 = 1.0f - th * th;
        float local_grad = 0.5f * (1.0f + th)
                         + 0.5f * x * sech2 * GELU_SCALING_FACTOR * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += local_grad * dout[i];
    }
}
"""

RESIDUAL = r"""
extern "C" __global__ void residual_forward_kernel(float* out, const float* inp1, const float* inp2, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) {
        out[i] = inp1[i] + inp2[i];
    }
}

extern "C" __global__ void residual_backward_kernel(float* dinp1, float* dinp2, const float* dout, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) {
        dinp1[i] += dout[i];
        dinp2[i] += dout[i];
    }
}
"""


def _grid(N):
    return ceil_div(N, BLOCK)


def vector_add(code=VECTOR_ADD, grid=_grid):
    k = RawKernel(code, "vector_add_kernel")

    def vector_add(out, a, b, N):
        k((grid(N),), (BLOCK,), (out, a, b, np.int32(N)))
    return vector_add


def gelu_forward(code=GELU):
    k = RawKernel(code, "gelu_forward_kernel")

    def gelu_forward(out, inp, N):
        k((_grid(N),), (BLOCK,), (out, inp, np.int32(N)))
    return gelu_forward


def gelu_backward(code=GELU):
    k = RawKernel(code, "gelu_backward_kernel")

    def gelu_backward(dinp, inp, dout, N):
        k((_grid(N),), (BLOCK,), (dinp, inp, dout, np.int32(N)))
    return gelu_backward


def residual_forward(code=RESIDUAL):
    k = RawKernel(code, "residual_forward_kernel")

    def residual_forward(out, inp1, inp2, N):
        k((_grid(N),), (BLOCK,), (out, inp1, inp2, np.int32(N)))
    return residual_forward


def residual_backward(code=RESIDUAL):
    k = RawKernel(code, "residual_backward_kernel")

    def residual_backward(dinp1, dinp2, dout, N):
        k((_grid(N),), (BLOCK,), (dinp1, dinp2, dout, np.int32(N)))
    return residual_backward


CORRECT = [Correct("vector_add", "forward", vector_add), Correct("gelu", "forward", gelu_forward),
           Correct("gelu", "backward", gelu_backward), Correct("residual", "forward", residual_forward),
           Correct("residual", "backward", residual_backward)]

MUTANTS = [
    Mutant("vector_add: no bounds check", "vector_add", "forward",
           lambda: vector_add(mutate(VECTOR_ADD, ("if (i < N) {", "{"))),
           says=("KernelOutOfBounds", "missing bounds check")),
    Mutant("vector_add: only the first block launched", "vector_add", "forward",
           lambda: vector_add(grid=lambda N: 1), says=("only the first 128 elements", "never written")),
    Mutant("vector_add: grid rounded down (no partial last block)", "vector_add", "forward",
           lambda: vector_add(grid=lambda N: max(1, N // BLOCK)), says=("only the first 896 elements",)),
    Mutant("gelu forward: tanh as (e^2u - 1)/(e^2u + 1) overflows", "gelu", "forward",
           lambda: gelu_forward(mutate(GELU, ("float th = tanhf(u);",
                                              "float e = expf(2.0f * u); float th = (e - 1.0f) / (e + 1.0f);"))),
           says=("inputs of large magnitude", "NaN/inf")),
    Mutant("gelu backward: derivative of x^3 without its 3", "gelu", "backward",
           lambda: gelu_backward(mutate(GELU, ("(1.0f + 3.0f * 0.044715f * x * x)", "(1.0f + 0.044715f * x * x)")))),
    Mutant("gelu backward: = instead of +=", "gelu", "backward",
           lambda: gelu_backward(mutate(GELU, ("dinp[i] += local_grad", "dinp[i] = local_grad"))),
           says=("overwritten (=) instead of accumulated (+=)",)),
    Mutant("residual backward: gradient only to the first input", "residual", "backward",
           lambda: residual_backward(mutate(RESIDUAL, ("dinp2[i] += dout[i];", ""))),
           says=("dinp2:", "nothing was added")),
    Mutant("residual backward: gradient doubled", "residual", "backward",
           lambda: residual_backward(mutate(RESIDUAL, ("dinp1[i] += dout[i];", "dinp1[i] += 2.0f * dout[i];"))),
           says=("exactly doubled",)),
]
