"""Softmax over the vocabulary (SPEC signature); also the row-launch helpers of crossentropy/classifier.

    softmax_forward(probs[B,T,Vp], logits[B,T,Vp], B, T, V, Vp)
        probs[r, c] = exp(logits[r, c] - m_r) / sum_{c'<V} exp(logits[r, c'] - m_r)   c < V;   0 for c >= V

Launch (kernels/softmax.cu): one block per row (grid = B*T), online softmax (max and sum in one read),
block reduction by warp shuffles then shared memory, float4 when rows are 16-byte aligned.
- cuda: a power of two between 32 and 512 threads, about 16 columns per thread (512 for GPT-2's 50,304).
- cpu: one thread per block. Each CUDA thread of a kernel with barriers/shuffles is a fiber on the CPU
  backend, and a fiber switch costs about a microsecond; a single thread per row meets no other thread, so
  it never switches and runs the row as a plain loop (~0.1 s for 256 rows of 50,304).
"""

from __future__ import annotations

import numpy as np

from . import _loader, _validate
from ._grid import aligned16

MAX_ROW_BLOCK = 512
CPU_ROW_BLOCK = 1
# Targets outside [0, V) would poison rows with NaN (the kernels never read out of bounds); the wrappers
# refuse them first with one small reduction over B*T ints (a host sync on cuda). False skips it.
CHECK_TARGETS = True


def row_block(backend: str, V: int) -> int:
    """Threads per row: cpu 1; cuda the power of two nearest V/16, clamped to [32, 512]."""
    if backend != "cuda":
        return CPU_ROW_BLOCK
    block = 32
    while block < MAX_ROW_BLOCK and block * 16 < V:
        block *= 2
    return block


def rows_vec(Vp: int, *arrays) -> np.int32:
    """1 when every row of Vp floats of these arrays starts 16-byte aligned (float4 accesses)."""
    return np.int32(Vp % 4 == 0 and aligned16(*arrays))


def check_targets(fn: str, targets, hi: int, what: str) -> None:
    """targets must lie in [0, hi) ('what' names hi in the message)."""
    if CHECK_TARGETS and bool(((targets < 0) | (targets >= hi)).any()):
        raise ValueError(
            f"{fn}: 'targets' must lie in [0, {what}) = [0, {hi}); got values from "
            f"{int(targets.min())} to {int(targets.max())}"
        )


def launch_softmax(probs, logits, N: int, V: int, Vp: int, block: int) -> None:
    """softmax_forward_kernel over N rows with ``block`` threads per row (a power of two <= 32 or a
    multiple of 32 up to 1024; the tests use this to run the cooperative paths on the cpu backend too)."""
    _loader.kernel("softmax.cu", "softmax_forward_kernel")(
        (N,), (block,), (probs, logits, np.int32(N), np.int32(V), np.int32(Vp), rows_vec(Vp, probs, logits))
    )


def softmax_forward(probs, logits, B, T, V, Vp):
    """probs = softmax(logits[..., :V]) per row, 0 in the padded columns."""
    backend, _ = _validate.arguments("softmax_forward", locals())
    launch_softmax(probs, logits, B * T, V, Vp, row_block(backend, V))
