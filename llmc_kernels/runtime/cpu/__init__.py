"""The CPU backend: run the course's CUDA C kernel strings on the CPU, with CUDA's semantics.

``CpuKernel(code, name, signature, origin)`` translates the string line for line into C++
(:mod:`.translate`), compiles it with the system C++ compiler into a cached shared library (:mod:`.build`)
and launches it through the runtime library (:mod:`.launch`, ``rt/``): every CUDA thread of a block is a
cooperative fiber that switches at barriers and warp operations, blocks run one after another, pointers are
bounds-checked, shared memory is per block and poisoned. Every failure comes back as a ``KernelError``
subclass naming the kernel, the learner's line, the thread and block (:mod:`.messages`); the Python process
survives all of them.
"""

from __future__ import annotations

import contextvars
import sys
import threading

from ...errors import KernelCompileError
from .. import diagnostics
from ..signature import KernelSignature, find_kernel, list_kernels
from ..source import SourceOrigin
from . import build, fallback, launch, messages
from .translate import translate

__all__ = ["CpuKernel"]

# A list that collects the race detector's warnings of every launch in the current context (check sets one)
RACE_WARNINGS: contextvars.ContextVar[list | None] = contextvars.ContextVar("llmc_race_warnings", default=None)

_LIBRARIES: dict[str, launch.Library] = {}  # path -> loaded library (a library is loaded once)
_LOAD_LOCK = threading.Lock()


def _entry_kernels(code: str, signature: KernelSignature) -> list[tuple[str, int]]:
    """Every extern "C" kernel of the source with its parameter count: one library serves them all, so a
    file of six kernels compiles once (its text, hence its cache key, is the same for each of them)."""
    found = {signature.name: len(signature.params)}
    for name in list_kernels(code):
        if name in found:
            continue
        try:
            sig = find_kernel(code, name)
        except KernelCompileError:  # a kernel we cannot read: it gets no entry points; the compiler judges it
            continue
        if sig.extern_c:
            found[name] = len(sig.params)
    return sorted(found.items())


class CpuKernel:
    def __init__(
        self, code: str, name: str, signature: KernelSignature, origin: SourceOrigin | None = None, options=()
    ):
        self.code = code
        self.name = name
        self.signature = signature
        self.origin = origin or SourceOrigin(f"kernel '{name}'", 1)
        self.options = tuple(options)
        self.warnings: list[str] = []
        self.uses_fibers = True
        self.cached = False  # the library came from the on-disk cache
        self._lib: launch.Library | None = None

    def __repr__(self):
        return f"<CpuKernel '{self.name}' from {self.origin.display}>"

    def compile(self) -> CpuKernel:
        """Translate and compile (once; later calls return at once). Raises KernelCompileError."""
        if self._lib is not None:
            return self
        flags, notes = build.split_options(self.options)
        tr = translate(self.code, _entry_kernels(self.code, self.signature), self.origin.line_directive())
        path, log, cached = build.build_kernel(tr.text, flags)
        log = build.readable_log(log)
        cxx = build.compiler()[0].rsplit("/", 1)[-1]
        if path is None:
            err = diagnostics.compile_error(log, kernel=self.name, code=self.code, origin=self.origin, compiler=cxx)
            raise fallback.explain(err, self.code, self.name, self.origin, flags) from None
        with _LOAD_LOCK:
            lib = _LIBRARIES.get(str(path))
            if lib is None:
                lib = _LIBRARIES[str(path)] = launch.Library(path)
        self.warnings = notes + diagnostics.warnings_of(log, self.origin)
        self.uses_fibers = tr.uses_sync
        self.cached = cached
        self._entries = lib.entries(self.name)
        self._plan = launch.plan(self.signature)
        self._lib = lib
        return self

    def launch(
        self,
        grid,
        block,
        args,
        shared_mem: int = 0,
        schedule: str = "forward",
        timeout: float = 60.0,
        seed: int = 0,
        races: bool = False,
    ) -> list[str]:
        """Run the kernel over ``grid`` x ``block`` with validated ``args`` (NumPy arrays and scalars).

        ``schedule`` orders the threads of each block and the blocks of the grid: "forward", "reverse" or
        "shuffle" (a permutation drawn from ``seed``). ``timeout`` is in seconds (0: none). ``races`` runs the
        race detector (a race raises KernelRace); the result is its warnings (same-value write-write races),
        also appended to :data:`RACE_WARNINGS` when a list is there. The kernel's printf output goes to
        ``sys.stdout`` after the launch, also when it fails.
        """
        if schedule not in launch.SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(launch.SCHEDULES)}, got {schedule!r}")
        self.compile()
        grid, block = tuple(int(g) for g in grid), tuple(int(b) for b in block)
        from ...profiling import recording  # a profile (llmc_kernels.profile) collecting this launch?

        prof = recording()
        trace = (launch.TRACE_RACES if races else 0) | (launch.TRACE_COUNTERS if prof is not None else 0)
        counted: list = []
        err, out, cut = launch.run(
            self._entries,
            self._plan,
            args,
            grid,
            block,
            int(shared_mem),
            schedule,
            timeout,
            int(seed),
            self.uses_fibers,
            trace,
            counted,
        )
        if out:
            sys.stdout.write(out.decode("utf-8", errors="replace"))
        if cut:
            sys.stdout.write("\n[printf output beyond 1 MiB was dropped, as CUDA's printf buffer would]\n")
        if out or cut:
            sys.stdout.flush()
        ctx = None
        if err.kind != launch.E_OK:
            ctx = messages.Context(
                self.name, self.origin, self.code, self.signature, args, grid, block, int(shared_mem), timeout, schedule
            )
            raise messages.error_from_record(err, ctx)
        if counted:
            from ...profiling.counters import from_runtime

            prof.add(
                from_runtime(
                    *counted[0],
                    name=self.name,
                    grid=grid,
                    block=block,
                    signature=self.signature,
                    origin=self.origin,
                    code=self.code,
                )
            )
        warnings = []
        if err.warning.kind != launch.RACE_NONE:
            from . import races as _races

            ctx = messages.Context(
                self.name, self.origin, self.code, self.signature, args, grid, block, int(shared_mem), timeout, schedule
            )
            warnings.append(_races.warning(err.warning, ctx))
            sink = RACE_WARNINGS.get()
            if sink is not None:
                for w in warnings:
                    if w not in sink:
                        sink.append(w)
        return warnings
