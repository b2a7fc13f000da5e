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
