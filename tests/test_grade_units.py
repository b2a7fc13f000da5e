"""The pieces of `llmc grade` on their own: reading and identifying submissions, picking the learner's cells,
flagging a notebook of another chapter, the verdicts from returned arrays, the CSV, the feedback and Gradescope's
results.json. (tests/test_grade_cli.py grades whole submissions end to end, tests/test_grade_threats.py tries
the ways around the grader.)"""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from llmc_kernels import grade
from llmc_kernels.grade import exercise as gx
from llmc_kernels.grade import judge as gj
from llmc_kernels.grade import notebook as gn
from llmc_kernels.grade import report as grade_report
from llmc_kernels.grade.cases import Plan, cases_for, plan_of

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
    assert gelu.points == 3 and all(len(e.checks) == 1 for e in gelu.exercises)  # 1 + 2, by difficulty
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
    (tmp_path / "06_residual.ipynb").write_text((CHAPTERS / "06_residual.ipynb").read_text())  # not executed
    chapters, broken = gn.load_canonical(tmp_path)
    assert list(chapters) == ["05_gelu"] and list(broken) == ["06_residual"]
    for nb, name in (
        (nb_of(CHAPTERS, "06_residual"), "x.ipynb"),
        (strip_llmc(nb_of(CHAPTERS, "06_residual")), "06_residual.ipynb"),
    ):
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
    assert picked.sources == [wanted] and "metadata" in picked.note  # the last definition, as Run All
    nb.cells.append(copy.deepcopy(next(c for c in nb.cells if c.get("id") == "ex-gelu_forward")))
    nb.cells[-1]["id"] = "copy"
    picked = gn.student_sources(nb, ex)
    assert len(picked.sources) == 2 and "notebook order" in picked.note
    empty = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("nothing")])
    assert gn.student_sources(empty, ex).sources == []


def test_chapter_claims_flag_a_notebook_of_another_chapter(chapters):
    nb = nb_of(SOLUTIONS, "06_residual")
    claims = gn.chapter_claims(nb, "06_residual.ipynb", chapters)
    assert (claims.metadata, claims.file_name, claims.cells) == ("06_residual", "06_residual", {"06_residual"})
    assert gn.mismatch(claims, "06_residual", pinned=False) == []
    renamed = gn.chapter_claims(nb, "alice_05_gelu.ipynb", chapters)
    assert any("file name 05_gelu" in n for n in gn.mismatch(renamed, "06_residual", pinned=False))
    relabelled = copy.deepcopy(nb)
    relabelled.metadata["llmc"]["chapter"] = "05_gelu"
    both = gn.chapter_claims(relabelled, "05_gelu.ipynb", chapters)  # renamed and relabelled
    assert any("exercise cells are those of chapter 06_residual" in n for n in gn.mismatch(both, "05_gelu", False))
    pinned = gn.mismatch(claims, "05_gelu", pinned=True)
    assert any("--chapter" in n and "06_residual" in n for n in pinned)


def test_plans_of_the_canonical_check_cells(chapters):
    plans = {ex.name: plan_of(ex.checks[0].cell.source) for c in chapters.values() for ex in c.exercises}
    assert plans["gelu_forward"] == Plan("op", "gelu_forward", "gelu", "forward")
    assert plans["crossentropy_softmax_backward"].checked_name == "crossentropy_softmax_backward"
    assert plans["block_backward"] == Plan("block", "block_backward", "block", "backward")
    assert all(p.function == name for name, p in plans.items())
    with pytest.raises(Exception, match="neither"):
        plan_of("print('PASS x')")


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
@pytest.mark.parametrize(
    "names, verdict",
    [
        (["KernelRace", "KernelError", "Exception"], "race"),  # the race detector's class, matched by name
        (["KernelOutOfBounds", "KernelError", "IndexError"], "out of bounds"),
        (["KernelDeadlock", "KernelError"], "deadlock"),
        (["KernelTimeout", "KernelError"], "hang"),
        (["KernelCompileError", "KernelError"], "compile error"),
        (["ForbiddenCall", "KernelError"], "forbidden call"),
        (["NotImplementedError", "RuntimeError"], "not attempted"),
        (["ValueError", "Exception"], "error"),
    ],
)
def test_error_classes_name_the_verdict(names, verdict):
    err = {"ename": names[0], "evalue": "kernel 'k', cell In[3], line 5: something", "names": names}
    assert gj.verdict_of_error(err) == verdict
    v = gj.error_verdict(err, "N=5 (case 1 of 4)")
    assert v.verdict == verdict and (names[0] in v.reason or verdict == "not attempted")
    if verdict in gj.HINTS:
        assert "hint:" in v.details


def _gelu_case(seed=3):
    return cases_for(Plan("op", "gelu_forward", "gelu", "forward"), seed).graded[0]


def test_returned_arrays_are_judged_against_the_reference():
    case = _gelu_case()
    right = {k: v.copy() for k, v in case.arrays.items()}
    right["out"] = dict(case.checked)["out"].expected.astype(np.float32)
    results = {s: gj.compare_case(case, right) for s in ("forward", "reverse")}
    where = {"forward": "here", "reverse": "there"}
    assert gj.wrong_results(case, where, results, {"forward": right, "reverse": right}, ["forward", "reverse"]) is None
    off = dict(right, out=right["out"] * 1.5)
    results["reverse"] = gj.compare_case(case, off)
    v = gj.wrong_results(case, where, results, {"forward": right, "reverse": off}, ["forward", "reverse"])
    assert v.verdict == "wrong" and "thread order 'reverse' failed" in v.details and "there" in v.reason
    changed = dict(right, inp=right["inp"] + 1)
    with pytest.raises(gj.Verdict, match="changed its input 'inp'"):
        gj.unchanged_inputs(case, changed, "here")
    frame = {f"out.{k}": v for k, v in right.items()}
    assert gj.outputs(case, frame)["out"] is frame["out.out"]
    for bad in (
        dict(frame, **{"out.out": right["out"].astype(np.float64)}),
        {"out.inp": right["inp"]},
        dict(frame, **{"out.out": right["out"][:-1]}),
    ):
        with pytest.raises(Exception, match="expected|missing"):
            gj.outputs(case, bad)


class _FakeBox:
    """What grade_exercise.judge_worker reads of a finished learner process."""

    def __init__(self, frames, returncode=0, bad_frame=""):
        self.frames = [(float(i), m, a) for i, (m, a) in enumerate(frames)]
        self.proc = type("P", (), {"returncode": returncode})()
        self.bad_frame = bad_frame

    def text(self):
        return "log"


def test_verdicts_when_the_learner_process_misbehaves():
    from llmc_kernels.grade.sandbox import Limits

    plan = Plan("op", "gelu_forward", "gelu", "forward")
    cases = cases_for(plan, 3)
    runs = gx.runs_for(plan, len(cases.graded), "cpu")
    limits = Limits(30.0)

    def verdict(frames, outcome="exited", **box):
        with pytest.raises(gj.Verdict) as e:
            gx.judge_worker(plan, cases, runs, _FakeBox(frames, **box), outcome, limits)
        return e.value

    setup = ({"event": "setup_done"}, {})
    assert verdict(
        [({"event": "setup_error", "error": {"ename": "ImportError", "evalue": "no numpy"}}, {})]
    ).grader_error
    assert verdict([], "setup_timeout").grader_error
    assert verdict([setup], "timeout").verdict == "hang"
    crash = verdict([setup], returncode=137)
    assert crash.verdict == "crash" and "signal 9" in crash.reason
    assert verdict([setup], bad_frame="an array of dtype object").verdict == "error"
    assert verdict([setup, ({"event": "missing", "what": "not defined"}, {})]).verdict == "missing"
    raised = verdict(
        [
            setup,
            ({"event": "cell", "index": 0, "error": {"ename": "SyntaxError", "evalue": "bad"}}, {}),
            ({"event": "missing", "what": "not defined"}, {}),
        ]
    )
    assert raised.verdict == "error" and "SyntaxError" in raised.reason
    oob = {"ename": "KernelOutOfBounds", "evalue": "write out[2000]", "names": ["KernelOutOfBounds"]}
    first = ({"event": "run", "run": 0, "ok": False, "error": oob}, {})
    assert verdict([setup, first]).verdict == "out of bounds"
    forged = ({"event": "run", "run": 0, "ok": True, "returned": ""}, {"out.out": np.zeros(3, np.float32)})
    assert verdict([setup, forged]).verdict == "error"  # not the shape the grader gave it


# ------------------------------------------------------------------------------------------- reports
def test_labels_are_file_names_unless_they_repeat():
    paths = [Path("a/alice/05_gelu.ipynb"), Path("a/bob/05_gelu.ipynb"), Path("x/06_residual.ipynb")]
    assert grade.labels(paths) == ["alice/05_gelu.ipynb", "bob/05_gelu.ipynb", "06_residual.ipynb"]
    assert grade_report.feedback_name("alice/05_gelu.ipynb") == "alice__05_gelu.feedback.md"


def _class(chapters):
    gelu, res = chapters["05_gelu"], chapters["06_residual"]
    a = grade.Submission(
        Path("a.ipynb"),
        "a.ipynb",
        chapter=res,
        notes=["wrong notebook? its file name says x"],
        results=[
            gj.ExerciseResult("residual_forward", 1, 1),
            gj.ExerciseResult("residual_backward", 1, 0, "wrong", "out is wrong", "details"),
        ],
    )
    b = grade.Submission(
        Path("b.ipynb"),
        "b.ipynb",
        chapter=gelu,
        results=[gj.ExerciseResult("gelu_forward", 1.5, 1.5), gj.ExerciseResult("gelu_backward", 1, 0.25)],
    )
    c = grade.Submission(Path("c.ipynb"), "c.ipynb", error="not a notebook")
    return [a, b, c]


def test_csv_columns_points_notes_and_error_rows(chapters, tmp_path):
    grade_report.write_atomic(tmp_path / "g.csv", grade_report.csv_text(_class(chapters)))
    rows = list(csv.reader(io.StringIO((tmp_path / "g.csv").read_text())))
    assert rows == [
        [
            "submission",
            "gelu_forward",
            "gelu_backward",
            "residual_forward",
            "residual_backward",
            "total",
            "max",
            "note",
        ],
        ["a.ipynb", "", "", "1", "0", "1", "2", "wrong notebook? its file name says x"],
        ["b.ipynb", "1.5", "0.25", "", "", "1.75", "3", ""],
        ["c.ipynb", "", "", "", "", "", "", "not a notebook"],
    ]


def test_files_are_replaced_never_written_through_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "g.csv").symlink_to(victim)  # planted by a learner process before the grader writes
    grade_report.write_atomic(tmp_path / "g.csv", "submission\n")
    assert victim.read_text() == "keep me" and (tmp_path / "g.csv").read_text() == "submission\n"


def test_gradescope_results_json(chapters):
    subs = _class(chapters)[:1]
    data = json.loads(grade_report.gradescope(subs, backend="cpu", seed=5))
    assert data["score"] == 1
    assert [(t["name"], t["score"], t["max_score"]) for t in data["tests"]] == [
        ("residual_forward", 1, 1),
        ("residual_backward", 0, 1),
    ]
    assert "out is wrong" in data["tests"][1]["output"] and "details" in data["tests"][1]["output"]
    assert all(set(t) >= {"name", "score", "max_score", "output"} for t in data["tests"])
    assert "wrong notebook" in data["output"] and "seed 5" in data["output"]
    several = json.loads(grade_report.gradescope(_class(chapters), backend="cpu", seed=5))
    assert several["tests"][0]["name"] == "a.ipynb: residual_forward"


def test_no_canonical_notebooks_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(gn.GradingSetupError, match="no such folder"):
        grade.find_solutions(str(tmp_path / "missing"))
    assert grade.find_solutions(None) == SOLUTIONS  # the checkout's, found beside the package
    installed = tmp_path / "site-packages" / "llmc_kernels" / "grade" / "command.py"
    monkeypatch.setattr(grade.command, "__file__", str(installed))
    with pytest.raises(gn.GradingSetupError, match="pass --solutions DIR"):
        grade.find_solutions(None)
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "05_gelu.ipynb").write_text((SOLUTIONS / "05_gelu.ipynb").read_text())
    assert grade.find_solutions(None) == tmp_path / "solutions"


def test_notebooks_read_without_nbformat(tmp_path):
    """The GPU machine may have no Jupyter packages: llmc grade reads nbformat-4 files without nbformat."""
    code = (
        "import sys; sys.modules['nbformat'] = None\n"
        "from llmc_kernels.grade import notebook as gn\n"
        f"nb = gn.read_notebook({str(SOLUTIONS / '05_gelu.ipynb')!r})\n"
        "assert nb.metadata.llmc['chapter'] == '05_gelu' and nb.cells[0].metadata is not None\n"
        f"chapters, broken = gn.load_canonical({str(SOLUTIONS)!r})\n"
        "assert chapters['05_gelu'].points == 3\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_a_chapter_without_exercises_has_nothing_to_grade(tmp_path):
    nb = strip_llmc(nb_of(SOLUTIONS, "05_gelu"))  # a guided run: no exercise or check cells
    nb.metadata["llmc"] = {"chapter": "10_training", "version": "1"}
    nbformat.write(nb, str(tmp_path / "10_training.ipynb"))
    chapters, broken = gn.load_canonical(tmp_path)
    sub = grade.Submission(tmp_path / "10_training.ipynb", "10_training.ipynb")
    grade.prepare(sub, chapters, broken)
    grade.grade([sub], sandbox=None, seed=1, jobs=1, limits=None)  # nothing to run
    assert (sub.error, sub.results, sub.total, sub.max) == (None, [], 0, 0)
    assert "nothing to grade" in grade_report.table(sub)
    assert grade_report.csv_text([sub]).splitlines() == ["submission,total,max,note", "10_training.ipynb,0,0,"]


def test_cpu_runs_of_a_gpu_session_see_numpy_for_cupy(monkeypatch):
    """On a GPU the notebook's ``xp`` is CuPy; the pre-flight and the recorded run call the learner's function on
    the CPU backend, where ``xp.zeros`` must make a NumPy scratch buffer (as the same notebook would on a CPU)."""
    import types

    from llmc_kernels.check.array_module import array_module_for

    fake_cupy = types.ModuleType("cupy")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    ns = {"xp": fake_cupy, "cp": fake_cupy, "np": np}
    exec("def scratch(n):\n    return xp.zeros(n), cp", ns)
    with array_module_for(ns["scratch"], "cpu"):
        buf, cp = ns["scratch"](3)
        assert isinstance(buf, np.ndarray) and cp is np
    assert ns["xp"] is fake_cupy and ns["cp"] is fake_cupy  # the learner's names come back after the run
    with array_module_for(ns["scratch"], "cuda"):
        assert ns["xp"] is fake_cupy  # GPU runs keep CuPy
