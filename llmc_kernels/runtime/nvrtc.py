"""Compile a kernel with NVRTC without running it: no GPU is needed, only the NVRTC library.

Used by tests and tools to check that every kernel string compiles for the GPU even on a machine without
one, with the same error messages as the cuda backend. NVRTC comes from CuPy (``cupy.cuda.nvrtc``) when
CuPy imports, else from NVIDIA's ``cuda-bindings`` (``pip install "cuda-bindings<13"
nvidia-cuda-nvrtc-cu12``; the test extra installs them, and CUDA's headers for ``<cooperative_groups.h>``:
``nvidia-cuda-runtime-cu12 nvidia-cuda-cccl-cu12``).
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from .diagnostics import compile_error, warnings_of
from .signature import find_kernel
from .source import SourceOrigin, find_origin

DEFAULT_ARCH = "compute_75"  # Turing (T4): the oldest GPU the course supports
PRELUDE = (Path(__file__).with_name("prelude.cuh")).read_text()
PROGRAM_NAME = "llmc_prelude.cu"  # what NVRTC calls lines before the #line directive (the prelude's)


def full_source(code: str, origin: SourceOrigin) -> str:
    """What the compilers see: the prelude, then a #line directive, then the learner's code unchanged."""
    return PRELUDE + origin.line_directive() + code


class _CupyNvrtc:
    """NVRTC through CuPy's thin wrapper (errors are exceptions, logs are str)."""

    source = "cupy"

    def __init__(self):
        try:
            from cupy.cuda import nvrtc
        except ImportError:
            from cupy_backends.cuda.libs import nvrtc
        self.m = nvrtc
        self.m.getVersion()  # raises if libnvrtc cannot be loaded

    def version(self):
        return tuple(self.m.getVersion())

    def compile(self, src: str, options: list[str]) -> tuple[bool, str]:
        prog = self.m.createProgram(src, PROGRAM_NAME, (), ())
        try:
            try:
                self.m.compileProgram(prog, options)
                ok = True
            except self.m.NVRTCError:
                ok = False
            return ok, self.m.getProgramLog(prog)
        finally:
            self.m.destroyProgram(prog)


class _BindingsNvrtc:
    """NVRTC through NVIDIA's cuda-bindings (every call returns ``(status, *results)``)."""

    source = "cuda-bindings"

    def __init__(self):
        try:
            from cuda.bindings import nvrtc
        except ImportError:
            from cuda import nvrtc  # cuda-python < 12.6 spelled it this way
        self.m = nvrtc
        self.version()

    def _check(self, result):
        status = result[0]
        if status != self.m.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"NVRTC call failed: {status!r}")
        return result[1:]

    def version(self):
        major, minor = self._check(self.m.nvrtcVersion())
        return int(major), int(minor)

    def compile(self, src: str, options: list[str]) -> tuple[bool, str]:
        (prog,) = self._check(self.m.nvrtcCreateProgram(src.encode(), PROGRAM_NAME.encode(), 0, [], []))
        try:
            opts = [o.encode() for o in options]
            (status,) = self.m.nvrtcCompileProgram(prog, len(opts), opts)
            (size,) = self._check(self.m.nvrtcGetProgramLogSize(prog))
            # A fresh, writable buffer: NVRTC writes into it, and `b" " * size` may be an interned bytes
            # object (size 1, the empty log, is CPython's shared b" "): writing there corrupts every b" ".
            buf = bytearray(size)
            self._check(self.m.nvrtcGetProgramLog(prog, buf))
            return status == self.m.nvrtcResult.NVRTC_SUCCESS, bytes(buf).rstrip(b"\0").decode(errors="replace")
        finally:
            self.m.nvrtcDestroyProgram(prog)


@functools.lru_cache(maxsize=1)
def _nvrtc():
    """The first NVRTC binding that loads, or the reasons none did (a str)."""
    reasons = []
    for cls in (_CupyNvrtc, _BindingsNvrtc):
        try:
            return cls()
        except Exception as e:  # ImportError, or a library that is present but cannot load
            reasons.append(f"{cls.source}: {type(e).__name__}: {e}")
    return "; ".join(reasons)


def available() -> bool:
    """True when an NVRTC library can be loaded (no GPU needed)."""
    return not isinstance(_nvrtc(), str)


def binding() -> str | None:
    """Which Python binding provides NVRTC: 'cupy', 'cuda-bindings', or None."""
    lib = _nvrtc()
    return None if isinstance(lib, str) else lib.source


def unavailable_reason() -> str:
    lib = _nvrtc()
    return lib if isinstance(lib, str) else ""


def _lib():
    lib = _nvrtc()
    if isinstance(lib, str):
        raise RuntimeError(
            "NVRTC is not available (install it with `pip install -e .[test]`, or "
            f'`pip install "cuda-bindings<13" nvidia-cuda-nvrtc-cu12`): {lib}'
        )
    return lib


def version() -> tuple[int, int]:
    """NVRTC's (major, minor) version, e.g. (12, 9)."""
    return _lib().version()


def _toolkit_major(include: Path) -> int | None:
    m = (
        re.search(r"#define\s+CUDA_VERSION\s+(\d+)", (include / "cuda.h").read_text(errors="replace"))
        if (include / "cuda.h").is_file()
        else None
    )
    return int(m.group(1)) // 1000 if m else None


@functools.lru_cache(maxsize=1)
def header_dirs() -> tuple[str, ...]:
    """Folders of CUDA's own headers for NVRTC's major version (``<cooperative_groups.h>`` and the
    ``<cuda/std/...>`` it includes): NVIDIA's wheels ``nvidia-cuda-runtime-cu12`` and ``nvidia-cuda-cccl-cu12``
    (the test extra installs them), else a CUDA toolkit (``CUDA_PATH``, ``CUDA_HOME``, /usr/local/cuda).
    NVRTC has none built in; CuPy adds its toolkit's itself. Empty when there is none of the right version."""
    if not available():
        return ()
    major = version()[0]
    found = []
    try:
        import nvidia

        for root in map(Path, nvidia.__path__):
            # CUDA 12's wheels: nvidia/cuda_runtime/include + nvidia/cuda_cccl/include; 13's: nvidia/cu13/include
            for runtime, cccl in (
                (root / "cuda_runtime" / "include", root / "cuda_cccl" / "include"),
                (root / f"cu{major}" / "include", root / f"cu{major}" / "include" / "cccl"),
            ):
                if not found and _toolkit_major(runtime) == major:
                    found = [str(runtime)] + ([str(cccl)] if cccl.is_dir() else [])
    except ImportError:
        pass
    if not found:
        for base in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
            include = Path(base) / "include" if base else None
            if include is not None and _toolkit_major(include) == major:
                found = [str(include)] + ([str(include / "cccl")] if (include / "cccl").is_dir() else [])
                break
    return tuple(found)


def check_compile(
    code: str, name: str | None = None, *, arch: str = DEFAULT_ARCH, options=(), origin: SourceOrigin | None = None
) -> list[str]:
    """Compile ``code`` to PTX for ``arch`` and return its warnings; raise KernelCompileError on errors.

    ``name``, when given, must be a ``__global__`` function of ``code``. ``origin`` defaults to where the
    caller's source holds the string, so errors name that file and line.
    """
    lib = _lib()
    origin = origin or find_origin(code) or SourceOrigin("kernel string", 1)
    if name is not None:
        find_kernel(code, name)
    includes = [f"-I{d}" for d in header_dirs()]
    ok, log = lib.compile(full_source(code, origin), [f"-arch={arch}", *options, *includes])
    if not ok:
        raise compile_error(log, kernel=name, code=code, origin=origin, compiler="NVRTC") from None
    return warnings_of(log, origin)
