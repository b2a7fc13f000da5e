"""Chapter 07 (softmax and cross-entropy): its exercises match the SPEC, and what its prose claims holds: the
naive softmax overflows at logits ~100, a softmax without the maximum subtracted fails the large case with the
hint to subtract it, the padding must not be summed, the backward accumulates and uses dlosses, the
finite-difference picture agrees, and the three kernels agree with ops.fused_classifier."""

import re

import numpy as np
import pytest
from _chapter_cells import assert_exercises_follow_the_contract, load, mutate, run, source

from llmc_kernels import CheckFailed

CHAPTER = "07_softmax_crossentropy"
EXERCISES = ["softmax_forward", "crossentropy_forward", "crossentropy_softmax_backward"]
CHECKS = {
    "softmax_forward": 'check.forward("softmax", softmax_forward)',
    "crossentropy_forward": 'check.forward("crossentropy", crossentropy_forward)',
    "crossentropy_softmax_backward": 'check.backward("crossentropy", crossentropy_softmax_backward)',
}


def test_exercises_follow_the_contract():
    assert_exercises_follow_the_contract(CHAPTER, dict(zip(EXERCISES, CHECKS.values())))


def test_the_solutions_pass():
    ns, _ = run(CHAPTER, ["imports"])
    cells = []
    for name in EXERCISES:
        cells += [f"ex-{name}", f"check-{name}"]
    _, printed = run(CHAPTER, cells, ns)
    assert printed.split() == [
        "PASS",
        "softmax_forward",
        "PASS",
        "crossentropy_forward",
        "PASS",
        "crossentropy_softmax_backward",
    ]


def test_the_naive_kernel_overflows_where_the_prose_says():
    ns, _ = run(CHAPTER, ["imports", "naive-demo"])
    naive, stable = np.asarray(ns["p_naive"]), ns["p_stable"][0]
    assert np.allclose(naive[0], stable[0], rtol=1e-5)
    assert np.isnan(naive[1, :3]).all() and naive[1, 3] == 0
    assert np.allclose(stable[0], stable[1])


def test_a_softmax_without_the_maximum_fails_with_the_hint():
    text = source(load(CHAPTER), "ex-softmax_forward")
    broken = mutate(
        mutate(text, "sum += expf(x[i] - m);", "sum += expf(x[i]);"), "? expf(x[i] - m) * inv", "? expf(x[i]) * inv"
    )
    with pytest.raises(CheckFailed, match="subtract the row's maximum"):
        run(CHAPTER, ["imports", ("ex-softmax_forward", broken), "check-softmax_forward"])


def test_summing_over_the_padding_fails():
    text = source(load(CHAPTER), "ex-softmax_forward")
    old = "    for (int i = threadIdx.x; i < V; i += blockDim.x) {\n        sum += expf(x[i] - m);"
    broken = mutate(text, old, old.replace("i < V;", "i < Vp;"))
    with pytest.raises(CheckFailed):
        run(CHAPTER, ["imports", ("ex-softmax_forward", broken), "check-softmax_forward"])


def test_overwriting_instead_of_accumulating_fails():
    text = source(load(CHAPTER), "ex-crossentropy_softmax_backward")
    broken = mutate(text, "d[i] += (p[i] - indicator) * dloss;", "d[i] = (p[i] - indicator) * dloss;")
    with pytest.raises(CheckFailed, match="overwritten"):
        run(CHAPTER, ["imports", ("ex-crossentropy_softmax_backward", broken), "check-crossentropy_softmax_backward"])


def test_hard_coding_the_mean_instead_of_reading_dlosses_fails():
    text = source(load(CHAPTER), "ex-crossentropy_softmax_backward")
    # gridDim.x = B*T: the mean loss's 1/(B*T), the value dlosses would hold for a mean loss
    broken = mutate(text, "d[i] += (p[i] - indicator) * dloss;", "d[i] += (p[i] - indicator) / gridDim.x;")
    with pytest.raises(CheckFailed):
        run(CHAPTER, ["imports", ("ex-crossentropy_softmax_backward", broken), "check-crossentropy_softmax_backward"])


def test_the_gradient_picture_agrees_with_finite_differences():
    _, printed = run(CHAPTER, ["imports", "fig-gradcheck"])
    line = printed.strip().splitlines()[-1]
    assert float(re.search(r"finite differences\| = ([0-9.e+-]+);", line).group(1)) < 1e-8
    assert line.endswith("padding untouched: True")


def test_the_online_softmax_demo_matches_two_passes():
    _, printed = run(CHAPTER, ["imports", "online-demo"])
    sums = re.findall(r"s = ([0-9.]+)", printed)
    assert len(sums) == 3 and len(set(sums)) == 1


def test_the_three_kernels_agree_with_the_fused_classifier():
    ns, _ = run(
        CHAPTER,
        ["imports", "ex-softmax_forward", "ex-crossentropy_forward", "ex-crossentropy_softmax_backward", "fused-demo"],
    )
    np.testing.assert_allclose(ns["losses"], ns["losses_fused"], rtol=1e-5)
    np.testing.assert_allclose(ns["dlogits"], ns["fused"], atol=1e-6)
