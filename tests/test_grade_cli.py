"""`llmc grade` end to end, on the CPU backend: synthetic submissions built here from solutions/ and chapters/.

One `llmc grade` run grades a class of submissions of chapters 05 (GELU) and 06 (residual), each made to
fail in one way; the tests then read its CSV, its tables and its feedback files. A solved notebook earns every
point, an untouched student copy none; a wrong kernel, an out-of-bounds write, a deadlock, a kernel that never
ends, a launch function stuck in Python and a crash of the learner's process each cost their own exercise and
nothing else; editing or deleting check cells, saving PASS outputs or patching the checker changes nothing.
(tests/test_grade_threats.py tries the ways around the grader, one threat class at a time.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _grade_helpers import (
    cell,
    llmc_grade,
    mutate,
    read_csv,
    set_source,
    solved,
    source,
    student,
    write,
)

TIMEOUT = 60  # seconds per exercise (its kernel launches: 15 s each on the CPU backend; a loaded machine)


def class_of_submissions(folder: Path) -> list[Path]:
    subs = []
    add = lambda name, nb: subs.append(write(folder, name, nb))  # noqa: E731

    add("solved_05_gelu.ipynb", solved("05_gelu"))
    add("untouched_05_gelu.ipynb", student("05_gelu"))

    nb = solved("05_gelu")  # one wrong kernel: 0.6 instead of 0.5 in the forward
    add("wrong_05_gelu.ipynb", mutate(nb, "ex-gelu_forward", "out[i] = 0.5f * x", "out[i] = 0.6f * x"))

    nb = student("05_gelu")  # check cells edited to print PASS, with PASS saved as their output
    for check_id in ("check-gelu_forward", "check-gelu_backward"):
        name = check_id.split("-", 1)[1]
        set_source(nb, check_id, f'# NBVAL_CHECK_OUTPUT\nprint("PASS {name}")')
        cell(nb, check_id)["outputs"] = [{"output_type": "stream", "name": "stdout", "text": f"PASS {name}\n"}]
        cell(nb, check_id)["execution_count"] = 1
    add("edited_checks_05_gelu.ipynb", nb)

    nb = solved("06_residual")  # every check cell deleted
    nb["cells"] = [c for c in nb["cells"] if c.get("metadata", {}).get("llmc", {}).get("role") != "check"]
    add("deleted_checks_06_residual.ipynb", nb)

    nb = solved("06_residual")  # out-of-bounds write: the bounds check removed
    add("oob_06_residual.ipynb", mutate(nb, "ex-residual_forward", "if (i < N) {", "{"))

    nb = solved("05_gelu")  # deadlock: a barrier only thread 0 of each block reaches
    add(
        "deadlock_05_gelu.ipynb",
        mutate(
            nb,
            "ex-gelu_forward",
            "int stride = gridDim.x * blockDim.x;",
            "int stride = gridDim.x * blockDim.x;\n    if (threadIdx.x == 0) { __syncthreads(); }",
        ),
    )

    nb = solved("06_residual")  # a kernel that never ends: the loop variable is never advanced
    add("hang_06_residual.ipynb", mutate(nb, "ex-residual_backward", "if (i < N) {", "while (i < N) {"))

    nb = solved("05_gelu")  # a launch function stuck in Python
    add(
        "pyloop_05_gelu.ipynb",
        mutate(
            nb,
            "ex-gelu_backward",
            '    """dinp[i] += GELU\'(inp[i]) * dout[i] for 0 <= i < N."""',
            '    """dinp[i] += GELU\'(inp[i]) * dout[i] for 0 <= i < N."""\n    while True:\n        pass',
        ),
    )

    nb = solved("06_residual")  # the notebook kernel dies inside the learner's function
    add(
        "crash_06_residual.ipynb",
        mutate(
            nb,
            "ex-residual_forward",
            '    """out[i] = inp1[i] + inp2[i] for 0 <= i < N."""',
            '    """out[i] = inp1[i] + inp2[i] for 0 <= i < N."""\n    import os\n    os._exit(3)',
        ),
    )

    nb = student("05_gelu")  # unwritten kernels, and code that replaces the checker's verdicts
    set_source(
        nb,
        "ex-gelu_forward",
        source(nb, "ex-gelu_forward") + '\ncheck.forward = lambda op, fn, *a, **k: print("PASS gelu_forward")\n',
    )
    set_source(
        nb,
        "ex-gelu_backward",
        source(nb, "ex-gelu_backward")
        + "\nget_ipython().set_custom_exc((Exception,), lambda *a, **k: print('PASS gelu_backward'))\n",
    )
    add("tamper_05_gelu.ipynb", nb)

    nb = solved("05_gelu")  # metadata stripped and a renamed file: found by its name
    nb["metadata"].pop("llmc")
    for c in nb["cells"]:
        c.get("metadata", {}).pop("llmc", None)
    add("Copy of 05_gelu (alice).ipynb", nb)

    add(
        "not_course.ipynb",
        {
            "cells": [
                {
                    "cell_type": "code",
                    "id": "a",
                    "metadata": {},
                    "execution_count": None,
                    "outputs": [],
                    "source": "print('hello')",
                }
            ],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        },
    )
    add("garbage.ipynb", "this is not a notebook")
    return subs


# ------------------------------------------------------------------------------------- one grading run
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    subs = class_of_submissions(folder)
    out = folder / "out"
    proc = llmc_grade(*subs, "--csv", out / "grades.csv", "--timeout", TIMEOUT, "--jobs", 2, cwd=folder)
    header, rows = read_csv(out / "grades.csv")
    return {"proc": proc, "header": header, "rows": rows, "out": out, "subs": subs}


def points(graded, name):
    row = graded["rows"][name]
    return {k: v for k, v in row.items() if k != "submission"}


def section(graded, name: str) -> str:
    """The submission's table in stdout."""
    text = graded["proc"].stdout
    start = text.index(f"== {name}:")
    end = text.find("\n== ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def feedback(graded, name: str) -> str:
    return (graded["out"] / (name[: -len(".ipynb")] + ".feedback.md")).read_text(encoding="utf-8")


def test_exit_status_and_csv_format(graded):
    proc = graded["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert graded["header"] == [
        "submission",
        "gelu_forward",
        "gelu_backward",
        "residual_forward",
        "residual_backward",
        "total",
        "max",
        "note",
    ]
    assert sorted(graded["rows"]) == sorted(p.name for p in graded["subs"])


def test_solved_earns_everything_untouched_nothing(graded):
    assert points(graded, "solved_05_gelu.ipynb") == {
        "gelu_forward": "1",
        "gelu_backward": "2",
        "residual_forward": "",
        "residual_backward": "",
        "total": "3",
        "max": "3",
        "note": "",
    }
    assert points(graded, "untouched_05_gelu.ipynb")["total"] == "0"
    table = section(graded, "untouched_05_gelu.ipynb")
    assert table.count("not attempted") == 2, table


def test_one_wrong_kernel_costs_only_its_exercise(graded):
    row = points(graded, "wrong_05_gelu.ipynb")
    assert (row["gelu_forward"], row["gelu_backward"], row["total"], row["max"]) == ("0", "2", "2", "3")
    assert "wrong results" in section(graded, "wrong_05_gelu.ipynb")
    text = feedback(graded, "wrong_05_gelu.ipynb")
    assert "## gelu_forward: wrong (0 / 1)" in text and "out" in text and "tolerance" in text


def test_edited_or_deleted_check_cells_change_nothing(graded):
    assert points(graded, "edited_checks_05_gelu.ipynb")["total"] == "0"
    row = points(graded, "deleted_checks_06_residual.ipynb")
    assert (row["residual_forward"], row["residual_backward"], row["total"]) == ("1", "1", "2")


@pytest.mark.parametrize(
    "name, lost, kept, verdict, words",
    [
        ("oob_06_residual.ipynb", "residual_forward", "residual_backward", "out of bounds", "KernelOutOfBounds"),
        ("deadlock_05_gelu.ipynb", "gelu_forward", "gelu_backward", "deadlock", "KernelDeadlock"),
        ("hang_06_residual.ipynb", "residual_backward", "residual_forward", "hang", "KernelTimeout"),
        ("pyloop_05_gelu.ipynb", "gelu_backward", "gelu_forward", "hang", "time limit"),
        ("crash_06_residual.ipynb", "residual_forward", "residual_backward", "crash", "died"),
    ],
)
def test_a_failing_kernel_costs_its_exercise_only(graded, name, lost, kept, verdict, words):
    row = points(graded, name)
    assert row[lost] == "0" and row[kept] != "0" and row["total"] == row[kept] != row["max"], row
    line = next(l for l in section(graded, name).splitlines() if l.strip().startswith(lost))
    assert verdict in line and words in line, line


def test_patching_the_checker_does_not_pass(graded):
    assert points(graded, "tamper_05_gelu.ipynb")["total"] == "0"
    table = section(graded, "tamper_05_gelu.ipynb")
    assert table.count("not attempted") == 2, table
    assert "review: the exercise cell assigns into the course's modules" in table
    assert "review: the exercise cell reaches into the notebook kernel" in table


def test_chapter_found_by_file_name(graded):
    name = "Copy of 05_gelu (alice).ipynb"
    assert points(graded, name)["total"] == "3"
    assert "found by its file name" in section(graded, name)


def test_not_a_course_notebook_is_an_error_row(graded):
    for name, words in (("not_course.ipynb", "not a notebook of this course"), ("garbage.ipynb", "not JSON")):
        row = points(graded, name)
        assert {k: v for k, v in row.items() if k != "note"} == dict.fromkeys(row.keys() - {"note"}, ""), row
        assert words in row["note"]
        assert words in section(graded, name)
        assert words in feedback(graded, name)


def test_every_submission_gets_feedback(graded):
    for sub in graded["subs"]:
        text = feedback(graded, sub.name)
        assert text.startswith(f"# Feedback on {sub.name}")
    text = feedback(graded, "oob_06_residual.ipynb")
    assert "**Score: 1 / 2**" in text and "KernelOutOfBounds" in text and "hint:" in text


# ------------------------------------------------------------------------------------- seeds and exit codes
SEED = 2024061517
SEED_PROBE = (
    "\n    import inspect, os, sys\n"
    f"    seed = {SEED}\n"
    "    found = [f.function for f in inspect.stack()[1:]\n"
    "             if any(type(v) is int and v == seed for v in f.frame.f_locals.values())]\n"
    "    found += [k for k, v in os.environ.items() if str(seed) in v] + [a for a in sys.argv if str(seed) in a]\n"
    "    assert not found, f'the secret seed reached the learner: {found[:3]}'\n"
)


def test_each_run_draws_a_secret_seed_and_seed_reproduces_it(tmp_path):
    """A fresh seed per run (printed), the same results with --seed, and the seed never in the learner's
    process (the frames calling it, its environment, its arguments)."""
    seed = SEED
    nb = mutate(
        solved("00_first_kernel"),
        "ex-vector_add",
        '    """out[i] = a[i] + b[i] for 0 <= i < N."""',
        '    """out[i] = a[i] + b[i] for 0 <= i < N."""' + SEED_PROBE,
    )
    sub = write(tmp_path, "00_first_kernel.ipynb", nb)
    runs = [
        llmc_grade(sub, *extra, "--csv", tmp_path / f"{i}.csv", cwd=tmp_path)
        for i, extra in enumerate([("--seed", seed), ("--seed", seed), ()])
    ]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    assert [read_csv(tmp_path / f"{i}.csv")[1]["00_first_kernel.ipynb"]["total"] for i in range(3)] == ["1"] * 3, runs[
        0
    ].stdout
    seeds = [re.search(r"seed (\d+)", proc.stderr).group(1) for proc in runs]
    assert seeds[0] == seeds[1] == str(seed) != seeds[2]
    fb = (tmp_path / "00_first_kernel.feedback.md").read_text(encoding="utf-8")
    assert f"seed {seeds[2]}" in fb


def test_grading_that_cannot_start_exits_2(tmp_path):
    sub = write(tmp_path, "05_gelu.ipynb", solved("05_gelu"))
    proc = llmc_grade(sub, "--solutions", tmp_path / "nowhere", cwd=tmp_path)
    assert proc.returncode == 2 and "no such folder" in proc.stderr
    # learners' copies are not canonical notebooks: their check cells hold no PASS output to compare with
    copies = tmp_path / "copies"
    copies.mkdir()
    for chapter in ("05_gelu", "06_residual"):
        write(copies, f"{chapter}.ipynb", student(chapter))
    proc = llmc_grade(sub, "--solutions", copies, cwd=tmp_path)
    assert proc.returncode == 2 and "no saved 'PASS ...' output" in proc.stderr


def test_a_broken_grading_setup_exits_1(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nb = solved("00_first_kernel")
    set_source(nb, "imports", source(nb, "imports") + "\nraise RuntimeError('broken course set-up')\n")
    write(solutions, "00_first_kernel.ipynb", nb)
    subs = [
        write(tmp_path, "00_first_kernel.ipynb", solved("00_first_kernel")),
        write(tmp_path, "05_gelu.ipynb", solved("05_gelu")),
    ]  # no canonical 05 in this folder
    proc = llmc_grade(*subs, "--solutions", solutions, "--csv", tmp_path / "g.csv", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "broken course set-up" in proc.stdout and "grading error" in proc.stdout
    assert "has no canonical notebook" in proc.stdout
    header, rows = read_csv(tmp_path / "g.csv")
    assert rows["05_gelu.ipynb"]["total"] == ""


@pytest.mark.gpu
def test_cuda_backend_one_process_per_exercise(tmp_path):
    """On a GPU: a solved notebook earns everything, and an out-of-bounds write (caught by the CPU pre-flight,
    or by the GPU in its own process) costs its exercise only."""
    subs = [
        write(tmp_path, "solved_05_gelu.ipynb", solved("05_gelu")),
        write(
            tmp_path, "oob_06_residual.ipynb", mutate(solved("06_residual"), "ex-residual_forward", "if (i < N) {", "{")
        ),
    ]
    proc = llmc_grade(
        *subs, "--backend", "cuda", "--csv", tmp_path / "g.csv", "--timeout", 120, "--jobs", 2, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cuda backend" in proc.stderr
    rows = read_csv(tmp_path / "g.csv")[1]
    assert rows["solved_05_gelu.ipynb"]["total"] == "3", proc.stdout
    oob = rows["oob_06_residual.ipynb"]
    assert (oob["residual_forward"], oob["residual_backward"]) == ("0", "1"), proc.stdout
