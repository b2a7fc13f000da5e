"""A learner's names for CuPy, seen as NumPy while their function runs on the CPU backend.

On a GPU the notebook binds ``xp = runtime.xp()`` (or ``import cupy as cp``) to CuPy. The checks still call the
learner's function on the CPU backend (the pre-flight under two thread orders, the performance check's memory
counters) and ``llmc grade`` records a CPU run: there a scratch buffer made with ``xp.zeros`` must be a NumPy
array, as the same notebook would make on a CPU, or the launch mixes CuPy and NumPy arrays.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np


@contextlib.contextmanager
def array_module_for(fn, backend: str):
    """While a call of ``fn`` runs on ``backend``: with ``"cpu"``, every global of ``fn``'s module bound to CuPy
    is NumPy, and is CuPy again afterwards (unless the call rebound it); with ``"cuda"``, nothing changes."""
    names = getattr(fn, "__globals__", None)
    cupy = sys.modules.get("cupy")
    swapped = [k for k, v in names.items() if v is cupy] if backend == "cpu" and cupy and names is not None else []
    for k in swapped:
        names[k] = np
    try:
        yield
    finally:
        for k in swapped:
            if names.get(k) is np:
                names[k] = cupy
