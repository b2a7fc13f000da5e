"""The pieces of `llmc grade` on their own: reading and identifying submissions, picking the learner's cells,
building the graded notebook, the verdicts, the CSV, the checker guard and the time limit that kills a stuck
notebook kernel. (tests/test_grade_cli.py grades whole submissions end to end.)"""
from __future__ import annotations

import builtins
import copy
import csv
import io
import json
import sys
import time
from pathlib import Path

import nbformat
import pytest

from llmc_kernels import grade, grade_guard, grade_notebook as gn, grade_run
from llmc_kernels.grade_judge import judge
from llmc_kernels.grade_run import RunResult

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
CHAPTERS = ROOT / "chapters"


@pytest.fixture(scope="module")
def chapters():
    chapters, broken = gn.load_canonical(SOLUTIONS)
    return chapters


def nb_of(folder: Path, chapter: str):
    return gn.read_notebook(folder / f"{chapter}.ipynb")


def strip_llmc(nb, ids: bool = False):
    nb = copy.deepcopy(nb)
    nb.metadata.pop("llmc", None)
    for cell in nb.cells:
        cell.metadata.pop("llmc", None)
        cell.metadata.pop("tags", None)
        if ids:
            cell.pop("id", None)
    return nb


# ------------------------------------------------------------------------------------------- canonical
def test_canonical_chapters_have_exercises_checks_and_points(chapters):
    gelu = chapters["05_gelu"]
    assert [e.name for e in gelu.exercises] == ["gelu_forward", "gelu_backward"]
    assert gelu.points == 2 and all(len(e.checks) == 1 for e in gelu.exercises)
    assert [c.get("id") for c in gelu.preamble][:1] == ["imports"]
    assert all(gn._role(c) != "setup" for c in gelu.preamble)


def test_unexecuted_or_unmarked_check_cells_are_refused():
    with pytest.raises(gn.GradingSetupError, match="no saved 'PASS ...' output"):
        gn.parse_canonical(nb_of(CHAPTERS, "05_gelu"), CHAPTERS / "05_gelu.ipynb")
    nb = nb_of(SOLUTIONS, "05_gelu")
    check = next(c for c in nb.cells if c.get("id") == "check-gelu_forward")
    check.source = check.source.replace("# NBVAL_CHECK_OUTPUT\n", "")
    with pytest.raises(gn.GradingSetupError, match="NBVAL_CHECK_OUTPUT"):
        gn.parse_canonical(nb, SOLUTIONS / "05_gelu.ipynb")


def test_a_broken_canonical_notebook_stops_only_its_chapter(tmp_path):
    (tmp_path / "05_gelu.ipynb").write_text((SOLUTIONS / "05_gelu.ipynb").read_text())
    (tmp_path / "06_residual.ipynb").write_text((CHAPTERS / "06_residual.ipynb").read_text())   # not executed
    chapters, broken = gn.load_canonical(tmp_path)
    assert list(chapters) == ["05_gelu"] and list(broken) == ["06_residual"]
    for nb, name in ((nb_of(CHAPTERS, "06_residual"), "x.ipynb"), (strip_llmc(nb_of(CHAPTERS, "06_residual")),
                                                                   "06_residual.ipynb")):
        with pytest.raises(gn.GradingSetupError, match="chapter 06_residual cannot be used: .*no saved 'PASS"):
            gn.identify(nb, name, chapters, broken)
    (tmp_path / "05_gelu.ipynb").unlink()
    with pytest.raises(gn.GradingSetupError, match="no usable canonical notebook"):
        gn.load_canonical(tmp_path)


# ------------------------------------------------------------------------------------------- identify
def test_identify_by_metadata_else_file_name(chapters):
    nb = nb_of(CHAPTERS, "06_residual")
    found = gn.identify(nb, "whatever.ipynb", chapters)
    assert (found.chapter.name, found.how, found.version) == ("06_residual", "metadata", "1")
    bare = strip_llmc(nb, ids=True)
    found = gn.identify(bare, "Copy of 06_Residual (2).ipynb", chapters)
    assert (found.chapter.name, found.how, found.version) == ("06_residual", "file name", None)
    with pytest.raises(gn.NotCourseNotebook, match="names no chapter"):
        gn.identify(bare, "homework.ipynb", chapters)


def test_identify_refuses_foreign_notebooks(chapters, tmp_path):
    foreign = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def train(): pass")])
    with pytest.raises(gn.NotCourseNotebook, match="not a notebook of this course"):
        gn.identify(foreign, "homework.ipynb", chapters)
    foreign.metadata["llmc"] = {"chapter": "42_unknown", "version": "1"}
    with pytest.raises(gn.GradingSetupError, match="42_unknown"):
        gn.identify(foreign, "x.ipynb", chapters)
    for text, words in (("{", "not JSON"), ('{"a": 1}', "no list of cells"), ("\xff\xfe", "not")):
        path = tmp_path / "bad.ipynb"
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(gn.NotCourseNotebook, match=words):
            gn.read_notebook(path)


# ------------------------------------------------------------------------------------------- picking cells
def test_student_cells_by_metadata_id_or_definition(chapters):
    ex = chapters["05_gelu"].exercise("gelu_forward")
    nb = nb_of(SOLUTIONS, "05_gelu")
    wanted = next(c.source for c in nb.cells if c.get("id") == "ex-gelu_forward")
    picked = gn.student_sources(nb, ex)
    assert (picked.sources, picked.how, picked.note) == ([wanted], "metadata", "")
    assert gn.student_sources(strip_llmc(nb), ex).how == "cell id"
    bare = strip_llmc(nb, ids=True)
    scratch = nbformat.v4.new_code_cell("def gelu_forward(out, inp, N):\n    pass  # an early try")
    bare.cells.insert(3, scratch)
    picked = gn.student_sources(bare, ex)
    assert picked.sources == [wanted] and "metadata" in picked.note     # the last definition, as Run All
    nb.cells.append(copy.deepcopy(next(c for c in nb.cells if c.get("id") == "ex-gelu_forward")))
    nb.cells[-1]["id"] = "copy"
    picked = gn.student_sources(nb, ex)
    assert len(picked.sources) == 2 and "notebook order" in picked.note
    empty = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("nothing")])
    assert gn.student_sources(empty, ex).sources == []


def test_graded_notebook_uses_only_the_learners_exercise_cells(chapters):
    chapter = chapters["05_gelu"]
    sub = nb_of(CHAPTERS, "05_gelu")
    for c in sub.cells:                  # the learner's check cells and outputs must not reach the graded notebook
        if gn._role(c) == "check":
            c.source = '# NBVAL_CHECK_OUTPUT\nprint("PASS gelu_forward")'
            c.outputs = [nbformat.v4.new_output("stream", text="PASS gelu_forward\n")]
    sub.cells.append(nbformat.v4.new_code_cell("print('PASS gelu_backward')"))
    ex = chapter.exercise("gelu_backward")
    picked = gn.student_sources(sub, ex)
    nb = gn.graded_notebook(chapter, ex, picked.sources, pid_file="/tmp/x.pid", seed=5)
    kinds = [c.metadata[gn.GRADE_KEY]["kind"] for c in nb.cells]
    assert kinds == ["start"] + ["preamble"] * len(chapter.preamble) + ["arm", "exercise", "guard", "check"]
    canonical = ex.checks[0].cell
    check = nb.cells[-1]
    assert (check.source, check.outputs, check.execution_count) == (canonical.source, canonical.outputs,
                                                                  canonical.execution_count)
    assert nb.cells[-3].source == picked.sources[0] and nb.cells[-3].outputs == []
    assert "arm(seed=5)" in nb.cells[-4].source
    assert not any("PASS gelu_backward')" in c.source for c in nb.cells)
    assert len({c.id for c in nb.cells}) == len(nb.cells)
    nbformat.validate(nb)


# ------------------------------------------------------------------------------------------- review flags
def test_review_flags_catch_patching_and_spare_the_solutions():
    for chapter in sorted(SOLUTIONS.glob("*.ipynb")):
        for cell in gn.read_notebook(chapter).cells:
            if gn._role(cell) == "exercise":
                assert gn.review_flags(cell.source) == [], (chapter.name, cell.get("id"))
    for code, words in [
        ('check.forward = lambda *a: print("PASS x")', "assigns into the course's modules"),
        ("check.TOLERANCES['gelu_forward'] = (1, 1)", "assigns into the course's modules"),
        ("get_ipython().set_custom_exc((Exception,), f)", "reaches into the notebook kernel"),
        ("import builtins\nbuiltins.print = f", "built-ins"),
        ("print('PASS gelu_forward')", "prints a PASS line"),
        ("import sys; sys.stdout = io.StringIO()", "interpreter's state"),
        ("exec(code)", "runs code built at run time"),
        ("from llmc_kernels import _honesty", "checker's internals"),
    ]:
        flags = gn.review_flags(code)
        assert any(words in f for f in flags), (code, flags)
    assert gn.review_flags("kernel.compile()\n# check.forward = x\nresult = check.forward('gelu', f)") == []


# ------------------------------------------------------------------------------------------- verdicts
def _record(kind, outcome="passed", outputs=(), message="", index=None, xfail=False):
    grade_meta = {"kind": kind, **({"index": index} if index is not None else {})}
    return {"when": "call", "outcome": outcome, "xfail": xfail, "cell_id": f"{kind}-cell", "grade": grade_meta,
            "outputs": list(outputs), "message": message}


def _error(ename, evalue):
    return {"type": "error", "ename": ename, "evalue": evalue, "traceback": f"{ename}: {evalue}"}


def _run(*check_records, exercise=(), timed_out=False, kernel_died=False, preamble_ok=True):
    records = [_record("start"), _record("preamble", "passed" if preamble_ok else "failed",
                                         [] if preamble_ok else [_error("ImportError", "no numpy")]),
               _record("arm"), *exercise, _record("guard"), *check_records]
    return RunResult(records=records, timed_out=timed_out, kernel_died=kernel_died, seconds=1.0)


@pytest.mark.parametrize("cause, verdict", [
    ("KernelOutOfBounds: kernel 'k', cell In[3], line 5: write out[1000] past the end (N=1000)", "out of bounds"),
    ("KernelDeadlock: kernel 'k': __syncthreads() reached by 1 of 256 threads", "deadlock"),
    ("KernelTimeout: kernel 'k': ran past its time limit of 6 s", "hang"),
    ("KernelCompileError: kernel 'k', line 3: expected ';'", "compile error"),
])
def test_kernel_errors_inside_a_check_name_the_cause(chapters, cause, verdict):
    ex = chapters["05_gelu"].exercise("gelu_forward")
    text = f"FAIL gelu_forward: your kernel raised an error for N=1000 (case 1 of 4):\n  {cause}\nhint: look"
    res = judge(ex, _run(_record("check", "failed", [_error("CheckFailed", text)], index=0)), 30)
    assert (res.verdict, res.earned, res.grader_error) == (verdict, 0, False)
    assert cause.split(":")[0] in res.reason and "hint" in res.details


def test_verdicts_for_pass_wrong_output_and_missing_results(chapters):
    ex = chapters["05_gelu"].exercise("gelu_forward")
    ok = judge(ex, _run(_record("check", outputs=[{"type": "stream", "name": "stdout",
                                                   "text": "PASS gelu_forward\n"}], index=0)), 30)
    assert (ok.verdict, ok.earned) == ("pass", 1)
    wrong = judge(ex, _run(_record("check", "failed", [_error(
        "CheckFailed", "FAIL gelu_forward: wrong results for N=1000\n  out: max abs error 0.1 > tolerance")],
        index=0)), 30)
    assert (wrong.verdict, wrong.earned) == ("wrong", 0) and "wrong results" in wrong.reason
    noisy = judge(ex, _run(_record("check", "failed", [{"type": "stream", "name": "stdout",
                                                        "text": "debug 1\nPASS gelu_forward\n"}],
                                   message="Cell outputs differ", index=0)), 30)
    assert noisy.verdict == "output differs" and "debug 1" in noisy.reason
    todo = judge(ex, _run(_record("check", "failed", [_error("NotImplementedError", "gelu_forward: remove")],
                                  index=0)), 30)
    assert todo.verdict == "not attempted"
    broken = judge(ex, _run(_record("check", "failed", [_error("NameError", "name 'gelu_forward' is not defined")],
                                    index=0),
                            exercise=[_record("exercise", "failed", [_error("SyntaxError", "invalid syntax")])]), 30)
    assert broken.verdict == "error" and "SyntaxError" in broken.reason
    assert judge(ex, _run(timed_out=True), 30).verdict == "hang"
    assert judge(ex, _run(kernel_died=True), 30).verdict == "crash"
    setup = judge(ex, _run(preamble_ok=False), 30)
    assert setup.grader_error and "no numpy" in setup.reason
    restored = judge(ex, _run(_record("check", index=0), exercise=[]), 30)
    assert restored.notes == []
    records = _run(_record("check", index=0)).records
    records[-2]["outputs"] = [{"type": "stream", "name": "stdout",
                               "text": "llmc-grade-guard: restored llmc_kernels.check.forward\n"}]
    noted = judge(ex, RunResult(records=records), 30)
    assert noted.verdict == "pass" and "llmc_kernels.check.forward" in noted.notes[0]


# ------------------------------------------------------------------------------------------- reports
def test_labels_are_file_names_unless_they_repeat():
    paths = [Path("a/alice/05_gelu.ipynb"), Path("a/bob/05_gelu.ipynb"), Path("x/06_residual.ipynb")]
    assert grade.labels(paths) == ["alice/05_gelu.ipynb", "bob/05_gelu.ipynb", "06_residual.ipynb"]
    assert grade.feedback_name("alice/05_gelu.ipynb") == "alice__05_gelu.feedback.md"


def test_csv_columns_points_and_error_rows(chapters, tmp_path):
    from llmc_kernels.grade_judge import ExerciseResult
    gelu, res = chapters["05_gelu"], chapters["06_residual"]
    a = grade.Submission(Path("a.ipynb"), "a.ipynb", chapter=res,
                         results=[ExerciseResult("residual_forward", 1, 1), ExerciseResult("residual_backward", 1, 0)])
    b = grade.Submission(Path("b.ipynb"), "b.ipynb", chapter=gelu,
                         results=[ExerciseResult("gelu_forward", 1.5, 1.5), ExerciseResult("gelu_backward", 1, 0.25)])
    c = grade.Submission(Path("c.ipynb"), "c.ipynb", error="not a notebook")
    grade.write_csv(tmp_path / "g.csv", [a, b, c])
    rows = list(csv.reader(io.StringIO((tmp_path / "g.csv").read_text())))
    assert rows == [["submission", "gelu_forward", "gelu_backward", "residual_forward", "residual_backward",
                     "total", "max"],
                    ["a.ipynb", "", "", "1", "0", "1", "2"],
                    ["b.ipynb", "1.5", "0.25", "", "", "1.75", "2"],
                    ["c.ipynb", "", "", "", "", "", ""]]


def test_no_canonical_notebooks_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(gn.GradingSetupError, match="no such folder"):
        grade.find_solutions(str(tmp_path / "missing"))
    assert grade.find_solutions(None) == SOLUTIONS          # the checkout's, found beside the package
    monkeypatch.setattr(grade, "__file__", str(tmp_path / "site-packages" / "llmc_kernels" / "grade.py"))
    with pytest.raises(gn.GradingSetupError, match="pass --solutions DIR"):
        grade.find_solutions(None)
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "05_gelu.ipynb").write_text((SOLUTIONS / "05_gelu.ipynb").read_text())
    assert grade.find_solutions(None) == tmp_path / "solutions"


# ------------------------------------------------------------------------------------------- guard
def test_guard_puts_back_a_patched_checker_and_nothing_else(capsys):
    from llmc_kernels import check
    ns: dict = {}
    nb = json.loads((SOLUTIONS / "06_residual.ipynb").read_text())
    imports = next("".join(c["source"]) for c in nb["cells"] if c.get("id") == "imports")
    solution = next("".join(c["source"]) for c in nb["cells"] if c.get("id") == "ex-residual_forward")
    exec(imports, ns)
    grade_guard.arm()
    exec(solution, ns)
    check.forward("residual", ns["residual_forward"])       # a real check between arm and restore ...
    assert grade_guard.restore() == []                       # ... changes nothing the guard watches
    real_print, real_stdout, real_fail = builtins.print, sys.stdout, check._fail.__code__
    tolerance = check.TOLERANCES["residual_forward"]
    try:
        check.forward = lambda *a, **k: None
        check.TOLERANCES["residual_forward"] = (1.0, 1.0)
        check._fail.__code__ = (lambda name, text, cause: None).__code__
        check.print = lambda *a, **k: None
        builtins.print = lambda *a, **k: None
        sys.stdout = io.StringIO()
        restored = grade_guard.restore()
    finally:
        builtins.print, sys.stdout = real_print, real_stdout
    assert check.forward.__module__ == "llmc_kernels.check" and check.forward.__name__ == "forward"
    assert check.TOLERANCES["residual_forward"] == tolerance and check._fail.__code__ is real_fail
    assert not hasattr(check, "print")
    for what in ("llmc_kernels.check.forward", "llmc_kernels.check.TOLERANCES (contents)",
                 "llmc_kernels.check._fail (code)", "llmc_kernels.check.print (added)", "builtins.print",
                 "sys.stdout"):
        assert what in restored, (what, restored)
    assert "llmc-grade-guard: restored" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- time limits
def _tiny(pid_file: str, body: str):
    return gn.notebook([gn.code_cell("a", f"import os\nopen({pid_file!r}, 'w').write(str(os.getpid()))", "start"),
                        gn.code_cell("b", "x = 1", "arm"), gn.code_cell("c", body, "exercise", "e"),
                        gn.code_cell("d", "print(x)", "check", "e")])


@pytest.mark.slow
def test_a_stuck_kernel_is_killed_at_the_time_limit():
    def factory(pid_file):
        return _tiny(pid_file, "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass")
    started = time.monotonic()
    result = grade_run.run(factory, backend="cpu", timeout=3)
    assert result.timed_out and not result.kernel_died
    assert time.monotonic() - started < 60
    kinds = [r["grade"]["kind"] for r in result.records]
    assert kinds == ["start", "arm"]                          # the stuck cell and the check never reported
    assert result.kernel_pid and not grade_run._alive(result.kernel_pid)


@pytest.mark.slow
def test_a_normal_run_reports_every_cell(tmp_path, monkeypatch):
    # the notebook kernel sees this process's PYTHONPATH (where a GPU machine may have nbval and its friends),
    # even a relative one, and the backend asked for
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "probe_module.py").write_text("X = 2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "site")
    body = "import os, probe_module\nx = probe_module.X\nassert os.environ['LLMC_BACKEND'] == 'cpu'\nprint('hi')"
    result = grade_run.run(lambda pid: _tiny(pid, body), backend="cpu", timeout=30)
    assert not result.timed_out and result.returncode == 0, result.log
    assert [(r["grade"]["kind"], r["outcome"]) for r in result.records] == [
        ("start", "passed"), ("arm", "passed"), ("exercise", "passed"), ("check", "passed")]
    assert result.records[-1]["outputs"] == [{"type": "stream", "name": "stdout", "text": "2\n"}]


def test_a_chapter_without_exercises_has_nothing_to_grade(tmp_path):
    nb = strip_llmc(nb_of(SOLUTIONS, "05_gelu"))          # a guided run: no exercise or check cells
    nb.metadata["llmc"] = {"chapter": "10_training", "version": "1"}
    nbformat.write(nb, str(tmp_path / "10_training.ipynb"))
    chapters, broken = gn.load_canonical(tmp_path)
    sub = grade.Submission(tmp_path / "10_training.ipynb", "10_training.ipynb")
    grade.prepare(sub, chapters, broken)
    grade.grade([sub], backend="cpu", timeout=1, seed=None, jobs=1)      # nothing to run
    assert (sub.error, sub.results, sub.total, sub.max) == (None, [], 0, 0)
    assert "nothing to grade" in grade.table(sub)
    grade.write_csv(tmp_path / "g.csv", [sub])
    assert (tmp_path / "g.csv").read_text().splitlines() == ["submission,total,max", "10_training.ipynb,0,0"]
