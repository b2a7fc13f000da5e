"""Argument validation for the ops wrappers, derived from the signatures in ``llmc_kernels.opspec``: a
ValueError that names the function, the argument, what was expected and what came.

    def layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C):
        backend, dims = _validate.arguments("layernorm_forward", locals())

checks, in this order: the call is not from inside a learner's check (``entry``); sizes and step counters
are positive ints; the op's constraints among them ("C % NH == 0", "Vp >= V"); every array on one backend;
dimensions that are not arguments read off the first array that has them (the encoder's V and maxT); each
array's dtype, shape (or element count, for ``flat`` functions) and C-contiguity; the remaining
constraints; hyperparameters are real numbers. Launch limits (32-bit indexing) and value checks (token ids
in range) stay with each launcher.
"""

from __future__ import annotations

import re

import numpy as np

from .. import opspec
from .._honesty import refuse_if_learner


def _module_of(arr) -> str:
    return type(arr).__module__.split(".")[0]


def arguments(fn: str, given: dict, like: str | None = None) -> tuple[str, dict]:
    """Validate the arguments ``given`` (the wrapper's ``locals()``) of ``fn`` against the signature of
    ``like or fn``; returns (backend, every known dimension by name)."""
    entry(fn)
    sig, owner = opspec.signature(like or fn)
    positive(fn, **{a.name: given[a.name] for a in sig.args if a.role in (opspec.SIZE, opspec.STEP)})
    dims = {a.name: int(given[a.name]) for a in sig.args if a.role == opspec.SIZE}
    pending = _check_constraints(fn, owner, dims, {}, list(owner.constraints))
    arrays = {a.name: (a, given[a.name]) for a in sig.args if a.is_array}
    backend = same_backend(fn, **{name: arr for name, (_, arr) in arrays.items()})
    rows_of = _read_dims(owner, arrays, dims)
    for arg, arr in arrays.values():
        if sig.flat:
            if arr is not None or not arg.optional:
                expect_flat(fn, arg.name, arr, int(np.prod(opspec.shape(arg, dims))), dtype=arg.dtype)
        else:
            _expect(fn, arg, arr, dims)
    _check_constraints(fn, owner, dims, rows_of, pending)
    for a in sig.args:
        if a.role == opspec.HYPER:
            x = given[a.name]
            if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
                raise ValueError(f"{fn}: {a.name} must be a real number; got {x!r}")
    return backend, dims


def _read_dims(owner: opspec.OpSpec, arrays: dict, dims: dict) -> dict:
    """Dimensions that are no argument (the encoder's V, maxT): read off the first array that has them.
    Returns the name of that array per dimension (for messages)."""
    rows_of = {}
    for d in owner.dims:
        if d in dims:
            continue
        for name, (arg, arr) in arrays.items():
            if d in arg.shape and arr is not None:
                shape = getattr(arr, "shape", ())
                i = arg.shape.index(d)
                dims[d] = int(shape[i]) if len(shape) > i else -1
                rows_of[d] = name
                break
    return rows_of


def _check_constraints(fn: str, owner: opspec.OpSpec, dims: dict, rows_of: dict, rules: list) -> list:
    """Check the rules whose every name is known; returns the rules left for later."""
    left = []
    for rule in rules:
        if not set(re.findall(r"[A-Za-z_]\w*", rule)) <= set(dims):
            left.append(rule)
        elif not eval(rule, {}, dict(dims)):  # the registry's own strings, e.g. "C % NH == 0"
            text = owner.explain.get(rule, "{fn}: " + rule + " must hold")
            raise ValueError(text.format(fn=fn, rows_of=rows_of, **dims))
    return left


def _expect(fn: str, arg: opspec.Arg, arr, dims: dict) -> None:
    """``arr`` is a C-contiguous array of the Arg's dtype and shape (``"3*C"`` reads "3C" in messages)."""
    names = [d.replace("*", "") for d in arg.shape]
    if arr is None:
        if arg.optional:
            return
        raise ValueError(f"{fn}: '{arg.name}' is required (a {arg.dtype} array of shape ({', '.join(names)}))")
    shape = opspec.shape(arg, dims)
    want = f"a C-contiguous {np.dtype(arg.dtype).name} array of shape ({', '.join(names)}) = {shape}"
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype") or _module_of(arr) not in ("numpy", "cupy"):
        raise ValueError(f"{fn}: '{arg.name}' must be {want}; got {type(arr).__name__}")
    problems = []
    if arr.dtype != np.dtype(arg.dtype):
        problems.append(f"dtype {arr.dtype}")
    if tuple(arr.shape) != shape:
        problems.append(f"shape {tuple(arr.shape)}")
    if not arr.flags.c_contiguous:
        problems.append("a non-contiguous layout (use .copy() or xp.ascontiguousarray)")
    if problems:
        raise ValueError(f"{fn}: '{arg.name}' must be {want}; got {' and '.join(problems)}")


def expect_flat(fn: str, name: str, arr, n: int, dtype="float32") -> None:
    """An elementwise op's buffer: a C-contiguous ``dtype`` array of exactly ``n`` elements, any shape
    (the model passes [B,T,4C] activations with N = B*T*4C)."""
    want = f"a C-contiguous {np.dtype(dtype).name} array of N = {n} elements (any shape)"
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype") or _module_of(arr) not in ("numpy", "cupy"):
        raise ValueError(f"{fn}: '{name}' must be {want}; got {type(arr).__name__}")
    problems = []
    if arr.dtype != np.dtype(dtype):
        problems.append(f"dtype {arr.dtype}")
    if int(arr.size) != int(n):
        problems.append(f"{int(arr.size)} elements (shape {tuple(arr.shape)})")
    if not arr.flags.c_contiguous:
        problems.append("a non-contiguous layout (use .copy() or xp.ascontiguousarray)")
    if problems:
        raise ValueError(f"{fn}: '{name}' must be {want}; got {' and '.join(problems)}")


def same_backend(fn: str, **arrays) -> str:
    """All arrays must live on one backend (NumPy -> 'cpu', CuPy -> 'cuda'); returns it."""
    kinds = {name: _module_of(a) for name, a in arrays.items() if a is not None}
    found = set(kinds.values())
    if len(found) > 1:
        listing = ", ".join(f"{n}: {m}" for n, m in kinds.items())
        raise ValueError(f"{fn}: all arrays must be NumPy (cpu backend) or all CuPy (cuda backend); got {listing}")
    return "cuda" if found == {"cupy"} else "cpu"


def positive(fn: str, **sizes) -> None:
    """Sizes must be positive Python/NumPy integers."""
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{fn}: size {name} must be a positive integer; got {v!r}")


def entry(fn: str) -> None:
    """First line of every public op: refuse to run inside a learner's check."""
    refuse_if_learner(f"llmc_kernels.ops.{fn}")
