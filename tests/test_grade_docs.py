"""What learners and instructors are told: the learner-facing checks say plainly that they accept non-kernel
code and grading does not; the instructors' page has the Gradescope recipe and the threat model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmc_kernels import check

ROOT = Path(__file__).resolve().parent.parent


def test_the_checks_say_they_accept_non_kernel_code_and_grading_does_not(capsys):
    for fn in (check.forward, check.backward):
        assert "non-kernel code" in fn.__doc__ and "llmc grade" in fn.__doc__
    result = check.forward(
        "gelu",
        lambda out, inp, N: out.__setitem__(
            slice(None), (0.5 * inp * (1 + np.tanh(np.sqrt(2 / np.pi) * (inp + 0.044715 * inp**3)))).astype(np.float32)
        ),
    )
    assert repr(result) == "PASS gelu_forward"  # a NumPy function passes the check ...
    assert "accepts non-kernel code" in str(result.report())  # ... and its report says what that means
    assert "llmc grade accepts only outputs written by kernels" in str(result.report())
    page = (ROOT / "book" / "conventions.md").read_text(encoding="utf-8")
    assert "accept non-kernel code" in page and "no kernel" in page and "package kernel" in page


def test_the_instructors_page_covers_gradescope_and_the_threat_model():
    page = (ROOT / "book" / "instructors.md").read_text(encoding="utf-8")
    for words in (
        "autograder.zip",
        "setup.sh",
        "run_autograder",
        "--format gradescope",
        "results.json",
        "GitHub Classroom",
        "threat model",
        "What still needs a container",
        "file-system isolation",
        "What the CPU backend can and cannot see",
        "--chapter",
        "note",
    ):
        assert words in page, words
