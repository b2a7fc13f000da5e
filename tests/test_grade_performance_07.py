"""`llmc grade` on chapter 07's optimisation exercise `fused_classifier`, end to end on the CPU backend.

A solved notebook earns both CSV columns (2 for correctness, 2 for performance). The chapter's three kernels
pasted into the exercise cell behind the fused signature (right results, a probs buffer, three launches) earn
the correctness points only, with the missed targets named in the feedback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _grade_helpers import grade_notebooks, section, set_source, solved, source

pytestmark = pytest.mark.slow

CHAPTER = "07_softmax_crossentropy"
EXERCISE = "fused_classifier"
CELL = "ex-fused_classifier"

WRAPPER = '''

def fused_classifier(logits, losses, dlosses, targets, B, T, V, Vp):
    """The chapter's three kernels behind the fused signature: right, not fused."""
    probs = np.empty_like(logits)
    softmax_forward(probs, logits, B, T, V, Vp)
    crossentropy_forward(losses, probs, targets, B, T, Vp)
    logits[...] = 0
    crossentropy_softmax_backward(logits, dlosses, probs, targets, B, T, V, Vp)
'''


def _unfused(nb: dict) -> dict:
    kernels = [
        source(nb, c) for c in ("ex-softmax_forward", "ex-crossentropy_forward", "ex-crossentropy_softmax_backward")
    ]
    return set_source(nb, CELL, "\n\n".join(kernels) + WRAPPER)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("perf07")
    subs = {"solved": solved(CHAPTER), "unfused": _unfused(solved(CHAPTER))}
    return (*grade_notebooks(folder, CHAPTER, subs, 11), folder)


def test_csv_has_a_correctness_and_a_performance_column(graded):
    header, _, _, _ = graded
    assert f"{EXERCISE}:correctness" in header and f"{EXERCISE}:performance" in header
    assert header.index(f"{EXERCISE}:performance") == header.index(f"{EXERCISE}:correctness") + 1


def test_solved_earns_both(graded):
    _, rows, _, _ = graded
    row = rows[f"solved_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("2", "2")
    assert row["total"] == row["max"]


def test_the_unfused_path_earns_correctness_only(graded):
    _, rows, stdout, folder = graded
    row = rows[f"unfused_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("2", "0")
    assert row["softmax_forward"] == "3"  # the other exercises are untouched
    table = section(stdout, f"unfused_{CHAPTER}.ipynb")
    assert "not optimised" in table and "global store bytes" in table
    feedback = (folder / f"unfused_{CHAPTER}.feedback.md").read_text(encoding="utf-8")
    assert "MISS global store bytes: 1.98x" in feedback and "probs buffer" in feedback
    assert "ok   global load sectors per request" in feedback
