"""AdamW: one thread per parameter; the bias corrections computed in the kernel with powf."""
from __future__ import annotations

import numpy as np

from llmc_kernels.runtime import RawKernel
from ._kit import Correct, Mutant, ceil_div, mutate

BLOCK = 128

ADAMW = r"""
extern "C" __global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, int num_params,
                                        float lr, float beta1, float beta2, float eps, float weight_decay, int t) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= num_params) return;
    float g = grads[i];
    float p = params[i];
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float m_hat = mi / (1.0f - powf(beta1, (float)t));
    float v_hat = vi / (1.0f - powf(beta2, (float)t));
    params[i] = p - lr * (m_hat / (sqrtf(v_hat) + eps) + weight_decay * p);
}
"""


def adamw_update(code=ADAMW):
    k = RawKernel(code, "adamw_kernel")

    def adamw_update(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t):
        f = np.float32
        k((ceil_div(num_params, BLOCK),), (BLOCK,),
          (params, grads, m, v, np.int32(num_params), f(lr), f(beta1), f(beta2), f(eps), f(weight_decay),
           np.int32(t)))
    return adamw_update


CORRECT = [Correct("adamw", "forward", adamw_update)]

MUTANTS = [
    Mutant("adamw: no bias correction", "adamw", "forward",
           lambda: adamw_update(mutate(ADAMW, ("mi / (1.0f - powf(beta1, (float)t))", "mi"),
                                       ("vi / (1.0f - powf(beta2, (float)t))", "vi")))),
    Mutant("adamw: L2 in the gradient instead of decoupled decay", "adamw", "forward",
           lambda: adamw_update(mutate(ADAMW, ("float g = grads[i];", "float g = grads[i] + weight_decay * params[i];"),
                                       (" + weight_decay * p);", ");")))),
    Mutant("adamw: ignores t (always the first step's correction)", "adamw", "forward",
           lambda: adamw_update(mutate(ADAMW, ("powf(beta1, (float)t)", "beta1"), ("powf(beta2, (float)t)", "beta2")))),
    Mutant("adamw: m not stored", "adamw", "forward",
           lambda: adamw_update(mutate(ADAMW, ("    m[i] = mi;\n", ""))), says=("m:", "it was not updated")),
]
