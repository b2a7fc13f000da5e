"""``llmc_kernels.profile(fn, *args)``: a GPU's memory counters for every kernel ``fn`` launches, on the CPU.

    prof = llmc_kernels.profile(layernorm_forward, out, mean, rstd, inp, weight, bias, B, T, C)
    prof.table()                   # per kernel: sectors per request, efficiency, bank conflicts, hints
    prof.kernels[0].global_load_sectors

``fn`` is any callable that launches kernels (a chapter's function, an ``ops`` function), called once with
``args`` (NumPy arrays) on the CPU backend while every launch records its accesses; :mod:`.counters` turns
them into Nsight Compute's counters. Deterministic: the same kernel and sizes give the same numbers on every
machine, which is what lets a grader without a GPU judge how a kernel uses memory.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np

from .counters import KernelCounters
from .report import TableText, render

__all__ = ["profile", "Profile", "KernelCounters", "recording", "op_arguments"]

_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("llmc_profile", default=None)


class Profile:
    """The launches of one profiled call, in order (``kernels``), and their table."""

    def __init__(self):
        self.kernels: list[KernelCounters] = []
        self.minimum: int = 0  # bytes of the arrays fn received: each must be read or written once

    def add(self, counters: KernelCounters) -> None:
        self.kernels.append(counters)

    def table(self) -> TableText:
        """Print the table (and return it as text)."""
        text = render(self.kernels, self.minimum or None)
        print(text, end="")
        return TableText(text)

    def __repr__(self) -> str:
        names = ", ".join(k.name for k in self.kernels) or "no kernel launched"
        return f"<Profile of {len(self.kernels)} launch(es): {names}; .table() for the counters>"


def recording() -> Profile | None:
    """The profile that CPU launches should record into now, if any (read by the CPU backend)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def _into(prof: Profile):
    token = _ACTIVE.set(prof)
    try:
        yield prof
    finally:
        _ACTIVE.reset(token)


def profile(fn, *args, **kwargs) -> Profile:
    """Call ``fn(*args, **kwargs)`` on the CPU backend and return the memory counters of its launches."""
    from .. import runtime

    if not callable(fn):
        raise TypeError(f"profile(fn, *args): fn must be a function that launches kernels, got {type(fn).__name__}")
    for i, a in enumerate(list(args) + list(kwargs.values())):
        if hasattr(a, "__cuda_array_interface__"):
            raise ValueError(
                f"profile(fn, *args): argument {i} is a GPU array; the counters are computed on the "
                "CPU backend, so pass NumPy arrays (cupy.asnumpy(x))"
            )
    prof = Profile()
    prof.minimum = sum(a.nbytes for a in list(args) + list(kwargs.values()) if isinstance(a, np.ndarray))
    with runtime.use_backend("cpu"), _into(prof):
        fn(*args, **kwargs)
    return prof


def op_arguments(fname: str, sizes: dict, seed: int = 0) -> list:
    """Arguments for the op function ``fname`` ('layernorm_forward') at ``sizes``, drawn as its check draws
    them: NumPy arrays (outputs poisoned with NaN, accumulators pre-filled) and the sizes, so that
    ``profile(fn, *op_arguments(...))`` profiles a chapter's function at sizes of the chapter's choosing."""
    from .. import opspec
    from ..check.cases import CaseSpec, Tensor, build, complete_sizes

    op = opspec.function(fname)[0].op
    case = build(fname, CaseSpec.of(complete_sizes(op, dict(sizes))), seed)
    return [
        (None if v.initial is None else np.array(v.initial, copy=True)) if isinstance(v, Tensor) else v
        for v in case.values
    ]
