"""Chapter 07's fused_classifier: one thread per row (correct and uncoalesced; the checks judge results only)."""
from __future__ import annotations

import numpy as np

from llmc_kernels.runtime import RawKernel
from ._kit import Correct, Mutant, ceil_div, mutate

BLOCK = 64

FUSED = r"""
extern "C" __global__ void fused_classifier_rows(float* logits, float* losses, const float* dlosses,
                                                 const int* targets, int N, int V, int Vp) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;      // one row per thread
    if (r >= N) return;
    float* x = logits + (size_t)r * Vp;
    int y = targets[r];
    float m = -FLT_MAX;
    for (int i = 0; i < V; i++) m = fmaxf(m, x[i]);
    float s = 0.0f;
    for (int i = 0; i < V; i++) s += expf(x[i] - m);
    losses[r] = (m + logf(s)) - x[y];
    float g = dlosses[r];
    for (int i = 0; i < V; i++) x[i] = (expf(x[i] - m) / s - (i == y ? 1.0f : 0.0f)) * g;
    for (int i = V; i < Vp; i++) x[i] = 0.0f;
}
"""


def fused_classifier(code=FUSED):
    k = RawKernel(code, "fused_classifier_rows")

    def fused_classifier(logits, losses, dlosses, targets, B, T, V, Vp):
        N = B * T
        args = (logits, losses, dlosses, targets, np.int32(N), np.int32(V), np.int32(Vp))
        k((ceil_div(N, BLOCK),), (BLOCK,), args)
    return fused_classifier


CORRECT = [Correct("fused_classifier", "forward", fused_classifier)]

MUTANTS = [
    Mutant("fused_classifier: the padding keeps its logits", "fused_classifier", "forward",
           lambda: fused_classifier(mutate(FUSED, ("for (int i = V; i < Vp; i++) x[i] = 0.0f;", "")))),
    Mutant("fused_classifier: dlosses ignored (the plain gradient p - y)", "fused_classifier", "forward",
           lambda: fused_classifier(mutate(FUSED, ("float g = dlosses[r];", "float g = 1.0f;")))),
    Mutant("fused_classifier: the loss read after the row is overwritten", "fused_classifier", "forward",
           lambda: fused_classifier(mutate(
               FUSED,
               ("    losses[r] = (m + logf(s)) - x[y];\n", ""),
               ("    for (int i = V; i < Vp; i++) x[i] = 0.0f;\n",
                "    for (int i = V; i < Vp; i++) x[i] = 0.0f;\n    losses[r] = (m + logf(s)) - x[y];\n"),
           ))),
]
