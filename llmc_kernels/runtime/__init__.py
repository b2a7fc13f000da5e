"""Choose a backend and launch CUDA C kernels on it, with CuPy's ``RawKernel`` calling convention.

``backend()`` is ``"cuda"`` (CuPy on an NVIDIA GPU) or ``"cpu"`` (the same CUDA C compiled by the system C++
compiler, see :mod:`.cpu`). ``RawKernel(code, name)(grid, block, args, shared_mem=0)`` validates the launch
(:mod:`.args`), compiles lazily once per backend and source, and launches.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import inspect
import os
import threading
from dataclasses import dataclass

from .. import _honesty
from ..errors import KernelArgumentError, KernelCompileError
from . import args as _args
from .signature import KernelSignature, find_kernel
from .source import SourceOrigin, find_origin

BACKENDS = ("cuda", "cpu")
SCHEDULES = ("forward", "reverse", "shuffle")
DEFAULT_TIMEOUT = 60.0

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "LaunchOptions",
    "RawKernel",
    "SourceOrigin",
    "backend",
    "clear_cache",
    "current_launch_options",
    "gpu_available",
    "gpu_status",
    "launch_options",
    "use_backend",
    "xp",
]


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (no usable GPU for 'cuda'); the message says what to do."""


# ---------------------------------------------------------------------------------------------- backends


@functools.lru_cache(maxsize=1)
def gpu_status() -> tuple[bool, str]:
    """``(usable, reason)``: whether CuPy imports and sees a CUDA device, and if not, why (for messages).

    Probed once per process: whether a GPU exists does not change while a notebook runs.
    """
    try:
        import cupy
    except ImportError as e:
        return False, ("CuPy is not installed" if getattr(e, "name", None) == "cupy" else f"CuPy failed to import: {e}")
    except Exception as e:  # a broken CuPy install raises all sorts of things at import
        return False, f"CuPy failed to import: {type(e).__name__}: {e}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, driver too old for this CuPy wheel, no device visible
        return False, f"CuPy {cupy.__version__} found no usable CUDA device: {e}"
    if count < 1:
        return False, "no CUDA device is visible"
    return True, f"{count} CUDA device{'s' if count > 1 else ''}"


def gpu_available() -> bool:
    """True when CuPy imports and a CUDA device is usable."""
    return gpu_status()[0]


def _no_gpu(what: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"{what}, but there is no usable GPU here: {gpu_status()[1]}. Use the cpu backend "
        "(LLMC_BACKEND=cpu, or unset it), or run `llmc doctor` to see what is missing."
    )


def _checked_name(name, what: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise ValueError(f"{what} must be 'cuda' or 'cpu', got {name!r}")
    return name.strip().lower()


_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("llmc_backend", default=None)


def backend() -> str:
    """The active backend: ``use_backend()``'s override, else ``LLMC_BACKEND``, else cuda if usable, else cpu."""
    name = _override.get()
    if name is not None:
        return name
    env = os.environ.get("LLMC_BACKEND", "").strip()
    if env:
        name = _checked_name(env, "LLMC_BACKEND")
        if name == "cuda" and not gpu_available():
            raise _no_gpu("LLMC_BACKEND=cuda")
        return name
    return "cuda" if gpu_available() else "cpu"


_active_backend = backend  # for methods whose parameter is called ``backend``


@contextlib.contextmanager
def use_backend(name: str | None):
    """Run the body with ``name`` as the active backend (``None`` leaves it as it is)."""
    if name is None:
        yield backend()
        return
    name = _checked_name(name, "use_backend()")
    if name == "cuda" and not gpu_available():
        raise _no_gpu("use_backend('cuda') was asked for")
    token = _override.set(name)
    try:
        yield name
    finally:
        _override.reset(token)


def xp():
    """The array module of the active backend: ``cupy`` on cuda, ``numpy`` on cpu."""
    if backend() == "cuda":
        import cupy

        return cupy
    import numpy

    return numpy


# ---------------------------------------------------------------------------------------- launch options


@dataclass(frozen=True)
class LaunchOptions:
    """How launches run. ``schedule``, ``timeout`` and ``races`` are read by the CPU backend (thread order,
    seconds per launch, whether the race detector runs); ``check`` makes the cuda backend synchronize after each
    launch to report faults at once.

    ``races``: True runs the race detector on every CPU launch (a race raises ``KernelRace``), False never;
    None (the default) runs it inside checks (``check.forward/backward``, hence grading) and nowhere else.
    ``LLMC_CPU_RACES=1`` or ``=0`` changes that default."""

    schedule: str = "forward"
    timeout: float = DEFAULT_TIMEOUT
    check: bool = False
    races: bool | None = None


# the options set by the enclosing launch_options() blocks; never mutated (each block sets a new dict)
_launch: contextvars.ContextVar[dict] = contextvars.ContextVar("llmc_launch_options", default={})  # noqa: B039


def _default_timeout() -> float:
    raw = os.environ.get("LLMC_CPU_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"LLMC_CPU_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"LLMC_CPU_TIMEOUT must be positive, got {raw!r}")
    return value


def _default_races() -> bool | None:
    raw = os.environ.get("LLMC_CPU_RACES", "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"LLMC_CPU_RACES must be 1 or 0, got {raw!r}")


@contextlib.contextmanager
def launch_options(
    schedule: str | None = None, timeout: float | None = None, check: bool | None = None, races: bool | None = None
):
    """Set launch options for the body; ``None`` keeps the enclosing (or default) value.

    ``races=False`` turns the CPU backend's race detector off (speed runs), also inside checks; ``races=True``
    turns it on for every CPU launch of the body."""
    changes = {}
    if schedule is not None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        changes["schedule"] = schedule
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        changes["timeout"] = float(timeout)
    if check is not None:
        changes["check"] = bool(check)
    if races is not None:
        if not isinstance(races, bool):
            raise ValueError(f"races must be True or False, got {races!r}")
        changes["races"] = races
    token = _launch.set({**_launch.get(), **changes})
    try:
        yield current_launch_options()
    finally:
        _launch.reset(token)


def current_launch_options() -> LaunchOptions:
    """The options in force here (defaults filled in; ``LLMC_CPU_TIMEOUT`` sets the default timeout)."""
    values = _launch.get()
    return LaunchOptions(
        schedule=values.get("schedule", "forward"),
        timeout=values.get("timeout") or _default_timeout(),
        check=values.get("check", False),
        races=values["races"] if "races" in values else _default_races(),
    )


# ------------------------------------------------------------------------------------------- RawKernel


def _make_cpu(code: str, name: str, signature: KernelSignature, origin: SourceOrigin, options: tuple):
    try:
        from .cpu import CpuKernel
    except ImportError as e:
        # only the backend itself being absent is "unavailable"; an import error inside it is a bug to show
        if (e.name or "").startswith(__name__ + ".cpu") or f"'{__name__}.cpu'" in str(e):
            raise BackendUnavailable(f"the cpu backend is not available here ({e})") from None
        raise
    if "options" in inspect.signature(CpuKernel).parameters:
        return CpuKernel(code, name, signature, origin, options=options)
    if options:
        raise KernelCompileError(
            f"compile options {options!r} are not supported by the cpu backend", kernel=name, location=origin.display
        )
    return CpuKernel(code, name, signature, origin)


def _make_cuda(code: str, name: str, signature: KernelSignature, origin: SourceOrigin, options: tuple):
    if not gpu_available():
        raise _no_gpu(f"kernel '{name}' was asked to run on the cuda backend")
    from .cuda import CudaKernel

    return CudaKernel(code, name, signature, origin, options=options)


# backend name -> factory(code, name, signature, origin, options) of an object with .compile(), .warnings and
# .launch(...); a dict so that tests can put a recording fake in place of a backend
_FACTORIES = {"cpu": _make_cpu, "cuda": _make_cuda}

# compiled backend kernels shared by every RawKernel with the same source: re-running a notebook cell does
# not recompile. The origin is part of the key because it is compiled into the source (#line directive).
_COMPILED: dict[tuple, object] = {}
_COMPILE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every compiled kernel of this process (the CPU backend's on-disk cache stays)."""
    with _COMPILE_LOCK:
        _COMPILED.clear()


class RawKernel:
    """A CUDA C kernel launched like CuPy's: ``kernel(grid, block, args, shared_mem=0)``.

    ``backend=None`` picks the backend per call from the arrays in ``args`` (NumPy -> cpu, CuPy -> cuda),
    else the active ``backend()``. ``origin`` says where the code came from, for error messages; by default it
    is found in the caller's cell or file. ``internal=True`` marks the package's own kernels, which refuse to
    run while a check calls the learner's function.
    """

    def __init__(
        self,
        code: str,
        name: str,
        backend: str | None = None,
        *,
        options=(),
        origin: SourceOrigin | None = None,
        internal: bool = False,
    ):
        if not isinstance(code, str):
            raise TypeError(f"RawKernel: code must be a str of CUDA C source, got {type(code).__name__}")
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"RawKernel: name must be the kernel's function name, got {name!r}")
        self.code = code
        self.name = name
        self.backend = None if backend is None else _checked_name(backend, "RawKernel backend")
        self.options = tuple(options)
        self.internal = internal
        self.origin = origin or find_origin(code) or SourceOrigin("kernel string", 1)
        try:
            self.signature = find_kernel(code, name)
        except KernelCompileError as e:
            raise KernelCompileError(e.detail, kernel=name, location=self.origin.display) from None
        if not self.signature.extern_c:
            line = self.signature.line
            raise KernelCompileError(
                f'declare it as extern "C" __global__ void {name}(...): without extern "C" the C++ compiler '
                "renames (mangles) the function and it cannot be found by name after compiling",
                kernel=name,
                location=self.origin.describe(line),
                kernel_line=line,
            )
        self._key = hashlib.sha256(code.encode()).hexdigest()
        self._impls: dict[str, object] = {}

    def __repr__(self):
        return f"<RawKernel '{self.name}' from {self.origin.display}, backend={self.backend or 'auto'}>"

    # -- compiling
    def _impl(self, backend: str):
        impl = self._impls.get(backend)
        if impl is not None:
            return impl
        key = (backend, self._key, self.name, self.options, self.origin)
        with _COMPILE_LOCK:
            impl = _COMPILED.get(key)
            if impl is None:
                impl = _FACTORIES[backend](self.code, self.name, self.signature, self.origin, self.options)
                impl.compile()  # a failure raises before anything is cached
                _COMPILED[key] = impl
        self._impls[backend] = impl
        return impl

    def compile(self, backend: str | None = None) -> RawKernel:
        """Compile now for ``backend`` (default: this kernel's backend, else the active one)."""
        name = _checked_name(backend, "backend") if backend is not None else (self.backend or _active_backend())
        self._impl(name)
        return self

    @property
    def warnings(self) -> list[str]:
        """Compiler warnings of every backend compiled so far, one string each (never printed)."""
        seen = []
        for impl in self._impls.values():
            for w in getattr(impl, "warnings", None) or ():
                if w not in seen:
                    seen.append(w)
        return seen

    # -- launching
    def _pick_backend(self, args) -> str:
        if self.backend is not None:
            return self.backend
        found = {}
        for i, a in enumerate(args if isinstance(args, (tuple, list)) else ()):
            kind = _args.array_backend(a)
            if kind is not None:
                found.setdefault(kind, i)
        if len(found) > 1:
            params = self.signature.params
            desc = {k: (params[i].describe() if i < len(params) else f"argument {i}") for k, i in found.items()}
            raise KernelArgumentError(
                f"{desc['cuda']} is a CuPy array but {desc['cpu']} is a NumPy array; all "
                "arrays of one launch must be on the same backend (cupy.asarray(x) moves a "
                "NumPy array to the GPU)",
                kernel=self.name,
            )
        if found:
            return next(iter(found))
        return backend()

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        if self.internal:
            _honesty.refuse_if_learner(f"the package's kernel '{self.name}'")
        kind = self._pick_backend(args)
        grid3, block3, vargs, smem = _args.validate_launch(self.signature, grid, block, args, shared_mem, kind)
        impl = self._impl(kind)
        opts = current_launch_options()
        if kind == "cuda":
            impl.launch(grid3, block3, vargs, smem, check=opts.check, stream=stream)
        else:  # CPU launches are synchronous, so a stream changes nothing there
            extra = {"races": True} if opts.races else {}  # (a backend without the detector takes no flag)
            impl.launch(grid3, block3, vargs, smem, opts.schedule, opts.timeout, **extra)
