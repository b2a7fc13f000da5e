"""The values a check feeds a function: every array an op names, drawn from the distribution its opspec row
names (``OpSpec.values``, :mod:`.draw`), and the arrays a backward takes from a forward
(``mean``/``rstd``, ``att``, ``probs``), computed by the float64 reference.
"""

from __future__ import annotations

import numpy as np

from .. import draw, opspec
from ..opspec import OUTPUT, SIZE


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
        from .. import reference

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
        """The op row's distribution for this argument (OpSpec.values), else draw.py's default."""
        default = draw.token_ids if arg.dtype == "int32" else draw.standard
        x = opspec.OPS[self.op].values.get(arg.name, default)(self, opspec.shape(arg, self.sizes))
        return np.ascontiguousarray(x, dtype=arg.dtype)
