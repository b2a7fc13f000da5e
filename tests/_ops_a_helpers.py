"""Shared pieces of the ops tests for encoder, layernorm, gelu, residual and adamw (tests/test_ops_*.py).

``backend`` fixture: every test taking it runs on the cpu backend (under the forward and the reversed thread
schedule, so a missing barrier cannot pass by luck) and, marked ``gpu``, on cuda (skipped without CuPy and a
device). ``Dev`` moves float64/int host arrays to that backend as float32/int32 and back.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from llmc_kernels import runtime

BACKEND_PARAMS = [
    pytest.param(("cpu", "forward"), id="cpu"),
    pytest.param(("cpu", "reverse"), id="cpu-reverse"),
    pytest.param(("cuda", None), id="cuda", marks=pytest.mark.gpu),
]


class Dev:
    """One backend: ``put`` host arrays there (floats as float32), ``get`` them back as float64 NumPy."""

    def __init__(self, name: str, schedule: str | None):
        self.name = name
        self.schedule = schedule
        if name == "cuda":
            self.xp = pytest.importorskip("cupy")
            if not runtime.gpu_available():
                pytest.skip(f"no usable GPU: {runtime.gpu_status()[1]}")
        else:
            self.xp = np

    def put(self, a):
        a = np.asarray(a)
        a = a.astype(np.int32) if a.dtype.kind in "iu" else a.astype(np.float32)
        return self.xp.asarray(a) if self.xp is not np else a.copy()

    def get(self, a) -> np.ndarray:
        a = a.get() if hasattr(a, "get") and self.xp is not np else a
        return np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)

    def run(self):
        """Context for the launches: the cpu backend's thread schedule."""
        if self.name == "cpu":
            return runtime.launch_options(schedule=self.schedule)
        return contextlib.nullcontext()

    def sync(self):
        if self.xp is not np:
            self.xp.cuda.Device().synchronize()


@pytest.fixture(params=BACKEND_PARAMS)
def dev(request) -> Dev:
    return Dev(*request.param)


def f32(a) -> np.ndarray:
    """The float64 array the float32 kernel really sees (inputs rounded once), for the reference."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def assert_close(name: str, got, want, rtol: float, atol: float) -> None:
    """|got - want| <= atol + rtol * |want| everywhere, else a message with the worst element."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    err = np.abs(got - want)
    bad = ~(err <= atol + rtol * np.abs(want))  # NaN counts as bad
    if bad.any():
        first = np.unravel_index(np.argmax(bad), bad.shape)
        worst = np.unravel_index(np.nanargmax(np.where(np.isnan(err), np.inf, err)), err.shape)
        raise AssertionError(
            f"{name}: {int(bad.sum())} of {bad.size} elements off (rtol {rtol}, atol {atol}); first at {first}: "
            f"got {got[first]!r}, want {want[first]!r}; worst at {worst}: got {got[worst]!r}, want {want[worst]!r}"
        )


class FakeCupyArray:
    """Looks like a CuPy array to the wrappers' backend check (its type lives in module 'cupy')."""

    __module__ = "cupy._core.core"

    def __init__(self, like: np.ndarray):
        self.shape, self.dtype, self.size, self.flags = like.shape, like.dtype, like.size, like.flags


class KernelSpy:
    """Records which kernels of ``kernels/*.cu`` the ops launch (monkeypatches ops._loader, which they all use)."""

    def __init__(self, monkeypatch):
        from llmc_kernels.ops import _loader

        self.names: list[str] = []
        real = _loader.kernel

        def spy(filename, name, *a, **k):
            self.names.append(name)
            return real(filename, name, *a, **k)

        monkeypatch.setattr(_loader, "kernel", spy)
