"""The checks on a GPU: the same PASS line, a pre-flight on the CPU backend first (where an out-of-bounds access
is named instead of killing the CUDA context), then every case with launch_options(check=True). Skipped
without a usable GPU (and without the CPU backend, which the pre-flight needs)."""

from __future__ import annotations

import pytest

from llmc_kernels import check
from llmc_kernels.errors import CheckFailed, KernelOutOfBounds

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def cuda_backend(monkeypatch):
    pytest.importorskip("cupy")
    pytest.importorskip("llmc_kernels.runtime.cpu", reason="the pre-flight needs the CPU backend")
    monkeypatch.setenv("LLMC_BACKEND", "cuda")


def _mutants():
    import mutants

    return mutants


def test_correct_kernels_pass_with_the_same_line(capsys):
    for c in _mutants().ALL_CORRECT:
        result = getattr(check, c.direction)(c.op, c.make())
        name = check.function_name(c.op, c.direction)
        assert capsys.readouterr().out == f"PASS {name}\n"
        text = str(result.report())
        assert "on the cuda backend (launch_options(check=True))" in text
        assert "pre-flight:" in text and "on the cpu backend under thread orders forward, reverse: passed" in text


def test_out_of_bounds_is_caught_in_the_cpu_preflight(capsys):
    oob = next(m for m in _mutants().ALL_MUTANTS if m.name == "vector_add: no bounds check")
    with pytest.raises(CheckFailed) as info:
        check.forward("vector_add", oob.make())
    assert isinstance(info.value.__cause__, KernelOutOfBounds)
    assert "pre-flight on the cpu backend" in str(info.value)


def test_mutants_are_rejected_on_the_gpu(capsys):
    for m in _mutants().ALL_MUTANTS:
        with pytest.raises(CheckFailed):
            getattr(check, m.direction)(m.op, m.make())
