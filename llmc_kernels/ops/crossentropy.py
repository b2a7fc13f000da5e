"""Cross-entropy loss and its backward fused with the softmax's (SPEC signatures).

    crossentropy_forward(losses[B,T], probs[B,T,Vp], targets[B,T] int32, B, T, Vp)
        losses[b,t] = -log probs[b,t,targets[b,t]]
    crossentropy_softmax_backward(dlogits[B,T,Vp], dlosses[B,T], probs, targets, B, T, V, Vp)
        dlogits[b,t,c] += (probs[b,t,c] - [c == targets[b,t]]) * dlosses[b,t]     c < V (c >= V untouched)

Launch (kernels/crossentropy.cu): the forward one thread per row (256-thread blocks); the backward one
block per row, its threads striding over the columns (float4 when rows are 16-byte aligned). Neither
kernel has a barrier, so on the cpu backend both run as plain loops.
"""

from __future__ import annotations

import numpy as np

from . import _loader, _validate
from .softmax import check_targets, row_block, rows_vec

FORWARD_BLOCK = 256


def crossentropy_forward(losses, probs, targets, B, T, Vp):
    """losses = -log of the target's probability, per position."""
    fn = "crossentropy_forward"
    _validate.arguments(fn, locals())
    check_targets(fn, targets, Vp, "Vp")
    N = B * T
    _loader.kernel("crossentropy.cu", "crossentropy_forward_kernel")(
        (-(-N // FORWARD_BLOCK),), (FORWARD_BLOCK,), (losses, probs, targets, np.int32(N), np.int32(Vp))
    )


def launch_backward(dlogits, dlosses, probs, targets, N: int, V: int, Vp: int, block: int) -> None:
    _loader.kernel("crossentropy.cu", "crossentropy_softmax_backward_kernel")(
        (N,),
        (block,),
        (dlogits, dlosses, probs, targets, np.int32(N), np.int32(V), np.int32(Vp), rows_vec(Vp, dlogits, probs)),
    )


def crossentropy_softmax_backward(dlogits, dlosses, probs, targets, B, T, V, Vp):
    """dlogits += (probs - onehot(targets)) * dlosses, columns < V."""
    fn = "crossentropy_softmax_backward"
    _validate.arguments(fn, locals())
    check_targets(fn, targets, V, "V")
    # no barrier or shuffle in crossentropy.cu: on the cpu backend every block size runs as a plain loop
    launch_backward(dlogits, dlosses, probs, targets, B * T, V, Vp, row_block("cuda", V))
