"""Central finite differences of the float64 reference forward: the chapters' "finite-difference test".

For a backward ``fn`` with accumulating outputs ``dX`` (``Arg.grad_of = "X"``) and upstream gradients
``dY`` (``grad_of = "Y"``, an output of the forward), the loss is ``L = sum_Y sum(dY * Y)`` and the expected
``dX`` is its initial contents plus ``dL/dX`` by central differences over every element of ``X``, computed in
float64 from the case's own (float32-valued) inputs. Gradients with respect to the forward's *outputs*
(attention's ``dpreatt`` and ``datt``, intermediate results) keep the reference's value. ``grad_of`` of the
form ``"softmax_forward.logits"`` names an input further up: the perturbation then goes through that forward
too (cross-entropy's logits -> probs -> losses).
"""

from __future__ import annotations

import numpy as np

from .. import opspec
from ..opspec import ACCUMULATE, INPUT, OUTPUT

STEP = 1e-6  # float64: truncation error ~h^2, rounding ~1e-16/h -- both far below the float32 tolerances


def numgrad(loss, x: np.ndarray, h: float = STEP) -> np.ndarray:
    """dloss/dx by central differences, perturbing ``x`` (float64) in place and restoring it."""
    g = np.zeros(x.shape)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        up = loss()
        flat[i] = old - h
        down = loss()
        flat[i] = old
        gflat[i] = (up - down) / (2 * h)
    return g


def _wrt(fname: str) -> tuple[str, list[tuple[str, opspec.Arg]], list[tuple[str, str]]]:
    """(forward name, [(grad arg, the input's Arg)], [(upstream arg, forward output)]) of a backward."""
    opsp, fn = opspec.function(fname)
    fwd = opsp.forward
    fwd_inputs = {a.name for a in fwd.args if a.role == INPUT}
    fwd_outputs = {a.name for a in fwd.args if a.role == OUTPUT}
    grads, upstream = [], []
    for a in fn.args:
        if a.role == ACCUMULATE and a.grad_of:
            if "." in a.grad_of:  # an input further up: "softmax_forward.logits"
                up_fn, up_arg = a.grad_of.split(".")
                grads.append((a.name, opspec.function(up_fn)[1].arg(up_arg)))
            elif a.grad_of in fwd_inputs:
                grads.append((a.name, fwd.arg(a.grad_of)))
        elif a.role == INPUT and a.grad_of in fwd_outputs:
            upstream.append((a.name, a.grad_of))
    return fwd.name, grads, upstream


def fd_expected(case, pool) -> None:
    """Replace the expected value of each gradient of ``case`` with initial + finite differences."""
    fwd_name, grads, upstream = _wrt(case.fname)
    by_name = {t.name: t for t in case.tensors}
    weights = {out: by_name[up].initial.astype(np.float64) for up, out in upstream}
    for grad_name, primary in grads:
        t = by_name[grad_name]
        if t.initial is None:
            continue
        x = pool.get(primary).astype(np.float64)  # the same values the case's inputs were built from

        def loss(x=x, name=primary.name):
            outs = pool.forward64(fwd_name, {name: x})
            return float(sum(np.sum(w * outs[name]) for name, w in weights.items()))

        g = numgrad(loss, x)
        expected = t.initial.astype(np.float64) + g
        if t.outside is not None:  # padded columns: no gradient, the pre-filled value stays
            expected = np.where(t.outside, t.initial.astype(np.float64), expected)
        t.expected = expected
