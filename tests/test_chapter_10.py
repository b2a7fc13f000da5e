"""Chapter 10 (training GPT-2 124M): a guided run with nothing to grade, as its metadata, the student-copy
generator and the grader agree; the CPU run resumes from its checkpoint with the same losses and learns; and
the speed figures the prose quotes (MFU of the reference H100 run, the T4 estimate) are what the cells
compute from FLOPs, bytes and the measured run."""

import json
import re

import pytest
from _chapter_cells import ROOT, load, run, source

CHAPTER = "10_training"


def test_a_guided_run_with_one_check_and_no_exercise():
    nb = load(CHAPTER)
    assert nb["metadata"]["llmc"]["guided"] is True
    roles = [c["metadata"].get("llmc", {}).get("role") for c in nb["cells"]]
    assert "exercise" not in roles and "check" not in roles  # nothing for llmc grade to score
    checks = ["".join(c["source"]) for c in nb["cells"] if "".join(c["source"]).startswith("# NBVAL_CHECK_OUTPUT")]
    assert checks == ["# NBVAL_CHECK_OUTPUT\nresult = check_model.loss_falls(summary)"]
    assert '"--engine", "plain"' in source(nb, "run-config")  # the engine of the reference run


@pytest.mark.slow  # a training run
def test_the_cpu_run_resumes_where_it_crashed_and_learns(monkeypatch):
    monkeypatch.chdir(ROOT / "solutions")  # the notebooks beside chapter 10 are the ones it collects
    ns, printed = run(
        CHAPTER,
        ["imports", "data", "collect", "run-config", "model-budget", "train-crash", "train-resume", "check-loss"],
    )
    # the learner's kernels (here the solutions'), the matmuls excepted on the CPU backend, train the model
    assert "\n14 of 16 ops are yours" in printed and "--ops my_ops.py" in printed
    assert printed.count("ops from my_ops.py: 14 of 16 are yours") == 2  # the run and its resume
    assert "  package  matmul_forward, matmul_backward" in printed
    log = json.loads((ns["OUT"] / "log.json").read_text())
    assert log["ops"]["learner"]["attention_backward"] == "04_attention.ipynb"
    assert "32,768 validation + 305,260 training = 338,028 tokens" in printed
    assert ns["MODEL"] == "tiny" and ns["CRASH_AT"] == ns["CHECKPOINT_EVERY"] + 2
    assert f"*** simulated crash after step {ns['CRASH_AT']} ***" in printed
    assert "'model_00000010.bin', 'state_00000010.bin'" in printed and "model_00000012" not in printed
    repeated = re.findall(r"step (\d+): loss ([0-9.]+) before the crash, ([0-9.]+) after resuming", printed)
    assert [int(s) for s, _, _ in repeated] == [11, 12]
    assert all(a == b for _, a, b in repeated)  # the CPU backend: bit for bit
    assert str(ns["OUT"]) not in printed and "-> OUT" in printed  # paths shown as OUT
    assert printed.rstrip().endswith("PASS training_loss_falls")
    assert ns["summary"]["steps_done"] == 20 and ns["summary"]["engine"] == "plain"


def test_the_speed_figures_in_the_prose_are_computed():
    _, printed = run(CHAPTER, ["imports", "mfu", "t4-estimate"])
    nb = load(CHAPTER)
    prose = "".join(source(nb, c) for c in ("after-read", "mfu-read"))
    mfu = float(re.search(r"MFU against the dense TF32 peak \(495 TFLOP/s\): ([0-9.]+)%", printed).group(1))
    assert round(mfu) == 11 and "**11% of the TF32 peak**" in prose and "| 11% of 495 |" in prose
    assert "803.5 MFLOP per token (6N = 746.9M, attention 56.6M)" in printed and "803.5" in prose
    assert "6.58 TFLOP in 113 ms" in printed and "| 6.58 | 113 ms | 70,212 |" in prose
    seconds, tok_s, t4_mfu = re.search(r"= ([0-9.]+) s per step, ([0-9,]+) tokens/s, MFU (\d+)%", printed).groups()
    assert f"about {float(seconds):.1f} s" in prose
    assert f"about {round(int(tok_s.replace(',', '')), -2):,}" in prose
    assert f"about {t4_mfu}% of 8.1" in prose
    lower = float(re.search(r"peak: ([0-9.]+) s per step \(a lower bound\)", printed).group(1))
    assert f"take {lower:.2f} s" in prose and "**estimate**, not measured" in prose
