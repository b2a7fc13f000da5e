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

The counting itself happens in the CPU backend's runtime (``runtime/cpu/rt/counters.cpp``), as each block
reaches a barrier or its end; this module holds the figures it hands back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GLOBAL, SHARED = 0, 1  # an access's memory space (rt/access.h)
LOAD, STORE, ATOMIC = 0, 1, 2  # a request's kind; an update (+=) is a load request and a store request


@dataclass
class SiteCounters:
    """One access of the source (a site), summed over every request it issued."""

    line: int  # the line in the kernel's source string, and its text
    source: str
    space: int
    kind: int
    region: int
    size: int  # bytes per lane
    requests: int = 0
    units: int = 0  # sectors (global) or wavefronts (shared)
    ideal: int = 0  # the fewest sectors/wavefronts that could deliver the same bytes
    lane_stride: int | None = None  # elements between consecutive lanes in the fullest request, if constant

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
    barriers: int = 0  # __syncthreads() executed by a block, summed over the blocks
    bytes_requested: int = 0
    unique_bytes: int = 0
    # derived from the same events, for the table and its hints
    global_load_ideal: int = 0
    global_store_ideal: int = 0
    shared_load_ideal: int = 0
    shared_store_ideal: int = 0
    global_load_bytes: int = 0
    global_store_bytes: int = 0
    sites: list = field(default_factory=list)  # list[SiteCounters], worst first
    regions: dict = field(default_factory=dict)  # region id -> name ('out', '__shared__ buf')

    FIELDS = (
        "name",
        "grid",
        "block",
        "global_load_requests",
        "global_load_sectors",
        "global_store_requests",
        "global_store_sectors",
        "shared_load_requests",
        "shared_load_wavefronts",
        "shared_store_requests",
        "shared_store_wavefronts",
        "atomics",
        "barriers",
        "bytes_requested",
        "unique_bytes",
    )

    def as_dict(self) -> dict:
        """The contract's fields only."""
        return {k: getattr(self, k) for k in self.FIELDS}


def from_runtime(total, sites, *, name, grid, block, signature, origin, code) -> KernelCounters:
    """KernelCounters from the runtime's records (launch.Counters and launch.SiteCounters)."""
    from ..runtime.cpu import launch as L

    k = KernelCounters(name, tuple(grid), tuple(block))
    for f, _ in total._fields_:
        setattr(k, f, int(getattr(total, f)))
    lines = code.splitlines()
    for s in sites:
        kernel_line = origin.kernel_line(s.line) if s.line > 0 else 0
        text = lines[kernel_line - 1].strip() if 1 <= kernel_line <= len(lines) else ""
        if s.space == GLOBAL and 0 <= s.region < len(signature.params):
            k.regions[s.region] = f"'{signature.params[s.region].name}'"
        elif s.region == L.R_DYN_SHARED:
            k.regions[s.region] = "dynamic shared memory (extern __shared__)"
        else:
            k.regions[s.region] = "a __shared__ array"
        k.sites.append(
            SiteCounters(
                kernel_line or s.line,
                text,
                s.space,
                s.kind,
                s.region,
                s.size,
                s.requests,
                s.units,
                s.ideal,
                s.stride or None,
            )
        )
    k.sites.sort(key=lambda s: (-(s.units - s.ideal), s.line))
    return k
