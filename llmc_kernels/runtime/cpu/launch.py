"""Call the runtime library: pack a launch into ``llmc_launch_desc`` (mirroring include/llmc_abi.h with
ctypes), run it, and hand back the error record and the kernel's printf output.

One launch at a time per process: the runtime owns process-wide state (signal handlers during the launch,
the fibers' stacks, shared memory), so a lock serialises launches from several Python threads. ctypes
releases the GIL during the call, so other Python threads keep running meanwhile.
"""

from __future__ import annotations

import ctypes as C
import threading

import numpy as np

from . import build

LLMC_ABI = 4
SCHEDULES = {"forward": 0, "reverse": 1, "shuffle": 2}

# llmc_error kinds, region ids and trap kinds (llmc_abi.h)
E_OK, E_OOB, E_OOB_ARRAY, E_DEADLOCK, E_TIMEOUT, E_TRAP, E_INTERRUPT, E_INTERNAL, E_RACE = range(9)
TRACE_ACCESSES, TRACE_RACES, TRACE_COUNTERS = 1, 2, 8
REGION_READONLY = 4
A_LOAD, A_STORE, A_UPDATE, A_ATOMIC = 1, 2, 3, 4
RACE_NONE, RACE_WW, RACE_RAW, RACE_WAR, RACE_UNINIT = range(5)
R_UNCHECKED, R_DYN_SHARED, R_NULL, R_STATIC_SHARED = -1, -2, -3, -4
(
    T_DIV_ZERO,
    T_DIV_OVERFLOW,
    T_STACK_OVERFLOW,
    T_BAD_ADDRESS,
    T_TRAP,
    T_ASSERT,
    T_BAD_MASK,
    T_SHARED_LIMIT,
    T_MISALIGNED,
    T_ILLEGAL,
    T_INTERNAL,
) = range(1, 12)


class Region(C.Structure):
    _fields_ = [
        ("lo", C.c_void_p),
        ("span", C.c_uint64),
        ("id", C.c_int32),
        ("elem_size", C.c_int32),
        ("flags", C.c_int32),
        ("base_offset", C.c_int32),
    ]


class LaunchDesc(C.Structure):
    _fields_ = [
        ("thread_entry", C.c_void_p),
        ("fast_block", C.c_void_p),
        ("args", C.c_void_p),
        ("regions", C.c_void_p),
        ("nregions", C.c_int32),
        ("use_fibers", C.c_int32),
        ("grid", C.c_uint32 * 3),
        ("block", C.c_uint32 * 3),
        ("shared_bytes", C.c_uint64),
        ("schedule", C.c_int32),
        ("pad_", C.c_int32),
        ("seed", C.c_uint64),
        ("timeout_s", C.c_double),
        ("trace", C.c_uint32),
        ("pad2_", C.c_uint32),
    ]


class RaceAccess(C.Structure):
    _fields_ = [
        ("thread", C.c_int32 * 3),
        ("block", C.c_int32 * 3),
        ("lane", C.c_int32),
        ("warp", C.c_int32),
        ("line", C.c_int32),
        ("op", C.c_int32),
    ]


class Race(C.Structure):
    _fields_ = [
        ("kind", C.c_int32),
        ("shared", C.c_int32),
        ("region", C.c_int32),
        ("same_value", C.c_int32),
        ("offset", C.c_int64),
        ("size", C.c_int64),
        ("elem_size", C.c_int64),
        ("pairs", C.c_int64),
        ("nthreads", C.c_int32),
        ("pad_", C.c_int32),
        ("a", RaceAccess),
        ("b", RaceAccess),
        ("name", C.c_char * 64),
    ]


class ErrorRecord(C.Structure):
    _fields_ = [
        ("kind", C.c_int32),
        ("sub", C.c_int32),
        ("line", C.c_int32),
        ("has_thread", C.c_int32),
        ("thread", C.c_int32 * 3),
        ("block", C.c_int32 * 3),
        ("region", C.c_int32),
        ("is_const", C.c_int32),
        ("offset", C.c_int64),
        ("size", C.c_int64),
        ("align", C.c_int64),
        ("index", C.c_int64),
        ("extent", C.c_int64),
        ("addr", C.c_uint64),
        ("blocks_done", C.c_int64),
        ("blocks_total", C.c_int64),
        ("text", C.c_char * 4096),
        ("race", Race),
        ("warning", Race),
    ]


class Counters(C.Structure):
    _fields_ = [
        (name, C.c_uint64)
        for name in (
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
            "global_load_ideal",
            "global_store_ideal",
            "shared_load_ideal",
            "shared_store_ideal",
            "global_load_bytes",
            "global_store_bytes",
        )
    ]


class SiteCounters(C.Structure):
    _fields_ = [
        ("line", C.c_int32),
        ("region", C.c_int32),
        ("space", C.c_int32),
        ("kind", C.c_int32),
        ("size", C.c_int64),
        ("requests", C.c_int64),
        ("units", C.c_int64),
        ("ideal", C.c_int64),
        ("stride", C.c_int64),
        ("lanes", C.c_int64),
    ]


MAX_SITES = 4096
_LOCK = threading.Lock()
_RUNTIME = None


def runtime():
    """The runtime library, loaded once per process."""
    global _RUNTIME
    if _RUNTIME is None:
        lib = C.CDLL(str(build.runtime_library()))
        if lib.llmc_runtime_abi() != LLMC_ABI:
            raise RuntimeError("the cpu backend's runtime library does not match this package (ABI mismatch)")
        lib.llmc_run.argtypes = [C.POINTER(LaunchDesc), C.POINTER(ErrorRecord)]
        lib.llmc_run.restype = C.c_int
        lib.llmc_output.argtypes = [C.POINTER(C.c_uint64), C.POINTER(C.c_int)]
        lib.llmc_output.restype = C.c_void_p
        lib.llmc_counters_result.argtypes = [C.POINTER(Counters), C.POINTER(SiteCounters), C.c_int]
        lib.llmc_counters_result.restype = C.c_int
        _RUNTIME = lib
    return _RUNTIME


class Library:
    """A compiled kernel library: the entry points of every extern "C" kernel of one source."""

    def __init__(self, path):
        self.dll = C.CDLL(str(path))
        if self.dll.llmc_kernel_abi() != LLMC_ABI:
            raise RuntimeError(f"stale kernel library {path} (ABI mismatch); delete it to rebuild")

    def entries(self, kernel: str) -> tuple[int, int]:
        """(thread entry, fast-path block entry) of ``kernel``."""
        return (
            C.cast(getattr(self.dll, f"llmc_thread_entry_{kernel}"), C.c_void_p).value,
            C.cast(getattr(self.dll, f"llmc_fast_block_{kernel}"), C.c_void_p).value,
        )


def _allocation_offset(a: np.ndarray) -> int:
    """Bytes from the start of the NumPy allocation that holds ``a`` (0 unless ``a`` is a view)."""
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    return a.ctypes.data - root.ctypes.data


def plan(signature) -> list[tuple[int, bool, object, int, bool]]:
    """Per parameter, what packing needs: (position, is pointer, NumPy dtype, bytes per element, const pointer)."""
    out = []
    for p in signature.params:
        dtype = p.dtype
        out.append(
            (
                p.position,
                p.pointer,
                dtype,
                dtype.itemsize * p.components if dtype is not None else 1,
                p.pointer and p.const,
            )
        )
    return out


def _readonly(params, args) -> set:
    """Positions of const pointer arguments whose memory no non-const pointer argument overlaps."""
    spans = [
        (position, const, a.ctypes.data, a.ctypes.data + a.nbytes)
        for (position, pointer, _, _, const), a in zip(params, args)
        if pointer and a is not None
    ]
    return {
        p
        for p, const, lo, hi in spans
        if const and not any(not c2 and lo2 < hi and lo < hi2 for _, c2, lo2, hi2 in spans)
    }


def run(
    entries: tuple[int, int],
    params: list,
    args,
    grid,
    block,
    shared_mem: int,
    schedule: str,
    timeout: float,
    seed: int,
    use_fibers: bool,
    trace: int = 0,
    counters: list | None = None,
) -> tuple[ErrorRecord, bytes, bool]:
    """Run one launch (``params`` from :func:`plan`): ``(error record, printf output, output truncated)``.

    ``trace`` (TRACE_* bits) turns on the access-event layer and its consumers (the race detector, the memory
    counters). With TRACE_COUNTERS, a launch that succeeds appends ``(Counters, [SiteCounters])`` to
    ``counters``."""
    n = max(1, len(params))
    regions = (Region * n)()
    argv = (C.c_void_p * n)()
    keep = []  # scalars' buffers must outlive the call
    nreg = 0
    # the memory counters count every load: no array is skipped when they trace
    readonly = _readonly(params, args) if trace and not trace & TRACE_COUNTERS else set()
    for (position, pointer, dtype, elem_size, _), a in zip(params, args):
        if pointer:
            r = regions[nreg]
            r.id = position
            r.elem_size = elem_size
            r.flags = (TRACE_ACCESSES | (REGION_READONLY if position in readonly else 0)) if trace else 0
            if a is not None:
                r.lo = a.ctypes.data
                r.span = a.nbytes
                r.base_offset = _allocation_offset(a) % 256
            argv[position] = C.addressof(r)
            nreg += 1
        else:
            value = np.array(a, dtype=dtype)
            keep.append(value)
            argv[position] = value.ctypes.data
    desc = LaunchDesc()
    desc.thread_entry, desc.fast_block = entries
    desc.args = C.addressof(argv)
    desc.regions = C.addressof(regions)
    desc.nregions = nreg
    desc.use_fibers = int(use_fibers)
    desc.grid[:] = grid
    desc.block[:] = block
    desc.shared_bytes = shared_mem
    desc.schedule = SCHEDULES[schedule]
    desc.seed = seed & 0xFFFFFFFFFFFFFFFF
    desc.timeout_s = float(timeout) if timeout else 0.0
    desc.trace = (trace | TRACE_ACCESSES) if trace else 0
    err = ErrorRecord()
    rt = runtime()
    with _LOCK:
        rt.llmc_run(C.byref(desc), C.byref(err))
        size, cut = C.c_uint64(), C.c_int()
        ptr = rt.llmc_output(C.byref(size), C.byref(cut))
        out = C.string_at(ptr, size.value) if size.value else b""
        if counters is not None and trace & TRACE_COUNTERS and err.kind == E_OK:
            total, sites = Counters(), (SiteCounters * MAX_SITES)()
            n = rt.llmc_counters_result(C.byref(total), sites, MAX_SITES)
            counters.append((total, list(sites[: min(n, MAX_SITES)])))
    del keep
    return err, out, bool(cut.value)
