"""Chapter 06 (residual): its exercises match the SPEC, its accumulation example computes 1 + 2x, and
overwriting a gradient instead of accumulating it fails the check, as the prose says."""

import numpy as np
import pytest
from _chapter_cells import assert_exercises_follow_the_contract, load, mutate, run, source

from llmc_kernels import CheckFailed

CHAPTER = "06_residual"


def test_exercises_follow_the_contract():
    assert_exercises_follow_the_contract(
        CHAPTER,
        {
            "residual_forward": 'check.forward("residual", residual_forward)',
            "residual_backward": 'check.backward("residual", residual_backward)',
        },
    )


def test_the_solutions_pass():
    _, printed = run(
        CHAPTER,
        ["imports", "ex-residual_forward", "check-residual_forward", "ex-residual_backward", "check-residual_backward"],
    )
    assert printed.splitlines()[1:] == ["PASS residual_forward", "PASS residual_backward"]


def test_the_accumulation_example_gives_one_plus_two_x():
    ns, _ = run(CHAPTER, ["imports", "reference-demo"])
    np.testing.assert_allclose(ns["dx"], 1 + 2 * ns["x"])


@pytest.mark.parametrize("target", ["dinp1", "dinp2"])
def test_overwriting_instead_of_accumulating_fails(target):
    nb = load(CHAPTER)
    broken = mutate(source(nb, "ex-residual_backward"), f"{target}[i] += d;", f"{target}[i] = d;")
    with pytest.raises(CheckFailed, match="overwritten"):
        run(CHAPTER, ["imports", ("ex-residual_backward", broken), "check-residual_backward"])
