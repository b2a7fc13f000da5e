"""An ops namespace from a file (``llmc train --ops my_ops.py``), and whose kernels are in it.

- :func:`load` imports a Python file (usually written by ``llmc collect``) as a module and makes sure it has
  every op GPT-2 needs, with errors that say what to do instead of a traceback.
- :func:`describe` says, for any ops namespace the model accepts (the package's ``llmc_kernels.ops``, a
  collected module, a hand-written module or dict), which ops are the learner's and from which notebook,
  and which are the package's. ``llmc train`` prints :func:`banner` at the start of a run and writes
  :func:`describe` into ``log.json``.

A module written by ``llmc collect`` says it itself: ``LEARNER_OPS = {op: notebook}`` and ``PACKAGE_OPS =
{op: why the package's is used}``. For any other namespace an op is the package's when it *is* the
package's function, and the learner's otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
import types
from pathlib import Path

from . import opspec

# the ops of SPEC's table that GPT-2 calls, in the table's order (the chapter-only vector_add and transpose are not)
MODEL_OPS = tuple(
    fn.name
    for spec in opspec.OPS.values()
    if spec.op not in opspec.CHAPTER_ONLY + opspec.OPTIONAL
    for fn in spec.functions
)


class LearnerOpsError(ValueError):
    """An ops file that cannot be used; the message says why and what to do."""


def load(path) -> types.ModuleType:
    """Import the ops file ``path`` as a module; LearnerOpsError when it is missing, does not import, or lacks
    an op of :data:`MODEL_OPS`."""
    path = Path(path).expanduser()
    remedy = f"write one with `llmc collect chapters/*.ipynb --out {path}`"
    if not path.is_file():
        raise LearnerOpsError(f"--ops {path}: no such file; {remedy}")
    if path.suffix != ".py":
        raise LearnerOpsError(f"--ops {path}: not a Python file (.py); {remedy}")
    # a name of its own per file, so that two ops files (or one named like a module) never shadow each other
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"llmc_user_ops_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up there
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 (any error of the learner's code becomes one clear message)
        del sys.modules[name]
        raise LearnerOpsError(
            f"--ops {path}: importing it failed{_where(err, path)}: {type(err).__name__}: {err}. "
            f"Fix that line, or {remedy}"
        ) from err
    missing = [op for op in MODEL_OPS if not callable(getattr(module, op, None))]
    if missing:
        raise LearnerOpsError(
            f"--ops {path} lacks {', '.join(missing)}: GPT-2 needs all {len(MODEL_OPS)} ops of "
            f"the course. `llmc collect` fills the gaps with the package's ops; {remedy}"
        )
    module.__llmc_label__ = path.name  # what log.json and the run's first lines call it
    module.__name__ = path.stem  # ... and the model's messages (ops_name)
    return module


def _where(err: BaseException, path: Path) -> str:
    """', line N' of the deepest traceback frame inside ``path``, or ''."""
    line = None
    for frame in traceback.extract_tb(err.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    if line is None and isinstance(err, SyntaxError) and err.lineno:
        line = err.lineno
    return f", line {line}" if line else ""


def label(ops) -> str:
    """A short name for an ops namespace: 'my_ops.py', 'llmc_kernels.ops', 'dict'."""
    if ops is None:
        return "llmc_kernels.ops"
    return getattr(ops, "__llmc_label__", None) or getattr(ops, "__name__", None) or type(ops).__name__


def describe(ops) -> dict:
    """``{"namespace": label, "learner": {op: where from}, "package": {op: why}}`` for ``ops`` (None: the
    package's). ``learner`` is in :data:`MODEL_OPS` order; it is what ``llmc train`` writes into log.json."""
    from . import ops as package_ops

    if ops is None or ops is package_ops:
        return {
            "namespace": "llmc_kernels.ops",
            "learner": {},
            "package": {op: "the package's ops" for op in MODEL_OPS},
        }
    get = ops.get if isinstance(ops, dict) else (lambda name, default=None: getattr(ops, name, default))
    recorded_learner, recorded_package = get("LEARNER_OPS") or {}, get("PACKAGE_OPS") or {}
    learner, package = {}, {}
    for op in MODEL_OPS:
        fn = get(op)
        if op in recorded_package:
            package[op] = recorded_package[op]
        elif fn is not None and fn is _package_function(package_ops, op):
            package[op] = "the package's function"
        elif op in recorded_learner:
            learner[op] = recorded_learner[op]
        elif fn is not None:
            learner[op] = label(ops)
    return {"namespace": label(ops), "learner": learner, "package": package}


def _package_function(package_ops, op: str):
    try:
        return getattr(package_ops, op)
    except (AttributeError, ImportError):
        return None


def banner(ops) -> str:
    """Lines for the start of a run: which ops are the learner's (grouped by notebook) and which the package's."""
    d = describe(ops)
    if not d["learner"]:
        return f"ops: the package's kernels ({d['namespace']})"
    lines = [f"ops from {d['namespace']}: {len(d['learner'])} of {len(MODEL_OPS)} are yours"]
    by_source: dict[str, list[str]] = {}
    for op, source in d["learner"].items():
        by_source.setdefault(source, []).append(op)
    lines += [f"  yours    {source}: {', '.join(ops_)}" for source, ops_ in by_source.items()]
    if d["package"]:
        lines.append(f"  package  {', '.join(d['package'])}")
    return "\n".join(lines)
