"""Turn one nbval run of a graded notebook (:mod:`.grade_run`) into a verdict for one exercise.

Only the course's check cells earn points: a check cell that ran without an exception and printed exactly the
course's saved ``PASS`` line earns its points; anything else earns none, and the reason says why in the words
of the check (which names out-of-bounds accesses, deadlocks, hangs and wrong elements). A failure of the
course's own set-up cells is the grader's problem, not the learner's: it is reported as a grading error.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .grade_notebook import Exercise, _source
from .grade_run import Limits, RunResult

# the cause named inside a check's failure message -> the verdict (first match wins)
_CAUSES = [
    ("KernelOutOfBounds", "out of bounds"),
    ("KernelDeadlock", "deadlock"),
    ("KernelTimeout", "hang"),
    ("KernelCompileError", "compile error"),
    ("KernelArgumentError", "bad launch"),
    ("KernelTrap", "kernel fault"),
    ("GPUFault", "GPU fault"),
    ("ForbiddenCall", "forbidden call"),
    ("KernelRace", "race"),
]
_RESTORED = "llmc-grade-guard: restored "      # what grade_guard.restore() prints
REASON_WIDTH = 220


@dataclass
class ExerciseResult:
    name: str
    points: float                      # what the exercise is worth
    earned: float = 0.0
    verdict: str = "pass"
    reason: str = ""                   # one line
    details: str = ""                  # the check's own words, for the feedback file
    notes: list = field(default_factory=list)     # for review: guard restorations, suspicious code, picking
    grader_error: bool = False         # the grader, not the learner, failed
    seconds: float = 0.0


def _short(text: str, width: int = REASON_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def _stdout(record: dict) -> str:
    return "".join(o.get("text", "") for o in record.get("outputs", []) if o.get("type") == "stream")


def _error(record: dict) -> dict | None:
    return next((o for o in record.get("outputs", []) if o.get("type") == "error"), None)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().split("\n")[-lines:])


def _describe_error(err: dict) -> tuple[str, str, str]:
    """(verdict, one-line reason, details) for an exception shown by a check cell."""
    ename, evalue = err.get("ename", ""), err.get("evalue", "")
    lines = [l for l in evalue.split("\n") if l.strip()]
    if ename == "CheckFailed":
        head = re.sub(r"^FAIL \S+:\s*", "", lines[0]) if lines else "the check failed"
        cause = next((l.strip() for l in lines[1:] if not l.strip().startswith("hint:")), "")
        verdict = next((name for cls, name in _CAUSES if re.search(rf"\b{cls}\b", evalue)), None)
        if verdict is not None and cause:      # a kernel error: its own message says where and what
            return verdict, _short(cause), evalue
        if verdict is None:
            verdict = "wrong" if re.search(r"wrong results|changed its input", evalue) else "failed"
        return verdict, _short(head + (" -- " + cause if cause else "")), evalue
    if ename == "NotImplementedError":
        return "not attempted", _short(f"NotImplementedError: {evalue}"), evalue
    if ename == "KeyboardInterrupt":
        return "hang", "interrupted at the cell's time limit", _tail(err.get("traceback", ""))
    for cls, name in _CAUSES:
        if ename == cls:
            return name, _short(f"{ename}: {evalue}"), evalue
    if ename == "NameError":
        return "missing", _short(f"{ename}: {evalue}"), _tail(err.get("traceback", ""))
    return "error", _short(f"{ename}: {evalue}"), _tail(err.get("traceback", ""))


def _check_verdict(check, r: dict | None, run: RunResult, limits: Limits, guards_failed: bool,
                   exercise_errors: list) -> tuple[str, str, str]:
    """(verdict, one-line reason, details) for one canonical check cell, from its record ``r`` (None: it never
    reported)."""
    if r is None:
        if run.timed_out:
            return "hang", (f"no result within the time limit ({limits.total:g} s per exercise): the grader stopped "
                            "the notebook"), ""
        if run.kernel_died:
            return "crash", "the notebook kernel died while running this exercise (a crash in the code?)", ""
        return "grading error", "nbval did not report this check cell; see the details", run.log
    if guards_failed:
        return "tampering", "the checker was changed by the learner's code and could not be restored", ""
    if r.get("xfail"):
        return "hang", f"an earlier cell ran past nbval's cell limit ({limits.cell:g} s)", ""
    if r.get("outcome") == "passed":
        return "pass", "", ""
    err, message = _error(r), r.get("message", "")
    if err is None and "Timeout of" in message:
        return "hang", f"the check did not finish within the cell limit ({limits.cell:g} s)", _tail(message)
    if err is None:        # no exception: the output differs from the course's PASS line
        expected = "".join(_source({"source": o.get("text", "")}) for o in check.cell.get("outputs", [])
                           if o.get("output_type") == "stream").strip()
        got = _stdout(r).strip()
        return ("output differs", _short(f"the check cell printed {got[:120]!r} instead of just {expected!r}"),
                f"expected output:\n{expected}\n\nprinted:\n{got}")
    v, why, more = _describe_error(err)
    if exercise_errors and v in ("missing", "not attempted", "error"):    # the exercise cell itself failed
        first = exercise_errors[0]
        why = _short(f"the exercise cell raised {first['ename']}: {first['evalue']}")
        more = _tail(first.get("traceback", "")) + "\n\nthen the check: " + more
        v = "not attempted" if first["ename"] == "NotImplementedError" else "error"
    elif v == "missing":
        why = _short(why + " (an exercise cell may use only the names of the chapter's imports cell, not names "
                     "defined in other cells)")
    return v, why, more


def _grading_error(result: ExerciseResult, reason: str, details: str) -> ExerciseResult:
    result.verdict, result.grader_error, result.reason, result.details = "grading error", True, reason, details
    return result


def judge(exercise: Exercise, run: RunResult, timeout: float) -> ExerciseResult:
    """The verdict on ``exercise`` from its run."""
    limits = Limits(timeout)
    result = ExerciseResult(exercise.name, exercise.points, seconds=run.seconds)
    by_kind: dict[str, list] = {}
    for r in run.records:
        by_kind.setdefault(r.get("grade", {}).get("kind", "?"), []).append(r)

    # the course's own cells must run: otherwise the grading environment is broken
    for r in by_kind.get("start", []) + by_kind.get("preamble", []) + by_kind.get("arm", []) + by_kind.get("?", []):
        if r.get("outcome") == "failed" or r.get("when") != "call":
            err = _error(r)
            what = f"{err['ename']}: {err['evalue']}" if err else _short(r.get("message", ""), 400)
            return _grading_error(result, _short(f"a course cell (id {r.get('cell_id')}) failed before the "
                                                 f"learner's code ran: {what}"), r.get("message", "") or what)
    if run.setup_timed_out:
        return _grading_error(result, f"the notebook kernel and the course's set-up cells did not finish within "
                              f"{limits.setup:g} s, before the learner's code ran: is the machine overloaded? (try "
                              "fewer --jobs)", run.log)
    if not run.records and not run.timed_out and not run.kernel_died:
        return _grading_error(result, f"pytest/nbval produced no result (exit status {run.returncode}); see the "
                              "details", run.log)

    exercise_errors = [err for err in map(_error, by_kind.get("exercise", [])) if err is not None]
    for r in by_kind.get("guard", []):
        text = _stdout(r)
        if _RESTORED in text:
            what = text.split(_RESTORED, 1)[1].strip().split("\n")[0]
            note = f"the code before the check had changed the checker; the grader put back: {_short(what, 300)}"
            if note not in result.notes:
                result.notes.append(note)
        if r.get("outcome") == "failed":
            err = _error(r)
            result.notes.append("the grader could not restore the checker after the learner's code: "
                                + (f"{err['ename']}: {err['evalue']}" if err else _short(r.get("message", ""))))

    checks = {r["grade"].get("index"): r for r in by_kind.get("check", [])}
    guards_failed = any(r.get("outcome") == "failed" for r in by_kind.get("guard", []))
    verdicts, reasons, details = [], [], []
    for i, check in enumerate(exercise.checks):
        v, why, more = _check_verdict(check, checks.get(i), run, limits, guards_failed, exercise_errors)
        if v == "pass":
            result.earned += check.points
        result.grader_error |= v == "grading error"
        verdicts.append(v)
        reasons += [why] if why else []
        details += [more] if more else []

    failing = [v for v in verdicts if v != "pass"]
    result.verdict = failing[0] if failing else "pass"
    if failing and len(exercise.checks) > 1 and result.earned:
        result.verdict = "partial"
    result.reason = " | ".join(dict.fromkeys(reasons))
    result.details = "\n\n".join(d for d in details if d)
    if exercise_errors and not failing:
        first = exercise_errors[0]
        result.notes.append(_short(f"the exercise cell raised {first['ename']}: {first['evalue']} (the check passed)"))
    if result.grader_error:
        result.verdict = "grading error"
    return result
