"""Chapter 09's block exercises for ``llmc grade``: one transformer block, forward or backward, as a graded case.

``check_model.block_forward/backward`` run the learner's block function inside a whole float64 GPT-2. The grader
calls it on one block instead -- random parameters and inputs at secret sizes, every buffer a float64 NumPy
array, the ops namespace the package's float64 references -- and compares every activation (forward) or the
input gradient and every parameter gradient (backward) with :func:`reference_block_forward` /
:func:`reference_block_backward`, llm.c's sequence of op calls (the same as ``llmc_kernels.model.GPT2``'s).

A block function is glue: it must compute nothing itself. Its op calls are recorded and replayed with the
package's references on fresh inputs (:mod:`.trace`), so host code that writes a buffer directly fails.
"""

from __future__ import annotations

import numpy as np

from ..check.cases import Tensor
from ..check.model import BLOCK_ACTS, BLOCK_GRADS, EXACT, LAYER_PARAMS, SCRATCH_ACTS
from ..opspec import ACCUMULATE, OUTPUT, Arg
from . import secret as grade_secret
from .cases import CaseSet, GradedCase

_DIMS = {1: ("i",), 2: ("r", "c"), 3: ("b", "t", "c"), 4: ("b", "h", "t", "t2")}


def param_shapes(C: int) -> dict:
    return {
        "ln1w": (C,),
        "ln1b": (C,),
        "qkvw": (3 * C, C),
        "qkvb": (3 * C,),
        "attprojw": (C, C),
        "attprojb": (C,),
        "ln2w": (C,),
        "ln2b": (C,),
        "fcw": (4 * C, C),
        "fcb": (4 * C,),
        "fcprojw": (C, 4 * C),
        "fcprojb": (C,),
    }


def act_shapes(B: int, T: int, C: int, NH: int) -> dict:
    btc, bt = (B, T, C), (B, T)
    return {
        "ln1": btc,
        "ln1_mean": bt,
        "ln1_rstd": bt,
        "qkv": (B, T, 3 * C),
        "preatt": (B, NH, T, T),
        "att": (B, NH, T, T),
        "atty": btc,
        "attproj": btc,
        "residual2": btc,
        "ln2": btc,
        "ln2_mean": bt,
        "ln2_rstd": bt,
        "fch": (B, T, 4 * C),
        "fch_gelu": (B, T, 4 * C),
        "fcproj": btc,
        "residual3": btc,
    }


def grad_shapes(B: int, T: int, C: int, NH: int) -> dict:
    return {n: (B, NH, T, T) if k is None else (B, T, k * C) for n, k in BLOCK_GRADS.items()}


# ---------------------------------------------------------------------------------------------- the reference
def reference_block_forward(ops, x, p, a, B, T, C, NH):
    """llm.c's block forward (``GPT2._layer_forward``), on any ops namespace."""
    N = B * T * C
    ops.layernorm_forward(a["ln1"], a["ln1_mean"], a["ln1_rstd"], x, p["ln1w"], p["ln1b"], B, T, C)
    ops.matmul_forward(a["qkv"], a["ln1"], p["qkvw"], p["qkvb"], B, T, C, 3 * C)
    ops.attention_forward(a["atty"], a["preatt"], a["att"], a["qkv"], B, T, C, NH)
    ops.matmul_forward(a["attproj"], a["atty"], p["attprojw"], p["attprojb"], B, T, C, C)
    ops.residual_forward(a["residual2"], x, a["attproj"], N)
    ops.layernorm_forward(a["ln2"], a["ln2_mean"], a["ln2_rstd"], a["residual2"], p["ln2w"], p["ln2b"], B, T, C)
    ops.matmul_forward(a["fch"], a["ln2"], p["fcw"], p["fcb"], B, T, C, 4 * C)
    ops.gelu_forward(a["fch_gelu"], a["fch"], 4 * N)
    ops.matmul_forward(a["fcproj"], a["fch_gelu"], p["fcprojw"], p["fcprojb"], B, T, 4 * C, C)
    ops.residual_forward(a["residual3"], a["residual2"], a["fcproj"], N)


def reference_block_backward(ops, dx, dy, x, p, g, a, d, B, T, C, NH):
    """llm.c's block backward (``GPT2._layer_backward``), on any ops namespace; ``d`` zeroed by the caller."""
    N = B * T * C
    ops.residual_backward(d["dresidual2"], d["dfcproj"], dy, N)
    ops.matmul_backward(
        d["dfch_gelu"], g["fcprojw"], g["fcprojb"], d["dfcproj"], a["fch_gelu"], p["fcprojw"], B, T, 4 * C, C
    )
    ops.gelu_backward(d["dfch"], a["fch"], d["dfch_gelu"], 4 * N)
    ops.matmul_backward(d["dln2"], g["fcw"], g["fcb"], d["dfch"], a["ln2"], p["fcw"], B, T, C, 4 * C)
    ops.layernorm_backward(
        d["dresidual2"],
        g["ln2w"],
        g["ln2b"],
        d["dln2"],
        a["residual2"],
        p["ln2w"],
        a["ln2_mean"],
        a["ln2_rstd"],
        B,
        T,
        C,
    )
    ops.residual_backward(dx, d["dattproj"], d["dresidual2"], N)
    ops.matmul_backward(d["datty"], g["attprojw"], g["attprojb"], d["dattproj"], a["atty"], p["attprojw"], B, T, C, C)
    ops.attention_backward(d["dqkv"], d["dpreatt"], d["datt"], d["datty"], a["qkv"], a["att"], B, T, C, NH)
    ops.matmul_backward(d["dln1"], g["qkvw"], g["qkvb"], d["dqkv"], a["ln1"], p["qkvw"], B, T, C, 3 * C)
    ops.layernorm_backward(dx, g["ln1w"], g["ln1b"], d["dln1"], x, p["ln1w"], a["ln1_mean"], a["ln1_rstd"], B, T, C)


# ---------------------------------------------------------------------------------------------- the cases
def _sizes(rng) -> dict:
    NH = int(rng.integers(1, 4))
    return {"B": int(rng.integers(1, 4)), "T": int(rng.integers(2, 10)), "C": NH * int(rng.integers(2, 6)), "NH": NH}


def _params(rng, C: int) -> dict:
    """Random parameters, scaled as check_model's: layer-norm weights near 1, biases near 0, matrices of a size
    that keeps activations of order 1 and attention far from uniform."""
    out = {}
    for name, shape in param_shapes(C).items():
        z = rng.standard_normal(shape)
        scale = 0.1 if name.endswith("b") else 0.5 if name == "qkvw" else 0.3
        out[name] = 1.0 + 0.2 * z if name in ("ln1w", "ln2w") else scale * z
    return out


def _tensor(key: str, role: str, initial, expected) -> Tensor:
    return Tensor(
        Arg(key, role),
        initial,
        np.asarray(expected, dtype=np.float64),
        dims=_DIMS.get(np.ndim(initial), tuple(f"i{k}" for k in range(np.ndim(initial)))),
    )


def _forward(rng, sizes: dict, label: str) -> GradedCase:
    from .. import reference

    B, T, C, NH = (sizes[k] for k in ("B", "T", "C", "NH"))
    x = rng.standard_normal((B, T, C))
    p = _params(rng, C)
    acts = {n: np.full(s, np.nan) for n, s in act_shapes(B, T, C, NH).items()}
    want = {n: np.zeros(s) for n, s in act_shapes(B, T, C, NH).items()}
    reference_block_forward(reference, x.copy(), {k: v.copy() for k, v in p.items()}, want, B, T, C, NH)
    arrays = {"x": x, **{f"p.{k}": v for k, v in p.items()}, **{f"a.{k}": v for k, v in acts.items()}}
    args = [
        {"ops": True},
        {"array": "x"},
        {"dict": {k: f"p.{k}" for k in p}},
        {"dict": {k: f"a.{k}" for k in acts}},
        {"int": B},
        {"int": T},
        {"int": C},
        {"int": NH},
    ]
    checked = [(f"a.{n}", _tensor(f"a.{n}", OUTPUT, acts[n], want[n])) for n in BLOCK_ACTS if n not in SCRATCH_ACTS]
    inputs = ["x"] + [f"p.{k}" for k in p]
    return GradedCase(label, args, arrays, checked, inputs, EXACT, fname="block_forward", sizes=dict(sizes))


def _backward(rng, sizes: dict, label: str) -> GradedCase:
    from .. import reference

    B, T, C, NH = (sizes[k] for k in ("B", "T", "C", "NH"))
    x = rng.standard_normal((B, T, C))
    p = _params(rng, C)
    acts = {n: np.zeros(s) for n, s in act_shapes(B, T, C, NH).items()}
    reference_block_forward(reference, x, p, acts, B, T, C, NH)
    dy = rng.standard_normal((B, T, C)) * 0.1
    g0 = {k: rng.standard_normal(v.shape) * 0.1 for k, v in p.items()}  # accumulate: pre-filled
    dx0 = np.zeros((B, T, C))
    d0 = {n: np.zeros(s) for n, s in grad_shapes(B, T, C, NH).items()}
    g, dx = {k: v.copy() for k, v in g0.items()}, dx0.copy()
    reference_block_backward(
        reference,
        dx,
        dy.copy(),
        x.copy(),
        {k: v.copy() for k, v in p.items()},
        g,
        {k: v.copy() for k, v in acts.items()},
        {k: v.copy() for k, v in d0.items()},
        B,
        T,
        C,
        NH,
    )
    arrays = {
        "dx": dx0,
        "dy": dy,
        "x": x,
        **{f"p.{k}": v for k, v in p.items()},
        **{f"g.{k}": v for k, v in g0.items()},
        **{f"a.{k}": v for k, v in acts.items()},
        **{f"d.{k}": v for k, v in d0.items()},
    }
    args = [
        {"ops": True},
        {"array": "dx"},
        {"array": "dy"},
        {"array": "x"},
        {"dict": {k: f"p.{k}" for k in p}},
        {"dict": {k: f"g.{k}" for k in g0}},
        {"dict": {k: f"a.{k}" for k in acts}},
        {"dict": {k: f"d.{k}" for k in d0}},
        {"int": B},
        {"int": T},
        {"int": C},
        {"int": NH},
    ]
    checked = [("dx", _tensor("dx", ACCUMULATE, dx0, dx))]
    checked += [(f"g.{k}", _tensor(f"g.{k}", ACCUMULATE, g0[k], g[k])) for k in LAYER_PARAMS[::-1]]
    inputs = ["dy", "x"] + [f"p.{k}" for k in p] + [f"a.{k}" for k in acts]
    return GradedCase(label, args, arrays, checked, inputs, EXACT, fname="block_backward", sizes=dict(sizes))


def block_cases(direction: str, seed: int) -> CaseSet:
    make = _forward if direction == "forward" else _backward
    fname = f"block_{direction}"

    def case(purpose: str, i: int, sizes=None):
        rng = grade_secret.rng_for(seed, fname, purpose, i)
        sizes = sizes or _sizes(rng)
        label = ", ".join(f"{k}={v}" for k, v in sizes.items())
        return make(rng, sizes, label)

    graded = [case("cases", i) for i in range(3)]
    sizes = _sizes(grade_secret.rng_for(seed, fname, "provenance sizes"))
    return CaseSet(graded, case("provenance", 0, sizes), case("replay", 0, sizes))
