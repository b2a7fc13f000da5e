"""`llmc grade` on chapter 03's optimisation exercise `matmul_forward_blocked`, end to end on the CPU backend.

A solved notebook earns both CSV columns (2 for correctness, 2 for performance). The chapter's own 16 x 16 tiled
kernel pasted into the exercise cell (right results, one output per thread) earns the correctness points only:
it loads more than 0.2 bytes of global memory and more than one shared float per multiply-add.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _grade_helpers import grade_notebooks, section, set_source, solved, source

pytestmark = pytest.mark.slow

CHAPTER = "03_matmul"
EXERCISE = "matmul_forward_blocked"
CELL = "ex-matmul_forward_blocked"

WRAPPER = '''

def matmul_forward_blocked(out, inp, weight, bias, B, T, C, OC):
    """The chapter's 16 x 16 tiled kernel under the optimised exercise's name: right, not register-blocked."""
    matmul_forward(out, inp, weight, bias, B, T, C, OC)
'''


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("perf03")
    nb = solved(CHAPTER)
    subs = {"solved": nb, "tiled": set_source(solved(CHAPTER), CELL, source(nb, "ex-matmul_forward") + WRAPPER)}
    _, rows, stdout = grade_notebooks(folder, CHAPTER, subs, 5)
    return rows, stdout, folder


def test_solved_earns_both(graded):
    rows, _, _ = graded
    row = rows[f"solved_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("2", "2")
    assert row["total"] == row["max"]


def test_the_chapters_tiled_kernel_earns_correctness_only(graded):
    rows, stdout, folder = graded
    row = rows[f"tiled_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("2", "0")
    assert row["matmul_forward"] == "3"  # the exercise it came from keeps its points
    assert "not optimised" in section(stdout, f"tiled_{CHAPTER}.ipynb")
    feedback = (folder / f"tiled_{CHAPTER}.feedback.md").read_text(encoding="utf-8")
    assert "MISS global load bytes per multiply-add" in feedback
    assert "MISS shared-memory loads per multiply-add" in feedback
