"""LayerNorm on the active backend: ``kernels/layernorm.cu`` (eps 1e-5, biased variance).

    layernorm_forward(out[B,T,C], mean[B,T], rstd[B,T], inp[B,T,C], weight[C], bias[C], B, T, C)
    layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, T, C)   (all accumulate)

Launch: a group of ``lanes`` threads per row (N = B*T rows), grid-stride over rows.
- lanes: on cuda a full warp (32) from C >= 256 (GPT-2: C = 768), else the power of two nearest below C/8
  (C = 64: 8 lanes, 4 rows per warp), so each lane keeps ~8 elements and shuffles stay few. On the cpu
  backend 1 lane (a thread per row): there every warp shuffle is a rendezvous of 32 fibers (~1-3 us), which
  would dominate; the shuffle paths are tested on the cpu backend by setting ``LANES``.
- forward: 256-thread blocks, grid = min(blocks needed, resident blocks) (cpu backend: 4 blocks, as
  every thread is a fiber there).
- backward: 512-thread blocks sharing 2*C floats of dynamic shared memory for their dbias and dweight
  partial sums, grid = min(blocks needed, resident blocks) so that few blocks each flush 2*C global
  atomics; for C > 6144 (partials over 48 KiB) a variant adds straight into the global gradients.
"""

from __future__ import annotations

import numpy as np

from . import _loader, _validate
from ._grid import fits_int32, resident_blocks

FORWARD_BLOCK = 256
BACKWARD_BLOCK = 512
SHARED_LIMIT = 48 * 1024
LANES = None  # None: chosen per backend and C (see lanes_for); tests set 1..32 to cover every path

BENCH = {
    "layernorm_forward": {
        "sizes": {"B": 8, "T": 1024, "C": 768},
        "bytes": lambda B, T, C: 4 * (2 * B * T * C + 2 * C + 2 * B * T),
    },
    "layernorm_backward": {
        "sizes": {"B": 8, "T": 1024, "C": 768},
        "bytes": lambda B, T, C: 4 * (4 * B * T * C + 5 * C + 2 * B * T),
    },
}


def lanes_for(backend: str, C: int) -> int:
    """Threads per row: a power of two in 1..32."""
    if LANES is not None:
        if LANES not in (1, 2, 4, 8, 16, 32):
            raise ValueError(f"layernorm LANES must be a power of two from 1 to 32, got {LANES!r}")
        return LANES
    if backend != "cuda":
        return 1
    if C >= 256:
        return 32
    return 1 << max(0, (C // 8).bit_length() - 1) if C >= 8 else 1


def _grid(backend: str, rows: int, block: int, lanes: int) -> int:
    rows_per_block = block // lanes
    return max(1, min(-(-rows // rows_per_block), resident_blocks(backend, block)))


def layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C):
    fn = "layernorm_forward"
    backend, _ = _validate.arguments(fn, locals())
    fits_int32(fn, rows=B * T)
    lanes = lanes_for(backend, C)
    grid = _grid(backend, B * T, FORWARD_BLOCK, lanes)
    _loader.kernel("layernorm.cu", "layernorm_forward_kernel")(
        (grid,), (FORWARD_BLOCK,), (out, mean, rstd, inp, weight, bias, np.int32(B * T), np.int32(C), np.int32(lanes))
    )


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, T, C):
    fn = "layernorm_backward"
    backend, _ = _validate.arguments(fn, locals())
    fits_int32(fn, rows=B * T)
    lanes = lanes_for(backend, C)
    grid = _grid(backend, B * T, BACKWARD_BLOCK, lanes)
    args = (dinp, dweight, dbias, dout, inp, weight, mean, rstd, np.int32(B * T), np.int32(C), np.int32(lanes))
    shared = 2 * C * 4
    if shared <= SHARED_LIMIT:
        _loader.kernel("layernorm.cu", "layernorm_backward_kernel")((grid,), (BACKWARD_BLOCK,), args, shared_mem=shared)
    else:
        _loader.kernel("layernorm.cu", "layernorm_backward_global_kernel")((grid,), (BACKWARD_BLOCK,), args)
