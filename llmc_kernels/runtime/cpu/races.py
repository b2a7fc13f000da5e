"""The race detector's findings in a learner's words: a :class:`~llmc_kernels.errors.KernelRace`, or the text of
a warning (a write-write race where both threads stored the same value).

The runtime (rt/race.cpp) reports one pair of accesses in canonical order (for a read-after-write the write
first, for a write-after-read the read first), with threads, lines and the byte offset into a buffer; here
they get the buffer's name, the element index, the learner's source lines and a hint that fits the case.
"""

from __future__ import annotations

import re

from ...errors import KernelRace, RaceAccess
from . import launch as L

KINDS = {
    L.RACE_WW: "write-write",
    L.RACE_RAW: "read-after-write",
    L.RACE_WAR: "write-after-read",
    L.RACE_UNINIT: "uninitialised-read",
}
OPS = {L.A_LOAD: "read", L.A_STORE: "write", L.A_UPDATE: "update", L.A_ATOMIC: "atomic"}
VERBS = {
    "read": "reads it",
    "write": "writes it",
    "update": "reads and writes it (+=, ++)",
    "atomic": "updates it with an atomic",
}


def _buffer(r: L.Race, ctx) -> tuple[str, str, int]:
    """(name, description, element index) of the memory the race is on."""
    if not r.shared:
        p = ctx.signature.params[r.region]
        elem = r.elem_size or r.size or 1
        return p.name, p.describe(), r.offset // elem
    index = r.offset // r.size if r.size else r.offset
    if r.region == L.R_DYN_SHARED:
        m = re.search(r"extern\s+__shared__\s+[^;\[]*?(\w+)\s*\[", ctx.code)
        name = m.group(1) if m else "extern __shared__"
        return name, f"dynamic shared memory '{name}' (extern __shared__)", index
    name = r.name.decode(errors="replace") or "?"
    return name, f"__shared__ array '{name}'", index


def _side(s: L.RaceAccess, ctx) -> RaceAccess:
    where = ctx.where(s.line)
    return RaceAccess(
        tuple(s.block),
        tuple(s.thread),
        s.warp,
        s.lane,
        where.get("kernel_line", s.line),
        where.get("location", ctx.origin.display),
        OPS.get(s.op, "access"),
    )


def _who(a: RaceAccess) -> str:
    return (
        "threadIdx=({},{},{}) of blockIdx=({},{},{})".format(*a.thread, *a.block) + f" (warp {a.warp}, lane {a.lane})"
    )


def _source(ctx, line: int) -> str:
    lines = ctx.code.splitlines()
    return f": `{lines[line - 1].strip()}`" if 1 <= line <= len(lines) and lines[line - 1].strip() else ""


def _hint(kind: str, a: RaceAccess, b: RaceAccess, name: str, shared: bool, same_value: bool) -> str:
    ops = {a.op, b.op}
    if kind == "uninitialised-read":
        return (
            f"shared memory starts uninitialised in every block: write {name}[...] before reading it (and put a "
            "__syncthreads() between the write and other threads' reads), or do not read elements no thread "
            "wrote"
        )
    if "atomic" in ops:
        return (
            f"every access to an element that threads update with atomics must be atomic too, or be separated "
            f"from the atomics by a __syncthreads() (threads of one block) or a new launch (other blocks): "
            f"make the plain {'write' if 'write' in ops or 'update' in ops else 'read'} on line "
            f"{(a if a.op != 'atomic' else b).line} happen after the atomics, or use an atomic there"
        )
    if kind == "write-write" and ops == {"update"}:
        return (
            f"several threads add into the same element of {name}, and a plain += of one thread overwrites "
            f"another's (lost updates): use atomicAdd(&{name}[...], value) on line {a.line}"
        )
    if kind == "write-write" and same_value:
        return (
            "every thread stores the same value: harmless on today's GPUs, but a race in CUDA's model; let one "
            "thread write it (e.g. `if (threadIdx.x == 0)`)"
        )
    if kind == "write-write":
        return (
            f"several threads write different values into the same element of {name}: make each element "
            "written by exactly one thread (check the index), or combine the values with atomicAdd/atomicMax"
        )
    first, second = (a.line, b.line)
    if a.block != b.block:
        return (
            "threads of different blocks are never ordered within one launch (a __syncthreads() orders only "
            "the threads of one block): read another block's results in a later launch (split the kernel in "
            "two), or use the last-block pattern (__threadfence(), then an atomic counter; the last block reads)"
        )
    what = (
        "the write must be finished before another thread reads it"
        if kind == "read-after-write"
        else f"every thread must have read {name}[...] before another overwrites it"
    )
    where = (
        f"between line {first} and line {second}"
        if first != second
        else f"so that one thread's {'write' if kind == 'read-after-write' else 'read'} on line {first} comes before "
        f"another's {'read' if kind == 'read-after-write' else 'write'} on the same line (in a loop: one per "
        "iteration; in one statement: split it, reading into a local variable first)"
    )
    if a.warp == b.warp and a.lane != b.lane:
        return (
            f"lanes of one warp do not run in lockstep (independent thread scheduling since Volta): use "
            f"__syncwarp() {where} ({what}), or exchange the values with __shfl_*_sync instead of memory"
        )
    return f"add __syncthreads() {where}: {what}"


def describe(r: L.Race, ctx) -> dict:
    """The parts of a report: kind, buffer name and description, index, accesses, hint, message."""
    kind = KINDS.get(r.kind, "race")
    name, desc, index = _buffer(r, ctx)
    a, b = _side(r.a, ctx), _side(r.b, ctx)
    hint = _hint(kind, a, b, name, bool(r.shared), bool(r.same_value))
    if kind == "uninitialised-read":
        text = (
            f"uninitialised-read of {desc}, element {index}: no thread of the block has written it since the "
            f"block started (shared memory starts uninitialised)\n  {_who(a)} reads it at line {a.line}"
            f"{_source(ctx, a.line)}"
            f"\n  {r.pairs} such read{'s' if r.pairs != 1 else ''} found"
        )
    else:
        same = " (both store the same value)" if r.same_value else ""
        text = (
            f"{kind} race on {desc}, element {index}{same}: two threads access it with nothing ordering them"
            f"\n  {_who(a)} {VERBS[a.op]} at line {a.line}{_source(ctx, a.line)}"
            f"\n  {_who(b)} {VERBS[b.op]} at line {b.line}{_source(ctx, b.line)}"
            f"\n  {r.pairs} racing pair{'s' if r.pairs != 1 else ''} found in this launch"
        )
    return dict(
        kind=kind,
        name=name,
        index=index,
        accesses=(a,) if kind == "uninitialised-read" else (a, b),
        hint=hint,
        text=f"{text}\nhint: {hint}",
    )


def error(r: L.Race, ctx) -> KernelRace:
    d = describe(r, ctx)
    a = d["accesses"][0]
    where = ctx.where(r.a.line)
    return KernelRace(
        d["text"],
        kind=d["kind"],
        accesses=d["accesses"],
        pairs=int(r.pairs),
        hint=d["hint"],
        kernel=ctx.kernel,
        thread=a.thread,
        block=a.block,
        buffer=d["name"],
        index=d["index"],
        **where,
    )


def warning(r: L.Race, ctx) -> str:
    """A same-value write-write race, as one warning line for the check's report."""
    d = describe(r, ctx)
    head = d["text"].splitlines()[0]
    return f"kernel '{ctx.kernel}': {head} ({int(r.pairs)} such pairs; not a failure). hint: {d['hint']}"
