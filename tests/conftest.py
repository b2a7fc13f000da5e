"""Test-wide set-up.

- `@pytest.mark.gpu` tests run only where a CUDA GPU is usable: CuPy imports and sees at least one device.
  That is found out once, on the first such test, and without importing CuPy where it is not installed.
  `pytest -m gpu` on a GPU machine runs just them.
- The quick tier, `pytest -m "not slow"`: the solution notebooks that nbval collects from `solutions/` are
  marked `slow` here (each runs a whole chapter); tests that take more than a few seconds carry the marker
  themselves.
- Offline data for developers: when `LLMC_DATA_DIR` or `TIKTOKEN_CACHE_DIR` is unset and a `shared/` folder
  sits beside the checkout (`../shared`), they point at its copies. Users never have that folder, and
  nothing outside `tests/` and `.ci/` names it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

for _variable, _folder in (("LLMC_DATA_DIR", SHARED / "data"), ("TIKTOKEN_CACHE_DIR", SHARED / "tiktoken")):
    if not os.environ.get(_variable) and _folder.is_dir():
        os.environ[_variable] = str(_folder)


@functools.cache
def gpu_unusable_reason() -> str | None:
    """None when CuPy can reach a CUDA device, else why not (asked once per session)."""
    if importlib.util.find_spec("cupy") is None:
        return "needs a CUDA GPU: CuPy is not installed"
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CuPy raises its own CUDARuntimeError, or ImportError for a broken install
        return f"needs a CUDA GPU: CuPy cannot reach one ({type(err).__name__}: {err})"
    if count < 1:
        return "needs a CUDA GPU: CuPy sees no device"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every cell nbval collects from a solution notebook belongs to the slow tier."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("gpu") is not None:
        reason = gpu_unusable_reason()
        if reason is not None:
            pytest.skip(reason)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder."""
    return ROOT
