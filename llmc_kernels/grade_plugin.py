"""A pytest plugin that ``llmc grade`` loads into its nbval run (``-p llmc_kernels.grade_plugin``).

For every notebook cell nbval runs, it appends one JSON line to the file named by ``LLMC_GRADE_RESULTS``: the
cell's ``llmc_grade`` metadata (what the grader put there), pytest's outcome, whether nbval had marked it as
expected to fail after an earlier time-out, the outputs the cell produced (text only) and nbval's failure
message. Lines are written as each cell finishes, so a run that must be killed still leaves the cells before.
"""
from __future__ import annotations

import json
import os
import re

import pytest

from .grade_run import RESULTS_ENV

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_LIMIT = 20000                    # characters kept per text field


def _text(value) -> str:
    if isinstance(value, list):
        value = "".join(map(str, value))
    text = _ANSI.sub("", str(value))
    return text if len(text) <= _LIMIT else text[:_LIMIT // 2] + "\n[...]\n" + text[-_LIMIT // 2:]


def _outputs(outputs) -> list[dict]:
    found = []
    for out in outputs or []:
        kind = out.get("output_type")
        if kind == "stream":
            found.append({"type": "stream", "name": out.get("name"), "text": _text(out.get("text", ""))})
        elif kind == "error":
            found.append({"type": "error", "ename": _text(out.get("ename", "")), "evalue": _text(out.get("evalue", "")),
                          "traceback": _text("\n".join(out.get("traceback", []) or []))})
        elif kind in ("execute_result", "display_data"):
            found.append({"type": kind, "text": _text(out.get("data", {}).get("text/plain", ""))})
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    path = os.environ.get(RESULTS_ENV)
    cell = getattr(item, "cell", None)
    if not path or cell is None:
        return
    if report.when != "call" and report.passed:
        return
    record = {
        "when": report.when,
        "outcome": report.outcome,
        "xfail": bool(getattr(report, "wasxfail", "")),
        "cell_num": getattr(item, "cell_num", None),
        "cell_id": cell.get("id"),
        "grade": dict(cell.get("metadata", {}).get("llmc_grade", {})),
        "outputs": _outputs(getattr(item, "test_outputs", None)),
        "message": _text(report.longreprtext) if report.failed else "",
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
