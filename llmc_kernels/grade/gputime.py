"""The GPU time target of an optimisation exercise, in ``llmc grade --backend cuda``.

``check.performance`` in a notebook on a GPU also times the learner's function against the package's kernel for
the op, at the op's GPU sizes (``TARGETS[op].gpu_sizes``: B=8, T=1024, ...), and wants it within
``TARGETS[op].time_ratio`` of it. ``llmc grade`` applies the same target without believing the learner's process:

1. **the worker** (the learner's process, :mod:`.worker`) calls the learner's function once more, at the GPU
   sizes, on the CPU backend under a :class:`~.trace.RecordTracer`: its kernel launches are recorded and never
   run, on zero-filled buffers of the right shapes (:func:`timing_case`; no inputs are sent, none are needed).
   It sends back the trace only;
2. **the grader** checks that trace as it checks the provenance trace (kernels the submission compiled, none of
   the package's: :func:`.exercise.check_launches`) and starts a replay process with the trace and a secret
   seed that the worker never saw;
3. **the replay process** (:mod:`.replay`: no learner Python; the learner's kernels run on the GPU only) draws
   fresh inputs at the GPU sizes from that seed with the checks' own case builder, which also computes their
   float64 reference (:func:`fresh_case`), replays the trace on them on the GPU (:class:`~.trace.DeviceReplay`)
   and compares the judged outputs (``TARGETS[op].outputs``) with the reference, at the op's tolerances
   (``check.TOLERANCES``). Only if they are right does it time the replayed launches and the package's
   ``TARGETS[op].baseline`` (``llmc_kernels.ops``, trusted code) on the same inputs, in that process on that
   GPU, as ``check.performance`` times them (CUDA events around each run, warm-up runs first, the median of
   20), the two in turn (:func:`~llmc_kernels.check.performance.interleaved_gpu_ms`: other work on the GPU, or
   its clocks, slow both alike), and sends back both times and the GPU's name (:func:`measure`). The outputs
   of the learner's last timed run are compared with the reference too;
4. **the grader** divides the two times and applies ``time_ratio`` (:func:`read_timing`, a
   :class:`~llmc_kernels.check.performance.TimeResult`, as ``check.performance`` makes):
   a miss is verdict ``not optimised``; the memory counters are judged as on the cpu backend, and both must pass.

Why the learner cannot fake it: nothing the learner's process says is read but the trace, and the trace is a
claim the replay checks -- replayed on inputs the learner's code never saw, its launches must write the right
outputs, or there are no performance points (a kernel that is fast because it skips work at these sizes is
wrong here). The times are measured by CUDA events in a process that runs no learner Python, against the
package's own kernel on the same GPU in the same process, so a slower or faster GPU changes both. Before each
run every buffer is restored from a copy (outputs poisoned again, in-out arrays such as the classifier's logits
back to their inputs), the number of warm-up runs is drawn from the seed, and the last run is verified, so a
kernel cannot compute once and skip the work in the runs that are timed. A kernel that keeps a hidden cache in
device memory across launches would still be timed on its cache: reading the code is the defence against that.

Why the reference is compared in the replay process rather than in the grader: at these sizes the outputs are
up to 1.6 GB (GPT-2's logits) and their float64 reference needs seconds and gigabytes, more than the grader's
pipes carry (:data:`.wire.MAX_FRAME`); the replay process is trusted exactly as far as for the memory counters
and the times it measures, which only it can measure.
"""

from __future__ import annotations

import math

import numpy as np

from ..check.performance import TimeResult
from .cases import GradedCase

REPEATS = 20  # timed runs of each (as check.performance)
MIN_WARMUP = 3


def _targets(fname: str):
    from ..check.performance import TARGETS

    return TARGETS[fname]


# ------------------------------------------------------------------------------------------ the worker's case
def timing_case(fname: str) -> GradedCase:
    """The case the worker calls the learner's function with, at the op's GPU sizes: the arguments as for any
    case, but no arrays -- each array argument is allocated by the worker, zero-filled (``alloc``: key ->
    (shape, dtype)), since its launches are recorded and never run."""
    from .. import opspec
    from ..check.cases import CaseSpec, complete_sizes
    from ..opspec import HYPER, SIZE, STEP

    table = _targets(fname)
    spec, fn = opspec.function(fname)
    sizes = complete_sizes(spec.op, dict(table.gpu_sizes))
    args, alloc = [], {}
    for a in fn.args:
        if a.role == SIZE:
            args.append({"int": int(sizes[a.name])})
        elif a.role == HYPER:
            args.append({"float": float(np.float32(a.example))})
        elif a.role == STEP:
            args.append({"int": int(a.example)})
        else:
            alloc[a.name] = (opspec.shape(a, sizes), np.dtype(a.dtype))
            args.append({"array": a.name})
    return GradedCase(CaseSpec.of(sizes).label(), args, {}, fname=fname, sizes=sizes, alloc=alloc)


# ------------------------------------------------------------------------------------------ the replay process
class Failure(Exception):
    """The GPU timing could not finish: ``learner`` True when the learner's launches failed (a compile error, a
    GPU fault, a trace that cannot replay), False when the grader's own side did (no GPU, the baseline)."""

    def __init__(self, learner: bool, error: BaseException):
        super().__init__(str(error))
        self.learner, self.error = learner, error


def fresh_case(fname: str, seed: int):
    """Fresh inputs at the op's GPU sizes, drawn from ``seed``, with their float64 reference (a check's Case with
    only the judged outputs compared)."""
    from .. import opspec
    from ..check.cases import CaseSpec, build, complete_sizes, judged_only

    table = _targets(fname)
    sizes = complete_sizes(opspec.function(fname)[0].op, dict(table.gpu_sizes))
    return judged_only(build(fname, CaseSpec.of(sizes), int(seed)), table.outputs)


def warmup_runs(seed: int) -> int:
    """Untimed runs before the timed ones: 3 to 6, drawn from the secret seed (so no kernel can count its way to
    the last, verified run)."""
    return MIN_WARMUP + int(seed) % 4


def _scale(t) -> float:
    """The scale of ``t``'s absolute tolerance, exactly as :func:`llmc_kernels.check.compare.compare` computes it."""
    from ..check.values import rms
    from ..opspec import ACCUMULATE, INOUT

    mask = None if t.compare is None else np.asarray(t.compare)
    scale = max(rms(t.expected, mask), t.scale or 0.0)
    if t.role in (ACCUMULATE, INOUT):
        scale = max(scale, rms(t.initial, mask))
    return scale or 1.0


def _within(t, got, tol: tuple, xp, cache: dict) -> bool:
    """``compare(t, got, tol).ok`` evaluated where ``got`` lies (on the GPU: seconds less per pass over GPT-2's
    logits than NumPy's minute), with compare's own scale: every compared element finite and within
    ``atol * scale + rtol * |expected|`` of the float64 reference. Only a yes is taken from here: for a no,
    compare itself says which elements and why."""
    rtol, atol_rel = tol
    if t.name not in cache:  # the reference on the device, and the scale, once per tensor
        mask = None if t.compare is None else xp.asarray(np.asarray(t.compare))
        cache[t.name] = (xp.asarray(t.expected), mask, atol_rel * _scale(t))
    expected, mask, atol = cache[t.name]
    g = got.astype(xp.float64)
    diff = xp.where(xp.isfinite(g), xp.abs(g - expected), xp.inf)
    bad = ~(diff <= atol + rtol * xp.abs(expected))
    if mask is not None:
        bad &= mask
    return not bool(bad.any())


def _wrong(case, grader: dict, to_host, xp, cache: dict) -> list[str]:
    """The summaries of the judged outputs in ``grader`` (arrays of ``xp``) that differ from the reference."""
    from ..check import TOLERANCES, _annotator
    from ..check.compare import compare

    tol = TOLERANCES[case.fname]
    wrong = []
    for t in case.checked():
        if _within(t, grader[t.name], tol, xp, cache):
            continue
        r = compare(t, to_host(grader[t.name]), tol, _annotator(case.fname, t, case.sizes))
        if not r.ok:
            wrong.append(r.summary())
    return wrong


def _learners(e: BaseException) -> bool:
    """Whether an error while the learner's launches ran is theirs: a trace that cannot replay, a kernel error
    (compile, arguments, fault), a CUDA error (a fault found at a later synchronisation). Anything else is the
    grader's (a grading error, never points)."""
    from ..errors import KernelError
    from .trace import TraceError

    names = {c.__name__ for c in type(e).__mro__}
    return isinstance(e, (TraceError, KernelError)) or bool(names & {"CUDARuntimeError", "CUDADriverError"})


def measure(
    spec: dict, trace: dict, blobs: dict, *, xp=None, backend: str = "cuda", timer=None, name=None, ready=None
) -> dict:
    """Run in the replay process: verify the trace's launches at the GPU sizes on fresh inputs, then time them and
    the package's baseline. ``spec``: ``fname`` (the op function, a key of TARGETS), ``seed``, optionally
    ``repeats``. Returns the ``timed`` frame's meta: ``device``, ``sizes``, ``wrong`` (summaries of wrong outputs;
    if any, nothing was timed), else ``ms``, ``baseline``, ``baseline_ms``, ``repeats``, ``warmup``. Raises
    :class:`Failure`.

    ``xp``, ``backend``, ``timer([(call, before), ...], repeats, warmup) -> [ms, ...]`` and ``name`` default to
    CuPy, the cuda backend, CUDA events (:func:`~llmc_kernels.check.performance.interleaved_gpu_ms`) and the GPU's
    name; the tests pass NumPy, the cpu backend and a clock. ``ready()`` is called once the inputs and their
    reference are made, before any of the learner's launches."""
    from .. import ops, runtime
    from ..check.cases import Tensor
    from .trace import DeviceReplay

    fname = spec["fname"]
    seed = int(spec["seed"])
    repeats = int(spec.get("repeats") or REPEATS)
    warmup = warmup_runs(seed)
    table = _targets(fname)
    try:  # the grader's side: a GPU, fresh inputs and their reference
        if xp is None:
            import cupy as xp
        if timer is None:
            from ..check.performance import interleaved_gpu_ms as timer

        if name is None:
            from ..check.performance import gpu_name

            name = gpu_name()
        case = fresh_case(fname, seed)
        pristine = {t.name: xp.asarray(t.initial) for t in case.tensors if t.initial is not None}
        grader = {k: v.copy() for k, v in pristine.items()}
        if ready is not None:  # the grader's slow part is done (its time limit, ``setup``, is the grader's)
            ready()
    except BaseException as e:  # noqa: BLE001
        raise Failure(False, e) from None

    def to_host(a):
        return np.array(a) if xp is np else xp.asnumpy(a)

    def restore(buffers):
        def before():
            for k, a in buffers.items():
                a[...] = pristine[k]

        return before

    out = {"event": "timed", "device": str(name), "sizes": dict(table.gpu_sizes), "wrong": []}
    cache: dict = {}  # the reference on the device, per judged output
    try:  # the learner's launches, verified once before any timing
        replay = DeviceReplay(trace, blobs, grader, xp=xp, backend=backend)
        with runtime.launch_options(check=True):
            replay.run()
        out["wrong"] = _wrong(case, grader, to_host, xp, cache)
    except BaseException as e:  # noqa: BLE001
        raise Failure(_learners(e), e) from None
    if out["wrong"]:
        return out
    try:  # the package's kernel on buffers of its own, same inputs
        theirs_buffers = {k: v.copy() for k, v in pristine.items()}
        args = [theirs_buffers.get(v.name) if isinstance(v, Tensor) else v for v in case.values]
        baseline = getattr(ops, table.baseline)
    except BaseException as e:  # noqa: BLE001
        raise Failure(False, e) from None
    try:  # both timed in turn; then the outputs of the learner's last timed run verified too
        mine, theirs = timer(
            [(replay.run, restore(grader)), (lambda: baseline(*args), restore(theirs_buffers))], repeats, warmup
        )
        out["wrong"] = _wrong(case, grader, to_host, xp, cache)
    except BaseException as e:  # noqa: BLE001
        raise Failure(_learners(e), e) from None
    if out["wrong"]:
        out["after_timing"] = True
        return out
    out.update(ms=float(mine), baseline=table.baseline, baseline_ms=float(theirs), repeats=repeats, warmup=warmup)
    return out


# ------------------------------------------------------------------------------------------ the grader
class Malformed(Exception):
    """The replay's answer is not what :func:`measure` sends."""


def _number(meta: dict, key: str) -> float:
    v = meta.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise Malformed(f"{key} = {v!r}")
    return float(v)


def read_timing(meta: dict, fname: str) -> tuple[TimeResult | None, list[str]]:
    """(the TimeResult, []) from the replay's ``timed`` frame, or (None, the summaries of the wrong outputs).
    Raises Malformed for anything else."""
    table = _targets(fname)
    wrong = meta.get("wrong")
    device = meta.get("device")
    if not isinstance(wrong, list) or not all(isinstance(w, str) for w in wrong) or not isinstance(device, str):
        raise Malformed("no list of wrong outputs, or no device name")
    if wrong:
        return None, wrong
    if meta.get("baseline") != table.baseline:
        raise Malformed(f"the baseline is {meta.get('baseline')!r}, not {table.baseline!r}")
    ms, base = _number(meta, "ms"), _number(meta, "baseline_ms")
    if base <= 0:
        raise Malformed("the package's kernel took no time")
    return TimeResult(device[:200], dict(table.gpu_sizes), ms, table.baseline, base, table.time_ratio), []
