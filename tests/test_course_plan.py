"""What an instructor plans a term with: points weighted by difficulty (read by the grader), concept questions with
answers that never reach the learners, and the syllabus on the instructors' page."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from llmc_kernels.grade.notebook import load_canonical

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def _llmc(cell) -> dict:
    return cell.metadata.get("llmc", {})


def _instructor_cells(nb) -> list:
    return [c for c in nb.cells if _llmc(c).get("role") == "instructor" or "instructor" in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_every_chapter_has_concept_questions_with_answers(path):
    nb = nbformat.read(path, as_version=4)
    cells = _instructor_cells(nb)
    assert len(cells) == 1 and cells[0].cell_type == "markdown", "one instructors-only cell per chapter"
    text = cells[0].source
    assert text.startswith("## Concept questions") and "remove-cell" in cells[0].metadata["tags"]
    assert text.count("**Question.**") >= 3 and text.count("**Question.**") == text.count("**Answer.**")


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_student_copies_contain_no_concept_answers(path):
    solution = nbformat.read(path, as_version=4)
    chapter_text = (ROOT / "chapters" / path.name).read_text(encoding="utf-8")
    assert "**Answer.**" not in chapter_text and "Concept questions" not in chapter_text
    assert not _instructor_cells(nbformat.reads(chapter_text, as_version=4))
    for cell in _instructor_cells(solution):
        answers = [p.split("**Answer.**", 1)[1].strip() for p in cell.source.split("\n\n") if "**Answer.**" in p]
        for answer in answers:
            first_line = answer.split("\n")[0]
            assert json.dumps(first_line)[1:-1] not in chapter_text, f"an answer leaked: {first_line}"


def test_the_generator_drops_instructor_cells():
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("make_student", ROOT / "tools" / "make_student.py")
    make_student = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_student", make_student)
    spec.loader.exec_module(make_student)
    nb = nbformat.v4.new_notebook(metadata={"llmc": {"chapter": "98_synthetic", "version": "1"}})
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_markdown_cell("**Answer.** secret"),
        nbformat.v4.new_markdown_cell("tagged secret"),
    ]
    nb.cells[1].metadata["llmc"] = {"role": "instructor"}
    nb.cells[2].metadata["tags"] = ["instructor"]
    student = make_student.student_notebook(nb, "98_synthetic.ipynb")
    assert [c.source for c in student.cells] == ["# Title"]


def test_points_are_weighted_by_difficulty_and_read_by_the_grader():
    chapters, broken = load_canonical(ROOT / "solutions")
    assert not broken
    points = {ex.name: ex.points for ch in chapters.values() for ex in ch.exercises}
    assert points["residual_forward"] == 1 and points["attention_backward"] == 5
    assert points["matmul_backward"] > points["matmul_forward"] > points["gelu_forward"]
    for path in SOLUTIONS:  # an exercise cell states the points its check cells give
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            info = _llmc(cell)
            if info.get("role") == "exercise":
                assert info["points"] == points[info["exercise"]], (path.name, info)


def test_the_instructors_page_has_a_syllabus():
    page = (ROOT / "book" / "instructors.md").read_text(encoding="utf-8")
    assert "## A term with this course" in page
    assert "| week | chapters | estimated hours | assign (points) | notes |" in page
    assert "| 12 |" in page, "a 12-week plan"
    for chapter in ("00", "03", "07", "10"):
        assert f"| {chapter} " in page, f"chapter {chapter} has a row of hours"
    assert "## Concept questions" in page and "tools/syllabus_hours.py" in page
