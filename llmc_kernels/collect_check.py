"""The child process of ``llmc collect``: import one op's code and run the course's check on it.

    python -m llmc_kernels.collect_check MODULE.py FUNCTION OP DIRECTION

One process per op, so that a kernel that crashes the interpreter or never returns costs that op only. The
last line of stdout is ``MARKER {"status": ..., "detail": ...}``; status is ``PASS``, ``FAIL`` (the check
found wrong results), ``not done`` (a ``NotImplementedError``: the student copy's guard line is still there) or
``error``
(the code does not import, or raised something else).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import traceback

MARKER = "@@llmc-collect@@"


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _not_implemented(err: BaseException | None) -> NotImplementedError | None:
    """The NotImplementedError behind ``err`` (the check re-raises the learner's errors with a cause)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, NotImplementedError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _line_in(err: BaseException, path: str) -> str:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == path]
    return f" (line {frames[-1].lineno}: {frames[-1].line})" if frames else ""


def _verdict(err: BaseException, path: str) -> dict:
    if _not_implemented(err):
        return {"status": "not done", "detail": ""}
    from llmc_kernels.errors import CheckFailed

    if isinstance(err, CheckFailed):
        # the check's message is "FAIL <function>: what differed": the table names the op already
        return {"status": "FAIL", "detail": _first_line(err).split(": ", 1)[-1]}
    return {"status": "error", "detail": f"{type(err).__name__}: {_first_line(err)}{_line_in(err, path)}"}


def run(path: str, function: str, op: str, direction: str) -> dict:
    from llmc_kernels import check

    try:
        spec = importlib.util.spec_from_file_location("llmc_collected_op", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        getattr(check, direction)(op, getattr(module, function))
    except Exception as err:  # noqa: BLE001 (any failure of the learner's code is a verdict, not a crash)
        return _verdict(err, path)
    return {"status": "PASS", "detail": ""}


def main(argv: list[str]) -> int:
    verdict = run(*argv)
    sys.stdout.flush()
    print(f"\n{MARKER} {json.dumps(verdict)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
