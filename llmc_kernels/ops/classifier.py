"""The fused classifier (llm.c's fused_classifier): softmax + cross-entropy + their backward in one pass.

    fused_classifier(logits[B,T,Vp], losses[B,T], dlosses[B,T] or None, targets[B,T] int32, B, T, V, Vp)

For each position, with p = softmax(logits[..., :V]) and y = targets[b,t]:
    losses[b,t]    = -log p_y                                        (written)
    logits[b,t,c] <- (p_c - [c == y]) * dlosses[b,t]    c < V        (the gradient, written OVER the logits)
    logits[b,t,c] <- 0                                  V <= c < Vp
dlosses None means 1/(B*T) everywhere (the gradient of the mean loss). This equals softmax_forward +
crossentropy_forward + crossentropy_softmax_backward into a zeroed dlogits (tests/test_ops_classifier.py
checks exactly that), without ever writing the [B,T,Vp] probabilities: one read of the logits for the
softmax statistics, one read + write for the gradient. The logits are gone afterwards: call it only when
the step also does the backward (the model does).

Launch (kernels/classifier.cu): one block per row; cuda 32..512 threads (512 for GPT-2's vocabulary),
cpu one thread per row (see ops/softmax.py for why).
"""

from __future__ import annotations

import numpy as np

from . import _loader, _validate
from .softmax import check_targets, row_block, rows_vec


def launch_classifier(
    logits, losses, dlosses, targets, N: int, V: int, Vp: int, dloss_default: float, block: int
) -> None:
    """fused_classifier_kernel over N rows, ``block`` threads per row (dlosses may be None)."""
    _loader.kernel("classifier.cu", "fused_classifier_kernel")(
        (N,),
        (block,),
        (
            logits,
            losses,
            dlosses,
            targets,
            np.int32(N),
            np.int32(V),
            np.int32(Vp),
            np.int32(dlosses is not None),
            np.float32(dloss_default),
            rows_vec(Vp, logits),
        ),
    )


def fused_classifier(logits, losses, dlosses, targets, B, T, V, Vp, *, check_ids=True):
    """losses = cross-entropy per position; logits are overwritten by d(loss)/d(logits) (see module doc)."""
    fn = "fused_classifier"
    backend, _ = _validate.arguments(fn, locals())
    if check_ids:  # False: the caller validated the targets on the host (FastGPT2)
        check_targets(fn, targets, V, "V")
    launch_classifier(logits, losses, dlosses, targets, B * T, V, Vp, 1.0 / (B * T), row_block(backend, V))
