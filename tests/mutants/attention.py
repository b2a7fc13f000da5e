"""Attention, as llm.c's CPU loops: one thread per (b, h, t) row. The backward adds the key and value parts
of dinp (which other rows also reach) with atomicAdd."""
from __future__ import annotations

import numpy as np

from llmc_kernels.runtime import RawKernel
from ._kit import Correct, Mutant, ceil_div, mutate

BLOCK = 64

ATTENTION_FORWARD = r"""
extern "C" __global__ void attention_forward_kernel(float* out, float* preatt, float* att, const float* inp,
                                                    int B, int T, int C, int NH) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * NH * T) return;
    int t = idx % T;
    int h = (idx / T) % NH;
    int b = idx / (NH * T);
    int C3 = 3 * C;
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float* q = inp + b * T * C3 + t * C3 + h * hs;
    float* pre = preatt + idx * T;      // row (b, h, t): idx = (b * NH + h) * T + t
    float* a = att + idx * T;

    float maxval = -FLT_MAX;
    for (int t2 = 0; t2 <= t; t2++) {
        const float* k = inp + b * T * C3 + t2 * C3 + h * hs + C;
        float v = 0.0f;
        for (int i = 0; i < hs; i++) v += q[i] * k[i];
        v *= scale;
        if (v > maxval) maxval = v;
        pre[t2] = v;
    }
    float sum = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        float e = expf(pre[t2] - maxval);
        sum += e;
        a[t2] = e;
    }
    float inv = 1.0f / sum;
    for (int t2 = 0; t2 < T; t2++) a[t2] = (t2 <= t) ? a[t2] * inv : 0.0f;

    float* o = out + b * T * C + t * C + h * hs;
    for (int i = 0; i < hs; i++) o[i] = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        const float* v = inp + b * T * C3 + t2 * C3 + h * hs + 2 * C;
        for (int i = 0; i < hs; i++) o[i] += a[t2] * v[i];
    }
}
"""

ATTENTION_BACKWARD = r"""
extern "C" __global__ void attention_backward_kernel(float* dinp, float* dpreatt, float* datt, const float* dout,
                                                     const float* inp, const float* att,
                                                     int B, int T, int C, int NH) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * NH * T) return;
    int t = idx % T;
    int h = (idx / T) % NH;
    int b = idx / (NH * T);
    int C3 = 3 * C;
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float* a = att + idx * T;
    float* da = datt + idx * T;
    float* dp = dpreatt + idx * T;
    const float* dy = dout + b * T * C + t * C + h * hs;
    const float* q = inp + b * T * C3 + t * C3 + h * hs;
    float* dq = dinp + b * T * C3 + t * C3 + h * hs;

    // out = att @ v
    for (int t2 = 0; t2 <= t; t2++) {
        const float* v = inp + b * T * C3 + t2 * C3 + h * hs + 2 * C;
        float* dv = dinp + b * T * C3 + t2 * C3 + h * hs + 2 * C;
        float s = 0.0f;
        for (int i = 0; i < hs; i++) {
            s += v[i] * dy[i];
            atomicAdd(&dv[i], a[t2] * dy[i]);
        }
        da[t2] += s;
    }
    // softmax: dpreatt = att * (datt - sum(att * datt))
    float dot = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) dot += a[t2] * da[t2];
    for (int t2 = 0; t2 <= t; t2++) dp[t2] += a[t2] * (da[t2] - dot);
    // preatt = scale * q . k
    for (int t2 = 0; t2 <= t; t2++) {
        const float* k = inp + b * T * C3 + t2 * C3 + h * hs + C;
        float* dk = dinp + b * T * C3 + t2 * C3 + h * hs + C;
        for (int i = 0; i < hs; i++) {
            dq[i] += k[i] * dp[t2] * scale;
            atomicAdd(&dk[i], q[i] * dp[t2] * scale);
        }
    }
}
"""


def attention_forward(code=ATTENTION_FORWARD):
    k = RawKernel(code, "attention_forward_kernel")

    def attention_forward(out, preatt, att, inp, B, T, C, NH):
        k((ceil_div(B * NH * T, BLOCK),), (BLOCK,),
          (out, preatt, att, inp, np.int32(B), np.int32(T), np.int32(C), np.int32(NH)))
    return attention_forward


def attention_backward(code=ATTENTION_BACKWARD):
    k = RawKernel(code, "attention_backward_kernel")

    def attention_backward(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH):
        k((ceil_div(B * NH * T, BLOCK),), (BLOCK,),
          (dinp, dpreatt, datt, dout, inp, att, np.int32(B), np.int32(T), np.int32(C), np.int32(NH)))
    return attention_backward


CORRECT = [Correct("attention", "forward", attention_forward), Correct("attention", "backward", attention_backward)]

MUTANTS = [
    Mutant("attention forward: no causal mask", "attention", "forward",
           lambda: attention_forward(mutate(ATTENTION_FORWARD,
                                            ("for (int t2 = 0; t2 <= t; t2++) {\n        const float* k",
                                             "for (int t2 = 0; t2 < T; t2++) {\n        const float* k"),
                                            ("for (int t2 = 0; t2 <= t; t2++) {\n        float e",
                                             "for (int t2 = 0; t2 < T; t2++) {\n        float e"),
                                            ("(t2 <= t) ? a[t2] * inv : 0.0f", "a[t2] * inv"),
                                            ("for (int t2 = 0; t2 <= t; t2++) {\n        const float* v",
                                             "for (int t2 = 0; t2 < T; t2++) {\n        const float* v")))),
    Mutant("attention forward: scale 1/hs instead of 1/sqrt(hs)", "attention", "forward",
           lambda: attention_forward(mutate(ATTENTION_FORWARD, ("1.0f / sqrtf((float)hs)", "1.0f / (float)hs")))),
    Mutant("attention forward: softmax without subtracting the max", "attention", "forward",
           lambda: attention_forward(mutate(ATTENTION_FORWARD, ("expf(pre[t2] - maxval)", "expf(pre[t2])"))),
           says=("inputs of large magnitude", "subtract the row's maximum")),
    Mutant("attention backward: softmax backward without the dot term", "attention", "backward",
           lambda: attention_backward(mutate(ATTENTION_BACKWARD, ("a[t2] * (da[t2] - dot)", "a[t2] * da[t2]")))),
    Mutant("attention backward: no gradient to v", "attention", "backward",
           lambda: attention_backward(mutate(ATTENTION_BACKWARD, ("atomicAdd(&dv[i], a[t2] * dy[i]);", "")))),
]
