"""Nsight Compute's memory counters, computed from the accesses one CPU launch made.

The CPU backend sees every access a kernel makes (its checked pointers do the bounds checks); recorded, each
access is one row of :data:`EVENT`: which thread of which block, which access of the source (``site``) for
the how-many-th time by that thread (``occ``), global or shared memory, load, store or atomic, address and
size. From those rows this module computes what Nsight Compute (``ncu``) reports for the same launch on a GPU,
with the same definitions, deterministically:

- **A request is one warp-level memory instruction.** On a GPU the 32 lanes of a warp execute an instruction
  together; on the CPU backend the lanes run one after another, so a request is rebuilt as *the lanes of one
  warp executing the same site for the same n-th time*. In converged code that is exactly the GPU's
  instruction. In divergent code (``if (lane < 16) a[i] = x; else b[i] = y;``) each side of the branch is a
  site of its own, so it forms its own request with only its lanes active, as a GPU issues each side with a
  partial mask; a loop whose trip count differs between lanes issues its later iterations with fewer lanes.
  (A GPU may split a divergent warp differently after re-convergence; such code is counted as if the lanes
  of the n-th iteration ran together.)
- **Global sectors**: the distinct 32-byte aligned segments that the active lanes of a request touch
  (``l1tex__t_sectors_pipe_lsu_mem_global_op_{ld,st}``). A coalesced float load is 4 sectors per request,
  a float4 load 16, a stride of 32 floats 32.
- **Shared wavefronts**: shared memory has 32 banks of 4-byte words; lanes reading the same word share one
  broadcast; a request needs as many wavefronts as the most distinct words that fall in one bank
  (``l1tex__data_pipe_lsu_wavefronts_mem_shared_op_{ld,st}``). Accesses wider than 4 bytes are served 128
  bytes at a time: an 8-byte access in two phases of 16 lanes, a 16-byte access in four phases of 8 lanes,
  each phase needing its own wavefronts.
- **atomics**: warp-level atomic requests to global memory (``..._global_op_atom`` and ``..._op_red``).
- **bytes_requested**: what the lanes asked of global memory (loads, stores and atomics, bytes per lane
  summed); **unique_bytes**: the distinct bytes of global memory touched, i.e. the DRAM traffic of a
  perfect cache.

Everything is vectorised NumPy: a launch of a million accesses takes a fraction of a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GLOBAL, SHARED = 0, 1
LOAD, STORE, ATOMIC = 0, 1, 2
WARP = 32
SECTOR = 32          # bytes: the unit of global memory traffic between L1 and L2
BANKS = 32           # shared memory banks, each 4 bytes wide
PHASE_BYTES = 128    # what shared memory serves per wavefront without a conflict

# One access of one thread. ``addr`` is a byte address: for global memory the array's own address (so that
# different arrays never share a sector by accident), for shared memory the offset in the block's shared
# memory. ``region`` names the array (an argument or a __shared__ array; see KernelCounters.regions).
EVENT = np.dtype([("addr", "<u8"), ("block", "<i8"), ("thread", "<i4"), ("site", "<i4"), ("occ", "<i4"),
                  ("region", "<i4"), ("size", "u1"), ("space", "u1"), ("kind", "u1"), ("pad", "u1")])


@dataclass
class SiteCounters:
    """One access of the source (a site), summed over every request it issued."""
    site: int
    line: int
    space: int
    kind: int
    region: int
    size: int                  # bytes per lane
    requests: int = 0
    units: int = 0             # sectors (global) or wavefronts (shared)
    ideal: int = 0             # the fewest sectors/wavefronts that could deliver the same bytes
    lane_stride: int | None = None   # elements between consecutive lanes in a full request, if constant

    @property
    def per_request(self) -> float:
        return self.units / self.requests if self.requests else 0.0

    @property
    def ideal_per_request(self) -> float:
        return self.ideal / self.requests if self.requests else 0.0


@dataclass
class KernelCounters:
    """The counters of one launch (names and meanings as Nsight Compute's; see the module docstring)."""
    name: str
    grid: tuple
    block: tuple
    global_load_requests: int = 0
    global_load_sectors: int = 0
    global_store_requests: int = 0
    global_store_sectors: int = 0
    shared_load_requests: int = 0
    shared_load_wavefronts: int = 0
    shared_store_requests: int = 0
    shared_store_wavefronts: int = 0
    atomics: int = 0
    barriers: int = 0          # __syncthreads() executed by a block, summed over the blocks
    bytes_requested: int = 0
    unique_bytes: int = 0
    # derived from the same events, for the table and its hints
    global_load_ideal: int = 0
    global_store_ideal: int = 0
    shared_load_ideal: int = 0
    shared_store_ideal: int = 0
    global_load_bytes: int = 0
    global_store_bytes: int = 0
    sites: list = field(default_factory=list)          # list[SiteCounters], worst first
    regions: dict = field(default_factory=dict)        # region id -> name ('out', '__shared__ buf')

    FIELDS = ("name", "grid", "block", "global_load_requests", "global_load_sectors", "global_store_requests",
              "global_store_sectors", "shared_load_requests", "shared_load_wavefronts", "shared_store_requests",
              "shared_store_wavefronts", "atomics", "barriers", "bytes_requested", "unique_bytes")

    def as_dict(self) -> dict:
        """The contract's fields only."""
        return {k: getattr(self, k) for k in self.FIELDS}


def _requests(ev: np.ndarray):
    """Sort the events into warp-level requests: (sorted events, request id of each, first row of each)."""
    warp = ev["thread"] // WARP
    order = np.lexsort((ev["thread"], ev["occ"], ev["site"], warp, ev["block"], ev["kind"], ev["space"]))
    e, w = ev[order], warp[order]
    new = np.ones(len(e), dtype=bool)
    if len(e) > 1:
        new[1:] = ((e["space"][1:] != e["space"][:-1]) | (e["kind"][1:] != e["kind"][:-1])
                   | (e["block"][1:] != e["block"][:-1]) | (w[1:] != w[:-1])
                   | (e["site"][1:] != e["site"][:-1]) | (e["occ"][1:] != e["occ"][:-1]))
    rid = np.cumsum(new) - 1
    return e, rid, np.flatnonzero(new)


def _count_distinct(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """For each group id in 0..n_groups-1, how many distinct values it holds."""
    if len(values) == 0:
        return np.zeros(n_groups, dtype=np.int64)
    order = np.lexsort((values, groups))
    g, v = groups[order], values[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = (g[1:] != g[:-1]) | (v[1:] != v[:-1])
    return np.bincount(g[first], minlength=n_groups)


def _sectors(e: np.ndarray, rid: np.ndarray, n: int) -> np.ndarray:
    """Distinct 32-byte sectors per request (an access that straddles two sectors counts both)."""
    addr = e["addr"].astype(np.uint64)
    first = addr // SECTOR
    last = (addr + e["size"].astype(np.uint64) - 1) // SECTOR
    straddles = last != first
    groups = np.concatenate([rid, rid[straddles]])
    sectors = np.concatenate([first, last[straddles]])
    return _count_distinct(groups, sectors, n)


def _wavefronts(e: np.ndarray, rid: np.ndarray, n: int) -> np.ndarray:
    """Shared-memory wavefronts per request: per phase, the most distinct words in one bank; summed."""
    size = np.maximum(e["size"].astype(np.int64), 4)
    words = size // 4
    lane = (e["thread"] % WARP).astype(np.int64)
    phase = lane // (PHASE_BYTES // size)
    # one row per 4-byte word an access touches
    rep = np.repeat(np.arange(len(e)), words)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(words) - words, words)
    word = (e["addr"][rep].astype(np.int64) // 4) + offset
    g, ph, bank = rid[rep], phase[rep], word % BANKS
    # distinct (request, phase, bank, word), then words per (request, phase, bank), then the worst bank
    order = np.lexsort((word, bank, ph, g))
    g, ph, bank, word = g[order], ph[order], bank[order], word[order]
    distinct = np.ones(len(g), dtype=bool)
    distinct[1:] = (g[1:] != g[:-1]) | (ph[1:] != ph[:-1]) | (bank[1:] != bank[:-1]) | (word[1:] != word[:-1])
    g, ph, bank = g[distinct], ph[distinct], bank[distinct]
    cell = np.ones(len(g), dtype=bool)                  # a new (request, phase, bank)
    cell[1:] = (g[1:] != g[:-1]) | (ph[1:] != ph[:-1]) | (bank[1:] != bank[:-1])
    starts = np.flatnonzero(cell)
    per_bank = np.diff(np.append(starts, len(g)))
    cg, cph = g[starts], ph[starts]
    phase_start = np.ones(len(cg), dtype=bool)          # a new (request, phase)
    phase_start[1:] = (cg[1:] != cg[:-1]) | (cph[1:] != cph[:-1])
    ps = np.flatnonzero(phase_start)
    worst = np.maximum.reduceat(per_bank, ps) if len(ps) else np.zeros(0, dtype=np.int64)
    return np.bincount(cg[ps], weights=worst, minlength=n).astype(np.int64)


def _union_bytes(addr: np.ndarray, size: np.ndarray) -> int:
    """The number of distinct bytes covered by the intervals [addr, addr + size)."""
    if len(addr) == 0:
        return 0
    order = np.argsort(addr, kind="stable")
    lo = addr[order].astype(np.int64)      # addresses of one process fit in 63 bits
    hi = lo + size[order].astype(np.int64)
    reach = np.maximum.accumulate(hi)
    before = np.concatenate([[lo[0]], reach[:-1]])
    return int(np.clip(hi - np.maximum(lo, before), 0, None).sum())


def _lane_stride(e: np.ndarray, rows: np.ndarray) -> int | None:
    """Elements between consecutive lanes of one request, when every step is the same (else None)."""
    if len(rows) < 2:
        return None
    lanes = e["thread"][rows] % WARP
    addr = e["addr"][rows].astype(np.int64)
    order = np.argsort(lanes, kind="stable")
    lanes, addr = lanes[order], addr[order]
    steps = np.diff(addr) // np.maximum(np.diff(lanes), 1)
    size = int(e["size"][rows[0]])
    if len(steps) and np.all(steps == steps[0]) and steps[0] % size == 0:
        return int(steps[0] // size)
    return None


def count(events: np.ndarray, *, name: str, grid: tuple, block: tuple, barriers: int = 0,
          site_lines: dict | None = None, regions: dict | None = None) -> KernelCounters:
    """The counters of one launch from its access events (:data:`EVENT` rows, in any order)."""
    k = KernelCounters(name, tuple(grid), tuple(block), barriers=int(barriers), regions=dict(regions or {}))
    ev = np.asarray(events, dtype=EVENT)
    if len(ev) == 0:
        return k
    e, rid, starts = _requests(ev)
    n = len(starts)
    space, kind = e["space"][starts], e["kind"][starts]
    size = e["size"].astype(np.int64)
    distinct_addr = _count_distinct(rid, e["addr"], n)
    req_bytes = distinct_addr * size[starts]                    # bytes a request needs, duplicates once

    units = np.zeros(n, dtype=np.int64)
    ideal = np.zeros(n, dtype=np.int64)
    glob = e["space"] == GLOBAL
    if glob.any():
        units += np.where(space == GLOBAL, _sectors(e[glob], rid[glob], n), 0)
        ideal += np.where(space == GLOBAL, -(-req_bytes // SECTOR), 0)
    shared = ~glob
    if shared.any():
        units += np.where(space == SHARED, _wavefronts(e[shared], rid[shared], n), 0)
        ideal += np.where(space == SHARED, np.maximum(1, -(-req_bytes // PHASE_BYTES)), 0)

    def total(values, sp, kd):
        return int(values[(space == sp) & (kind == kd)].sum())

    ones = np.ones(n, dtype=np.int64)
    k.global_load_requests, k.global_load_sectors = total(ones, GLOBAL, LOAD), total(units, GLOBAL, LOAD)
    k.global_store_requests, k.global_store_sectors = total(ones, GLOBAL, STORE), total(units, GLOBAL, STORE)
    k.shared_load_requests, k.shared_load_wavefronts = total(ones, SHARED, LOAD), total(units, SHARED, LOAD)
    k.shared_store_requests, k.shared_store_wavefronts = total(ones, SHARED, STORE), total(units, SHARED, STORE)
    k.atomics = total(ones, GLOBAL, ATOMIC)
    k.global_load_ideal, k.global_store_ideal = total(ideal, GLOBAL, LOAD), total(ideal, GLOBAL, STORE)
    k.shared_load_ideal, k.shared_store_ideal = total(ideal, SHARED, LOAD), total(ideal, SHARED, STORE)
    lane_bytes = np.bincount(rid, weights=size, minlength=n).astype(np.int64)
    k.global_load_bytes, k.global_store_bytes = total(lane_bytes, GLOBAL, LOAD), total(lane_bytes, GLOBAL, STORE)
    k.bytes_requested = int(size[glob].sum())
    k.unique_bytes = _union_bytes(e["addr"][glob], e["size"][glob])
    k.sites = _sites(e, rid, starts, units, ideal, site_lines or {})
    return k


def _sites(e, rid, starts, units, ideal, site_lines) -> list:
    """Per-site sums, the sites that lose the most (units beyond the ideal) first."""
    site = e["site"][starts]
    keys = np.stack([site, e["space"][starts], e["kind"][starts]], axis=1)
    found = []
    for key in np.unique(keys, axis=0):
        mask = np.all(keys == key, axis=1)
        first = np.flatnonzero(mask)[0]
        row = starts[first]
        s = SiteCounters(int(key[0]), int(site_lines.get(int(key[0]), 0)), int(key[1]), int(key[2]),
                         int(e["region"][row]), int(e["size"][row]), int(mask.sum()), int(units[mask].sum()),
                         int(ideal[mask].sum()))
        # the stride between lanes, read off the site's fullest request
        lanes = np.diff(np.append(starts, len(e)))[mask]
        best = np.flatnonzero(mask)[int(np.argmax(lanes))]
        s.lane_stride = _lane_stride(e, np.arange(starts[best], starts[best] + lanes.max()))
        found.append(s)
    found.sort(key=lambda s: (-(s.units - s.ideal), s.line, s.site))
    return found
