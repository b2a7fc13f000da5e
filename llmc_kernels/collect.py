"""``llmc collect NOTEBOOK... --out my_ops.py``: the learner's kernels, gathered into one ops module.

    llmc collect chapters/*.ipynb --out my_ops.py      # then: llmc train --ops my_ops.py

For each op GPT-2 calls (SPEC's table: encoder_forward ... adamw_update), collect

1. finds the learner's cells in the notebooks given, as ``llmc grade`` does (``grade_notebook.student_sources``:
   the exercise cells marked with the op's name, else the cell that defines it). An exercise cell whose
   metadata says ``llmc.implements = "<op>"`` (an optimisation exercise) provides that op too, and is preferred
   when it passes; unless that exercise is judged on part of the op's outputs only (:func:`substitutes`:
   chapter 04's flash attention never writes ``att``), which can never stand in for the op;
2. runs the course's check (``check.forward`` / ``check.backward``) on them, in a process of its own with a
   time limit, so that a crash or a hang costs that op only;
3. writes one module with every op: the learner's where the check passed, the package's
   (``llmc_kernels.ops``) where the op is missing, failed, or was excluded with ``--use-package``. The module
   records which is which (``LEARNER_OPS``, ``PACKAGE_OPS``) for ``llmc train`` to report.

It prints a table: op, source (the notebook, or "package"), check result.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import opspec
from .collect_source import free_names, imports_for, indented
from .grade.notebook import Exercise, NotCourseNotebook, defined_functions, read_notebook, student_sources
from .learner_ops import MODEL_OPS

DEFAULT_OUT = "my_ops.py"
DEFAULT_TIMEOUT = 120.0  # seconds per op: its import, compilation and check

# What every collected op may use without importing it: the names of the chapters' imports cell.
HEADER = """import numpy as np
from llmc_kernels import runtime
from llmc_kernels.runtime import RawKernel

xp = runtime.xp()   # cupy on a GPU, numpy on the CPU backend (as in the chapters)
"""
HEADER_NAMES = {"np", "runtime", "RawKernel", "xp"}


def op_of(function: str) -> tuple[str, str]:
    """('layernorm', 'backward') for 'layernorm_backward': what ``check`` calls it."""
    for spec in opspec.OPS.values():
        if spec.forward.name == function:
            return spec.op, "forward"
        if spec.backward is not None and spec.backward.name == function:
            return spec.op, "backward"
    raise KeyError(function)


def expand_ops(names) -> list[str]:
    """Op functions from names given on the command line: 'matmul' -> both matmul functions."""
    out = []
    for name in names:
        spec = opspec.OPS.get(name)
        found = [f.name for f in spec.functions] if spec and name not in opspec.CHAPTER_ONLY else [name]
        unknown = [f for f in found if f not in MODEL_OPS]
        if unknown:
            raise ValueError(
                f"--use-package {name}: not an op of the model; use one of "
                f"{', '.join(sorted({op_of(f)[0] for f in MODEL_OPS}))} or a function such as "
                "matmul_forward"
            )
        out += [f for f in found if f not in out]
    return out


# ------------------------------------------------------------------------------------------ candidates
@dataclass
class Candidate:
    """The learner's cells for one op, from one notebook."""

    function: str  # the op it provides (a name of MODEL_OPS)
    exercise: str  # the function the cells define (the exercise's name)
    notebook: Path
    sources: list[str]
    cell_ids: list[str]
    imports: list[str] = field(default_factory=list)  # the notebook's imports the cells need
    unresolved: set[str] = field(default_factory=set)  # names they need that nothing here defines
    preferred: bool = False  # an optimisation exercise: used before the plain one when both pass

    @property
    def where(self) -> str:
        return self.notebook.name

    def wrapper(self) -> str:
        """The cells as a function that returns the op (see collect_source for why a function)."""
        name = f"_{self.function}" if self.exercise == self.function else f"_{self.function}_{self.exercise}"
        lines = [f"def {name}():"] + [f"    {line}" for line in self.imports]
        for cid, src in zip(self.cell_ids or [""] * len(self.sources), self.sources):
            lines += [f"    # ---- {self.where}, cell {cid or '(found by the function it defines)'}", indented(src)]
        lines += [f"    return {self.exercise}", "", "", f"{self.function} = {name}()", ""]
        return "\n".join(lines)


def substitutes(op) -> bool:
    """Can an optimisation exercise that ``implements`` ``op`` stand in for it in the model? Not when its
    exercise is judged on some of the op's outputs only (check.performance's ``OpTargets.outputs``): chapter
    04's attention_forward_flash writes ``out`` but never ``att``, which the model's backward reads."""
    from .check.performance import TARGETS

    table = TARGETS.get(op) if isinstance(op, str) else None
    return table is None or table.outputs is None


def _exercise_cells(nb) -> dict[str, tuple[str, bool]]:
    """{exercise name: (op it provides, preferred)} for the exercise cells of ``nb`` that provide an op, plus
    every op a cell defines by name (notebooks whose editor dropped the metadata)."""
    found: dict[str, tuple[str, bool]] = {}
    for cell in nb.cells:
        meta = (cell.get("metadata") or {}).get("llmc")
        if not isinstance(meta, dict) or meta.get("role") != "exercise":
            continue
        exercise, provides = meta.get("exercise"), meta.get("implements") or meta.get("exercise")
        if meta.get("implements") and not substitutes(provides):
            continue  # an optimisation exercise of part of the op (flash attention: out, not att)
        if isinstance(exercise, str) and provides in MODEL_OPS:
            found[exercise] = (provides, exercise != provides)
    defined = set().union(
        *(defined_functions(cell.get("source", "")) for cell in nb.cells if cell.get("cell_type") == "code")
    )
    for fn in MODEL_OPS:
        if fn in defined:
            found.setdefault(fn, (fn, False))
    return found


def candidates(notebooks) -> tuple[dict[str, list[Candidate]], dict[str, str]]:
    """({op: its candidates, preferred first, then in notebook order}, {notebook: why it was skipped})."""
    found: dict[str, list[Candidate]] = {}
    skipped: dict[str, str] = {}
    for path in dict.fromkeys(Path(p) for p in notebooks):
        try:
            nb = read_notebook(path)
        except (OSError, NotCourseNotebook) as err:
            skipped[str(path)] = str(err)
            continue
        code = [c for c in nb.cells if c.get("cell_type") == "code"]
        for exercise, (function, preferred) in _exercise_cells(nb).items():
            picked = student_sources(nb, Exercise(exercise))
            if not picked.sources:
                continue
            ids = [c.get("id", "") for c in code if c.get("source") in picked.sources]
            others = [c["source"] for c in code if c.get("source") not in picked.sources]
            imports, unresolved = imports_for(free_names(picked.sources) - HEADER_NAMES, others)
            found.setdefault(function, []).append(
                Candidate(function, exercise, path, picked.sources, ids, imports, unresolved, preferred)
            )
    for cands in found.values():
        cands.sort(key=lambda c: not c.preferred)  # stable: notebook order otherwise
    return found, skipped


# ------------------------------------------------------------------------------------------ checking
@dataclass
class Verdict:
    status: str  # PASS | FAIL | not done | error | hang | crash
    detail: str = ""


def check_candidate(cand: Candidate, workdir: Path, backend: str, timeout: float) -> Verdict:
    """Run the course's check on ``cand`` in a child process (collect_check) with a time limit."""
    from .collect_check import MARKER

    op, direction = op_of(cand.function)
    path = workdir / f"{cand.function}_{abs(hash((str(cand.notebook), cand.exercise))):x}.py"
    path.write_text(HEADER + "\n\n" + cand.wrapper(), encoding="utf-8")
    root = str(Path(__file__).resolve().parent.parent)  # this package, installed or from a checkout
    env = {
        **os.environ,
        "LLMC_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "llmc_kernels.collect_check", str(path), cand.function, op, direction],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return Verdict("hang", f"no result within {timeout:g} s (--timeout)")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            verdict = Verdict(**json.loads(line[len(MARKER) :]))
            if verdict.status in ("FAIL", "error") and cand.unresolved:
                verdict.detail += (
                    f" (the cells use {', '.join(sorted(cand.unresolved))}, defined outside "
                    "them: move what they need into the exercise cells)"
                )
            return verdict
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return Verdict("crash", f"the process ended with status {proc.returncode}: {tail}")


# ------------------------------------------------------------------------------------------ the result
@dataclass
class OpRow:
    function: str
    used: Candidate | None = None  # None: the package's op
    tried: list = field(default_factory=list)  # [(Candidate, Verdict)]
    excluded: bool = False  # --use-package

    @property
    def source(self) -> str:
        return self.used.where if self.used else "package"

    @property
    def check(self) -> str:
        if self.used:
            return "PASS"
        if self.excluded:
            return "not checked: --use-package"
        if not self.tried:
            return "missing: no notebook given has it"
        # the most telling attempt: one that ran and failed says more than a notebook not started
        cand, verdict = next(((c, v) for c, v in self.tried if v.status != "not done"), self.tried[0])
        return f"{verdict.status} ({cand.where})" + (f": {verdict.detail}" if verdict.detail else "")

    @property
    def package_reason(self) -> str:
        return "" if self.used else self.check


@dataclass
class Collection:
    rows: list[OpRow]
    out: Path
    backend: str
    skipped: dict = field(default_factory=dict)

    @property
    def learner_ops(self) -> dict[str, str]:
        return {r.function: r.source for r in self.rows if r.used}

    def table(self, width: int = 110) -> str:
        """The op / source / check table, each check cut to fit ``width`` columns."""
        lines = [f"{'op':<31} {'source':<30} check", f"{'-' * 31} {'-' * 30} {'-' * 20}"]
        for r in self.rows:
            check = r.check if len(r.check) <= width - 63 else r.check[: width - 66] + "..."
            lines.append(f"{r.function:<31} {r.source:<30} {check}")
        return "\n".join(lines)

    def summary(self) -> str:
        lines = [
            f"{len(self.learner_ops)} of {len(self.rows)} ops are yours; the others are the package's "
            f"(llmc_kernels.ops). Written to {self.out}"
        ]
        lines += [f"skipped {nb}: {why}" for nb, why in self.skipped.items()]
        return "\n".join(lines)


def module_text(coll: Collection, notebooks) -> str:
    """The generated module: a docstring with the table, the header, the learner's ops, the package's."""
    today = datetime.date.today().isoformat()
    table = "\n".join("    " + line for line in coll.table().splitlines())
    doc = f'''"""GPT-2's ops, collected by `llmc collect` on {today} from {len(set(notebooks))} notebooks ({coll.backend} backend).

    llmc train --ops {coll.out.name}                        # train GPT-2 with them
    GPT2.from_config(GPT2Config.tiny(), ops=<this module>)  # or from Python

Each op of yours is a copy of your exercise cells, wrapped in a function of its own so that the names one
chapter defines cannot change another chapter's functions. Ops you have not done, or whose check failed, are
the package's (llmc_kernels.ops): PACKAGE_OPS says why. This file is generated: change your notebooks and
run `llmc collect` again rather than editing it.

{table}
"""'''
    learner = {r.function: r.source for r in coll.rows if r.used}
    package = {r.function: r.package_reason for r in coll.rows if not r.used}
    parts = [
        doc,
        HEADER,
        "# op -> the notebook it comes from (llmc train prints these and writes them to log.json)",
        f"LEARNER_OPS = {_dict_literal(learner)}",
        "# op -> why the package's op is used instead of yours",
        f"PACKAGE_OPS = {_dict_literal(package)}",
        "",
    ]
    for r in coll.rows:
        if r.used:
            parts += [
                "",
                "# " + "-" * 108,
                f"# {r.function}: yours, from {r.used.where} (check: PASS)",
                r.used.wrapper(),
            ]
    if package:
        parts += [
            "",
            "# " + "-" * 108,
            "# the package's ops, for the ones above that are missing or failed",
            f"from llmc_kernels.ops import {', '.join(package)}  # noqa: E402",
            "",
        ]
    return "\n".join(parts)


def _dict_literal(d: dict) -> str:
    if not d:
        return "{}"
    return "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in d.items()) + "}"


def collect(
    notebooks,
    out=DEFAULT_OUT,
    *,
    backend: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    jobs: int | None = None,
    use_package=(),
) -> Collection:
    """Gather, check and write; returns the :class:`Collection` (its ``table()`` is what the command prints)."""
    from .runtime import backend as active_backend

    backend = backend or active_backend()
    excluded = set(expand_ops(use_package))
    found, skipped = candidates(notebooks)
    rows = {fn: OpRow(fn, excluded=fn in excluded) for fn in MODEL_OPS}
    jobs = jobs or min(4, os.cpu_count() or 1)
    with (
        tempfile.TemporaryDirectory(prefix="llmc-collect-") as tmp,
        concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool,
    ):
        futures = {
            fn: [(c, pool.submit(check_candidate, c, Path(tmp), backend, timeout)) for c in cands]
            for fn, cands in found.items()
            if fn not in excluded
        }
        for fn, pending in futures.items():
            row = rows[fn]
            row.tried = [(c, f.result()) for c, f in pending]
            row.used = next((c for c, v in row.tried if v.status == "PASS"), None)
    coll = Collection(list(rows.values()), Path(out), backend, skipped)
    text = module_text(coll, notebooks)
    coll.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = coll.out.with_name(f".{coll.out.name}.tmp")
    tmp_out.write_text(text, encoding="utf-8")
    tmp_out.replace(coll.out)
    return coll


# ------------------------------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmc collect",
        description="Gather your exercise kernels from your chapter notebooks into one ops "
        "module for `llmc train --ops`. Each op is checked first; an op that is missing or fails its check "
        "comes from the package.",
    )
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK", help="your chapter notebooks (e.g. chapters/*.ipynb)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"the module to write (default {DEFAULT_OUT})")
    p.add_argument("--backend", choices=("cpu", "cuda"), help="where the checks run (default: the active backend)")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per op for its import, compilation and check (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--jobs", type=int, help="checks run at once (default: up to 4)")
    p.add_argument(
        "--use-package",
        action="append",
        default=[],
        metavar="OP",
        help="use the package's version of OP (e.g. matmul, or matmul_forward) even if yours passes; "
        "repeatable. On the CPU backend your tiled matmul makes a step take seconds",
    )
    return p


def main(argv=None) -> int:
    """The ``llmc collect`` command: 0 when the module was written, 2 when it could not be."""
    args = build_parser().parse_args(argv)
    if args.timeout <= 0 or (args.jobs is not None and args.jobs < 1):
        print("llmc collect: error: --timeout and --jobs must be positive", file=sys.stderr)
        return 2
    try:
        from .runtime import BackendUnavailable, use_backend

        with use_backend(args.backend):
            coll = collect(
                args.notebooks,
                args.out,
                timeout=args.timeout,
                jobs=args.jobs,
                use_package=[n for arg in args.use_package for n in arg.split(",") if n],
            )
    except (ValueError, OSError, BackendUnavailable) as err:
        print(f"llmc collect: error: {err}", file=sys.stderr)
        return 2
    print(coll.table())
    print(coll.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
