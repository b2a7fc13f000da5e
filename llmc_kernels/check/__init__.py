"""Check a learner's function against the float64 reference: ``check.forward(op, fn)``, ``check.backward(op, fn)``.

    from llmc_kernels import check
    check.forward("layernorm", layernorm_forward)      # prints "PASS layernorm_forward"
    check.backward("layernorm", layernorm_backward)    # also against finite differences

``fn`` has the op's SPEC signature and receives arrays of the active backend (NumPy on cpu, CuPy on cuda),
sizes as Python ``int`` and hyperparameters as Python ``float``; what it returns is ignored. Each call draws
seeded random cases (:mod:`.cases`): awkward sizes, a tiny one, inputs of large magnitude and, for a
backward, a tiny case whose expected gradients are central finite differences (:mod:`.fd`). Outputs are
poisoned with NaN, accumulators pre-filled. On the CPU backend every case runs under two thread orders
(``forward`` and ``reverse``) so a missing barrier cannot pass by luck; on a GPU a pre-flight on the CPU
backend comes first (an out-of-bounds access is named there instead of killing the CUDA context), then each
case runs with ``launch_options(check=True)``.

On success one line ``PASS <function>`` is printed and a :class:`CheckResult` returned (its ``.report()``
holds sizes, errors against tolerances, thread orders, timings and compiler warnings). On failure the check
prints what went wrong (tensor, errors vs tolerance, how many elements are off or unwritten, the first bad
element by name, a hint) and raises :class:`~llmc_kernels.errors.CheckFailed`.

The learner's function runs inside :func:`llmc_kernels._honesty.learner_scope`: calling the package's own
kernels, ``ops`` or ``reference`` from it fails the check. Anything else is allowed -- a pure NumPy function
passes if its numbers are right; the check judges results, the chapters ask for kernels. ``llmc grade`` does
not accept non-kernel code: it replays the function's kernel launches on fresh inputs (book/conventions.md).
"""

from __future__ import annotations

import functools
import os
import time

import numpy as np

from .. import opspec
from .._honesty import learner_scope
from ..errors import (
    CheckFailed,
    ForbiddenCall,
    GPUFault,
    KernelDeadlock,
    KernelError,
    KernelOutOfBounds,
    KernelRace,
    KernelTimeout,
)
from ..opspec import INPUT
from .array_module import array_module_for
from .cases import Case, CaseSpec, build, complete_sizes, default_specs, judged_only
from .compare import compare, coords, differs, nan_hint, order_hint
from .result import CaseRecord, CheckResult, warnings_of

__all__ = [
    "forward",
    "backward",
    "performance",
    "PerformanceFailed",
    "CheckResult",
    "TOLERANCES",
    "DEFAULT_SEED",
    "function_name",
]

DEFAULT_SEED = 0
SCHEDULES = ("forward", "reverse")
CPU_TIMEOUT = 20.0  # seconds per launch during a check (cases are small); LLMC_CPU_TIMEOUT overrides it

# Tolerances per function: (rtol, atol). An element passes when
#     |got - expected| <= atol * rms(expected) + rtol * |expected|
# Each op's tolerances, and why they are what they are, live in its opspec row (FnSpec.tolerance); this is
# the table the checks read (llmc grade's guard restores it if a learner's cell changes it).
TOLERANCES = {fn.name: fn.tolerance for spec in opspec.OPS.values() for fn in spec.functions}


def function_name(op: str, direction: str) -> str:
    """The function a check is about: ('crossentropy', 'backward') -> 'crossentropy_softmax_backward'."""
    if not isinstance(op, str) or op not in opspec.OPS:
        known = ", ".join(sorted(opspec.OPS))
        raise ValueError(f"unknown op {op!r}: the checks know {known}")
    spec = opspec.OPS[op]
    if direction == "forward":
        return spec.forward.name
    if spec.backward is None:
        raise ValueError(spec.no_backward or f"{op} has no backward: check it with check.forward({op!r}, fn)")
    return spec.backward.name


def forward(op: str, fn, sizes=None, seed=None) -> CheckResult:
    """Check ``fn`` as the forward of ``op`` (for adamw: adamw_update; for vector_add: vector_add).

    Judges results only: non-kernel code (NumPy on the host) passes if its numbers are right. ``llmc grade``
    accepts only outputs written by kernels the submission compiles and launches."""
    return _check(op, "forward", fn, sizes, seed)


def backward(op: str, fn, sizes=None, seed=None) -> CheckResult:
    """Check ``fn`` as the backward of ``op`` (for crossentropy: crossentropy_softmax_backward).

    Judges results only: non-kernel code (NumPy on the host) passes if its numbers are right. ``llmc grade``
    accepts only outputs written by kernels the submission compiles and launches."""
    return _check(op, "backward", fn, sizes, seed)


class _Failure(Exception):
    def __init__(self, text: str, cause: BaseException | None = None):
        super().__init__(text)
        self.text = text
        self.cause = cause


def _fail(name: str, text: str, cause: BaseException | None) -> None:
    message = f"FAIL {name}: {text}"
    print(message)
    exc = CheckFailed(message)
    # in a notebook, show the short line under the printed details instead of a long traceback of check.py
    exc._render_traceback_ = lambda: [f"CheckFailed: {name} did not pass (details above)"]
    if cause is not None:
        raise exc from cause
    raise exc from None


# ------------------------------------------------------------------------------------------ running
@functools.lru_cache(maxsize=256)
def _case(fname: str, spec: CaseSpec, seed: int) -> Case:
    case = build(fname, spec, seed)
    for t in case.tensors:
        for a in (t.initial, t.expected, t.compare, t.outside):
            if isinstance(a, np.ndarray) and a.base is None:
                a.flags.writeable = False
    return case


def _specs(op: str, direction: str, sizes) -> list[CaseSpec]:
    if sizes is None:
        return default_specs(op, direction)
    if isinstance(sizes, dict):
        sizes = [sizes]
    if not isinstance(sizes, (list, tuple)) or not sizes or not all(isinstance(s, dict) for s in sizes):
        raise ValueError("sizes must be a dict like {'B': 2, 'T': 3, 'C': 5} or a list of such dicts")
    return [CaseSpec.of(complete_sizes(op, s)) for s in sizes]


def _check(op: str, direction: str, fn, sizes, seed, outputs=None):
    """The check of ``fn`` as ``op``'s ``direction``; ``outputs``: compare only these (check.performance of an
    exercise judged on some of the op's outputs, see OpTargets.outputs), None: all."""
    fname = function_name(op, direction)
    if not callable(fn):
        raise TypeError(
            f"check.{direction}({op!r}, fn): fn must be your function {fname}(...), got {type(fn).__name__}"
        )
    if seed is None:
        seed = DEFAULT_SEED
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    specs = _specs(op, direction, sizes)
    started = time.perf_counter()
    runner = _Runner(fname, fn, int(seed), len(specs), outputs)
    race_warnings: list = []
    token = _race_sink().set(race_warnings)  # same-value races: warnings on the result, not failures
    try:
        runner.run(specs)
    except _Failure as f:
        _fail(fname, f.text, f.cause)
    finally:
        _race_sink().reset(token)
    result = CheckResult(
        fname,
        runner.backend,
        int(seed),
        runner.schedules,
        runner.records,
        warnings_of(fn),
        time.perf_counter() - started,
        runner.preflight,
        race_warnings=race_warnings,
    )
    result.announce()
    return result


def _race_sink():
    from ..runtime.cpu import RACE_WARNINGS

    return RACE_WARNINGS


class _Runner:
    def __init__(self, fname: str, fn, seed: int, n_cases: int, outputs=None):
        from .. import runtime

        self.runtime = runtime
        self.fname, self.fn, self.seed, self.n = fname, fn, seed, n_cases
        self.outputs = outputs  # the outputs compared (None: all)
        self.tol = TOLERANCES[fname]
        self.backend = runtime.backend()
        self.schedules = SCHEDULES if self.backend == "cpu" else ("gpu",)
        self.records: list[CaseRecord] = []
        self.preflight = ""
        self.returned = ""  # the type of what fn returned, if anything (a common slip)

    def run(self, specs: list[CaseSpec]) -> None:
        if self.backend == "cuda":  # the op's first default case: small, awkward sizes
            spec = default_specs(opspec.function(self.fname)[0].op, "forward")[0]
            case = judged_only(_case(self.fname, spec, self.seed), self.outputs)
            with self.runtime.use_backend("cpu"):
                self._run(case, 1, "cpu", SCHEDULES, preflight=True)
            self.preflight = f"{case.label} on the cpu backend under thread orders {', '.join(SCHEDULES)}: passed"
        for i, spec in enumerate(specs, 1):
            case = judged_only(_case(self.fname, spec, self.seed), self.outputs)
            self.records.append(self._run(case, i, self.backend, self.schedules))

    # -- one case
    def _run(self, case: Case, index: int, backend: str, schedules, preflight: bool = False) -> CaseRecord:
        where = f"{case.label} (case {index} of {self.n}" + (", pre-flight on the cpu backend" if preflight else "")
        order = {s: (f"{where}, thread order '{s}')" if backend == "cpu" else f"{where})") for s in schedules}
        record = CaseRecord(case.label, case.expected_from)
        outcomes = {}
        for s in schedules:
            got, ms = self._call(case, backend, s, order[s], preflight)
            record.ms[s] = ms
            outcomes[s] = (
                got,
                [compare(t, got[t.name], self.tol, _annotator(self.fname, t, case.sizes)) for t in case.checked()],
            )
        failing = [s for s in schedules if not all(r.ok for r in outcomes[s][1])]
        if failing:
            raise _Failure(self._wrong(case, order[failing[0]], outcomes, failing, schedules))
        for j, _ in enumerate(case.checked()):
            record.tensors.append(max((outcomes[s][1][j] for s in schedules), key=lambda r: r.max_abs))
        return record

    def _call(self, case: Case, backend: str, schedule: str, where: str, preflight: bool):
        """Run the learner's function once on fresh buffers; returns ({name: numpy result}, ms)."""
        rt = self.runtime
        xp = np
        if backend == "cuda":
            import cupy as xp
        args = []
        for v in case.values:
            if hasattr(v, "arg"):
                args.append(None if v.initial is None else xp.array(v.initial, copy=True))
            else:
                args.append(v)
        opts = dict(check=True)
        if backend == "cpu":  # the race detector runs in every check unless launch_options(races=False) says not
            opts = dict(schedule=schedule, timeout=_cpu_timeout(), races=rt.current_launch_options().races is not False)
        start = time.perf_counter()
        try:
            with rt.launch_options(**opts), array_module_for(self.fn, backend), learner_scope(self.fname):
                returned = self.fn(*args)
                if backend == "cuda":
                    xp.cuda.get_current_stream().synchronize()
        except KernelError as e:
            raise _Failure(self._kernel_error(e, case, where), e) from None
        except NotImplementedError:
            raise
        except Exception as e:
            if backend == "cuda" and type(e).__module__.split(".")[0] in ("cupy", "cupy_backends"):
                raise _Failure(
                    f"the GPU reported an error for {where}:\n  {type(e).__name__}: {e}\n"
                    "hint: the CUDA context may be unusable now: restart the notebook kernel "
                    "(Kernel > Restart) before using the GPU again",
                    e,
                ) from None
            if preflight:
                raise _Failure(
                    f"your function failed in the pre-flight on the cpu backend ({where}) with NumPy "
                    f"arrays:\n  {type(e).__name__}: {e}\nhint: launch with "
                    "llmc_kernels.runtime.RawKernel (not cupy.RawKernel) and create arrays with "
                    "runtime.xp(), so your function runs on both backends",
                    e,
                ) from None
            raise
        ms = (time.perf_counter() - start) * 1e3
        host = {}
        for v, a in zip(case.values, args):
            if hasattr(v, "arg") and a is not None:
                host[v.name] = xp.asnumpy(a) if backend == "cuda" else a
        for t in case.tensors:  # inputs are read-only
            if t.role == INPUT and t.initial is not None:
                bits = np.dtype(f"u{t.initial.itemsize}")
                changed = np.asarray(host[t.name]).view(bits) != t.initial.view(bits)
                if changed.any():
                    first = int(np.flatnonzero(changed)[0])
                    raise _Failure(
                        f"your function changed its input '{t.name}' for {where}, first at "
                        f"{coords(t.dims, t.initial.shape, first)}: inputs are read-only "
                        "(write only into the outputs)"
                    )
        if returned is not None:
            self.returned = type(returned).__name__
        return host, ms

    def _kernel_error(self, e: KernelError, case: Case, where: str) -> str:
        if isinstance(e, ForbiddenCall):
            return (
                f"your function called the package's own code for {where}:\n  ForbiddenCall: {e}\n"
                "hint: write your own kernel as a CUDA string and launch it with RawKernel; the package's "
                "answers are off limits during a check"
            )
        text = f"your kernel raised an error for {where}:\n  {type(e).__name__}: {e}"
        if isinstance(e, KernelOutOfBounds):
            odd = ", ".join(f"{k}={v}" for k, v in case.sizes.items())
            text += (
                f"\nhint: most often a missing bounds check. The sizes here ({odd}) are not multiples of "
                "the block size, so the last block has threads past the end: guard them with "
                "`if (i < N)` (or stop the loop at the real size); otherwise an index is computed wrongly"
            )
        elif isinstance(e, KernelRace):
            text += (
                "\nhint: a race: on a GPU the result depends on the order in which threads run, so it can be "
                f"wrong on some runs and right on others. {e.hint[:1].upper() + e.hint[1:]}"
            )
        elif isinstance(e, KernelDeadlock):
            text += (
                "\nhint: every thread of a block must reach each __syncthreads(): no barrier inside a "
                "branch some threads skip, and no early `return` before one"
            )
        elif isinstance(e, KernelTimeout):
            text += "\nhint: an endless loop? (a loop variable that never reaches its bound, a missing i += ...)"
        elif isinstance(e, GPUFault):
            text += (
                "\nhint: to find the faulting access, run the check on the cpu backend (LLMC_BACKEND=cpu, "
                "or inside `with runtime.use_backend('cpu'):`), which names out-of-bounds accesses safely"
            )
        return text

    def _wrong(self, case: Case, where: str, outcomes: dict, failing: list, schedules) -> str:
        results = outcomes[failing[0]][1]
        lines = [
            f"wrong results for {where}"
            + (
                ""
                if case.expected_from == "reference"
                else f"; expected values are {case.expected_from} of the float64 reference forward"
            )
        ]
        hints = []
        for r in results:
            if r.ok:
                continue
            lines.append("  " + r.summary())
            for h in r.hints:
                if h == "NAN_INF":
                    h = nan_hint(case.spec.kind == "large", case.magnitude)
                if h not in hints:
                    hints.append(h)
        if len(schedules) > 1:
            differ = any(
                differs(t, outcomes[schedules[0]][0][t.name], outcomes[x][0][t.name], self.tol)
                for x in schedules[1:]
                for t in case.checked()
            )
            race = order_hint(schedules, failing, differ)
            if race:
                hints.insert(0, race)
        if self.returned:
            hints.append(
                f"your function returned a value ({self.returned}), which the check ignores: write "
                "the results into the output arrays your function receives"
            )
        lines += [f"hint: {h}" for h in hints]
        return "\n".join(lines)


def _cpu_timeout() -> float | None:
    """The check's own launch time limit, unless the learner set LLMC_CPU_TIMEOUT (then theirs applies)."""
    return None if os.environ.get("LLMC_CPU_TIMEOUT", "").strip() else CPU_TIMEOUT


def _annotator(fname: str, t, sizes: dict):
    """[B,T,3C] buffers of a multi-head op (attention's inp/dinp): say which of q/k/v, head and channel an
    index is."""
    if t.arg.shape[-1:] != ("3*C",) or "NH" not in sizes:
        return None
    C, NH = sizes["C"], sizes["NH"]
    hs = C // NH

    def annotate(idx):
        c = idx[-1]
        return f"{'qkv'[c // C]} of head {(c % C) // hs}, i={c % hs}"

    return annotate


from .performance import PerformanceFailed, performance  # noqa: E402 -- it reuses _check above
