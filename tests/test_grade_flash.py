"""`llmc grade` on chapter 04's `attention_forward_flash`: an optimisation exercise judged on one output of its op.

It implements `attention_forward` but writes `out` only, so the grader compares `out` and nothing else (the
targets' ``outputs``), and its unique-bytes targets count `inp` and `out` only. A solved notebook earns both
columns; the chapter's thread-per-row `attention_forward`, pasted in as the flash function, is correct (its
`out` is right, and what it writes into `preatt` and `att` is not judged) but touches the `T x T` matrices, so
it earns the correctness points only; a flash kernel that forgets to rescale earns nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _grade_helpers import grade_notebooks, mutate, section, set_source, solved, source

pytestmark = pytest.mark.slow

CHAPTER = "04_attention"
EXERCISE = "attention_forward_flash"
CELL = "ex-attention_forward_flash"


def _naive() -> str:
    """The chapter's own attention_forward cell, renamed into the flash exercise's function."""
    text = source(solved(CHAPTER), "ex-attention_forward")
    text = text.replace("attention_forward_kernel", "attention_rows_kernel")
    return text.replace("def attention_forward(", "def attention_forward_flash(")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("flash")
    subs = {
        "solved": solved(CHAPTER),
        "naive": set_source(solved(CHAPTER), CELL, _naive()),
        "wrong_fast": mutate(solved(CHAPTER), CELL, "float corr = expf(m - m_new);", "float corr = 1.0f;"),
    }
    return (*grade_notebooks(folder, CHAPTER, subs, 7), folder)


def test_csv_has_both_columns(graded):
    header, _, _, _ = graded
    assert f"{EXERCISE}:correctness" in header and f"{EXERCISE}:performance" in header


def test_solved_earns_both(graded):
    _, rows, _, _ = graded
    row = rows[f"solved_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("2", "2")
    assert row["total"] == row["max"]


def test_the_thread_per_row_kernel_earns_correctness_only(graded):
    _, rows, stdout, folder = graded
    row = rows[f"naive_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("2", "0")
    assert row["attention_forward"] == "4"  # the other exercises are untouched
    table = section(stdout, f"naive_{CHAPTER}.ipynb")
    assert "not optimised" in table
    feedback = (folder / f"naive_{CHAPTER}.feedback.md").read_text(encoding="utf-8")
    assert "MISS bytes touched beyond the judged arrays" in feedback and "no T x T matrix" in feedback


def test_a_flash_kernel_without_the_rescaling_earns_nothing(graded):
    _, rows, stdout, _ = graded
    row = rows[f"wrong_fast_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("0", "0")
    assert "wrong" in section(stdout, f"wrong_fast_{CHAPTER}.ipynb")
