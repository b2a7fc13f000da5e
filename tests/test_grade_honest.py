"""Honest work keeps full marks: every solution notebook, and every learner's copy with the solutions pasted into
its exercise cells, earns every point, in one `llmc grade` run over the whole course; and grading takes under
10 s per exercise on two cores. (One wrong exercise costing only itself: tests/test_grade_cli.py.)"""

from __future__ import annotations

import json
import re
import time

import pytest
from _grade_helpers import CHAPTERS, SOLUTIONS, exercise_ids, llmc_grade, load, read_csv, set_source, source, write

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    folder = tmp_path_factory.mktemp("course")
    (folder / "solved").mkdir()
    (folder / "pasted").mkdir()
    subs = []
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        solution = json.loads(path.read_text(encoding="utf-8"))
        subs.append(write(folder / "solved", path.name, solution))
        pasted = load(CHAPTERS, path.stem)
        for ids in exercise_ids(solution).values():
            for cid in ids:  # a learner's paste: the same code, in the student copy's cells
                set_source(pasted, cid, "# my solution\n" + source(solution, cid))
        subs.append(write(folder / "pasted", path.name, pasted))
    started = time.monotonic()
    proc = llmc_grade(*subs, "--csv", folder / "grades.csv", "--jobs", 2, "--timeout", 120, cwd=folder)
    seconds = time.monotonic() - started
    header, rows = read_csv(folder / "grades.csv")
    return {"proc": proc, "rows": rows, "seconds": seconds, "subs": subs}


def test_every_solution_and_every_pasted_solution_earns_full_marks(course):
    proc = course["proc"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert len(course["rows"]) == len(course["subs"]) == 2 * len(list(SOLUTIONS.glob("*.ipynb")))
    for label, row in course["rows"].items():
        assert row["total"] == row["max"] and row["note"] == "", (label, row, proc.stdout)
    assert sum(float(r["max"]) for r in course["rows"].values()) >= 2 * 17


def test_grading_takes_under_10_s_per_exercise(course):
    times = [float(t) for t in re.findall(r": pass in ([\d.]+) s", course["proc"].stderr)]
    exercises = len(times)
    per_exercise = course["seconds"] / exercises
    print(
        f"\n{exercises} exercises in {course['seconds']:.0f} s with 2 jobs ({per_exercise:.1f} s each); "
        f"one exercise took {min(times):.1f} to {max(times):.1f} s"
    )
    assert exercises >= 34
    assert per_exercise < 10
