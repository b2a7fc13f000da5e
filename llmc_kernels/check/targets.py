"""``check.memory(op, fn)`` (module ``check.targets``): right results *and* memory counters within targets.

    from llmc_kernels import check
    check.memory("transpose", transpose)       # prints "PASS transpose_memory"

The counters are those of :func:`llmc_kernels.profile` (Nsight Compute's definitions, computed on the CPU
backend, the same on every machine), so the targets are deterministic: a grader without a GPU judges them
exactly as the notebook does. Each op that has targets lists them in :data:`TARGETS`:

- ``load_sectors`` / ``store_sectors``: global-memory sectors moved, at most this multiple of the ideal (the
  fewest 32-byte sectors that hold the bytes each warp asked for). 1.0 is perfect coalescing; a warp that
  reads 32 floats 4 KiB apart moves 8 times the ideal.
- ``bank_conflicts``: shared-memory wavefronts beyond the ideal (one per 128 bytes a warp asks for), summed
  over loads and stores; 0 means no access has a bank conflict.

The targets are measured at ``Targets.sizes``: every row 32-byte aligned (sizes multiples of 8, not of 32, so
edge tiles stay partial), where a well-written kernel reaches the ideal exactly, and misalignment that no
kernel can avoid does not blur the line. Correctness comes first: the function runs the op's case at those
sizes under the check's thread orders (race detector on) before its launches are counted.

:func:`judge` compares counters with the targets; ``llmc grade`` calls it on the counters of the learner's
launches replayed in its own fenced process (``grade/replay.py``), at secret sizes drawn the same way
(:func:`llmc_kernels.grade.secret.memory_spec`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._honesty import learner_scope
from .result import CheckResult, Report

__all__ = ["memory", "judge", "Targets", "TARGETS", "MemoryResult", "check_name"]


@dataclass(frozen=True)
class Targets:
    sizes: dict  # where the notebook's check measures (see the module docstring)
    load_sectors: float  # at most this multiple of the ideal sectors, global loads
    store_sectors: float  # ... global stores
    bank_conflicts: int  # at most this many shared wavefronts beyond the ideal
    why: str  # what a kernel that misses them usually does wrong (the FAIL line's hint)


TARGETS: dict[str, Targets] = {
    "transpose": Targets(
        {"T": 200, "C": 136},
        1.1,
        1.1,
        0,
        "read inp along its rows and write out along its rows (threadIdx.x the fastest-moving index of both), "
        "passing a tile through shared memory; pad the tile's rows by one float so that a column of the tile "
        "falls in 32 different banks",
    ),
}


def check_name(op: str) -> str:
    """The name in the PASS/FAIL line: ``transpose_memory``."""
    return f"{op}_memory"


def totals(kernels) -> dict:
    """The counters :func:`judge` reads, summed over launches (KernelCounters, or dicts of their fields)."""
    keys = (
        "global_load_sectors",
        "global_load_ideal",
        "global_load_requests",
        "global_store_sectors",
        "global_store_ideal",
        "global_store_requests",
        "shared_load_wavefronts",
        "shared_load_ideal",
        "shared_store_wavefronts",
        "shared_store_ideal",
    )
    get = lambda k, f: k[f] if isinstance(k, dict) else getattr(k, f)  # noqa: E731
    return {f: int(sum(get(k, f) for k in kernels)) for f in keys}


def measured(op: str, kernels) -> list[tuple[str, str, bool]]:
    """(target, what was measured, met) for each target of ``op``."""
    t = TARGETS[op]
    s = totals(kernels)
    rows = []
    for side, limit in (("load", t.load_sectors), ("store", t.store_sectors)):
        sectors, ideal, requests = (s[f"global_{side}_{x}"] for x in ("sectors", "ideal", "requests"))
        ratio = sectors / ideal if ideal else (1.0 if not sectors else float("inf"))
        per = f"{sectors / requests:.2f} sectors per request (ideal {ideal / requests:.2f})" if requests else ""
        rows.append(
            (
                f"global {side}s: at most {limit:g}x the ideal sectors",
                f"{sectors} sectors, {ratio:.2f}x the ideal {ideal}" + (f"; {per}" if per else ""),
                ratio <= limit,
            )
        )
    extra = (s["shared_load_wavefronts"] - s["shared_load_ideal"]) + (
        s["shared_store_wavefronts"] - s["shared_store_ideal"]
    )
    waves = s["shared_load_wavefronts"] + s["shared_store_wavefronts"]
    rows.append(
        (
            "shared memory: no bank conflicts" if t.bank_conflicts == 0 else f"at most {t.bank_conflicts} extra",
            f"{waves} wavefronts, {extra} beyond the ideal",
            extra <= t.bank_conflicts,
        )
    )
    return rows


def judge(op: str, kernels) -> list[str]:
    """The targets of ``op`` that the counters of ``kernels`` miss, one sentence each ([] when all are met)."""
    if not kernels:
        return ["no kernel was launched: the targets are about your kernel's memory accesses"]
    return [f"{target}: measured {what}" for target, what, ok in measured(op, kernels) if not ok]


class MemoryResult(CheckResult):
    """What a passing ``check.memory`` returns: ``repr()`` is the PASS line, ``.report()`` the counters."""

    def __init__(self, name, backend, seed, sizes, rows, table, seconds):
        super().__init__(name, backend, seed, ("forward", "reverse"), [], [], seconds)
        self.sizes, self.rows, self.table = sizes, rows, table

    def report(self) -> Report:
        label = ", ".join(f"{k}={v}" for k, v in self.sizes.items())
        lines = [f"PASS {self.name}: results right and every memory target met at {label}"]
        lines += [f"  {target}: {what}" for target, what, _ in self.rows]
        lines += ["", self.table.rstrip("\n")]
        return Report("\n".join(lines))


def memory(op: str, fn, sizes: dict | None = None, seed: int | None = None) -> MemoryResult:
    """Check ``fn`` (the op's forward signature) for right results, then its memory counters against
    ``TARGETS[op]``; prints ``PASS <op>_memory`` or the FAIL line naming each missed target and raises
    :class:`~llmc_kernels.errors.CheckFailed`."""
    from ..profiling import profile
    from ..profiling.report import render
    from . import DEFAULT_SEED, _fail, _Failure, _Runner, function_name
    from .cases import CaseSpec, build, complete_sizes

    if op not in TARGETS:
        raise ValueError(f"check.memory: no memory targets for op {op!r}; ops with targets: {', '.join(TARGETS)}")
    fname = function_name(op, "forward")
    name = check_name(op)
    if not callable(fn):
        raise TypeError(f"check.memory({op!r}, fn): fn must be your function {fname}(...), got {type(fn).__name__}")
    seed = DEFAULT_SEED if seed is None else int(seed)
    sizes = complete_sizes(op, dict(sizes or TARGETS[op].sizes))
    spec = CaseSpec.of(sizes)
    started = time.perf_counter()
    runner = _Runner(fname, fn, seed, 1)
    try:  # right results first: counters of a wrong kernel mean nothing
        runner.run([spec])
    except _Failure as f:
        _fail(name, f"{fname} gives wrong results, so its counters were not judged:\n{f.text}", f.cause)
    case = build(fname, spec, seed)
    args = [
        (None if v.initial is None else np.array(v.initial, copy=True)) if hasattr(v, "initial") else v
        for v in case.values
    ]
    with learner_scope(fname):
        prof = profile(fn, *args)
    table = render(prof.kernels, prof.minimum or None)
    rows = measured(op, prof.kernels) if prof.kernels else []
    missed = judge(op, prof.kernels)
    if missed:
        label = ", ".join(f"{k}={v}" for k, v in sizes.items())
        text = (
            f"memory targets missed at {label}:\n"
            + "\n".join(f"  {m}" for m in missed)
            + f"\nhint: {TARGETS[op].why}\nthe counters (llmc_kernels.profile):\n{table}"
        )
        _fail(name, text, None)
    result = MemoryResult(name, "cpu", seed, sizes, rows, table, time.perf_counter() - started)
    result.announce()
    return result
