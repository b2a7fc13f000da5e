"""Chapter 05 (GELU): its exercises match the SPEC, and the mistakes its prose warns about fail the checks
the way it says (a missing grid-stride loop, = instead of +=, a wrong derivative)."""

import pytest
from _chapter_cells import assert_exercises_follow_the_contract, load, mutate, run, source

from llmc_kernels import CheckFailed

CHAPTER = "05_gelu"
LOOP = "    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {"
ONE_PER_THREAD = "    int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < N) {"


def test_exercises_follow_the_contract():
    assert_exercises_follow_the_contract(
        CHAPTER,
        {
            "gelu_forward": 'check.forward("gelu", gelu_forward)',
            "gelu_backward": 'check.backward("gelu", gelu_backward)',
        },
    )


def test_the_solutions_pass():
    _, printed = run(
        CHAPTER, ["imports", "ex-gelu_forward", "check-gelu_forward", "ex-gelu_backward", "check-gelu_backward"]
    )
    assert printed.splitlines()[1:] == ["PASS gelu_forward", "PASS gelu_backward"]


def test_a_missing_grid_stride_loop_fails_on_the_cpu_backend():
    nb = load(CHAPTER)
    broken = mutate(source(nb, "ex-gelu_forward"), LOOP, ONE_PER_THREAD)
    # the chapter says: "the check will tell you that only the first 4 * 256 = 1024 elements were written"
    with pytest.raises(CheckFailed, match=r"only the first 1024 elements .* never written"):
        run(CHAPTER, ["imports", ("ex-gelu_forward", broken), "check-gelu_forward"])


def test_overwriting_instead_of_accumulating_fails():
    nb = load(CHAPTER)
    broken = mutate(source(nb, "ex-gelu_backward"), "dinp[i] += local_grad", "dinp[i] = local_grad")
    with pytest.raises(CheckFailed, match="overwritten"):
        run(CHAPTER, ["imports", ("ex-gelu_backward", broken), "check-gelu_backward"])


def test_a_wrong_derivative_fails():
    nb = load(CHAPTER)
    # forgetting the inner derivative's 3 k x^2 term (d/dx of x^3 taken as x^2)
    broken = mutate(source(nb, "ex-gelu_backward"), "(1.0f + 3.0f * GELU_CUBIC * x * x)", "(1.0f + GELU_CUBIC * x * x)")
    with pytest.raises(CheckFailed):
        run(CHAPTER, ["imports", ("ex-gelu_backward", broken), "check-gelu_backward"])


def test_the_finite_difference_demo_agrees():
    _, printed = run(CHAPTER, ["imports", "fd-demo"])
    assert float(printed.splitlines()[-1].split()[-1]) < 1e-8
