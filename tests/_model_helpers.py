"""Shared by tests/test_model_*, test_data_*, test_train_*: the shared data, the ops under test."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_TEXT = SHARED / "data" / "tinyshakespeare.txt"
SHARED_TIKTOKEN = SHARED / "tiktoken"


def need_shared_text() -> Path:
    if not SHARED_TEXT.exists():
        pytest.skip(f"the shared TinyShakespeare copy is not at {SHARED_TEXT}")
    return SHARED_TEXT


def use_shared_tiktoken(monkeypatch) -> None:
    """GPT-2's vocabulary offline: the shared tiktoken cache, unless the environment names one."""
    if not os.environ.get("TIKTOKEN_CACHE_DIR"):
        if not SHARED_TIKTOKEN.exists():
            pytest.skip("no tiktoken cache (TIKTOKEN_CACHE_DIR or ../shared/tiktoken)")
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(SHARED_TIKTOKEN))


def data_dir_with_text(tmp_path, monkeypatch) -> Path:
    """LLMC_DATA_DIR = a fresh folder holding (a link to) the shared TinyShakespeare, so token caches are
    written there and never into ../shared."""
    text = need_shared_text()
    use_shared_tiktoken(monkeypatch)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "tinyshakespeare.txt").symlink_to(text)
    monkeypatch.setenv("LLMC_DATA_DIR", str(folder))
    return folder


def ops_under_test():
    """The namespace the model and trainer tests run: the package's kernels, the model's default
    (on the active backend: the CPU backend in CI, CUDA where a GPU is usable)."""
    import llmc_kernels.ops as ops
    return ops


def host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
