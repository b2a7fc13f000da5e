"""AdamW on the active backend: ``kernels/adamw.cu``.

    adamw_update(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t)
        m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
        p -= lr * ((m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * p)

Arrays: float32, C-contiguous, num_params elements, any shape (one flat buffer or one tensor). ``t`` >= 1
is the step number; the bias corrections 1 - beta^t are computed here in double precision and passed to
the kernel as float32. Launch: 256-thread blocks, grid-stride, grid = min(blocks needed, resident
blocks) (cpu backend: 4 items per thread); four parameters per thread (float4) when all four arrays are
16-byte aligned (whole allocations are; the num_params % 4 tail in the same launch), else one.
"""

from __future__ import annotations

import numpy as np

from . import _loader, _validate
from ._grid import aligned16, fits_int32, grid_for

BLOCK = 256

BENCH = {
    "adamw_update": {"sizes": {"num_params": 124_475_904}, "bytes": lambda num_params: 28 * num_params},
}


def adamw_update(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t):
    fn = "adamw_update"
    backend, _ = _validate.arguments(fn, locals())
    fits_int32(fn, num_params=num_params)
    lr, beta1, beta2, eps, weight_decay = float(lr), float(beta1), float(beta2), float(eps), float(weight_decay)
    for name, b in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{fn}: {name} must lie in [0, 1); got {b}")
    beta1_correction = 1.0 - beta1 ** int(t)
    beta2_correction = 1.0 - beta2 ** int(t)
    if aligned16(params, grads, m, v):
        name, work = "adamw_vec4_kernel", max(1, int(num_params) // 4)
    else:
        name, work = "adamw_kernel", int(num_params)
    grid = grid_for(backend, work, BLOCK)
    _loader.kernel("adamw.cu", name)(
        (grid,),
        (BLOCK,),
        (
            params,
            grads,
            m,
            v,
            np.int32(num_params),
            np.float32(lr),
            np.float32(beta1),
            np.float32(beta2),
            np.float32(beta1_correction),
            np.float32(beta2_correction),
            np.float32(eps),
            np.float32(weight_decay),
        ),
    )
