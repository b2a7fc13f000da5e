"""Keep checks honest: while a check runs the learner's function, the package's own kernels, ``ops`` and
``reference`` refuse to run, so a learner cannot pass by calling the answer."""

from __future__ import annotations

import contextlib
import contextvars

from .errors import ForbiddenCall

_active: contextvars.ContextVar[str | None] = contextvars.ContextVar("llmc_learner_scope", default=None)


@contextlib.contextmanager
def learner_scope(what: str):
    """Mark the duration of a call into the learner's function ``what`` (e.g. 'layernorm_forward')."""
    token = _active.set(what)
    try:
        yield
    finally:
        _active.reset(token)


@contextlib.contextmanager
def package_scope():
    """Lift the refusal again, for the package's own work inside a learner scope (none expected today)."""
    token = _active.set(None)
    try:
        yield
    finally:
        _active.reset(token)


def refuse_if_learner(what: str) -> None:
    """Raise ForbiddenCall if a check is running the learner's function right now."""
    fn = _active.get()
    if fn is not None:
        raise ForbiddenCall(
            f"the check of {fn} refused a call to {what}: your function must launch a kernel "
            "compiled from your own CUDA string, not the package's kernels, ops or reference",
            kernel=fn,
        )
