"""Run cells of a solution notebook by cell id, for the chapter tests (tests/test_chapter_*.py).

The chapters make claims in prose about what a learner will see: "a missing bounds check ends in
KernelOutOfBounds naming the array", "if you forget the loop, the check says only the first 1024 elements
were written". nbval compares only the check cells' output, so these tests run the cells behind such claims
(or a mutated copy of a solution) on the CPU backend and look at what they print.
"""

from __future__ import annotations

import contextlib
import io
import json
import linecache
from pathlib import Path

from llmc_kernels import runtime

ROOT = Path(__file__).resolve().parent.parent


def load(chapter: str) -> dict:
    """The solution notebook ``solutions/<chapter>.ipynb`` as JSON."""
    return json.loads((ROOT / "solutions" / f"{chapter}.ipynb").read_text(encoding="utf-8"))


def source(nb: dict, cell_id: str) -> str:
    for cell in nb["cells"]:
        if cell.get("id") == cell_id:
            src = cell["source"]
            return "".join(src) if isinstance(src, list) else src
    raise KeyError(f"no cell with id {cell_id!r}")


def mutate(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced by ``new``; ``old`` must occur exactly once (so a test notices when the
    solution it mutates has changed)."""
    assert text.count(old) == 1, f"expected exactly one {old!r} in the solution cell"
    return text.replace(old, new)


def run(chapter: str, cells, namespace: dict | None = None) -> tuple[dict, str]:
    """Execute cells (ids, or ``(id, source)`` pairs for mutated copies) in one namespace on the CPU
    backend; returns the namespace and everything printed. Exceptions propagate."""
    nb = load(chapter)
    ns = {} if namespace is None else namespace
    out = io.StringIO()
    with runtime.use_backend("cpu"), contextlib.redirect_stdout(out):
        for item in cells:
            cell_id, text = (item, source(nb, item)) if isinstance(item, str) else item
            filename = f"<{chapter} cell {cell_id}>"
            # linecache lets the runtime find kernel strings in this "file" (error messages name its lines)
            linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
            exec(compile(text, filename, "exec"), ns)
    return ns, out.getvalue()


def assert_exercises_follow_the_contract(chapter: str, checks: dict[str, str]) -> None:
    """The chapter's exercises are ``checks``' keys, in order, and each one follows the contract: its cell
    carries the grader's metadata, defines the function with the signature in ``llmc_kernels.opspec`` (the
    checks and the grader call it by position), and its check cell makes the call ``checks[name]``."""
    import ast

    from llmc_kernels import opspec

    cells = load(chapter)["cells"]
    role = lambda c: c.get("metadata", {}).get("llmc", {}).get("role")  # noqa: E731
    text = lambda c: "".join(c["source"]) if isinstance(c["source"], list) else c["source"]  # noqa: E731
    exercises = [c for c in cells if role(c) == "exercise"]
    assert [c["metadata"]["llmc"]["exercise"] for c in exercises] == list(checks)
    for cell in exercises:
        name = cell["metadata"]["llmc"]["exercise"]
        meta = cell["metadata"]["llmc"]
        # points weight the exercise by difficulty: a positive integer, the same on its check cell
        assert {k: meta[k] for k in ("role", "exercise")} == {"role": "exercise", "exercise": name}, name
        assert isinstance(meta["points"], int) and meta["points"] >= 1, name
        assert set(meta) <= {"role", "exercise", "points", "kind", "implements", "performance_points"}, name
        if meta.get("kind") == "performance":
            # an optimisation exercise: the signature of the op it implements, points split between
            # correctness and performance (both earnable)
            assert meta["implements"] in {fn.name for spec in opspec.OPS.values() for fn in spec.functions}, name
            assert isinstance(meta["performance_points"], int) and 1 <= meta["performance_points"] < meta["points"]
        else:
            assert "performance_points" not in meta, name
        assert "exercise" in cell["metadata"].get("tags", []), name
        fn = next(
            node for node in ast.parse(text(cell)).body if isinstance(node, ast.FunctionDef) and node.name == name
        )
        assert tuple(a.arg for a in fn.args.args) == opspec.function(meta.get("implements", name))[1].arg_names, name
    check_cells = {c["metadata"]["llmc"]["exercise"]: text(c) for c in cells if role(c) == "check"}
    assert set(check_cells) == set(checks)
    split = lambda c: (c["metadata"]["llmc"]["points"], c["metadata"]["llmc"].get("performance_points"))  # noqa: E731
    points = {c["metadata"]["llmc"]["exercise"]: split(c) for c in cells if role(c) == "check"}
    assert points == {c["metadata"]["llmc"]["exercise"]: split(c) for c in exercises}
    for name, call in checks.items():
        assert call in check_cells[name], name
