"""Argument validation for the ops wrappers: a ValueError that says what was expected and what came."""
from __future__ import annotations

import numpy as np

from .._honesty import refuse_if_learner


def _module_of(arr) -> str:
    return type(arr).__module__.split(".")[0]


def expect(fn: str, name: str, arr, dims: str, sizes: dict, dtype="float32", optional: bool = False) -> None:
    """Check that ``arr`` is a C-contiguous array of ``dtype`` with shape ``dims`` (e.g. "B,T,C") given
    ``sizes`` ({"B": 4, ...}); raise ValueError naming ``fn`` and ``name`` otherwise."""
    if arr is None:
        if optional:
            return
        raise ValueError(f"{fn}: '{name}' is required (a {dtype} array of shape ({dims}))")
    names = [d.strip() for d in dims.split(",") if d.strip()]
    shape = tuple(int(sizes[d]) if d in sizes else int(d) for d in names)
    want = f"a C-contiguous {np.dtype(dtype).name} array of shape ({', '.join(names)}) = {shape}"
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype") or _module_of(arr) not in ("numpy", "cupy"):
        raise ValueError(f"{fn}: '{name}' must be {want}; got {type(arr).__name__}")
    problems = []
    if arr.dtype != np.dtype(dtype):
        problems.append(f"dtype {arr.dtype}")
    if tuple(arr.shape) != shape:
        problems.append(f"shape {tuple(arr.shape)}")
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
