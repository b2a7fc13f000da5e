"""Chapter 08 (AdamW): its exercise matches the SPEC, and what its prose claims holds: a Python float is refused
with a message naming np.float32, the usual mistakes (no bias correction, L2 instead of decoupled decay, t
counted from 0, no grid-stride loop) fail the check, there is no backward, the decay demo shows the uneven L2
decay, and the learner's kernel fits the toy regression."""

import re

import pytest
from _chapter_cells import assert_exercises_follow_the_contract, load, mutate, run, source

from llmc_kernels import CheckFailed

CHAPTER = "08_adamw"
LOOP = "    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < num_params; i += stride) {"
ONE_PER_THREAD = "    int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < num_params) {"


def test_exercises_follow_the_contract():
    assert_exercises_follow_the_contract(
        CHAPTER,
        {
            "adamw_update": 'check.forward("adamw", adamw_update)',
        },
    )


def run_after_imports(cells):
    """run() after the imports cell, returning only what ``cells`` print (not the backend line)."""
    ns, _ = run(CHAPTER, ["imports"])
    return run(CHAPTER, cells, ns)


def test_the_solution_passes():
    _, printed = run_after_imports(["ex-adamw_update", "check-adamw_update"])
    assert printed.split() == ["PASS", "adamw_update"]


def test_a_python_float_is_refused_with_the_fix():
    _, printed = run_after_imports(["args-demo"])
    first, second = printed.strip().splitlines()
    assert first.startswith("KernelArgumentError") and "np.float32(0.5)" in first
    assert second.endswith("[0.5 0.5 0.5 0.5]")


@pytest.mark.parametrize(
    "what, old, new",
    [
        ("no bias correction", "float m_hat = mi / beta1_correction;", "float m_hat = mi;"),
        ("t counted from 0", "1.0f - powf(beta1, (float)t);", "1.0f - powf(beta1, (float)(t - 1));"),
        ("L2 in the gradient", "float g = grads[i];", "float g = grads[i] + weight_decay * params[i];"),
        ("no grid-stride loop", LOOP, ONE_PER_THREAD),
    ],
)
def test_the_usual_mistakes_fail(what, old, new):
    broken = mutate(source(load(CHAPTER), "ex-adamw_update"), old, new)
    with pytest.raises(CheckFailed):
        run(CHAPTER, ["imports", ("ex-adamw_update", broken), "check-adamw_update"])


def test_there_is_no_backward():
    _, printed = run_after_imports(["ex-adamw_update", "no-backward"])
    assert printed.startswith("ValueError: adamw has only an update")


def test_the_decay_demo_shows_uneven_l2_decay():
    ns, _ = run(CHAPTER, ["imports", "decay-demo"])
    none, adamw, l2 = (
        ns["rows"][k] for k in ("Adam, no decay at all", "AdamW (decoupled decay)", "Adam + L2 (lambda * theta in g)")
    )
    assert adamw[0] == pytest.approx(adamw[1]) and none[0] == pytest.approx(none[1])
    assert adamw[0] / none[0] == pytest.approx((1 - 1e-2 * 0.1) ** 100, rel=1e-3)
    assert l2[0] > adamw[0] + 0.05 and l2[1] < 0.5  # large gradients: hardly decayed; tiny: over-decayed


def test_the_kernel_fits_the_regression():
    _, printed = run(CHAPTER, ["imports", "ex-adamw_update", "at-work"])
    losses = [float(x) for x in re.findall(r"loss ([0-9.]+)", printed)]
    assert losses[0] > 5 and losses[-1] < 0.02
