"""Secret cases for ``llmc grade``: a fresh seed per grading run, and sizes drawn from ranges per op.

The learner-facing checks use fixed sizes and a default seed, so that a notebook's output is the same on every
run. A grader cannot: a function could recognise those inputs and replay answers computed in advance. So every
grading run draws a secret seed (:func:`new_seed`, from ``os.urandom``), and from it, per exercise, the sizes of
its cases (:func:`secret_specs`: the same kinds of case as the check's, at awkward sizes drawn from ranges that
keep the CPU backend fast) and their values (:func:`llmc_kernels.check.cases.build`). ``llmc grade --seed S``
reproduces a run. The seed never reaches a learner's process: only the arrays built from it do.

Three independent draws serve each exercise (:func:`derive`): the cases the learner's function is called with,
the case whose kernel launches are recorded, and the fresh inputs those launches are replayed on.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ..check.cases import CaseSpec, complete_sizes

SEED_BITS = 63


def new_seed() -> int:
    """A fresh secret seed (63 bits, so that it prints as a plain non-negative int)."""
    return int.from_bytes(os.urandom(8), "little") & ((1 << SEED_BITS) - 1)


def derive(seed: int, *labels) -> int:
    """A seed for one purpose (``derive(seed, "gelu_forward", "replay")``), independent of the others."""
    text = "\0".join([str(int(seed))] + [str(x) for x in labels]).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & ((1 << SEED_BITS) - 1)


def rng_for(seed: int, *labels) -> np.random.Generator:
    return np.random.default_rng(derive(seed, *labels))


def awkward(rng: np.random.Generator, lo: int, hi: int) -> int:
    """An int in [lo, hi] that is no multiple of 4 (so no multiple of 32 or 128 either) when the range has
    one: a kernel whose bounds check or float4 tail is wrong then shows."""
    for _ in range(64):
        n = int(rng.integers(lo, hi + 1))
        if n % 4 or hi - lo < 4:
            return n
    return n


# Per op, the kinds of case in the check's order (an ordinary awkward case first, a tiny one, the special inputs,
# a bigger one), each a function of an rng giving its sizes (and AdamW's hyperparameters). The ranges bracket the
# check's own default sizes, so that grading costs about what a check costs on the CPU backend.
def _elementwise(r, n_lo=700, n_hi=2500):
    return {"N": awkward(r, n_lo, n_hi)}


def _encoder(r, b=(1, 3), t=(20, 40), c=(40, 90), v=(5, 30)):
    T = awkward(r, *t)
    return {
        "B": int(r.integers(b[0], b[1] + 1)),
        "T": T,
        "C": awkward(r, *c),
        "V": int(r.integers(v[0], v[1] + 1)),
        "maxT": T + int(r.integers(0, 11)),
    }


def _btc(r, b=(1, 3), t=(20, 40), c=(40, 90)):
    return {"B": int(r.integers(b[0], b[1] + 1)), "T": awkward(r, *t), "C": awkward(r, *c)}


def _matmul(r, b=(1, 3), t=(20, 40), c=(40, 90), oc=(30, 60)):
    return {**_btc(r, b, t, c), "OC": awkward(r, *oc)}


def _attention(r, b=(1, 2), t=(20, 40), nh=(2, 4), hs=(5, 14)):
    NH = int(r.integers(nh[0], nh[1] + 1))
    return {
        "B": int(r.integers(b[0], b[1] + 1)),
        "T": awkward(r, *t),
        "C": NH * int(r.integers(hs[0], hs[1] + 1)),
        "NH": NH,
    }


def _vocab(r, b=(1, 3), t=(3, 6), v=(30, 60), pad=(0, 20)):
    V = awkward(r, *v)
    return {
        "B": int(r.integers(b[0], b[1] + 1)),
        "T": int(r.integers(t[0], t[1] + 1)),
        "V": V,
        "Vp": V + int(r.integers(pad[0], pad[1] + 1)),
    }


def _tiny(dims):
    return lambda r: {d: 1 for d in dims}


def _adamw(n, t, lr, **hyper):
    def draw(r):
        out = {
            "num_params": awkward(r, *n) if n[0] != n[1] else n[0],
            "t": int(r.integers(t[0], t[1] + 1)),
            "lr": float(np.float32(np.exp(r.uniform(np.log(lr[0]), np.log(lr[1]))))),
        }
        return {**out, **hyper}

    return draw


_E = ("N",)
SECRET_CASES: dict[str, list[tuple[str, object]]] = {
    "vector_add": [
        ("random", _elementwise),
        ("random", lambda r: {"N": int(r.integers(1, 4))}),
        ("random", lambda r: _elementwise(r, 3000, 5000)),
        ("large", lambda r: _elementwise(r, 200, 400)),
    ],
    "transpose": [
        ("random", lambda r: {"T": awkward(r, 20, 70), "C": awkward(r, 20, 90)}),
        ("random", lambda r: {"T": int(r.integers(1, 4)), "C": int(r.integers(1, 4))}),
        ("random", lambda r: {"T": awkward(r, 100, 160), "C": awkward(r, 60, 90)}),
        ("random", lambda r: {"T": awkward(r, 5, 15), "C": awkward(r, 150, 220)}),
        ("large", lambda r: {"T": awkward(r, 20, 40), "C": awkward(r, 3, 9)}),
    ],
    "encoder": [
        ("random", _encoder),
        ("random", _tiny(("B", "T", "C", "V", "maxT"))),
        ("random", lambda r: _encoder(r, (2, 3), (10, 25), (100, 150), (30, 60))),
        ("large", lambda r: _encoder(r, (1, 2), (3, 9), (20, 40), (2, 6))),
    ],
    "layernorm": [
        ("random", _btc),
        ("random", _tiny(("B", "T", "C"))),
        ("nearconst", lambda r: _btc(r, (1, 2), (4, 10), (100, 160))),
        ("large", lambda r: _btc(r, (1, 2), (3, 7), (50, 90))),
        ("random", lambda r: _btc(r, (2, 3), (10, 20), (150, 220))),
    ],
    "matmul": [
        ("random", _matmul),
        ("random", _tiny(("B", "T", "C", "OC"))),
        ("nobias", lambda r: _matmul(r, (2, 3), (10, 15), (80, 110), (100, 140))),
        ("large", lambda r: _matmul(r, (1, 2), (3, 7), (20, 40), (10, 25))),
    ],
    "attention": [
        ("random", _attention),
        ("random", _tiny(("B", "T", "C", "NH"))),
        ("random", lambda r: _attention(r, (1, 1), (3, 7), (2, 3), (1, 3))),
        ("large", lambda r: _attention(r, (1, 1), (25, 35), (1, 2), (12, 20))),
        ("random", lambda r: _attention(r, (2, 2), (12, 20), (2, 3), (6, 10))),
    ],
    "gelu": [
        ("random", _elementwise),
        ("random", lambda r: {"N": int(r.integers(1, 4))}),
        ("random", lambda r: _elementwise(r, 3000, 5000)),
        ("large", lambda r: _elementwise(r, 200, 400)),
    ],
    "residual": [
        ("random", _elementwise),
        ("random", lambda r: {"N": int(r.integers(1, 4))}),
        ("random", lambda r: _elementwise(r, 3000, 5000)),
        ("large", lambda r: _elementwise(r, 200, 400)),
    ],
    "softmax": [
        ("random", _vocab),
        ("random", _tiny(("B", "T", "V", "Vp"))),
        ("random", lambda r: _vocab(r, (1, 1), (2, 2), (5, 9), (0, 3))),
        ("large", lambda r: _vocab(r, (1, 2), (3, 5), (200, 300), (10, 50))),
        ("random", lambda r: _vocab(r, (2, 3), (5, 8), (700, 1000), (0, 40))),
    ],
    "crossentropy": [
        ("random", lambda r: _vocab(r, (1, 3), (20, 40), (80, 120), (0, 30))),
        ("random", _tiny(("B", "T", "V", "Vp"))),
        ("random", lambda r: _vocab(r, (2, 3), (4, 6), (40, 60), (0, 12))),
        ("large", lambda r: _vocab(r, (1, 2), (6, 10), (200, 300), (10, 50))),
    ],
    "fused_classifier": [
        ("random", lambda r: _vocab(r, (1, 3), (20, 40), (80, 120), (0, 30))),
        ("random", _tiny(("B", "T", "V", "Vp"))),
        ("random", lambda r: _vocab(r, (2, 3), (4, 6), (40, 60), (0, 12))),
        ("large", lambda r: _vocab(r, (1, 2), (6, 10), (200, 300), (10, 50))),
        ("random", lambda r: _vocab(r, (1, 2), (2, 4), (700, 1000), (0, 40))),
    ],
    "adamw": [
        ("random", _adamw((700, 1500), (1, 3), (5e-4, 2e-3))),
        ("random", _adamw((1, 3), (2, 5), (1e-4, 1e-3))),
        ("random", _adamw((3000, 5000), (5, 20), (1e-3, 1e-2), beta2=0.95, weight_decay=0.01)),
        ("random", _adamw((200, 400), (500, 1500), (3e-4, 1e-3))),
    ],
}

# the tiny case of a backward whose expected gradients are finite differences
SECRET_FD: dict[str, object] = {
    "encoder": lambda r: _encoder(r, (1, 2), (2, 3), (2, 5), (2, 4)),
    "layernorm": lambda r: _btc(r, (1, 1), (1, 2), (3, 6)),
    "matmul": lambda r: _matmul(r, (1, 1), (1, 2), (2, 4), (2, 5)),
    "attention": lambda r: _attention(r, (1, 1), (2, 3), (1, 2), (1, 2)),
    "gelu": lambda r: _elementwise(r, 5, 9),
    "residual": lambda r: _elementwise(r, 3, 7),
    "crossentropy": lambda r: _vocab(r, (1, 1), (1, 2), (3, 6), (0, 3)),
}


def _spec(op: str, kind: str, draw, rng) -> CaseSpec:
    for _ in range(100):  # no size a multiple of 32 (a block size), whatever the sampler drew
        drawn = dict(draw(rng))
        if not any(v > 4 and v % 32 == 0 for k, v in drawn.items() if isinstance(v, int) and k != "t"):
            break
    hyper = {
        k: drawn.pop(k)
        for k in list(drawn)
        if k not in ("N", "B", "T", "C", "V", "maxT", "OC", "NH", "Vp", "num_params")
    }
    return CaseSpec.of(complete_sizes(op, drawn), kind, **hyper)


def secret_specs(op: str, direction: str, seed: int) -> list[CaseSpec]:
    """The cases one grading run calls the learner's function with, drawn from ``seed``."""
    if op not in SECRET_CASES:
        raise KeyError(f"no secret cases for op {op!r}")
    rng = rng_for(seed, op, direction, "sizes")
    specs = [_spec(op, kind, draw, rng) for kind, draw in SECRET_CASES[op]]
    if direction == "backward" and op in SECRET_FD:
        specs.append(_spec(op, "fd", SECRET_FD[op], rng))
    return specs


def provenance_spec(op: str, direction: str, seed: int) -> CaseSpec:
    """The sizes of the case whose launches are recorded and replayed: an ordinary case of the op's first kind
    (awkward sizes), drawn apart from the graded cases."""
    kind, draw = SECRET_CASES[op][0]
    return _spec(op, kind, draw, rng_for(seed, op, direction, "provenance"))
