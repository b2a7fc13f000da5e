#!/usr/bin/env python3
"""Write the learners' notebooks (chapters/) from the solution notebooks (solutions/).

    python tools/make_student.py            # rewrite chapters/, the set-up cells and _toc.yml's chapter list
    python tools/make_student.py --check    # exit 1 if any of them is out of date, changing nothing

solutions/NN_name.ipynb is the source of truth; chapters/NN_name.ipynb is derived from it:

- Regions inside CUDA strings

      // BEGIN SOLUTION: compute one element per thread      (the text after the colon is optional)
      ...the kernel code...
      // END SOLUTION

  become `// TODO: compute one element per thread` (default: "write this part of the kernel"), so the
  kernel string still compiles. A `// HINT: ...` line inside the region is kept, with the `//` comment lines
  that directly follow it.
- Regions in Python (`# BEGIN SOLUTION[: text]` ... `# END SOLUTION`, same `# HINT:` rule) become a
  `# TODO: text` line (when there is text) and a `raise NotImplementedError("<exercise>: ...")` line with
  the region's indentation. A region with no code (a guard in a launch function) asks the learner to remove
  the line once the kernel above is written; a region with code asks them to replace it with their code.
  In exercise cells the line must sit inside a function: defining it works, calling it raises.
- Regions in Markdown (`<!-- BEGIN SOLUTION -->` ... `<!-- END SOLUTION -->`) become "*Your answer here.*".
- Cells for instructors only (`metadata.llmc.role = "instructor"`, tag `instructor`: the concept questions and
  their answers) are left out of the student copy altogether.
- Outputs, execution counts and execution timings are stripped; cell ids, tags and metadata are kept
  (notebook `metadata.llmc = {chapter, version}`; exercise/check cells `metadata.llmc = {role, exercise,
  points}` with the tag of their role).
- The first cell of every notebook, solutions included, is the set-up cell of tools/colab_setup_cell.py,
  with the repository URL and branch from `_config.yml`.
- `_toc.yml` lists every chapter, in file-name order, between its `# BEGIN CHAPTERS` and `# END CHAPTERS`
  lines.

Exit status: 0 done / up to date, 1 out of date (--check), 2 a notebook breaks the rules above.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colab_setup_cell import SETUP_CELL_ID, SETUP_METADATA, repository, setup_source  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

CUDA_TODO = "write this part of the kernel"  # the TODO of a CUDA region whose marker has no text
PYTHON_TODO = "write this part"  # ... of a Python region with code and no text
GUARD_MESSAGE = "remove this line once you have written the kernel above"
CODE_MESSAGE = "replace this line with your code"
MARKDOWN_ANSWER = "*Your answer here.*"

# the comment mark of each kind of code region; markers stand alone on their line
_MARK = {"cuda": "//", "python": "#"}
_BEGIN = re.compile(r"^(?P<indent>[ \t]*)(?P<mark>//|#|<!--)\s*BEGIN SOLUTION\b\s*:?\s*(?P<text>.*?)\s*(-->)?\s*$")
_END = re.compile(r"^[ \t]*(?P<mark>//|#|<!--)\s*END SOLUTION\b\s*(-->)?\s*$")
_HINT = re.compile(r"^[ \t]*(//|#)\s*HINT\b")
_ANY_MARKER = re.compile(r"\b(BEGIN|END) SOLUTION\b")
_KIND = {"//": "cuda", "#": "python", "<!--": "markdown"}

TOC_BEGIN = "# BEGIN CHAPTERS"
TOC_END = "# END CHAPTERS"


class NotebookError(Exception):
    """A solution notebook breaks the generator's rules; the message names the file and cell."""


@dataclass
class Region:
    kind: str  # "cuda" | "python" | "markdown"
    body: list[str]  # the lines between the markers
    kept: list[str] = field(default_factory=list)  # hint lines kept in the student copy


def _hint_lines(body: list[str], mark: str) -> list[str]:
    """The `HINT:` lines of a region and the comment lines that directly follow each."""
    kept, in_hint = [], False
    for line in body:
        stripped = line.strip()
        if _HINT.match(line):
            kept.append(line)
            in_hint = True
        elif in_hint and stripped.startswith(mark):
            kept.append(line)
        else:
            in_hint = False
    return kept


def transform_source(source: str, *, cell_type: str, exercise: str, where: str) -> tuple[str, list[Region]]:
    """The student version of one cell's source, and the regions it removed."""
    out: list[str] = []
    regions: list[Region] = []
    lines = source.split("\n")
    has_cuda = any((m := _BEGIN.match(l)) and m.group("mark") == "//" for l in lines)
    i = 0
    while i < len(lines):
        line = lines[i]
        begin = _BEGIN.match(line)
        if not begin:
            if _ANY_MARKER.search(line):
                raise NotebookError(
                    f"{where}, line {i + 1}: '{line.strip()}' has no matching BEGIN SOLUTION "
                    "(markers stand alone on their line: `// BEGIN SOLUTION`, `# END SOLUTION`)"
                )
            out.append(line)
            i += 1
            continue
        kind = _KIND[begin.group("mark")]
        if kind == "markdown" and cell_type != "markdown" or kind != "markdown" and cell_type == "markdown":
            raise NotebookError(f"{where}, line {i + 1}: a {kind} solution marker in a {cell_type} cell")
        start = i
        i += 1
        body = []
        while i < len(lines):
            if _BEGIN.match(lines[i]):
                raise NotebookError(
                    f"{where}, line {i + 1}: BEGIN SOLUTION inside the region opened on line "
                    f"{start + 1} (regions do not nest)"
                )
            end = _END.match(lines[i])
            if end:
                if _KIND[end.group("mark")] != kind:
                    raise NotebookError(
                        f"{where}, line {i + 1}: this END SOLUTION does not match the "
                        f"{begin.group('mark')} BEGIN SOLUTION of line {start + 1}"
                    )
                break
            body.append(lines[i])
            i += 1
        else:
            raise NotebookError(f"{where}, line {start + 1}: BEGIN SOLUTION is never closed by END SOLUTION")
        i += 1  # past END
        indent, text = begin.group("indent"), begin.group("text")
        region = Region(kind, body)
        if kind == "markdown":
            out.append(f"{indent}{text or MARKDOWN_ANSWER}")
        else:
            mark = _MARK[kind]
            region.kept = _hint_lines(body, mark)
            code = [l for l in body if l.strip() and not l.strip().startswith(mark)]
            todo = text or (CUDA_TODO if kind == "cuda" else PYTHON_TODO if code else None)
            if todo:
                out.append(f"{indent}{mark} TODO: {todo}")
            out.extend(region.kept)
            if kind == "python":
                message = f"{exercise}: {GUARD_MESSAGE if has_cuda and not code else CODE_MESSAGE}"
                out.append(f"{indent}raise NotImplementedError({json.dumps(message)})")
        regions.append(region)
    return "\n".join(out), regions


def _python_for_ast(source: str) -> str:
    """IPython magics and shell escapes replaced by `pass`, so the cell parses as Python."""
    return "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in source.split("\n"))


class _ModuleLevelRaise(ast.NodeVisitor):
    """Finds `raise NotImplementedError(...)` statements that run when the cell runs (outside any def)."""

    def __init__(self):
        self.lines: list[int] = []

    def visit_FunctionDef(self, node):  # code inside a function runs only when it is called
        for decorator in node.decorator_list:
            self.visit(decorator)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        pass

    def visit_Raise(self, node):
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
            self.lines.append(node.lineno)


def _validate_python(original: str, student: str, *, is_exercise: bool, where: str) -> None:
    try:
        ast.parse(_python_for_ast(original))
    except SyntaxError:
        return  # not plain Python (a cell magic...): nothing to compare
    try:
        tree = ast.parse(_python_for_ast(student))
    except SyntaxError as err:
        raise NotebookError(
            f"{where}: the student copy is not valid Python ({err.msg}, line {err.lineno}); "
            "a Python region must hold whole statements"
        ) from None
    if is_exercise:
        finder = _ModuleLevelRaise()
        finder.visit(tree)
        if finder.lines:
            raise NotebookError(
                f"{where}: the student copy raises NotImplementedError when the cell runs "
                f"(line {finder.lines[0]}); put the Python region inside the launch function"
            )


def _llmc(meta) -> dict:
    value = meta.get("llmc", {})
    return value if isinstance(value, dict) else {}


def _validate_metadata(nb, name: str) -> None:
    info = _llmc(nb.metadata)
    for key in ("chapter", "version"):
        if not info.get(key):
            raise NotebookError(
                f"{name}: notebook metadata llmc.{key} is missing "
                '(metadata.llmc = {"chapter": "02_layernorm", "version": "1"})'
            )
    for index, cell in enumerate(nb.cells):
        if "id" not in cell:
            raise NotebookError(
                f"{name}: cell {index} has no id (save the notebook as nbformat 4.5, as JupyterLab does)"
            )
        role = _llmc(cell.metadata).get("role")
        if role in ("exercise", "check"):
            where = f"{name}, cell {index} (id {cell.id})"
            info = _llmc(cell.metadata)
            if not isinstance(info.get("exercise"), str) or not info["exercise"]:
                raise NotebookError(f"{where}: metadata.llmc.exercise (the function's name) is missing")
            if not isinstance(info.get("points"), (int, float)) or isinstance(info.get("points"), bool):
                raise NotebookError(f"{where}: metadata.llmc.points is missing or not a number")
            if role not in cell.metadata.get("tags", []):
                raise NotebookError(f"{where}: a {role} cell needs the tag '{role}'")


def setup_cell(source: str):
    cell = nbformat.v4.new_code_cell(source, metadata=copy.deepcopy(SETUP_METADATA))
    cell.id = SETUP_CELL_ID
    return cell


def _is_setup(cell) -> bool:
    return _llmc(cell.metadata).get("role") == "setup" or cell.get("id") == SETUP_CELL_ID


def with_setup_cell(nb, source: str):
    """(`nb` with the set-up cell first, whether that changed anything); the input is not modified.

    Any earlier set-up cell is replaced; an up-to-date one keeps its outputs."""
    first = nb.cells[0] if nb.cells else None
    if (
        first is not None
        and _is_setup(first)
        and sum(map(_is_setup, nb.cells)) == 1
        and first.cell_type == "code"
        and first.source == source
        and first.id == SETUP_CELL_ID
        and first.metadata == SETUP_METADATA
    ):
        return nb, False
    nb = copy.deepcopy(nb)
    nb.cells = [setup_cell(source)] + [cell for cell in nb.cells if not _is_setup(cell)]
    return nb, True


def is_instructor_only(cell) -> bool:
    """A cell for instructors (concept questions with answers): never in a student copy."""
    return _llmc(cell.metadata).get("role") == "instructor" or "instructor" in cell.metadata.get("tags", [])


def student_notebook(nb, name: str):
    """The learner's copy of solution notebook `nb` (which already has its set-up cell)."""
    _validate_metadata(nb, name)
    student = copy.deepcopy(nb)
    student.cells = [cell for cell in student.cells if not is_instructor_only(cell)]
    chapter = _llmc(nb.metadata)["chapter"]
    for index, cell in enumerate(student.cells):
        info = _llmc(cell.metadata)
        where = f"{name}, cell {index} (id {cell.id})"
        exercise = info.get("exercise") or chapter
        if cell.cell_type in ("code", "markdown"):
            source, regions = transform_source(cell.source, cell_type=cell.cell_type, exercise=exercise, where=where)
            if cell.cell_type == "code" and regions:
                _validate_python(cell.source, source, is_exercise=info.get("role") == "exercise", where=where)
            cell.source = source
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
    return student


def notebook_text(nb) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def toc_text(toc: str, chapters: list[str], chapters_dir: str = "chapters") -> str:
    """`_toc.yml` with the chapter part between its marker lines listing `chapters` (file stems)."""
    lines = toc.split("\n")
    begins = [i for i, l in enumerate(lines) if l.strip().startswith(TOC_BEGIN)]
    ends = [i for i, l in enumerate(lines) if l.strip().startswith(TOC_END)]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise NotebookError(f"_toc.yml needs one '{TOC_BEGIN}' line and, after it, one '{TOC_END}' line")
    block = []
    if chapters:
        block = ["  - caption: Chapters", "    chapters:"]
        block += [f"      - file: {chapters_dir}/{stem}" for stem in chapters]
    return "\n".join(lines[: begins[0] + 1] + block + lines[ends[0] :])


@dataclass
class Plan:
    """Every file the generator would write (path -> text) and every stale chapter it would delete."""

    writes: dict[Path, str] = field(default_factory=dict)
    deletes: list[Path] = field(default_factory=list)


def plan(solutions: Path, chapters: Path, config: Path, toc: Path) -> Plan:
    source = setup_source(*repository(config))
    result = Plan()
    stems = []
    for path in sorted(solutions.glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        try:
            nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
        except Exception as err:  # nbformat raises several types for unreadable JSON
            raise NotebookError(f"{path.name}: not a readable notebook ({err})") from None
        if nb.nbformat != 4 or nb.nbformat_minor < 5:
            raise NotebookError(
                f"{path.name}: nbformat {nb.nbformat}.{nb.nbformat_minor}; cell ids need 4.5 "
                "(save it with JupyterLab 3 or later)"
            )
        solution, changed = with_setup_cell(nb, source)
        if changed:
            result.writes[path] = notebook_text(solution)
        student_text = notebook_text(student_notebook(solution, f"solutions/{path.name}"))
        target = chapters / path.name
        if not target.exists() or target.read_text(encoding="utf-8") != student_text:
            result.writes[target] = student_text
        stems.append(path.stem)
    for path in sorted(chapters.glob("*.ipynb")):
        if not (solutions / path.name).exists():
            result.deletes.append(path)
    current = toc.read_text(encoding="utf-8")
    wanted = toc_text(current, stems, chapters_dir=chapters.name)
    if wanted != current:
        result.writes[toc] = wanted
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is out of date")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions")
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--config", type=Path, default=ROOT / "_config.yml")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    args = parser.parse_args(argv)
    try:
        todo = plan(args.solutions, args.chapters, args.config, args.toc)
    except (NotebookError, ValueError, OSError) as err:
        print(f"make_student: {err}", file=sys.stderr)
        return 2
    changes = [(path, "out of date") for path in todo.writes] + [(path, "has no solution") for path in todo.deletes]
    if args.check:
        for path, why in changes:
            print(f"{_show(path)}: {why}")
        if changes:
            print("run: python tools/make_student.py", file=sys.stderr)
        return 1 if changes else 0
    for path, text in todo.writes.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {_show(path)}")
    for path in todo.deletes:
        path.unlink()
        print(f"removed {_show(path)} (no solutions/{path.name})")
    return 0


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
