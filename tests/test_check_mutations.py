"""The mutation suite: the checks accept naive but correct CUDA C kernels and reject deliberately wrong ones,
on the CPU backend, with the message a learner needs. The kernels are the suite's own (tests/mutants/), not
the package's. Needs the CPU backend (llmc_kernels.runtime.cpu) and a C++ compiler."""

from __future__ import annotations

import pytest

from llmc_kernels import check, runtime
from llmc_kernels.errors import CheckFailed, KernelCompileError, KernelOutOfBounds

pytest.importorskip("llmc_kernels.runtime.cpu", reason="the CPU backend is not installed")

import mutants  # noqa: E402  (after the skip: importing builds nothing, but keeps the reason clear)
from mutants._kit import mutate  # noqa: E402
from mutants.elementwise import GELU, gelu_forward  # noqa: E402


@pytest.fixture(autouse=True)
def cpu_backend(monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "cpu")


def _id(x):
    return x.name if hasattr(x, "name") else f"{x.op}-{x.direction}"


def test_suite_is_big_enough():
    assert len(mutants.ALL_MUTANTS) >= 25
    names = [m.name for m in mutants.ALL_MUTANTS]
    assert len(set(names)) == len(names)
    covered = {(c.op, c.direction) for c in mutants.ALL_CORRECT}
    assert {(m.op, m.direction) for m in mutants.ALL_MUTANTS} <= covered
    assert len(covered) == len(check.TOLERANCES)  # a correct kernel for every checked function


@pytest.mark.parametrize("correct", mutants.ALL_CORRECT, ids=_id)
def test_correct_kernel_passes(capsys, correct):
    result = getattr(check, correct.direction)(correct.op, correct.make())
    name = check.function_name(correct.op, correct.direction)
    assert capsys.readouterr().out == f"PASS {name}\n"
    assert repr(result) == f"PASS {name}"


@pytest.mark.parametrize("mutant", mutants.ALL_MUTANTS, ids=_id)
def test_mutant_is_rejected(capsys, mutant):
    with pytest.raises(CheckFailed) as info:
        getattr(check, mutant.direction)(mutant.op, mutant.make())
    msg = str(info.value)
    assert not isinstance(info.value.__cause__, KernelCompileError), msg  # rejected for being wrong
    printed = capsys.readouterr().out
    assert "PASS" not in printed and msg.strip() in printed
    for needle in mutant.says:
        assert needle in msg, f"{mutant.name}: expected {needle!r} in:\n{msg}"
    if not any("race" in s or "depends on the order" in s for s in mutant.says):
        assert "a race" not in msg, msg  # sums in another order (atomics) are no race


def test_out_of_bounds_is_named_by_the_cpu_backend(capsys):
    oob = next(m for m in mutants.ALL_MUTANTS if m.name == "vector_add: no bounds check")
    with pytest.raises(CheckFailed) as info:
        check.forward("vector_add", oob.make())
    assert isinstance(info.value.__cause__, KernelOutOfBounds)
    assert "out-of-bounds read: index 1000 of argument 1 'const float* a'" in str(info.value)


def test_compile_error_is_a_failed_check_with_the_compiler_message(capsys):
    broken = gelu_forward(mutate(GELU, ("out[i] = 0.5f * x * (1.0f + th);", "out[i] = 0.5f * x * (1.0f + th)")))
    with pytest.raises(CheckFailed) as info:
        check.forward("gelu", broken)
    assert isinstance(info.value.__cause__, KernelCompileError)
    assert "KernelCompileError" in str(info.value)


def test_same_result_on_every_run(capsys):
    fn = mutants.layernorm.layernorm_forward()
    rows = []
    for _ in range(2):
        text = str(check.forward("layernorm", fn).report())
        rows.append([line for line in text.splitlines() if "max abs err" in line])
    assert rows[0] == rows[1] and rows[0]
    assert capsys.readouterr().out == "PASS layernorm_forward\n" * 2


def test_report_collects_the_warnings_of_the_kernels_fn_launches(capsys):
    noisy = gelu_forward(mutate(GELU, ("float th = tanhf(u);", "float th = tanhf(u); int unused_variable = 3;")))
    result = check.forward("gelu", noisy)
    (kernel,) = [c.cell_contents for c in noisy.__closure__ if isinstance(c.cell_contents, runtime.RawKernel)]
    assert result.warnings == kernel.warnings
    text = str(result.report())
    for w in kernel.warnings:
        assert w in text
    assert capsys.readouterr().out == "PASS gelu_forward\n"  # warnings never reach the cell output
