"""Grade one exercise of one submission: a learner process, the grader's verdict, then a replay for provenance.

For each canonical check cell of the exercise (:func:`grade_exercise`):

1. :func:`.grade_cases.cases_for` draws the secret cases;
2. a worker (:mod:`.worker`) runs the course's set-up cells and the learner's cells, and calls the
   learner's function on each case (both CPU thread orders; on a GPU, a CPU pre-flight first), then once more
   on the CPU backend with its launches recorded. Time limits: the set-up has its own (a slow machine is the
   grader's problem), the learner's code and calls ``--timeout`` seconds together;
3. the worker and everything it started are killed; its arrays are judged (:mod:`.judge`);
4. if they are right: the recorded kernels must not be the package's (:mod:`.fingerprint`), and a replay
   process (:mod:`.replay`) runs the recorded launches on fresh inputs, whose outputs must match the
   reference too -- the outputs were written by the learner's kernels, not by host code;
5. for an optimisation exercise (``check.performance``), if right: the launches recorded at the targets' sizes
   are replayed with the memory counters on (:func:`grade_performance`), and on the cuda backend the launches
   recorded at the op's GPU sizes are replayed and timed on the GPU against the package's kernel
   (:func:`grade_gpu_time`, :mod:`.gputime`). Both must pass for the performance points (on the cpu backend,
   the counters alone).
"""

from __future__ import annotations

import time

import numpy as np

from . import wire
from .cases import NotGradable, cases_for, plan_of, request_arrays
from .fingerprint import package_match
from .judge import (
    ExerciseResult,
    Verdict,
    compare_case,
    error_verdict,
    outputs,
    short,
    unchanged_inputs,
    wrong_results,
)
from .trace import TraceError, launches

POLL = 0.05
MAX_KERNELS = 64  # distinct kernels one exercise may launch
MAX_SOURCE = 1 << 20  # characters of one kernel's source
CPU_SCHEDULES = ("forward", "reverse")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def runs_for(plan, n_cases: int, backend: str) -> list[dict]:
    """The calls of the learner's function, in order; case ``n_cases`` is the provenance case."""
    runs = []

    def add(case, where, schedule, group, **extra):
        runs.append({"index": len(runs), "case": case, "backend": where, "schedule": schedule, "group": group, **extra})

    if plan.kind == "block":  # float64 NumPy whatever the backend
        for i in range(n_cases):
            add(i, "cpu", "forward", i)
    elif backend == "cpu":
        for i in range(n_cases):
            for s in CPU_SCHEDULES:
                add(i, "cpu", s, i, races=s == CPU_SCHEDULES[-1])
    else:
        for s in CPU_SCHEDULES:  # the pre-flight: faults named on the CPU, not fatal on the GPU
            add(0, "cpu", s, -1, preflight=True, races=s == CPU_SCHEDULES[-1])
    add(n_cases, "cpu", "forward", None, trace=True)
    if getattr(plan, "performance", ""):  # recorded at the targets' sizes, replayed with the counters on
        add(n_cases + 1, "cpu", "forward", "performance", trace=True)
        if backend == "cuda":  # recorded, not run, at the GPU sizes: replayed and timed on the GPU
            add(n_cases + 2, "cpu", "forward", "gpu_time", trace=True, record_only=True)
    if plan.kind != "block" and backend == "cuda":
        for i in range(n_cases):
            add(i, "cuda", "gpu", i)
    return runs


def watch(sandbox, box, limits, *, setup_event: str | None) -> str:
    """Wait for the box: 'exited', 'timeout' (the learner's time is up) or 'setup_timeout'."""
    setup_at = None if setup_event else 0.0
    while box.proc.poll() is None:
        now = time.monotonic() - box.started
        if setup_at is None:
            setup_at = next((t for t, m, _ in box.frames if m.get("event") == setup_event), None)
        if setup_at is None and now > limits.setup:
            return "setup_timeout"
        if setup_at is not None and now - setup_at > limits.total:
            return "timeout"
        sandbox.sweep()
        time.sleep(POLL)
    return "exited"


def _where(case, index: int, n: int, run: dict) -> str:
    text = f"{case.label} (case {index + 1} of {n}"
    if run.get("preflight"):
        text += ", pre-flight on the cpu backend"
    if run["backend"] == "cpu" and run.get("schedule") in CPU_SCHEDULES and not run.get("trace"):
        text += f", thread order '{run['schedule']}'"
    return text + ")"


def _lost(outcome: str, box, limits, what: str) -> Verdict:
    """The verdict when a call never reported back."""
    if box.bad_frame:
        return Verdict("error", f"the learner's process sent something the grader cannot read ({box.bad_frame})")
    if outcome == "timeout":
        return Verdict(
            "hang",
            f"no result within the time limit ({limits.total:g} s per exercise) {what}: the "
            "grader stopped the learner's process",
        )
    code = box.proc.returncode
    how = f"exit status {code}" if code is not None and code < 128 else f"signal {code - 128}" if code else "?"
    return Verdict("crash", f"the learner's process died {what} ({how}): a crash in the code?", box.text()[-3000:])


def judge_worker(plan, cases, runs: list, box, outcome: str, limits) -> tuple[Verdict | None, dict, list]:
    """(None for right answers or the verdict, the provenance run's frame, notes) from the worker's frames."""
    events = [(m, a) for _, m, a in box.frames]
    kinds = {m.get("event"): (m, a) for m, a in events}
    notes = []
    if "setup_error" in kinds:
        err = kinds["setup_error"][0].get("error") or {}
        raise Verdict(
            "grading error",
            f"a course cell failed before the learner's code ran: {err.get('ename')}: {err.get('evalue')}",
            err.get("traceback", ""),
            grader_error=True,
        )
    if "setup_done" not in kinds:
        if outcome == "setup_timeout":
            raise Verdict(
                "grading error",
                f"Python and the course's set-up cells did not finish within "
                f"{limits.setup:g} s, before the learner's code ran: is the machine overloaded? (try "
                "fewer --jobs)",
                box.text()[-3000:],
                grader_error=True,
            )
        raise Verdict(
            "grading error",
            "the learner's process ended before the course's set-up finished: "
            + short(box.text()[-400:] or f"exit status {box.proc.returncode}"),
            box.text()[-3000:],
            grader_error=True,
        )
    cell_errors = [m["error"] for m, _ in events if m.get("event") == "cell" and m.get("error")]
    if "missing" in kinds:
        what = kinds["missing"][0].get("what", "")
        if cell_errors:
            e = cell_errors[0]
            v = "not attempted" if e.get("ename") == "NotImplementedError" else "error"
            raise Verdict(v, f"the exercise cell raised {e.get('ename')}: {e.get('evalue')}", e.get("traceback", ""))
        raise Verdict(
            "missing",
            f"the exercise's cells do not define {plan.function} ({what}); an exercise cell may "
            "use only the names of the chapter's set-up cells, not names defined in other cells",
        )
    if cell_errors:
        e = cell_errors[0]
        notes.append(short(f"the exercise cell raised {e.get('ename')}: {e.get('evalue')}"))
    by_run = {m.get("run"): (m, a) for m, a in events if m.get("event") == "run"}
    graded = cases.graded
    n = len(graded)
    trace_frame = None
    groups: dict = {}
    for run in runs:
        groups.setdefault(run["group"], []).append(run)
    for group, members in groups.items():
        if group in ("performance", "gpu_time"):  # judged after provenance, by grade_performance
            continue
        if group is None:  # the provenance run
            trace_frame = by_run.get(members[0]["index"])
            if trace_frame is None:
                raise _lost(
                    outcome,
                    box,
                    limits,
                    "in the provenance run (your function, called once more on the "
                    "cpu backend with its kernel launches recorded)",
                )
            continue
        case = graded[members[0]["case"]]
        where, got, results, returned = {}, {}, {}, ""
        for run in members:
            label = run["schedule"]
            where[label] = _where(case, run["case"], n, run)
            frame = by_run.get(run["index"])
            if frame is None:
                raise _lost(outcome, box, limits, f"while running {where[label]}")
            meta, arrays = frame
            if not meta.get("ok"):
                raise error_verdict(meta.get("error") or {}, where[label])
            returned = returned or meta.get("returned", "")
            warned = meta.get("race_warnings")
            if isinstance(warned, list) and warned and not any("same value" in n for n in notes):
                notes.append(
                    short(f"a race where every thread stores the same value (a warning, not a failure): {warned[0]}")
                )
            try:
                got[label] = outputs(case, arrays)
            except wire.BadFrame as e:
                raise Verdict(
                    "error", f"the learner's process returned malformed results for {where[label]}: {e}"
                ) from e
            unchanged_inputs(case, got[label], where[label])
            results[label] = compare_case(case, got[label])
        bad = wrong_results(case, where, results, got, [r["schedule"] for r in members], returned)
        if bad is not None:
            raise bad
    return None, trace_frame, notes


def check_launches(plan, trace, what: str) -> None:
    """Raise a Verdict unless ``trace`` (recorded by ``what``, e.g. "the provenance run") can be replayed and its
    launches are the submission's own kernels, none of the package's (for a block: that it called ops)."""
    if not isinstance(trace, dict) or not isinstance(trace.get("events"), list):
        raise Verdict("no kernel", f"{what} recorded nothing the grader can replay")
    if trace.get("refused"):
        raise Verdict("no kernel", f"{what} cannot be replayed: {trace['refused']}")
    if plan.kind == "op":
        try:
            found = launches(trace)
        except TraceError as e:
            raise Verdict("no kernel", f"{what} cannot be replayed: {e}") from None
        if not found:
            raise Verdict(
                "no kernel",
                f"{plan.function} launched no kernel: the outputs must be written by "
                "kernels your code compiles and launches (llmc_kernels.runtime.RawKernel); computing them "
                "on the host (NumPy) earns no points when grading",
            )
        sources = {(L.get("code"), L.get("name")) for L in found}
        if len(sources) > MAX_KERNELS or any(not isinstance(c, str) or len(c) > MAX_SOURCE for c, _ in sources):
            raise Verdict(
                "no kernel",
                f"{plan.function}'s launches cannot be checked: more than {MAX_KERNELS} "
                f"kernels, or a kernel source over {MAX_SOURCE >> 20} MiB",
            )
        internal = next((L.get("name") for L in found if L.get("internal")), None)
        if internal is not None:
            raise Verdict(
                "package kernel",
                f"{plan.function} launched the package's own kernel '{internal}': write and launch your own",
            )
        for code, name in sorted(sources, key=str):
            match = package_match(code, name) if isinstance(name, str) else None
            if match:
                raise Verdict(
                    "package kernel",
                    f"your kernel '{name}' is the package's own ({match}), compiled "
                    "from its source: write your own kernel (grading compares kernels' token streams, "
                    "so renaming and comments do not change this)",
                )
    elif not any("op" in e for e in trace["events"] if isinstance(e, dict)):
        raise Verdict(
            "no kernel",
            f"{plan.function} called no op of the ops namespace it was given: a block must "
            "compute by calling ops (its Python must not compute outputs itself)",
        )


def provenance(
    plan, cases, trace_frame, sandbox, limits, folder_name: str, *, replay=None, profile: bool = False, where=None
):
    """Raise a Verdict unless the recorded launches are the learner's own kernels and, replayed on fresh inputs
    (``replay``, else ``cases.replay``) without the learner's Python, write the right outputs. With ``profile``
    the replay process also measures the launches' memory counters, which are returned (a list of dicts)."""
    meta, arrays = trace_frame
    where = where or "in the provenance run (your function called once more on the cpu backend, its launches recorded)"
    if not meta.get("ok"):
        raise error_verdict(meta.get("error") or {}, where)
    check_launches(plan, meta.get("trace"), "the provenance run")
    trace = meta["trace"]
    replay = replay or cases.replay
    request = wire.encode(
        {"trace": trace, "kind": plan.kind, "launch_timeout": limits.launch, "profile": bool(profile)},
        {
            **{f"c.{k}": v for k, v in replay.arrays.items()},
            **{k: v for k, v in arrays.items() if k.startswith("trace.")},
        },
    )
    box = sandbox.start("replay", sandbox.folder(folder_name + "-replay"), request)
    outcome = watch(sandbox, box, limits, setup_event=None)
    sandbox.stop(box)
    frames = {m.get("event"): (m, a) for _, m, a in box.frames}
    if "replay_error" in frames:
        err = frames["replay_error"][0].get("error") or {}
        v = error_verdict(err, "replaying your kernel launches on fresh inputs")
        if v.verdict == "error":  # a malformed trace or an argument that cannot be replayed
            raise Verdict(
                "no kernel",
                f"your function's launches could not be replayed without its Python code: {err.get('evalue')}",
                v.details,
            )
        raise v
    if "replayed" not in frames:
        raise _lost(outcome, box, limits, "while replaying your kernel launches on fresh inputs")
    try:
        got = outputs(replay, frames["replayed"][1])
    except wire.BadFrame as e:
        raise Verdict("no kernel", f"the replay returned malformed results: {e}") from e
    results = compare_case(replay, got)
    if all(r.ok for r in results):
        return frames["replayed"][0].get("counters") if profile else None
    writes = sorted(
        {
            b["grader"]
            for e in trace["events"]
            if isinstance(e, dict) and "set" in e
            for b in [trace["buffers"][e["set"]]]
            if isinstance(b, dict) and "grader" in b and b["grader"] in dict(replay.checked)
        }
    )
    wrong = [r for r in results if not r.ok]
    text = (
        f"replayed on fresh inputs of the same sizes ({replay.label}) without your Python code, the kernel "
        f"launches of {plan.function} did not write the right outputs:\n"
        + "\n".join("  " + r.summary() for r in wrong)
        + "\nwhen grading, outputs must be written by kernels your code compiles and launches; an answer "
        "computed on the host (NumPy), passed in through a scratch buffer, or fixed up after the last launch "
        "is not accepted"
    )
    if writes:
        text += f"\nyour Python code wrote into {', '.join(writes)} itself (not with a kernel)"
    raise Verdict(
        "no kernel", f"outputs not written by your kernels: replayed on fresh inputs, {wrong[0].name} is wrong", text
    )


def grade_check(chapter, plan, sources: list, *, sandbox, seed: int, limits, name: str):
    """(verdict or None, notes, performance) of one canonical check cell; ``performance`` is None for a check
    that has none, else True (every target met) or the Verdict of the targets (judged only when right)."""
    cases = cases_for(plan, seed)
    all_cases = cases.graded + [cases.provenance] + ([cases.performance] if cases.performance else [])
    runs = runs_for(plan, len(cases.graded), sandbox.backend)
    if any(r["group"] == "gpu_time" for r in runs):
        from .gputime import timing_case

        all_cases.append(timing_case(plan.performance))
    meta = {
        "function": plan.function,
        "kind": plan.kind,
        "checked": plan.checked_name,
        "setup": [_source(c) for c in chapter.preamble],
        "cells": list(sources),
        "cases": [_case_meta(c) for c in all_cases],
        "runs": runs,
        "launch_timeout": limits.launch,
    }
    arrays = {}
    for i, c in enumerate(all_cases):
        arrays.update(request_arrays(f"c{i}", c))
    box = sandbox.start("worker", sandbox.folder(name), wire.encode(meta, arrays))
    outcome = watch(sandbox, box, limits, setup_event="setup_done")
    sandbox.stop(box)
    notes = []
    try:
        _, trace_frame, notes = judge_worker(plan, cases, runs, box, outcome, limits)
        provenance(plan, cases, trace_frame, sandbox, limits, name)
    except Verdict as v:
        return v, notes, None
    except Exception as e:  # noqa: BLE001 -- results the grader could not use: never a crash of the grader
        return (
            Verdict(
                "grading error",
                f"the grader could not judge the learner process's results ({type(e).__name__}: "
                f"{e}); read this submission by hand",
                grader_error=True,
            ),
            notes,
            None,
        )
    if not plan.performance:
        return None, notes, None
    try:
        notes += grade_performance(plan, cases, runs, box, outcome, sandbox, limits, name, seed=seed)
    except Verdict as v:
        return None, notes, v
    except Exception as e:  # noqa: BLE001
        return (
            None,
            notes,
            Verdict(
                "grading error",
                f"the grader could not judge the performance targets ({type(e).__name__}: {e})",
                grader_error=True,
            ),
        )
    return None, notes, True


def _case_meta(c) -> dict:
    """A case as the worker receives it: label and arguments (and the arrays it allocates itself, if any)."""
    meta = {"label": c.label, "args": c.args}
    if c.alloc:
        meta["alloc"] = {k: [list(shape), np.dtype(dtype).str] for k, (shape, dtype) in c.alloc.items()}
    return meta


def _profile_of(counters, case, op: str):
    """A Profile-like object from the replay's counters, with the arrays' size computed here (the bytes the
    kernel must touch: every array but the outputs ``op``'s exercise is not judged on)."""
    from types import SimpleNamespace

    from ..check.performance import METRIC_FIELDS, judged_bytes

    if not isinstance(counters, list) or not counters:
        raise Verdict("no kernel", "the performance replay recorded no kernel launch")
    kernels = []
    for k in counters:
        if not isinstance(k, dict) or not all(
            isinstance(k.get(f), int) and not isinstance(k.get(f), bool) and k[f] >= 0 for f in METRIC_FIELDS
        ):
            raise Verdict("grading error", "the performance replay sent malformed counters", grader_error=True)
        kernels.append(SimpleNamespace(**{f: k[f] for f in METRIC_FIELDS}))
    minimum = judged_bytes(op, case.arrays)
    return SimpleNamespace(kernels=kernels, minimum=minimum)


def grade_performance(plan, cases, runs, box, outcome, sandbox, limits, name: str, *, seed: int = 0) -> list:
    """Raise a Verdict unless the launches recorded at the targets' sizes, replayed on fresh inputs in the
    replay process with the memory counters on, are right and meet every target of ``plan.performance``, and on
    the cuda backend the launches recorded at the GPU sizes, replayed and timed on the GPU, are right there and
    within the op's ``time_ratio`` of the package's kernel (:func:`grade_gpu_time`). Returns notes (the time)."""
    results, sizes = counter_results(plan, cases, runs, box, outcome, sandbox, limits, name)
    timing, problem = None, None
    if any(r["group"] == "gpu_time" for r in runs):
        try:
            timing = grade_gpu_time(plan, runs, box, outcome, sandbox, limits, name, seed=seed)
        except Verdict as v:
            if all(t.ok for t in results):
                raise
            problem = v  # the counters' verdict stands; the reason the time is missing goes with it
    verdict = performance_verdict(results, sizes, timing, problem)
    if verdict is not None:
        raise verdict
    return [f"GPU time target met: {timing.summary()}"] if timing is not None else []


def counter_results(plan, cases, runs, box, outcome, sandbox, limits, name: str) -> tuple[list, str]:
    """([TargetResult], the sizes) of the memory counters of the launches recorded at the targets' sizes, replayed
    with the counters on (a Verdict if those launches are not the learner's own or not right)."""
    from ..check.performance import METRICS, TARGETS, TargetResult

    run = next(r for r in runs if r["group"] == "performance")
    frame = next(((m, a) for _, m, a in box.frames if m.get("event") == "run" and m.get("run") == run["index"]), None)
    sizes = ", ".join(f"{k}={v}" for k, v in TARGETS[plan.performance].sizes.items())
    where = f"in the performance run (your function called at {sizes} on the cpu backend, its launches recorded)"
    if frame is None:
        raise _lost(outcome, box, limits, where)
    counters = provenance(
        plan,
        cases,
        frame,
        sandbox,
        limits,
        name + "-perf",
        replay=cases.performance_replay,
        profile=True,
        where=where,
    )
    prof = _profile_of(counters, cases.performance_replay, plan.performance)
    table = TARGETS[plan.performance]
    sizes_full = dict(cases.performance_replay.sizes)
    results = [
        TargetResult(
            t.metric,
            METRICS[t.metric][0],
            METRICS[t.metric][1],
            float(METRICS[t.metric][2](prof, sizes_full)),
            t.limit,
            t.at_least,
            t.why,
        )
        for t in table.targets
    ]
    return results, sizes


def performance_verdict(results: list, sizes: str, timing=None, problem: Verdict | None = None) -> Verdict | None:
    """The verdict of the performance targets (None: all met) from the counters' TargetResults, measured at
    ``sizes``, and on the cuda backend the time target (a ``check.performance.TimeResult``, or the Verdict that says
    why the time could not be judged, ``problem``, when a counter missed anyway)."""
    missed = [t for t in results if not t.ok]
    misses = [t.row()[5:] for t in missed]
    if timing is not None and not timing.ok:
        misses.append(timing.summary())
    if not misses:
        return None
    total = len(results) + (timing is not None)
    details = f"memory counters of your launches replayed at {sizes} (cpu backend):\n" + "\n".join(
        "  " + t.row() for t in results
    )
    if timing is not None:
        details += (
            "\ntime of your launches replayed on the GPU on fresh inputs, against the package's kernel timed in the "
            f"same process:\n  {timing.row()}"
        )
    if problem is not None:
        details += f"\nthe GPU time target was not judged: {problem.verdict}: {problem.reason}"
    details += "\nwhat the targets expect:\n" + "\n".join(f"  {t.what}: {t.why}" for t in missed)
    if timing is not None and not timing.ok:
        details += (
            f"\n  time: at most {timing.limit:g}x the package's {timing.baseline} on the same GPU, as "
            "check.performance measures it in the notebook"
        )
    reason = f"correct, but {len(misses)} of {total} performance targets missed: " + "; ".join(misses)
    return Verdict("not optimised", reason, details)


def grade_gpu_time(plan, runs, box, outcome, sandbox, limits, name: str, *, seed: int):
    """The GPU time target (see :mod:`.gputime`): check the trace the worker recorded, without running it, at the
    op's GPU sizes; replay it on the GPU in a replay process, on fresh inputs drawn there from a secret seed; return
    the ``check.performance.TimeResult`` of the times it sends back, or raise a Verdict: ``wrong`` for wrong outputs
    at those sizes, the learner's errors as elsewhere, ``grading error`` when the GPU could not time it."""
    from ..check.performance import TARGETS, sizes_text
    from . import secret as grade_secret
    from .gputime import Malformed, read_timing
    from .judge import clean_error

    table = TARGETS[plan.performance]
    sizes = sizes_text(table.gpu_sizes)
    where = (
        f"in the GPU timing run (your function called at {sizes} on the cpu backend, its launches recorded, not run)"
    )
    run = next(r for r in runs if r["group"] == "gpu_time")
    frame = next(((m, a) for _, m, a in box.frames if m.get("event") == "run" and m.get("run") == run["index"]), None)
    if frame is None:
        raise _lost(outcome, box, limits, where)
    meta, arrays = frame
    if not meta.get("ok"):
        raise error_verdict(meta.get("error") or {}, where)
    check_launches(plan, meta.get("trace"), "the GPU timing run")
    request = wire.encode(
        {
            "trace": meta["trace"],
            "kind": plan.kind,
            "launch_timeout": limits.launch,
            "gpu_time": {"fname": plan.performance, "seed": grade_secret.derive(seed, plan.checked_name, "gpu-time")},
        },
        {k: v for k, v in arrays.items() if k.startswith("trace.")},
    )
    replay_box = sandbox.start("replay", sandbox.folder(name + "-gpu"), request)
    # until its inputs and their float64 reference are made (seconds to a minute at these sizes), the replay
    # process runs the grader's code only: the set-up's time limit, and a grading error if it is exceeded
    replay_outcome = watch(sandbox, replay_box, limits, setup_event="inputs_ready")
    sandbox.stop(replay_box)
    frames = {m.get("event"): (m, a) for _, m, a in replay_box.frames}
    doing = f"replaying your kernel launches on the GPU at {sizes}"
    if replay_outcome == "setup_timeout":
        raise Verdict(
            "grading error",
            f"the GPU time target's fresh inputs and their float64 reference at {sizes} were not made within "
            f"{limits.setup:g} s: is the machine overloaded? (try fewer --jobs, or a larger --timeout)",
            grader_error=True,
        )
    if "timing_error" in frames:
        err = clean_error(frames["timing_error"][0].get("error"))
        raise Verdict(
            "grading error",
            f"the GPU time target could not be measured ({err['ename']}: {err['evalue']}); is there a GPU for the "
            "grader's processes?",
            err["traceback"],
            grader_error=True,
        )
    if "replay_error" in frames:
        err = frames["replay_error"][0].get("error") or {}
        v = error_verdict(err, doing)
        if v.verdict == "error":  # a trace that cannot be replayed
            raise Verdict(
                "no kernel",
                f"your function's launches at the GPU sizes could not be replayed without its Python code: "
                f"{clean_error(err)['evalue']}",
                v.details,
            )
        raise v
    if "timed" not in frames:
        raise _lost(replay_outcome, replay_box, limits, "while " + doing)
    try:
        timing, wrong = read_timing(frames["timed"][0], plan.performance)
    except Malformed as e:
        raise Verdict(
            "grading error", f"the GPU timing sent an answer the grader cannot read ({e})", grader_error=True
        ) from None
    if wrong:
        after = " after the timed runs" if frames["timed"][0].get("after_timing") else ""
        first = wrong[0].splitlines()[0]
        raise Verdict(
            "wrong",
            f"right on the graded cases, but wrong at the GPU timing sizes ({sizes}){after}: {first}; no "
            "performance points",
            f"replayed on the GPU on fresh inputs at {sizes}, the kernel launches of {plan.function} (recorded at "
            f"those sizes without running) did not write the right outputs{after}:\n"
            + "\n".join("  " + w for w in wrong)
            + "\nhint: a kernel right at small sizes can go wrong at large ones (an int index that overflows, a "
            "grid too small to cover the arrays, work skipped); the launches are recorded without running, so "
            "they must not depend on values read back from a kernel's outputs",
        )
    return timing


def grade_exercise(chapter, exercise, sources: list, *, sandbox, seed: int, limits, name: str) -> ExerciseResult:
    """The verdict on one exercise: the sum of its check cells' points that pass."""
    result = ExerciseResult(
        exercise.name, exercise.points, kind=exercise.kind, performance_points=exercise.performance_points
    )
    started = time.monotonic()
    verdicts, reasons, details = [], [], []
    for i, check in enumerate(exercise.checks):
        try:
            plan = plan_of(_source(check.cell))
        except NotGradable as e:
            v, notes = (
                Verdict(
                    "grading error",
                    f"the canonical check cell of {exercise.name} cannot be graded: {e}",
                    grader_error=True,
                ),
                [],
            )
        else:
            v, notes, perf = grade_check(
                chapter, plan, sources, sandbox=sandbox, seed=seed, limits=limits, name=f"{name}-{i}"
            )
        result.notes += [n for n in notes if n not in result.notes]
        if v is None and perf is not None and perf is not True:  # right, but missed a performance target
            result.earned += check.points - check.performance_points
            v = perf
        elif v is None:
            result.earned += check.points
            result.performance_earned += check.performance_points
            verdicts.append("pass")
            continue
        verdicts.append(v.verdict)
        result.grader_error |= v.grader_error
        reasons.append(v.reason)
        details.append(v.details or v.reason)
    failing = [v for v in verdicts if v != "pass"]
    result.verdict = failing[0] if failing else "pass"
    if failing and len(exercise.checks) > 1 and result.earned:
        result.verdict = "partial"
    if result.grader_error:
        result.verdict = "grading error"
    result.reason = " | ".join(dict.fromkeys(reasons))
    result.details = "\n\n".join(details)
    result.seconds = time.monotonic() - started
    return result
