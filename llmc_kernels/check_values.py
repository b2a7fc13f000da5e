"""The values a check feeds a function: every array an op names, drawn per case kind, and the arrays a
backward takes from a forward (``mean``/``rstd``, ``att``, ``probs``), computed by the float64 reference.

Kinds (see :mod:`.check_cases`): ordinary random values; ``large`` (softmax logits around 300 +- 100,
attention q/k of scale 10, layernorm rows of scale 1e3, GELU inputs of scale 30, elementwise inputs x1e3);
``nearconst`` (layernorm rows with variance ~1e-8, one exactly constant). Padded logits (columns >= V) get
junk that must not be read. AdamW's params, grads, m, v have the sizes seen in GPT-2 training.
"""
from __future__ import annotations

import math

import numpy as np

from . import opspec
from .opspec import OUTPUT, SIZE


def rms(a: np.ndarray, mask: np.ndarray | None = None) -> float:
    x = np.asarray(a, dtype=np.float64)
    if mask is not None:
        x = x[mask]
    x = x[np.isfinite(x)]
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


class Pool:
    """Every array the op's functions name, drawn once per case (float32/int32), plus the arrays a backward
    takes from a forward (``Arg.source``: mean/rstd, att, probs), computed by the reference and rounded."""

    def __init__(self, op: str, sizes: dict, kind: str, rng: np.random.Generator):
        self.op, self.sizes, self.kind, self.rng = op, sizes, kind, rng
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, arg: opspec.Arg) -> np.ndarray:
        if arg.name not in self.arrays:
            if arg.source:
                self.arrays[arg.name] = self._from_source(arg.source)
            else:
                self.arrays[arg.name] = self._draw(arg)
        return self.arrays[arg.name]

    def forward64(self, fname: str, override: dict | None = None) -> dict:
        """Run the reference ``fname`` in float64 on this pool's inputs (``override``: name -> float64 array,
        e.g. a perturbed input); returns its outputs by name. Sources are recomputed from the overridden
        inputs, so a finite difference goes through them (logits -> probs -> losses)."""
        from . import reference
        _, fn = opspec.function(fname)
        override = dict(override or {})
        args, outs = [], {}
        for a in fn.args:
            if a.role == SIZE:
                args.append(self.sizes[a.name])
            elif a.role == OUTPUT:
                buf = np.zeros(opspec.shape(a, self.sizes))
                outs[a.name] = buf
                args.append(buf)
            elif a.name in override:
                args.append(override[a.name])
            elif a.source:
                src_fn, src_arg = a.source.split(".")
                args.append(self.forward64(src_fn, override)[src_arg])
            else:
                x = self.get(a)
                args.append(x.astype(np.float64) if x.dtype == np.float32 else x)
        getattr(reference, fname)(*args)
        return outs

    def _from_source(self, source: str) -> np.ndarray:
        fname, name = source.split(".")
        return self.forward64(fname)[name].astype(np.float32)

    def _draw(self, arg: opspec.Arg) -> np.ndarray:
        shape = opspec.shape(arg, self.sizes)
        if arg.dtype == "int32":
            return self._ids(arg, shape)
        x = _VALUES.get((self.op, arg.name), _randn)(self, shape)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _ids(self, arg, shape) -> np.ndarray:
        V = self.sizes["V"]
        ids = self.rng.integers(0, V, size=shape)
        if self.op == "crossentropy" and self.kind == "large":
            ids = self._reachable_targets(ids)
        return ids.astype(np.int32)

    def _reachable_targets(self, ids):
        """With peaked (large) logits, keep targets whose float32 probability is comfortably > 0."""
        logits = self.get(opspec.OPS["softmax"].forward.arg("logits")).astype(np.float64)
        V = self.sizes["V"]
        z = logits[..., :V] - logits[..., :V].max(axis=-1, keepdims=True)
        ok = z > -60.0
        for idx in np.ndindex(ids.shape):
            if not ok[idx][ids[idx]]:
                ids[idx] = self.rng.choice(np.flatnonzero(ok[idx]))
        return ids


def _randn(pool, shape, scale=1.0):
    x = pool.rng.standard_normal(shape) * scale
    return x * (1e3 if pool.kind == "large" else 1.0)


def _plain(scale=1.0, offset=0.0):
    return lambda pool, shape: pool.rng.standard_normal(shape) * scale + offset


def _layernorm_inp(pool, shape):
    rng = pool.rng
    rows = shape[:-1]
    sigma = rng.uniform(0.5, 2.0, rows + (1,))
    loc = rng.uniform(-1.0, 1.0, rows + (1,))
    x = rng.standard_normal(shape) * sigma + loc
    if pool.kind == "large":
        x = x * 1e3 + 1e3
    elif pool.kind == "nearconst":
        flat = x.reshape(-1, shape[-1])
        # every other row: variance ~1e-8, far below eps = 1e-5, and one exactly constant row (variance 0).
        # Offsets stay small so one-pass variance (E[x^2] - mean^2) is still accurate enough in float32.
        near = rng.uniform(-0.01, 0.01, (flat.shape[0], 1)) + 1e-4 * rng.standard_normal(flat.shape)
        flat[::2] = near[::2]
        flat[0] = 0.0075
        x = flat.reshape(shape)
    return x


def _attention_inp(pool, shape):
    x = pool.rng.standard_normal(shape)
    if pool.kind == "large":               # q and k of scale 10: scores q.k/sqrt(hs) of order 100 (exp overflows)
        C = pool.sizes["C"]
        x[..., :2 * C] *= 10.0
    return x


def _logits(pool, shape):
    V, rng = pool.sizes["V"], pool.rng
    if pool.kind == "large":
        x = 300.0 + 100.0 * rng.standard_normal(shape) if pool.op == "softmax" else 10.0 * rng.standard_normal(shape)
    else:
        x = 2.0 * rng.standard_normal(shape)
    x[..., V:] = 3.0 + 2.0 * rng.standard_normal(x[..., V:].shape)   # padding: must not be read
    return x


def _dlosses(pool, shape):
    B, T = pool.sizes["B"], pool.sizes["T"]
    return pool.rng.uniform(0.5, 1.5, shape) / (B * T)


def _adamw(kind_name):
    def draw(pool, shape):
        rng = pool.rng
        if kind_name == "params":
            x = rng.standard_normal(shape) * 0.05
            x[::7] = rng.standard_normal(x[::7].shape)        # a few of order 1 (layernorm weights)
            return x
        if kind_name == "grads":
            return rng.standard_normal(shape) * 0.01 * np.exp(rng.uniform(-2, 2, shape))
        if kind_name == "m":
            return rng.standard_normal(shape) * 0.005
        return (rng.standard_normal(shape) * 0.01) ** 2 + 1e-6 * rng.uniform(0, 1, shape)   # v >= 0
    return draw


def _gelu(pool, shape):
    return pool.rng.standard_normal(shape) * (30.0 if pool.kind == "large" else 2.0)


_VALUES = {
    ("layernorm", "inp"): _layernorm_inp,
    ("layernorm", "weight"): _plain(0.5, 1.0), ("layernorm", "bias"): _plain(0.5),
    ("layernorm", "dout"): _plain(),
    ("matmul", "inp"): lambda p, s: _randn(p, s, 1.0) / (10.0 if p.kind == "large" else 1.0),
    ("matmul", "weight"): lambda p, s: p.rng.standard_normal(s) / math.sqrt(p.sizes["C"]),
    ("attention", "inp"): _attention_inp, ("attention", "dout"): _plain(),
    ("gelu", "inp"): _gelu, ("gelu", "dout"): _plain(),
    ("softmax", "logits"): _logits, ("crossentropy", "logits"): _logits,
    ("crossentropy", "dlosses"): _dlosses,
    ("encoder", "dout"): _plain(),
    ("matmul", "dout"): _plain(), ("residual", "dout"): _plain(),
    ("adamw", "params"): _adamw("params"), ("adamw", "grads"): _adamw("grads"),
    ("adamw", "m"): _adamw("m"), ("adamw", "v"): _adamw("v"),
}
