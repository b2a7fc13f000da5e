"""The notebook side of ``llmc grade``: canonical notebooks, submissions, and the notebooks that get run.

- :func:`load_canonical` reads the instructor's copy of the course's solution notebooks (executed, so their
  check cells hold the course's ``PASS <function>`` lines) into :class:`Chapter` objects: the exercises in
  notebook order, each with its exercise cells, its check cells and their points.
- :func:`read_notebook` reads a learner's file leniently (any nbformat 4, with or without cell ids) and
  :func:`identify` finds its chapter: notebook metadata ``llmc.chapter``, else a chapter name in the file name
  (``Copy of 05_gelu.ipynb``). Anything else is :class:`NotCourseNotebook`.
- :func:`student_sources` picks the learner's cells for one exercise: metadata ``llmc.exercise``, else the
  canonical cell id, else the cell that defines the exercise's function (Colab can drop metadata).
- :func:`graded_notebook` builds the notebook run for one exercise: the course's set-up code (every code cell
  before the first exercise, minus the Colab set-up cell), the learner's cells for that exercise and the
  course's check cells, with their reference outputs. Nothing else of the submission is used: not its
  outputs, not its check cells, not its other cells.
- :func:`review_flags` lists constructs in the learner's cells that can reach around a check (patching the
  checker, the notebook kernel, printing a PASS line), for an instructor to look at.
"""
from __future__ import annotations

import ast
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

# nbformat (like nbval) is imported where it is used, so that `llmc grade` can say what to install without it
GRADE_KEY = "llmc_grade"          # cell metadata of the graded notebook: what each cell is, for the report
PASS_LINE = re.compile(r"^PASS (\S+)\s*$", re.M)


class GradingSetupError(Exception):
    """The grader cannot run as asked (no canonical notebooks, a broken one, a missing tool)."""


class NotCourseNotebook(Exception):
    """A submission that is not one of this course's notebooks (or not a notebook at all)."""


# ------------------------------------------------------------------------------------------ helpers
def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _llmc(meta) -> dict:
    value = meta.get("llmc") if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


def _points(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []) or []:
        if out.get("output_type") == "stream":
            parts.append(_source({"source": out.get("text", "")}))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(_source({"source": out.get("data", {}).get("text/plain", "")}))
    return "".join(parts)


def defined_functions(source: str) -> set[str]:
    """Names of the functions a cell defines at its top level (IPython magics ignored)."""
    text = "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in source.split("\n"))
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return set(re.findall(r"^def\s+([A-Za-z_]\w*)\s*\(", source, re.M))
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


# ------------------------------------------------------------------------------------- canonical side
@dataclass
class Check:
    cell: dict                   # the canonical check cell, with its reference outputs
    points: float


@dataclass
class Exercise:
    name: str
    cells: list = field(default_factory=list)        # canonical exercise cells (the solution)
    checks: list = field(default_factory=list)       # list[Check]

    @property
    def points(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def cell_ids(self) -> list[str]:
        return [c.get("id") for c in self.cells if c.get("id")]


@dataclass
class Chapter:
    name: str
    version: str
    path: Path
    preamble: list                                   # the course's code cells before the first exercise
    exercises: list                                  # list[Exercise], notebook order

    def exercise(self, name: str) -> Exercise:
        return next(e for e in self.exercises if e.name == name)

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)


def _role(cell) -> str | None:
    return _llmc(cell.get("metadata", {})).get("role")


def parse_canonical(nb, path: Path) -> Chapter:
    """One canonical notebook as a :class:`Chapter`; GradingSetupError says what is wrong with it."""
    info = _llmc(nb.get("metadata", {}))
    name, version = info.get("chapter"), info.get("version")
    if not isinstance(name, str) or not name:
        raise GradingSetupError(f"{path}: notebook metadata llmc.chapter is missing: not a course notebook")
    exercises: dict[str, Exercise] = {}
    preamble, started = [], False
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        meta = _llmc(cell.get("metadata", {}))
        role = meta.get("role")
        if role == "setup":
            continue
        if role not in ("exercise", "check"):
            if not started:
                preamble.append(cell)
            continue
        started = True
        ex_name = meta.get("exercise")
        where = f"{path.name}, cell {index} (id {cell.get('id')})"
        if not isinstance(ex_name, str) or not ex_name:
            raise GradingSetupError(f"{where}: metadata.llmc.exercise is missing")
        ex = exercises.setdefault(ex_name, Exercise(ex_name))
        if role == "exercise":
            ex.cells.append(cell)
            continue
        if "NBVAL_CHECK_OUTPUT" not in _source(cell):
            raise GradingSetupError(f"{where}: a check cell without the '# NBVAL_CHECK_OUTPUT' marker")
        if cell.get("execution_count") is None or not PASS_LINE.search(_output_text(cell)):
            raise GradingSetupError(
                f"{where}: the check cell has no saved 'PASS ...' output. The canonical notebooks must be the "
                "executed solutions (as solutions/ in the course repository): run them once, e.g. `pytest "
                f"--nbval-lax {path}` must pass, and save them with their outputs")
        pts = _points(meta.get("points"))
        ex.checks.append(Check(cell, 1.0 if pts is None else pts))
    for ex in exercises.values():
        if not ex.checks:
            raise GradingSetupError(f"{path.name}: exercise {ex.name} has no check cell: nothing to grade it with")
    return Chapter(name, str(version) if version is not None else "", path, preamble, list(exercises.values()))


def read_notebook(path: Path):
    """A notebook file as nbformat 4 (no schema validation: learners' files come from many editors)."""
    import nbformat
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NotCourseNotebook("not a notebook: the file is not UTF-8 text") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise NotCourseNotebook(f"not a notebook: the file is not JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        raise NotCourseNotebook("not a notebook: the JSON has no list of cells")
    try:
        nb = nbformat.from_dict(raw)
        if nb.get("nbformat") != 4:
            nb = nbformat.convert(nb, 4)
    except Exception as err:  # nbformat's converters raise various types on malformed input
        raise NotCourseNotebook(f"not a readable notebook ({type(err).__name__}: {err})") from None
    for cell in nb.cells:
        if not isinstance(cell, dict):
            raise NotCourseNotebook("not a readable notebook: a cell is not a JSON object")
        cell["source"] = _source(cell)
        cell.setdefault("metadata", {})
    return nb


def load_canonical(folder: Path) -> tuple[dict[str, Chapter], dict[str, str]]:
    """The canonical notebooks in ``folder``: ``(chapters by name, {chapter: why it cannot be used})``.

    A broken notebook (not executed, a check cell without its marker) only stops the grading of its own
    chapter; GradingSetupError when the folder holds no usable notebook at all."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GradingSetupError(f"--solutions {folder}: no such folder")
    chapters: dict[str, Chapter] = {}
    broken: dict[str, str] = {}
    for path in sorted(folder.glob("*.ipynb")):
        try:
            nb = read_notebook(path)
        except NotCourseNotebook as err:
            broken[path.stem] = f"{path}: {err}"
            continue
        name = _llmc(nb.get("metadata", {})).get("chapter")
        name = name if isinstance(name, str) and name else path.stem
        try:
            chapter = parse_canonical(nb, path)
        except GradingSetupError as err:
            broken[name] = str(err)
            continue
        if chapter.name in chapters:
            raise GradingSetupError(f"{path} and {chapters[chapter.name].path} are both chapter {chapter.name}")
        chapters[chapter.name] = chapter
    if not chapters:
        why = "".join(f"\n  {reason}" for reason in broken.values())
        raise GradingSetupError(f"{folder} holds no usable canonical notebook{':' + why if why else ' (*.ipynb)'}")
    return chapters, broken


# ------------------------------------------------------------------------------------- submission side
@dataclass
class Identified:
    chapter: Chapter
    how: str                      # "metadata" | "file name"
    version: str | None           # the submission's llmc.version, if any


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def identify(nb, filename: str, chapters: dict[str, Chapter], broken: dict[str, str] | None = None) -> Identified:
    """Which chapter ``nb`` is; NotCourseNotebook if none (GradingSetupError if its chapter has no usable
    canonical notebook here, which is the grader's problem, not the learner's)."""
    broken = broken or {}
    info = _llmc(nb.get("metadata", {}))
    version = info.get("version")
    version = None if version is None else str(version)
    named = info.get("chapter")
    if isinstance(named, str) and named:
        if named in chapters:
            return Identified(chapters[named], "metadata", version)
        if named in broken:
            raise GradingSetupError(f"the canonical notebook of chapter {named} cannot be used: {broken[named]}")
        raise GradingSetupError(f"its metadata says chapter {named!r}, which has no canonical notebook among "
                                f"the solutions ({', '.join(chapters)})")
    stem = _norm(Path(filename).stem)
    by_name = [c for c in list(chapters) + list(broken) if _norm(c) in stem]
    if not by_name:
        raise NotCourseNotebook("not a notebook of this course: it has no metadata llmc.chapter and its file name "
                                f"names no chapter ({', '.join(chapters)})")
    best = max(by_name, key=len)
    if best in broken:
        raise GradingSetupError(f"the canonical notebook of chapter {best} cannot be used: {broken[best]}")
    return Identified(chapters[best], "file name", version)


@dataclass
class Picked:
    sources: list                 # the learner's cells for one exercise, in notebook order
    how: str                      # how they were found
    note: str = ""                # something the learner should know about it


def student_sources(nb, exercise: Exercise) -> Picked:
    """The learner's cells for ``exercise`` (an empty list when there is none)."""
    code = [c for c in nb.cells if c.get("cell_type") == "code"]
    by_meta = [c for c in code if _role(c) == "exercise" and _llmc(c["metadata"]).get("exercise") == exercise.name]
    picked, how = by_meta, "metadata"
    if not picked:
        ids = set(exercise.cell_ids)
        picked, how = [c for c in code if c.get("id") in ids and _role(c) != "check"], "cell id"
    if not picked:
        defining = [c for c in code if exercise.name in defined_functions(_source(c)) and _role(c) != "check"]
        # the last definition is the one a top-to-bottom run leaves in place
        picked, how = defining[-1:], "the cell that defines it"
    note = ""
    if len(picked) > len(exercise.cells) and how == "metadata":
        note = (f"{len(picked)} cells are marked as exercise {exercise.name}; they were run in notebook order, "
                "as Run All would")
    elif how != "metadata" and picked:
        note = f"found by {how} (the cell's metadata llmc.exercise is missing)"
    return Picked([_source(c) for c in picked], how, note)


# ------------------------------------------------------------------------------------- graded notebook
def code_cell(cell_id: str, source: str, kind: str, exercise: str | None = None, base=None, **extra) -> dict:
    """A cell of the graded notebook: ``base`` (a canonical cell, its outputs kept as nbval's reference) or a new
    one, with ``metadata.llmc_grade`` saying what it is (``kind``: start, preamble, arm, exercise, guard,
    check), which the plugin reports back."""
    cell = copy.deepcopy(base) if base is not None else {"cell_type": "code", "metadata": {}}
    cell.update(id=cell_id, source=source)
    if base is None or kind == "exercise":
        cell.update(outputs=[], execution_count=None)
    cell.setdefault("metadata", {})[GRADE_KEY] = {"kind": kind, **({"exercise": exercise} if exercise else {}),
                                                   **extra}
    return cell


def notebook(cells: list, metadata: dict | None = None):
    import nbformat
    return nbformat.from_dict({"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {}, "cells": cells})


_START = """# llmc grade: note this kernel's process id, so that a stuck run can be stopped
import os as _llmc_os
try:
    with open({pid_file!r}, 'w') as _llmc_f:
        _llmc_f.write(str(_llmc_os.getpid()))
except OSError:     # a kept copy of this notebook, run again by hand
    pass
del _llmc_os"""
_ARM = """# llmc grade: remember the course's checker before the learner's code runs
import llmc_kernels.grade_guard
llmc_kernels.grade_guard.arm(seed={seed!r})"""
_GUARD = """# llmc grade: put back the course's checker, in case the code above changed it
import llmc_kernels.grade_guard
llmc_kernels.grade_guard.restore()"""


def graded_notebook(chapter: Chapter, exercise: Exercise, sources: list, *, pid_file: str, seed: int | None):
    """The notebook run for one exercise: course set-up, the learner's cells, guard, the course's checks."""
    cells = [code_cell("llmc-grade-start", _START.format(pid_file=pid_file), "start")]
    cells += [code_cell(cell.get("id") or f"llmc-pre-{i}", _source(cell), "preamble", base=cell)
              for i, cell in enumerate(chapter.preamble)]
    cells.append(code_cell("llmc-grade-arm", _ARM.format(seed=seed), "arm"))
    cells += [code_cell(f"llmc-student-{i}", src, "exercise", exercise.name) for i, src in enumerate(sources)]
    for i, check in enumerate(exercise.checks):
        cells.append(code_cell(f"llmc-grade-guard-{i}", _GUARD, "guard", exercise.name))
        cells.append(code_cell(check.cell.get("id") or f"llmc-check-{i}", _source(check.cell), "check",
                               exercise.name, base=check.cell, index=i))
    return notebook(cells, {"llmc": {"chapter": chapter.name, "version": chapter.version,
                                     "graded_exercise": exercise.name}})


# ------------------------------------------------------------------------------------- review flags
_FLAGS = [
    (r"\bget_ipython\b|\bIPython\b|\bipykernel\b|\bshell_handlers\b", "reaches into the notebook kernel"),
    (r"\bsys\s*\.\s*(modules|stdout|stderr|displayhook|excepthook)\b", "changes the interpreter's state"),
    (r"\b__builtins__\b|\bimport\s+builtins\b|\bbuiltins\s*\.", "changes Python's built-ins"),
    (r"\bsetattr\s*\(|\.__code__\b|\.__globals__\b|\.__dict__\b", "rewrites objects at run time"),
    (r"\b(check|reference|ops|llmc_kernels(\.\w+)*)\s*\.\s*\w+(\s*\[[^\]]*\])?\s*=(?!=)",
     "assigns into the course's modules"),
    (r"\b(_honesty|grade_guard|check_\w+)\b", "uses the checker's internals"),
    (r"""(["'])[^"'\n]*\bPASS\b""", "prints a PASS line of its own"),
    (r"\bos\s*\.\s*(_exit|kill)\b|\bsignal\s*\.\s*signal\b", "kills the process or changes its signals"),
    (r"\bctypes\b", "uses ctypes"),
    (r"(?<![.\w])(exec|eval|compile)\s*\(|\b__import__\b|\bimportlib\b", "runs code built at run time"),
]


def review_flags(source: str) -> list[str]:
    """Reasons for an instructor to read this learner cell: constructs that can reach around a check."""
    found = []
    lines = source.split("\n")
    for pattern, why in _FLAGS:
        rx = re.compile(pattern)
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("#") or line.lstrip().startswith("//"):
                continue
            if rx.search(line):
                found.append(f"{why} (line {number}: {line.strip()[:80]})")
                break
    return found
