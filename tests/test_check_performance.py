"""check.performance(op, fn): correctness first (check.forward's own check), then memory-counter targets.

On the CPU backend, with the chapters' own kernels: the solutions of chapter 02's, 03's and 07's optimisation
exercises pass; the chapters' earlier kernels (a block per row, 16x16 tiles, 07's three unfused kernels behind
the fused signature) and the naive ones are correct but miss targets, which fails with PerformanceFailed
(correct=True) and says which; a fast kernel with a wrong result fails the correctness part with a plain
CheckFailed. The numbers are deterministic. The time target needs a GPU (marked gpu).
"""

from __future__ import annotations

import contextlib
import io

import pytest
from _chapter_cells import load as load_nb
from _chapter_cells import mutate, run, source

from llmc_kernels import check
from llmc_kernels.check.performance import TARGETS, measure
from llmc_kernels.errors import CheckFailed


def _cells(chapter: str, *ids) -> dict:
    return run(chapter, ["imports", *ids])[0]


@pytest.fixture(scope="module")
def ln():
    text = source(load_nb("02_layernorm"), "memory-counters")
    naive = ("memory-counters", text[: text.index("from llmc_kernels import profile")])  # its definitions only
    return _cells("02_layernorm", "ex-layernorm_forward", naive, "ex-layernorm_forward_warp")


@pytest.fixture(scope="module")
def mm():
    return _cells("03_matmul", "naive-kernel", "ex-matmul_forward", "ex-matmul_forward_blocked")


@pytest.fixture(scope="module")
def fc():
    """Chapter 07: its three kernels, the fused solution and the unfused path behind the fused signature."""
    return _cells(
        "07_softmax_crossentropy",
        "ex-softmax_forward",
        "ex-crossentropy_forward",
        "ex-crossentropy_softmax_backward",
        "ex-fused_classifier",
        "unfused-fused_classifier",
    )


def _quiet(fn, *args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            return fn(*args), out.getvalue()
        except BaseException as e:
            e.printed = out.getvalue()
            raise


def test_the_solutions_pass(ln, mm, fc):
    for op, fn in (
        ("layernorm_forward", ln["layernorm_forward_warp"]),
        ("matmul_forward", mm["matmul_forward_blocked"]),
        ("fused_classifier", fc["fused_classifier"]),
    ):
        result, printed = _quiet(check.performance, op, fn)
        assert result.passed and repr(result) == f"PASS {op} performance"
        lines = printed.splitlines()
        assert lines[0] == f"PASS {op}"  # the correctness check's own line
        assert lines[1] == f"PASS {op} performance"
        assert all(line.strip().startswith("ok") for line in lines[3:]), printed
        assert len(lines) == 3 + len(TARGETS[op].targets)


@pytest.mark.parametrize(
    "chapter_fn, op, missed",
    [
        ("layernorm_forward_naive", "layernorm_forward", {"load_sectors", "store_sectors", "load_bytes_per_request"}),
        ("layernorm_forward", "layernorm_forward", {"load_bytes_per_request", "barriers_per_row"}),
        ("matmul_forward_naive_launch", "matmul_forward", {"load_sectors", "global_load_bytes_per_fma"}),
        ("matmul_forward", "matmul_forward", {"global_load_bytes_per_fma", "shared_loads_per_fma"}),
        # 07's three kernels: a probs buffer written and read back, the row read five times, three launches
        (
            "fused_classifier_unfused",
            "fused_classifier",
            {"global_store_bytes_per_logit", "global_load_bytes_per_logit", "unique_bytes"},
        ),
    ],
)
def test_correct_but_slow_kernels_fail_on_performance_only(ln, mm, fc, chapter_fn, op, missed):
    fn = {"layernorm_forward": ln, "matmul_forward": mm, "fused_classifier": fc}[op][chapter_fn]
    with pytest.raises(check.PerformanceFailed) as info:
        _quiet(check.performance, op, fn)
    e = info.value
    assert isinstance(e, CheckFailed) and e.correct
    assert {t.metric for t in e.targets if not t.ok} == missed
    printed = e.printed
    assert printed.splitlines()[0] == f"PASS {op}"  # correct ...
    assert f"FAIL {op} performance: your kernel is correct, but not fast yet" in printed  # ... but slow
    for t in e.targets:
        assert t.row() in printed


def test_a_fast_wrong_kernel_fails_on_correctness(ln):
    cells = [
        (
            "ex-layernorm_forward_warp",
            mutate(
                source(load_nb("02_layernorm"), "ex-layernorm_forward_warp"),
                "float m = warp_sum(sum) / C;",
                "float m = warp_sum(sum) / (C + 1);",
            ),
        )
    ]
    wrong = run("02_layernorm", ["imports", *cells])[0]["layernorm_forward_warp"]
    with pytest.raises(CheckFailed) as info:
        _quiet(check.performance, "layernorm_forward", wrong)
    assert not isinstance(info.value, check.PerformanceFailed)
    assert not getattr(info.value, "correct", False)
    assert "performance" not in info.value.printed


def test_a_wrong_fused_classifier_fails_on_correctness():
    """The gradient without the one-hot term: one read for the statistics and one for the gradient, as fast as
    the solution, and wrong."""
    chapter = "07_softmax_crossentropy"
    cell = mutate(
        source(load_nb(chapter), "ex-fused_classifier"),
        "(expf(x[i] - m) * inv - (i == y ? 1.0f : 0.0f)) * dloss",
        "expf(x[i] - m) * inv * dloss",
    )
    wrong = run(chapter, ["imports", ("ex-fused_classifier", cell)])[0]["fused_classifier"]
    with pytest.raises(CheckFailed) as info:
        _quiet(check.performance, "fused_classifier", wrong)
    assert not isinstance(info.value, check.PerformanceFailed)
    assert not getattr(info.value, "correct", False)
    assert info.value.printed.startswith("FAIL fused_classifier: ") and "performance" not in info.value.printed


def test_the_numbers_are_deterministic(ln, mm):
    for op, fn in (("layernorm_forward", ln["layernorm_forward_naive"]), ("matmul_forward", mm["matmul_forward"])):
        first, second = measure(op, fn), measure(op, fn)
        assert [(t.metric, t.measured) for t in first[1]] == [(t.metric, t.measured) for t in second[1]]


def test_the_solutions_measured(ln, mm):
    """The numbers the targets' comments quote."""
    got = {t.metric: round(t.measured, 3) for t in measure("layernorm_forward", ln["layernorm_forward_warp"])[1]}
    assert got == {
        "load_sectors": 1.0,
        "store_sectors": 1.0,
        "load_bytes_per_request": 400.0,
        "barriers_per_row": 0.0,
        "shared_load_conflicts": 1.0,
        "unique_bytes": 1.0,
    }
    got = {t.metric: round(t.measured, 3) for t in measure("matmul_forward", mm["matmul_forward_blocked"])[1]}
    assert got == {
        "load_sectors": 1.0,
        "store_sectors": 1.0,
        "global_load_bytes_per_fma": 0.16,
        "shared_loads_per_fma": 0.622,
        "shared_load_conflicts": 1.0,
        "unique_bytes": 1.0,
    }


def test_the_fused_classifier_measured(fc):
    """The numbers the fused_classifier targets' comments quote: the solution, then the unfused path."""
    got = {t.metric: round(t.measured, 2) for t in measure("fused_classifier", fc["fused_classifier"])[1]}
    assert got == {
        "load_sectors": 1.0,
        "store_sectors": 1.0,
        "global_store_bytes_per_logit": 1.0,
        "global_load_bytes_per_logit": 1.97,
        "unique_bytes": 1.0,
    }
    got = {t.metric: round(t.measured, 2) for t in measure("fused_classifier", fc["fused_classifier_unfused"])[1]}
    assert got == {
        "load_sectors": 1.0,
        "store_sectors": 1.0,
        "global_store_bytes_per_logit": 1.98,
        "global_load_bytes_per_logit": 4.9,
        "unique_bytes": 3.92,
    }


def test_unknown_op_and_bad_fn():
    with pytest.raises(ValueError, match="no performance targets"):
        check.performance("gelu_forward", print)
    with pytest.raises(TypeError):
        check.performance("layernorm_forward", 3)


@pytest.mark.gpu
def test_time_target_on_a_gpu(ln):
    from llmc_kernels import runtime

    if runtime.backend() != "cuda":
        pytest.skip("needs the cuda backend")
    result, printed = _quiet(check.performance, "layernorm_forward", ln["layernorm_forward_warp"])
    assert result.gpu.device and result.gpu.ms > 0 and result.gpu.baseline_ms > 0
    assert f"time on {result.gpu.device}" in printed
    assert result.gpu.ok, printed


# ------------------------------------------------------------------------------------------ chapter 04: flash
@pytest.fixture(scope="module")
def att():
    return _cells("04_attention", "ex-attention_forward", "ex-attention_forward_flash")


def test_flash_attention_passes_judged_on_out_only(att):
    result, printed = _quiet(check.performance, "attention_forward", att["attention_forward_flash"])
    assert result.passed and result.skipped == ["preatt", "att"] and result.judged == ("out",)
    lines = printed.splitlines()
    assert lines[:3] == [
        "PASS attention_forward",
        "PASS attention_forward performance",
        "  judged on out only (preatt, att: not compared)",
    ]
    assert all(line.strip().startswith("ok") for line in lines[4:]), printed
    assert len(lines) == 4 + len(TARGETS["attention_forward"].targets)
    got = {t.metric: round(t.measured, 3) for t in measure("attention_forward", att["attention_forward_flash"])[1]}
    assert got == {  # the numbers the targets' comments quote
        "extra_bytes": 0.0,
        "unique_bytes": 1.0,
        "load_sectors": 1.0,
        "store_sectors": 1.0,
        "shared_load_conflicts": 1.005,  # the write-back of out through q_tile: 2-way at row ends
    }


def test_flash_attention_leaves_preatt_and_att_alone(att):
    """check.forward judges every output: the flash kernel fails it on preatt and att (never written), which
    is also why llmc collect can never take it for attention_forward."""
    with pytest.raises(CheckFailed) as info:
        _quiet(check.forward, "attention", att["attention_forward_flash"])
    printed = info.value.printed
    assert "preatt:" in printed and "att:" in printed and "never written" in printed
    assert "out:" not in printed  # out is right


def test_the_thread_per_row_attention_fails_on_the_tt_matrices(att):
    with pytest.raises(check.PerformanceFailed) as info:
        _quiet(check.performance, "attention_forward", att["attention_forward"])
    e = info.value
    assert e.correct
    missed = {t.metric: t.measured for t in e.targets if not t.ok}
    assert set(missed) == {"extra_bytes", "unique_bytes", "load_sectors", "store_sectors"}
    # preatt's causal part and all of att, at B=2, T=67, NH=3
    assert missed["extra_bytes"] == 4 * 2 * 3 * (67 * 68 // 2 + 67 * 67)
    assert "MISS bytes touched beyond the judged arrays: 162408 bytes" in e.printed
    assert "no T x T matrix" in e.printed  # what the target expects


def test_a_fast_wrong_flash_kernel_fails_on_correctness():
    """Forgetting to rescale the running sums when the maximum grows: right on one tile of keys, wrong once a
    query sees several (T = 37 and 33)."""
    cell = source(load_nb("04_attention"), "ex-attention_forward_flash")
    wrong_src = mutate(cell, "float corr = expf(m - m_new);", "float corr = 1.0f;")
    wrong = run("04_attention", ["imports", ("ex-attention_forward_flash", wrong_src)])[0]
    with pytest.raises(CheckFailed) as info:
        _quiet(check.performance, "attention_forward", wrong["attention_forward_flash"])
    assert not isinstance(info.value, check.PerformanceFailed)
    assert "out:" in info.value.printed and "preatt" not in info.value.printed
    assert "performance" not in info.value.printed


def test_the_gpu_time_line_is_sanitized_for_nbval():
    """On a GPU a passing check adds a line with the GPU's name and times; the saved outputs (cpu backend) have
    none. pyproject's addopts give nbval tools/nbval_sanitize.cfg, which removes that line, so `pytest
    --nbval-lax` on a grading GPU compares the same text as on the CPU."""
    import re
    from pathlib import Path

    import tomllib
    from nbval.plugin import get_sanitize_patterns

    from llmc_kernels.check.performance import PerformanceResult, TargetResult, TimeResult

    root = Path(__file__).resolve().parent.parent
    addopts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "--nbval-sanitize-with=tools/nbval_sanitize.cfg" in addopts
    patterns = get_sanitize_patterns((root / "tools" / "nbval_sanitize.cfg").read_text())
    target = TargetResult("load_sectors", "global load sectors per request", "x ideal", 1.0, 1.1, False, "why")
    cpu = PerformanceResult("layernorm_forward", None, {"B": 3, "T": 37, "C": 200}, [target])
    gpu = PerformanceResult(cpu.name, None, cpu.sizes, [target])
    gpu.gpu = TimeResult(
        "NVIDIA H100 80GB HBM3", {"B": 8, "T": 1024, "C": 768}, 0.0123, "layernorm_forward", 0.0101, 1.5
    )

    def printed(result):
        text = "PASS layernorm_forward\n" + repr(result) + "\n" + "\n".join(result.lines()) + "\n"
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    assert "time on NVIDIA H100" in "\n".join(gpu.lines())
    assert printed(gpu) == printed(cpu)
    gpu.gpu.ms = 0.5  # a miss: its check raises and prints FAIL, and the time line goes all the same
    assert "MISS time on NVIDIA H100" in "\n".join(gpu.lines()) and "time on" not in printed(gpu)
