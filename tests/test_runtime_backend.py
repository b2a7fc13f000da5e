"""Backend selection (LLMC_BACKEND, GPU probe, use_backend), xp() and launch_options()."""

import numpy as np
import pytest

from llmc_kernels import runtime
from llmc_kernels.runtime import BackendUnavailable


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(runtime, "gpu_status", lambda: (False, "CuPy is not installed"))
    monkeypatch.delenv("LLMC_BACKEND", raising=False)


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(runtime, "gpu_status", lambda: (True, "1 CUDA device"))
    monkeypatch.delenv("LLMC_BACKEND", raising=False)


def test_automatic_choice_follows_the_gpu(no_gpu, monkeypatch):
    assert runtime.backend() == "cpu"
    monkeypatch.setattr(runtime, "gpu_status", lambda: (True, "1 CUDA device"))
    assert runtime.backend() == "cuda"


def test_env_forces_cpu_even_with_a_gpu(fake_gpu, monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "cpu")
    assert runtime.backend() == "cpu"
    monkeypatch.setenv("LLMC_BACKEND", " CUDA ")
    assert runtime.backend() == "cuda"


def test_empty_env_means_automatic(no_gpu, monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "")
    assert runtime.backend() == "cpu"


def test_invalid_env_is_a_value_error(no_gpu, monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "gpu")
    with pytest.raises(ValueError, match=r"LLMC_BACKEND must be 'cuda' or 'cpu', got 'gpu'"):
        runtime.backend()


def test_env_cuda_without_gpu_is_a_clear_error(no_gpu, monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "cuda")
    with pytest.raises(BackendUnavailable) as info:
        runtime.backend()
    text = str(info.value)
    assert "LLMC_BACKEND=cuda" in text and "CuPy is not installed" in text and "llmc doctor" in text
    assert "LLMC_BACKEND=cpu" in text


def test_use_backend_overrides_and_restores(fake_gpu, monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "cuda")
    with runtime.use_backend("cpu") as name:
        assert name == "cpu" and runtime.backend() == "cpu"
        with runtime.use_backend("cuda"):
            assert runtime.backend() == "cuda"
        assert runtime.backend() == "cpu"
        with runtime.use_backend(None) as same:
            assert same == "cpu"
    assert runtime.backend() == "cuda"
    with pytest.raises(KeyError):
        with runtime.use_backend("cpu"):
            raise KeyError("boom")
    assert runtime.backend() == "cuda"


def test_use_backend_checks_its_argument(no_gpu):
    with pytest.raises(ValueError, match="use_backend"):
        with runtime.use_backend("metal"):
            pass
    with pytest.raises(BackendUnavailable, match="use_backend\\('cuda'\\)"):
        with runtime.use_backend("cuda"):
            pass


def test_xp_is_numpy_on_cpu(no_gpu):
    assert runtime.xp() is np
    with runtime.use_backend("cpu"):
        assert runtime.xp() is np


def test_real_gpu_probe_without_cupy():
    try:
        import cupy  # noqa: F401
    except ImportError:
        ok, reason = runtime.gpu_status()
        assert ok is False and "CuPy is not installed" in reason
        assert runtime.gpu_available() is False
    else:
        pytest.skip("CuPy is installed; the GPU tests cover the probe")


def test_launch_options_defaults_and_nesting(monkeypatch):
    monkeypatch.delenv("LLMC_CPU_TIMEOUT", raising=False)
    assert runtime.current_launch_options() == runtime.LaunchOptions("forward", 60.0, False)
    with runtime.launch_options(schedule="reverse") as outer:
        assert outer.schedule == "reverse" and outer.timeout == 60.0
        with runtime.launch_options(timeout=2, check=True) as inner:
            assert inner == runtime.LaunchOptions("reverse", 2.0, True)
        assert runtime.current_launch_options() == outer
    assert runtime.current_launch_options().schedule == "forward"


def test_launch_options_timeout_from_env(monkeypatch):
    monkeypatch.setenv("LLMC_CPU_TIMEOUT", "7.5")
    assert runtime.current_launch_options().timeout == 7.5
    with runtime.launch_options(timeout=1):
        assert runtime.current_launch_options().timeout == 1.0
    monkeypatch.setenv("LLMC_CPU_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="LLMC_CPU_TIMEOUT"):
        runtime.current_launch_options()


@pytest.mark.parametrize("kwargs", [{"schedule": "random"}, {"timeout": 0}, {"timeout": -1}, {"timeout": "5"}])
def test_launch_options_refuses_bad_values(kwargs):
    with pytest.raises(ValueError):
        with runtime.launch_options(**kwargs):
            pass
