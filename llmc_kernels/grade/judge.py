"""Verdicts of ``llmc grade``, computed in the grader's process from nothing but arrays.

The learner's process hands back, for each call of the learner's function, the buffers it left (or the name
and text of the exception it raised). Here each buffer is checked to have the dtype and shape it was given,
inputs to be unchanged, and outputs to match the grader's own float64 reference
(:func:`llmc_kernels.check.compare.compare`, the checks' tolerances); a result that depends on the CPU thread
order is a race. What the learner's process printed is never read for a verdict: an exception's class name
only chooses which failure it was (so a forged one can only cost its own points), and its text is shown back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..check.compare import coords, differs, nan_hint, order_hint
from . import wire

# the class names an error carries (its MRO) -> the verdict; the first match wins. KernelRace is the CPU
# backend's race detector (it may not exist in this version: matched by name)
CAUSES = [
    ("KernelRace", "race"),
    ("KernelOutOfBounds", "out of bounds"),
    ("KernelDeadlock", "deadlock"),
    ("KernelTimeout", "hang"),
    ("KernelCompileError", "compile error"),
    ("KernelArgumentError", "bad launch"),
    ("KernelTrap", "kernel fault"),
    ("GPUFault", "GPU fault"),
    ("ForbiddenCall", "forbidden call"),
    ("CUDARuntimeError", "GPU fault"),
    ("CUDADriverError", "GPU fault"),
]
HINTS = {
    "out of bounds": "most often a missing bounds check. The sizes here are not multiples of the block size, so "
    "the last block has threads past the end: guard them with `if (i < N)` (or stop the loop at "
    "the real size); otherwise an index is computed wrongly",
    "deadlock": "every thread of a block must reach each __syncthreads(): no barrier inside a branch some threads "
    "skip, and no early `return` before one",
    "hang": "an endless loop? (a loop variable that never reaches its bound, a missing i += ...)",
    "race": "threads read memory that other threads write without a barrier (or atomic) in between: add the "
    "missing __syncthreads(), or accumulate with atomicAdd",
    "forbidden call": "write your own kernel as a CUDA string and launch it with RawKernel; the package's answers "
    "are off limits",
    "GPU fault": "run the check on the cpu backend (LLMC_BACKEND=cpu), which names out-of-bounds accesses safely",
}
REASON_WIDTH = 220


@dataclass
class ExerciseResult:
    name: str
    points: float  # what the exercise is worth
    earned: float = 0.0
    verdict: str = "pass"
    reason: str = ""  # one line
    details: str = ""  # the full explanation, for the feedback file
    notes: list = field(default_factory=list)
    grader_error: bool = False  # the grader, not the learner, failed
    seconds: float = 0.0
    kind: str = ""  # "performance" for an optimisation exercise: correctness and performance points apart
    performance_points: float = 0.0  # of ``points``, what meeting the performance targets is worth
    performance_earned: float = 0.0  # of ``earned``

    @property
    def correctness_points(self) -> float:
        return self.points - self.performance_points

    @property
    def correctness_earned(self) -> float:
        return self.earned - self.performance_earned


class Verdict(Exception):
    """A check's outcome other than a pass: ``verdict``, a one-line ``reason`` and the full ``details``."""

    def __init__(self, verdict: str, reason: str, details: str = "", grader_error: bool = False):
        super().__init__(reason)
        self.verdict, self.reason, self.details, self.grader_error = verdict, short(reason), details, grader_error


def short(text: str, width: int = REASON_WIDTH) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def clean_error(err) -> dict:
    """An error record from the learner's process, reduced to strings (it may send anything)."""
    err = err if isinstance(err, dict) else {}
    names = err.get("names") if isinstance(err.get("names"), list) else []
    return {
        "ename": str(err.get("ename", "Exception"))[:200],
        "evalue": str(err.get("evalue", ""))[:20000],
        "names": [str(n)[:200] for n in names[:50]],
        "traceback": str(err.get("traceback", ""))[-6000:],
    }


def verdict_of_error(err: dict) -> str:
    err = clean_error(err)
    names = err.get("names") or [err.get("ename", "")]
    for cls, verdict in CAUSES:
        if cls in names:
            return verdict
    if "NotImplementedError" in names:
        return "not attempted"
    return "error"


def error_verdict(err: dict, where: str) -> Verdict:
    """The verdict for an exception the learner's function raised at ``where``."""
    err = clean_error(err)
    v = verdict_of_error(err)
    ename, evalue = err.get("ename", "Exception"), err.get("evalue", "")
    if v == "not attempted":
        return Verdict(v, f"NotImplementedError: {evalue}", f"NotImplementedError: {evalue}")
    if v == "forbidden call":
        text = f"your function called the package's own code for {where}:\n  {ename}: {evalue}"
    elif v == "error":
        text = f"your function raised {ename} for {where}: {evalue}"
        return Verdict(v, text, text + "\n\n" + err.get("traceback", "")[-3000:])
    else:
        text = f"your kernel raised an error for {where}:\n  {ename}: {evalue}"
    if v in HINTS:
        text += f"\nhint: {HINTS[v]}"
    return Verdict(v, f"{ename}: {evalue.splitlines()[0] if evalue else ''}", text)


def outputs(case, arrays: dict) -> dict:
    """The buffers a call left, each with the dtype and shape the grader gave it (BadFrame otherwise)."""
    return {key: wire.checked(arrays, f"out.{key}", init.dtype, init.shape) for key, init in case.arrays.items()}


def unchanged_inputs(case, got: dict, where: str) -> None:
    for key in case.inputs:
        init = case.arrays[key]
        bits = np.dtype(f"u{init.dtype.itemsize}")
        changed = got[key].view(bits) != init.view(bits)
        if changed.any():
            first = int(np.flatnonzero(changed)[0])
            dims = dict(case.checked).get(key)
            at = coords(dims.dims, init.shape, first) if dims is not None else str(np.unravel_index(first, init.shape))
            raise Verdict(
                "wrong",
                f"your function changed its input '{key}' for {where}, first at {at}: inputs "
                "are read-only (write only into the outputs)",
            )


def compare_case(case, got: dict) -> list:
    """TensorResults of every compared buffer."""
    from ..check import _annotator
    from ..check.compare import compare

    results = []
    for key, t in case.checked:
        annotate = _annotator(case.fname, t, case.sizes) if case.sizes else None
        results.append(compare(t, got[key], case.tol, annotate))
    return results


def wrong_results(case, where: dict, results: dict, got: dict, schedules: list, returned: str = "") -> Verdict | None:
    """None when every schedule's results are right, else the verdict (``where``: schedule -> words)."""
    failing = [s for s in schedules if not all(r.ok for r in results[s])]
    if not failing:
        return None
    lines = [
        f"wrong results for {where[failing[0]]}"
        + (
            ""
            if case.expected_from == "reference"
            else f"; expected values are {case.expected_from} of the float64 reference forward"
        )
    ]
    hints = []
    for r in results[failing[0]]:
        if r.ok:
            continue
        lines.append("  " + r.summary())
        for h in r.hints:
            if h == "NAN_INF":
                h = nan_hint(case.kind == "large")
            if h not in hints:
                hints.append(h)
    verdict = "wrong"
    if len(schedules) > 1:
        differ = any(
            differs(t, got[schedules[0]][k], got[s][k], case.tol) for s in schedules[1:] for k, t in case.checked
        )
        race = order_hint(schedules, failing, differ)
        if race:
            hints.insert(0, race)
    if returned:
        hints.append(
            f"your function returned a value ({returned}), which is ignored: write the results into the "
            "output arrays your function receives"
        )
    text = "\n".join(lines + [f"hint: {h}" for h in hints])
    head = lines[0] + (" -- " + lines[1].strip() if len(lines) > 1 else "")
    return Verdict(verdict, head, text)
