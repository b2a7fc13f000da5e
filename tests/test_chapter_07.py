"""Chapter 07 (softmax and cross-entropy): its exercises match the SPEC, and what its prose claims holds: the
naive softmax overflows at logits ~100, a softmax without the maximum subtracted fails the large case with the
hint to subtract it, the padding must not be summed, the backward accumulates and uses dlosses, the
finite-difference picture agrees, and the three kernels agree with ops.fused_classifier. The optimisation
exercise `fused_classifier` (4 points, 2 for performance) passes check.performance; the chapter's three kernels
behind its signature are right but miss the store, load and unique-bytes targets; a fused kernel that writes
before every thread has read, or that reads the row three times, fails the check it should."""

import re

import numpy as np
import pytest
from _chapter_cells import assert_exercises_follow_the_contract, load, mutate, run, source

from llmc_kernels import CheckFailed, check
from llmc_kernels.check.performance import PerformanceFailed

CHAPTER = "07_softmax_crossentropy"
EXERCISES = ["softmax_forward", "crossentropy_forward", "crossentropy_softmax_backward"]
CHECKS = {
    "softmax_forward": 'check.forward("softmax", softmax_forward)',
    "crossentropy_forward": 'check.forward("crossentropy", crossentropy_forward)',
    "crossentropy_softmax_backward": 'check.backward("crossentropy", crossentropy_softmax_backward)',
    "fused_classifier": 'check.performance("fused_classifier", fused_classifier)',
}
UNFUSED = ["imports", "ex-softmax_forward", "ex-crossentropy_forward", "ex-crossentropy_softmax_backward"]


def test_exercises_follow_the_contract():
    assert_exercises_follow_the_contract(CHAPTER, CHECKS)
    nb = load(CHAPTER)
    assert source(nb, "check-fused_classifier").splitlines() == [
        "# NBVAL_CHECK_OUTPUT",
        'result = check.performance("fused_classifier", fused_classifier)',
    ]
    meta = {
        c["id"]: c["metadata"]["llmc"]
        for c in nb["cells"]
        if c.get("id") in ("ex-fused_classifier", "check-fused_classifier")
    }
    assert {k: (m["kind"], m["points"], m["performance_points"]) for k, m in meta.items()} == {
        "ex-fused_classifier": ("performance", 4, 2),
        "check-fused_classifier": ("performance", 4, 2),
    }
    assert meta["ex-fused_classifier"]["implements"] == "fused_classifier"


def test_no_hint_spells_out_a_solution_line():
    """A HINT guides; it never holds a line of the solution it precedes (the student copy keeps the hints)."""
    nb = load(CHAPTER)
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        if "BEGIN SOLUTION" not in text:
            continue
        hints = " ".join(line.split("HINT:", 1)[1] for line in text.splitlines() if "HINT:" in line)
        solution = re.findall(r"BEGIN SOLUTION.*?\n(.*?)END SOLUTION", text, re.S)
        for line in "\n".join(solution).splitlines():
            code = line.strip().rstrip(";")
            if len(code) > 20 and not code.startswith("//"):
                assert code not in hints, (cell["id"], code)


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


def test_the_fused_solution_passes_with_the_counters_the_targets_quote():
    ns, printed = run(CHAPTER, UNFUSED + ["ex-fused_classifier", "check-fused_classifier"])
    lines = printed.splitlines()[1:]
    assert lines[:3] == [
        "PASS fused_classifier",
        "PASS fused_classifier performance",
        "  memory counters (cpu backend, B=3, T=7, V=999, Vp=1024):",
    ]
    assert all(line.startswith("    ok   ") for line in lines[3:]) and len(lines) == 8, printed
    assert "global store bytes: 1.00x" in printed and "global load bytes: 1.97x" in printed
    assert "unique bytes touched: 1.00x" in printed
    assert ns["result"].passed and ns["result"].correctness


def test_the_unfused_path_is_right_but_misses_the_fusion_targets():
    ns, printed = run(CHAPTER, UNFUSED + ["unfused-fused_classifier"])
    lines = printed.splitlines()[1:]
    assert lines[0] == "PASS fused_classifier", printed  # correct ...
    assert lines[1] == (
        "FAIL fused_classifier performance: your kernel is correct, but not fast yet (3 of 5 targets missed)"
    )
    assert "MISS global store bytes: 1.98x the logits' size (target <= 1.10x the logits' size)" in printed
    assert "MISS global load bytes: 4.90x" in printed and "MISS unique bytes touched: 3.92x" in printed
    assert "ok   global load sectors per request: 1.00x" in printed  # its kernels are coalesced
    hints = printed.split("what the targets expect:")[1]
    assert "probs buffer" in hints


def test_a_fused_kernel_that_writes_before_the_reads_are_done_fails_on_correctness(capsys):
    """The target's logit read after the statistics: another thread may have overwritten it already."""
    cell = source(load(CHAPTER), "ex-fused_classifier")
    cell = mutate(
        cell,
        "    float xy = x[y];" + " " * 35 + "// the target's logit, read before anyone writes the row\n",
        "",
    )
    cell = mutate(cell, "losses[row] = (m + logf(s)) - xy;", "losses[row] = (m + logf(s)) - x[y];")
    ns, _ = run(CHAPTER, ["imports", ("ex-fused_classifier", cell)])
    with pytest.raises(CheckFailed) as info:
        check.performance("fused_classifier", ns["fused_classifier"])
    assert not isinstance(info.value, PerformanceFailed)
    out = capsys.readouterr().out
    assert out.startswith("FAIL fused_classifier: ") and "performance" not in out


def test_a_fused_kernel_without_the_online_pairs_misses_the_load_target(capsys):
    """A max pass, a sum pass, then the gradient: fused, correct, but three reads of the row."""
    cell = source(load(CHAPTER), "ex-fused_classifier")
    online = "    for (int i = tid; i < V; i += blockDim.x) online_add(m, s, x[i]);\n"
    two_pass = (
        "    for (int i = tid; i < V; i += blockDim.x) m = fmaxf(m, x[i]);\n"
        "    float mt = m;\n"
        "    for (int i = tid; i < V; i += blockDim.x) s += expf(x[i] - mt);\n"
    )
    ns, _ = run(CHAPTER, ["imports", ("ex-fused_classifier", mutate(cell, online, two_pass))])
    with pytest.raises(PerformanceFailed) as info:
        check.performance("fused_classifier", ns["fused_classifier"])
    assert {t.metric for t in info.value.targets if not t.ok} == {"global_load_bytes_per_logit"}
    assert "MISS global load bytes: 2.9" in capsys.readouterr().out


def test_the_three_kernels_agree_with_the_fused_classifier():
    ns, _ = run(
        CHAPTER,
        ["imports", "ex-softmax_forward", "ex-crossentropy_forward", "ex-crossentropy_softmax_backward", "fused-demo"],
    )
    np.testing.assert_allclose(ns["losses"], ns["losses_fused"], rtol=1e-5)
    np.testing.assert_allclose(ns["dlogits"], ns["fused"], atol=1e-6)


def test_the_fused_exercise_agrees_with_the_package_and_handles_dlosses_none():
    ns, _ = run(CHAPTER, UNFUSED + ["ex-fused_classifier", "fused-demo"])
    xp, B, T, V, Vp = ns["xp"], ns["B"], ns["T"], ns["V"], ns["Vp"]
    mine, losses = ns["logits"].copy(), xp.empty((B, T), dtype=xp.float32)
    ns["fused_classifier"](mine, losses, None, ns["targets"], B, T, V, Vp)  # None: the mean loss
    np.testing.assert_allclose(losses, ns["losses_fused"], rtol=1e-5)
    np.testing.assert_allclose(mine, ns["fused"], atol=1e-7)
