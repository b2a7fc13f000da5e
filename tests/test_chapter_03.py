"""Chapter 03 (matmul): what the notebook's prose relies on, beyond nbval and the student-copy tests.

- the exercise functions have the SPEC signatures (the checks and the grader call them by position);
- the naive kernel shown before the exercise is a correct matmul_forward, with and without a bias;
- "Break it on purpose" (extension 5) says what the check reports: either missing barrier is a KernelRace
  naming the tile and the racing lines, with a hint to add __syncthreads(); with the race detector off,
  without barrier (1) the CPU backend computes NaN (a thread reads shared memory that is still poisoned),
  without barrier (2) the results are wrong but finite, and both are called a race by the thread orders;
- the strided kernel of exercise 2 also computes the forward with the strides of the chapter's table.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from _chapter_cells import assert_exercises_follow_the_contract, load, mutate, run, source

from llmc_kernels import check, reference, runtime
from llmc_kernels.errors import CheckFailed

CHAPTER = "03_matmul"
BARRIER_1 = "__syncthreads();                         // (1)"
BARRIER_2 = "__syncthreads();                         // (2)"


def _cpu_backend_or_skip():
    try:
        from llmc_kernels.runtime.cpu import CpuKernel  # noqa: F401
    except ImportError as err:
        pytest.skip(f"the CPU backend is not importable here: {err}")


def _check_output(op_check, fn, races=None) -> tuple[bool, str]:
    out = io.StringIO()
    passed = True
    with runtime.use_backend("cpu"), runtime.launch_options(races=races), contextlib.redirect_stdout(out):
        try:
            op_check("matmul", fn)
        except CheckFailed:
            passed = False
    return passed, out.getvalue()


def test_exercises_follow_the_contract():
    assert_exercises_follow_the_contract(
        CHAPTER,
        {
            "matmul_forward": 'check.forward("matmul", matmul_forward)',
            "matmul_backward": 'check.backward("matmul", matmul_backward)',
            "matmul_forward_blocked": 'check.performance("matmul_forward", matmul_forward_blocked)',
        },
    )


def test_naive_kernel_is_a_correct_matmul_forward():
    _cpu_backend_or_skip()
    ns, _ = run(CHAPTER, ["imports", "naive-kernel"])
    passed, text = _check_output(check.forward, ns["matmul_forward_naive_launch"])
    assert passed, text


@pytest.mark.parametrize("barrier, nan", [(BARRIER_1, True), (BARRIER_2, False)])
def test_missing_barrier_is_reported_as_the_chapter_says(barrier, nan):
    _cpu_backend_or_skip()
    broken = mutate(source(load(CHAPTER), "ex-matmul_forward"), barrier, "// (removed)")
    ns, _ = run(CHAPTER, ["imports", ("ex-matmul_forward", broken)])
    passed, text = _check_output(check.forward, ns["matmul_forward"])
    assert not passed
    assert "KernelRace" in text and "__shared__ array" in text and "__syncthreads()" in text, text
    passed, text = _check_output(check.forward, ns["matmul_forward"], races=False)
    assert not passed
    assert "a race" in text, text
    assert ("NaN/inf computed" in text) == nan, text


def test_strided_kernel_computes_the_forward_with_the_tables_strides():
    _cpu_backend_or_skip()
    ns, _ = run(CHAPTER, ["imports", "ex-matmul_backward"])
    B, T, C, OC = 2, 7, 19, 23
    M = B * T
    g = np.random.default_rng(0)
    inp = g.standard_normal((B, T, C)).astype(np.float32)
    weight = g.standard_normal((OC, C)).astype(np.float32)
    out = np.zeros((B, T, OC), dtype=np.float32)  # the kernel accumulates: start from 0
    i32 = np.int32
    with runtime.use_backend("cpu"):  # out = inp @ weight^T: A = inp (C, 1), B = weight (1, C)
        ns["matmul_accumulate_kernel"](
            ((OC + 15) // 16, (M + 15) // 16),
            (16, 16),
            (out, inp, weight, i32(M), i32(OC), i32(C), i32(C), i32(1), i32(1), i32(C)),
        )
    expected = np.empty((B, T, OC))
    reference.matmul_forward(expected, inp.astype(np.float64), weight.astype(np.float64), None, B, T, C, OC)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
