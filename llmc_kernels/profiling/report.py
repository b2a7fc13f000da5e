"""The profile's table: the counters per kernel, what they mean against the ideal, and one-line hints."""

from __future__ import annotations

from .counters import ATOMIC, GLOBAL, LOAD, SHARED, STORE, KernelCounters, SiteCounters

_VERB = {LOAD: "read", STORE: "write", ATOMIC: "update"}


class TableText(str):
    """The table as a string that a notebook does not show a second time (``table()`` already printed it)."""

    def _ipython_display_(self):
        pass


def _ratio(units: int, requests: int) -> str:
    return f"{units / requests:.1f}" if requests else "-"


def _vs_ideal(units: int, ideal: int, requests: int) -> str:
    return f"{_ratio(units, requests)} ({_ratio(ideal, requests)})"


def _pct(useful: int, units: int, unit_bytes: int) -> str:
    return f"{100 * useful / (units * unit_bytes):.0f}%" if units else "-"


def _dims(d: tuple) -> str:
    d = tuple(d)
    while len(d) > 1 and d[-1] == 1:
        d = d[:-1]
    return "x".join(map(str, d))


def _region(k: KernelCounters, s: SiteCounters) -> str:
    return k.regions.get(s.region, "shared memory" if s.space == SHARED else "global memory")


def hints(k: KernelCounters) -> list[str]:
    """What to change, in the course's voice, for the sites that waste the most."""
    out = []
    for s in k.sites:
        if s.units <= s.ideal or s.kind == ATOMIC:
            continue
        where = f"line {s.line}" + (f" (`{s.source}`)" if s.source else "")
        what = _region(k, s)
        if s.space == GLOBAL:
            text = (
                f"{where}: {s.per_request:.0f} sectors per request where {s.ideal_per_request:.0f} would do "
                f"({_VERB[s.kind]}s of {what})"
            )
            if s.lane_stride and s.lane_stride > 1:
                text = (
                    f"{where}: consecutive threads {_VERB[s.kind]} {what} at addresses {s.lane_stride} "
                    f"elements ({s.lane_stride * s.size} bytes) apart: {s.per_request:.0f} sectors per "
                    f"request (ideal {s.ideal_per_request:.0f}); make threadIdx.x the fastest-moving index"
                )
            out.append(text)
        else:
            ways = s.units / max(s.ideal, 1)
            text = (
                f"{where}: a {ways:.0f}-way bank conflict on {what} ({s.per_request:.1f} wavefronts per "
                f"request, ideal {s.ideal_per_request:.0f})"
            )
            if s.lane_stride and s.lane_stride > 1 and (s.lane_stride * max(s.size, 4) // 4) % 2 == 0:
                text += (
                    f": consecutive lanes are {s.lane_stride} elements apart, so several fall in one bank; "
                    "pad the row by one element (e.g. [32][33]) or let consecutive lanes take consecutive "
                    "words"
                )
            out.append(text)
        if len(out) == 3:
            break
    return out


def render(kernels: list, minimum: int | None = None) -> str:
    """The table for a list of KernelCounters; ``minimum``: the bytes of the arrays the function received."""
    head = (
        "kernel",
        "grid",
        "block",
        "ld req",
        "sect/req",
        "ld eff",
        "st req",
        "sect/req",
        "st eff",
        "shared ld wf/req",
        "shared st wf/req",
        "atomics",
        "barriers",
        "KiB",
    )
    rows = [head]
    for k in kernels:
        rows.append(
            (
                k.name,
                _dims(k.grid),
                _dims(k.block),
                str(k.global_load_requests),
                _vs_ideal(k.global_load_sectors, k.global_load_ideal, k.global_load_requests),
                _pct(k.global_load_bytes, k.global_load_sectors, 32),
                str(k.global_store_requests),
                _vs_ideal(k.global_store_sectors, k.global_store_ideal, k.global_store_requests),
                _pct(k.global_store_bytes, k.global_store_sectors, 32),
                _vs_ideal(k.shared_load_wavefronts, k.shared_load_ideal, k.shared_load_requests),
                _vs_ideal(k.shared_store_wavefronts, k.shared_store_ideal, k.shared_store_requests),
                str(k.atomics),
                str(k.barriers),
                f"{k.unique_bytes / 1024:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    notes = []
    if minimum:
        touched = sum(k.unique_bytes for k in kernels)
        notes.append(
            f"global memory touched: {touched / 1024:.1f} KiB (each launch's distinct bytes, summed over "
            f"{len(kernels)} launch(es)), {touched / minimum:.2f}x the {minimum / 1024:.1f} KiB of the "
            "arrays passed in (reading and writing each needed byte once is the least any implementation "
            "moves)"
        )
    advice = [f"{k.name}: {h}" for k in kernels for h in hints(k)]
    notes += advice or ["every access is as coalesced as its data allows and no shared-memory access conflicts"]
    legend = (
        "ld/st req: warp-level global loads/stores; sect/req: 32-byte sectors per request (in brackets "
        "the ideal, the fewest that hold the bytes asked for); eff: bytes used / bytes moved; wf/req: "
        "shared-memory wavefronts per request (ideal in brackets: more means bank conflicts); KiB: distinct "
        "bytes of global memory touched"
    )
    return "\n".join(lines + [""] + [f"- {n}" for n in notes] + [legend]) + "\n"
