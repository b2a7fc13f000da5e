"""What ``llmc grade`` calls a learner's function with, and what it must leave in its buffers.

A canonical check cell names the check (``check.forward("gelu", gelu_forward)``,
``check_model.block_backward(block_backward)``); :func:`plan_of` reads it into a :class:`Plan`, and
:func:`cases_for` builds, from the run's secret seed, the :class:`GradedCase` objects of that check: the cases
the learner's function is called with, the case whose launches are recorded (provenance) and the fresh inputs
they are replayed on. A graded case is independent of where it runs:

- ``args``: one JSON descriptor per argument -- ``{"array": key}``, ``{"dict": {name: key}}``, ``{"int": n}``,
  ``{"float": x}``, ``{"none": true}``, ``{"ops": true}`` (chapter 09's ops namespace) -- and ``arrays``, the
  initial contents of each key. That is all the learner's process receives.
- ``checked``: (key, :class:`~llmc_kernels.check.cases.Tensor`) pairs compared afterwards with
  :func:`llmc_kernels.check.compare.compare`; ``inputs``: keys that must come back unchanged.

Op exercises reuse the checks' own case builder (:func:`llmc_kernels.check.cases.build`) at secret sizes
(:mod:`.secret`); block exercises are built by :mod:`.blocks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..check.cases import Case, Tensor, build, judged_only
from ..opspec import INPUT
from . import secret as grade_secret

_OP_CHECK = re.compile(r"\bcheck\s*\.\s*(forward|backward)\s*\(\s*[\"'](\w+)[\"']\s*,\s*([A-Za-z_]\w*)")
_PERF_CHECK = re.compile(r"\bcheck\s*\.\s*performance\s*\(\s*[\"'](\w+)[\"']\s*,\s*([A-Za-z_]\w*)")
_BLOCK_CHECK = re.compile(r"\bcheck_model\s*\.\s*(block_forward|block_backward)\s*\(\s*([A-Za-z_]\w*)")


class NotGradable(Exception):
    """A canonical check cell whose check ``llmc grade`` does not know how to run on its own."""


@dataclass(frozen=True)
class Plan:
    """One canonical check: ``kind`` "op" (``check.forward/backward``) or "block" (``check_model``)."""

    kind: str
    function: str  # the learner's function the check calls (its name in the notebook)
    op: str = ""  # op: the op name; block: "block"
    direction: str = ""  # forward | backward
    performance: str = ""  # check.performance(fname, fn): the optimised op function (its targets' key)

    @property
    def checked_name(self) -> str:
        """The name the check reports (``PASS <name>``)."""
        if self.kind == "block":
            return f"block_{self.direction}"
        from ..check import function_name

        return function_name(self.op, self.direction)


def plan_of(source: str) -> Plan:
    """The check a canonical check cell runs (NotGradable if it is none ``llmc grade`` knows)."""
    m = _PERF_CHECK.search(source)
    if m:
        from .. import opspec
        from ..check.performance import TARGETS

        fname, fn = m.groups()
        if fname not in TARGETS:
            raise NotGradable(f"check.performance({fname!r}, ...): no performance targets for {fname!r}")
        spec, fspec = opspec.function(fname)
        direction = "forward" if fspec is spec.forward else "backward"
        if spec.op not in grade_secret.SECRET_CASES:
            raise NotGradable(f"check.performance({fname!r}, ...): no secret cases for op {spec.op!r}")
        return Plan("op", fn, spec.op, direction, fname)
    m = _OP_CHECK.search(source)
    if m:
        direction, op, fn = m.groups()
        if op not in grade_secret.SECRET_CASES:
            raise NotGradable(f"check.{direction}({op!r}, ...): no secret cases for op {op!r}")
        return Plan("op", fn, op, direction)
    m = _BLOCK_CHECK.search(source)
    if m:
        which, fn = m.groups()
        return Plan("block", fn, "block", which.split("_")[1])
    raise NotGradable(
        "the check cell calls neither check.forward/backward(op, fn) nor check_model.block_forward/backward(fn)"
    )


@dataclass
class GradedCase:
    label: str
    args: list  # JSON descriptors, one per argument
    arrays: dict  # key -> initial contents (NumPy)
    checked: list = field(default_factory=list)  # (key, Tensor) compared afterwards
    inputs: list = field(default_factory=list)  # keys that must not change
    tol: tuple = (0.0, 0.0)
    expected_from: str = "reference"
    kind: str = "random"
    magnitude: float = 0.0
    fname: str = ""
    sizes: dict = field(default_factory=dict)
    # arrays the learner's process allocates itself, zero-filled (key -> (shape, dtype)), instead of receiving
    # them: the GPU time target's recorded run (.gputime.timing_case), whose launches never run there
    alloc: dict = field(default_factory=dict)


@dataclass
class CaseSet:
    graded: list  # the cases the learner's function is judged on, in order
    provenance: GradedCase  # called once more with its launches recorded
    replay: GradedCase  # fresh inputs of the same sizes: the recorded launches are replayed on them
    # a performance check: the case recorded at the targets' sizes, and the fresh inputs its launches are
    # replayed on with the memory counters on (None otherwise)
    performance: GradedCase | None = None
    performance_replay: GradedCase | None = None


def from_check_case(case: Case, tol: tuple) -> GradedCase:
    """A check's case (``check_cases.build``) as a graded case."""
    args, arrays = [], {}
    for v in case.values:
        if isinstance(v, Tensor):
            if v.initial is None:
                args.append({"none": True})
            else:
                args.append({"array": v.name})
                arrays[v.name] = v.initial
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"unexpected argument {v!r} in a case of {case.fname}")
        elif isinstance(v, int):
            args.append({"int": int(v)})
        else:
            args.append({"float": float(v)})
    inputs = [t.name for t in case.tensors if t.role == INPUT and t.initial is not None]
    return GradedCase(
        case.label,
        args,
        arrays,
        [(t.name, t) for t in case.checked()],
        inputs,
        tol,
        case.expected_from,
        case.spec.kind,
        case.magnitude,
        case.fname,
        dict(case.sizes),
    )


def cases_for(plan: Plan, seed: int) -> CaseSet:
    """The graded, provenance and replay cases of ``plan`` for this grading run's secret ``seed``."""
    if plan.kind == "block":
        from .blocks import block_cases

        return block_cases(plan.direction, seed)
    from ..check import TOLERANCES

    fname = plan.checked_name
    tol = TOLERANCES[fname]
    outputs = None  # an optimisation exercise judged on some of the op's outputs only (OpTargets.outputs)
    if plan.performance:
        from ..check.performance import TARGETS

        outputs = TARGETS[plan.performance].outputs

    def case(spec, key):
        return from_check_case(judged_only(build(fname, spec, key), outputs), tol)

    specs = grade_secret.secret_specs(plan.op, plan.direction, seed)
    main = grade_secret.derive(seed, fname, "cases")
    graded = [case(spec, main) for spec in specs]
    spec = grade_secret.provenance_spec(plan.op, plan.direction, seed)
    provenance = case(spec, grade_secret.derive(seed, fname, "provenance"))
    replay = case(spec, grade_secret.derive(seed, fname, "replay"))
    result = CaseSet(graded, provenance, replay)
    if plan.performance:
        from ..check.cases import CaseSpec, complete_sizes
        from ..check.performance import TARGETS

        perf = CaseSpec.of(complete_sizes(plan.op, dict(TARGETS[plan.performance].sizes)))
        result.performance = case(perf, grade_secret.derive(seed, fname, "perf"))
        result.performance_replay = case(perf, grade_secret.derive(seed, fname, "perf-replay"))
    return result


def request_arrays(prefix: str, case: GradedCase) -> dict:
    return {f"{prefix}.{k}": np.ascontiguousarray(v) for k, v in case.arrays.items()}
