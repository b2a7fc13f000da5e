"""The notebook side of ``llmc grade``: canonical notebooks, submissions, and the notebooks that get run.

- :func:`load_canonical` reads the instructor's copy of the course's solution notebooks (executed, so their
  check cells hold the course's ``PASS <function>`` lines) into :class:`Chapter` objects: the exercises in
  notebook order, each with its exercise cells, its check cells and their points.
- :func:`read_notebook` reads a learner's file leniently (any nbformat 4, with or without cell ids) and
  :func:`identify` finds its chapter: notebook metadata ``llmc.chapter``, else a chapter name in the file name
  (``Copy of 05_gelu.ipynb``). Anything else is :class:`NotCourseNotebook`.
- :func:`student_sources` picks the learner's cells for one exercise: metadata ``llmc.exercise``, else the
  canonical cell id, else the cell that defines the exercise's function (Colab can drop metadata).
- :func:`chapter_claims` says which chapter a submission claims to be, by its metadata, its file name and its
  exercise cells, so that a notebook of another chapter is flagged.
- :func:`review_flags` lists constructs in the learner's cells that can reach around a check (patching the
  checker, the notebook kernel, printing a PASS line), for an instructor to look at.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

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
    cell: dict  # the canonical check cell, with its reference outputs
    points: float
    performance_points: float = 0.0  # of ``points``, for meeting the targets (a performance check)


@dataclass
class Exercise:
    name: str
    cells: list = field(default_factory=list)  # canonical exercise cells (the solution)
    checks: list = field(default_factory=list)  # list[Check]

    @property
    def points(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def performance_points(self) -> float:
        return sum(c.performance_points for c in self.checks)

    @property
    def kind(self) -> str:
        """ "performance" for an optimisation exercise (its check cells carry ``llmc.kind``), else ""."""
        return (
            "performance"
            if any(_llmc(c.cell.get("metadata", {})).get("kind") == "performance" for c in self.checks)
            else ""
        )

    @property
    def cell_ids(self) -> list[str]:
        return [c.get("id") for c in self.cells if c.get("id")]


@dataclass
class Chapter:
    name: str
    version: str
    path: Path
    preamble: list  # the course's code cells before the first exercise
    exercises: list  # list[Exercise], notebook order

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
        if role in ("setup", "instructor") or "instructor" in (cell.get("metadata", {}).get("tags") or []):
            continue  # the Colab install cell; answers for instructors only
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
                f"--nbval-lax {path}` must pass, and save them with their outputs"
            )
        pts = _points(meta.get("points"))
        pts = 1.0 if pts is None else pts
        perf = _points(meta.get("performance_points")) if meta.get("kind") == "performance" else None
        if perf is not None and not 0 <= perf <= pts:
            raise GradingSetupError(f"{where}: llmc.performance_points must lie between 0 and llmc.points")
        ex.checks.append(Check(cell, pts, perf or 0.0))
    for ex in exercises.values():
        if not ex.checks:
            raise GradingSetupError(f"{path.name}: exercise {ex.name} has no check cell: nothing to grade it with")
    return Chapter(name, str(version) if version is not None else "", path, preamble, list(exercises.values()))


class _Node(dict):
    """A dict with attribute access, like nbformat's NotebookNode (used when nbformat is not installed)."""

    __getattr__ = dict.get

    def __setattr__(self, name, value):
        self[name] = value


def _nodes(value):
    if isinstance(value, dict):
        return _Node({k: _nodes(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_nodes(v) for v in value]
    return value


def read_notebook(path: Path):
    """A notebook file as nbformat 4 (no schema validation: learners' files come from many editors). Without
    nbformat installed, only nbformat 4 files are read."""
    try:
        import nbformat
    except ImportError:
        nbformat = None
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
        if nbformat is None:
            if raw.get("nbformat") != 4 or not isinstance(raw.get("cells"), list):
                raise ValueError(f"nbformat {raw.get('nbformat')} needs the nbformat package to be read")
            nb = _nodes(raw)
        else:
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
    how: str  # "metadata" | "file name"
    version: str | None  # the submission's llmc.version, if any


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
        raise GradingSetupError(
            f"its metadata says chapter {named!r}, which has no canonical notebook among "
            f"the solutions ({', '.join(chapters)})"
        )
    stem = _norm(Path(filename).stem)
    by_name = [c for c in list(chapters) + list(broken) if _norm(c) in stem]
    if not by_name:
        raise NotCourseNotebook(
            "not a notebook of this course: it has no metadata llmc.chapter and its file name "
            f"names no chapter ({', '.join(chapters)})"
        )
    best = max(by_name, key=len)
    if best in broken:
        raise GradingSetupError(f"the canonical notebook of chapter {best} cannot be used: {broken[best]}")
    return Identified(chapters[best], "file name", version)


@dataclass
class Claims:
    """Which chapter a submission says it is, three ways (None or empty where it does not say)."""

    metadata: str | None
    file_name: str | None
    cells: set  # chapters whose exercises the notebook's exercise cells name


def chapter_claims(nb, filename: str, chapters: dict) -> Claims:
    info = _llmc(nb.get("metadata", {}))
    named = info.get("chapter") if isinstance(info.get("chapter"), str) and info.get("chapter") else None
    stem = _norm(Path(filename).stem)
    by_name = [c for c in chapters if _norm(c) in stem]
    owner = {ex.name: c.name for c in chapters.values() for ex in c.exercises}
    cells = {
        owner[n]
        for cell in nb.cells
        if _role(cell) == "exercise"
        for n in [_llmc(cell.get("metadata", {})).get("exercise")]
        if n in owner
    }
    return Claims(named, max(by_name, key=len) if by_name else None, cells)


def mismatch(claims: Claims, graded: str, pinned: bool) -> list[str]:
    """Flags for the CSV's note column: the ways in which a submission claims to be another chapter."""
    notes = []
    if pinned:
        for what, value in (("metadata", claims.metadata), ("file name", claims.file_name)):
            if value is not None and value != graded:
                notes.append(f"wrong notebook? its {what} says chapter {value}, graded as {graded} (--chapter)")
    elif claims.metadata and claims.file_name and claims.metadata != claims.file_name:
        notes.append(
            f"wrong notebook? its metadata says chapter {claims.metadata}, its file name "
            f"{claims.file_name}; graded as {graded}"
        )
    if claims.cells and graded not in claims.cells:
        notes.append(
            f"wrong notebook? its exercise cells are those of chapter {', '.join(sorted(claims.cells))}, "
            f"graded as {graded}"
        )
    return notes


@dataclass
class Picked:
    sources: list  # the learner's cells for one exercise, in notebook order
    how: str  # how they were found
    note: str = ""  # something the learner should know about it


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
        note = (
            f"{len(picked)} cells are marked as exercise {exercise.name}; they were run in notebook order, "
            "as Run All would"
        )
    elif how != "metadata" and picked:
        note = f"found by {how} (the cell's metadata llmc.exercise is missing)"
    return Picked([_source(c) for c in picked], how, note)


# ------------------------------------------------------------------------------------- review flags
_FLAGS = [
    (r"\bget_ipython\b|\bIPython\b|\bipykernel\b|\bshell_handlers\b", "reaches into the notebook kernel"),
    (r"\bsys\s*\.\s*(modules|stdout|stderr|displayhook|excepthook)\b", "changes the interpreter's state"),
    (r"\b__builtins__\b|\bimport\s+builtins\b|\bbuiltins\s*\.", "changes Python's built-ins"),
    (r"\bsetattr\s*\(|\.__code__\b|\.__globals__\b|\.__dict__\b", "rewrites objects at run time"),
    (
        r"\b(check|reference|ops|llmc_kernels(\.\w+)*)\s*\.\s*\w+(\s*\[[^\]]*\])?\s*=(?!=)",
        "assigns into the course's modules",
    ),
    (
        r"\b(_honesty|grade_guard|check_\w+)\b|\bllmc_kernels\.(check|grade)\.\w+|\bfrom\s+llmc_kernels\.(check|grade)\s+import\b",
        "uses the checker's internals",
    ),
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
