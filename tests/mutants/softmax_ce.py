"""Softmax (one block per row, shared-memory max and sum reductions) and cross-entropy (one thread per position
forward, one thread per logit backward)."""
from __future__ import annotations

import numpy as np

from llmc_kernels.runtime import RawKernel
from ._kit import Correct, Mutant, ceil_div, mutate

BLOCK = 128

SOFTMAX = r"""
#define BLOCK 128

extern "C" __global__ void softmax_forward_kernel(float* probs, const float* logits, int V, int Vp) {
    __shared__ float buf[BLOCK];
    int row = blockIdx.x;
    int tid = threadIdx.x;
    const float* x = logits + row * Vp;
    float* p = probs + row * Vp;

    float m = -FLT_MAX;
    for (int i = tid; i < V; i += BLOCK) m = fmaxf(m, x[i]);
    buf[tid] = m;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s /= 2) {
        if (tid < s) buf[tid] = fmaxf(buf[tid], buf[tid + s]);
        __syncthreads();
    }
    m = buf[0];
    __syncthreads();

    float sum = 0.0f;
    for (int i = tid; i < V; i += BLOCK) sum += expf(x[i] - m);
    buf[tid] = sum;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s /= 2) {
        if (tid < s) buf[tid] += buf[tid + s];
        __syncthreads();
    }
    float inv = 1.0f / buf[0];
    for (int i = tid; i < Vp; i += BLOCK) {
        p[i] = (i < V) ? expf(x[i] - m) * inv : 0.0f;
    }
}
"""

CROSSENTROPY = r"""
extern "C" __global__ void crossentropy_forward_kernel(float* losses, const float* probs, const int* targets,
                                                       int BT, int Vp) {
    int bt = blockIdx.x * blockDim.x + threadIdx.x;
    if (bt < BT) {
        losses[bt] = -logf(probs[bt * Vp + targets[bt]]);
    }
}

extern "C" __global__ void crossentropy_softmax_backward_kernel(float* dlogits, const float* dlosses,
        const float* probs, const int* targets, int BT, int V, int Vp) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= BT * V) return;
    int bt = idx / V;
    int i = idx % V;
    float indicator = (i == targets[bt]) ? 1.0f : 0.0f;
    dlogits[bt * Vp + i] += (probs[bt * Vp + i] - indicator) * dlosses[bt];
}
"""


def softmax_forward(code=SOFTMAX):
    k = RawKernel(code, "softmax_forward_kernel")

    def softmax_forward(probs, logits, B, T, V, Vp):
        k((B * T,), (BLOCK,), (probs, logits, np.int32(V), np.int32(Vp)))
    return softmax_forward


def crossentropy_forward(code=CROSSENTROPY):
    k = RawKernel(code, "crossentropy_forward_kernel")

    def crossentropy_forward(losses, probs, targets, B, T, Vp):
        k((ceil_div(B * T, 32),), (32,), (losses, probs, targets, np.int32(B * T), np.int32(Vp)))
    return crossentropy_forward


def crossentropy_softmax_backward(code=CROSSENTROPY):
    k = RawKernel(code, "crossentropy_softmax_backward_kernel")

    def crossentropy_softmax_backward(dlogits, dlosses, probs, targets, B, T, V, Vp):
        k((ceil_div(B * T * V, BLOCK),), (BLOCK,),
          (dlogits, dlosses, probs, targets, np.int32(B * T), np.int32(V), np.int32(Vp)))
    return crossentropy_softmax_backward


CORRECT = [Correct("softmax", "forward", softmax_forward), Correct("crossentropy", "forward", crossentropy_forward),
           Correct("crossentropy", "backward", crossentropy_softmax_backward)]

MUTANTS = [
    Mutant("softmax: no max subtraction", "softmax", "forward",
           lambda: softmax_forward(mutate(SOFTMAX, ("sum += expf(x[i] - m);", "sum += expf(x[i]);"),
                                          ("expf(x[i] - m) * inv", "expf(x[i]) * inv"))),
           says=("inputs of large magnitude", "subtract the row's maximum")),
    Mutant("softmax: max and sum over Vp columns (reads the padding)", "softmax", "forward",
           lambda: softmax_forward(mutate(SOFTMAX, ("for (int i = tid; i < V; i += BLOCK) m =",
                                                    "for (int i = tid; i < Vp; i += BLOCK) m ="),
                                          ("for (int i = tid; i < V; i += BLOCK) sum",
                                           "for (int i = tid; i < Vp; i += BLOCK) sum")))),
    Mutant("softmax: padded columns left unwritten", "softmax", "forward",
           lambda: softmax_forward(mutate(SOFTMAX, ("for (int i = tid; i < Vp; i += BLOCK) {",
                                                    "for (int i = tid; i < V; i += BLOCK) {"))),
           says=("padded columns",)),
    Mutant("softmax: missing __syncthreads() in the max reduction", "softmax", "forward",
           lambda: softmax_forward(mutate(SOFTMAX, ("buf[tid + s]);\n        __syncthreads();", "buf[tid + s]);"))),
           says=("depends on the order in which threads run",)),
    Mutant("softmax: not normalised (probs that do not sum to 1, cross-entropy takes their log)", "softmax",
           "forward", lambda: softmax_forward(mutate(SOFTMAX, ("expf(x[i] - m) * inv", "expf(x[i] - m)")))),
    Mutant("crossentropy forward: log without the minus", "crossentropy", "forward",
           lambda: crossentropy_forward(mutate(CROSSENTROPY, ("= -logf(", "= logf("))), says=("negated",)),
    Mutant("crossentropy backward: row stride V instead of Vp", "crossentropy", "backward",
           lambda: crossentropy_softmax_backward(mutate(CROSSENTROPY, (
               "dlogits[bt * Vp + i] += (probs[bt * Vp + i]", "dlogits[bt * V + i] += (probs[bt * V + i]")))),
    Mutant("crossentropy backward: indicator missing", "crossentropy", "backward",
           lambda: crossentropy_softmax_backward(mutate(CROSSENTROPY, ("(i == targets[bt]) ? 1.0f : 0.0f", "0.0f")))),
    Mutant("crossentropy backward: dlosses ignored", "crossentropy", "backward",
           lambda: crossentropy_softmax_backward(mutate(CROSSENTROPY, (" - indicator) * dlosses[bt];",
                                                                       " - indicator);")))),
]
