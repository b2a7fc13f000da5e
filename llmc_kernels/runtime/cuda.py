"""The cuda backend: ``cupy.RawKernel`` behind the package's validation and error messages.

The source CuPy compiles is the same as the compile-only check's (:func:`.nvrtc.full_source`: prelude, #line
directive, the learner's code), so NVRTC's messages carry the learner's cell and line. CuPy's exceptions are
turned into :mod:`llmc_kernels.errors` types without CuPy's traceback (``raise ... from None``).

A kernel that reads or writes out of bounds on a GPU does not fail at its launch: launches are asynchronous,
and the fault surfaces at the next synchronizing call, after which the CUDA context is dead for the rest of
the process. ``launch_options(check=True)`` synchronizes after each launch so the fault is reported at its
source, as a GPUFault that says the notebook kernel must be restarted.
"""

from __future__ import annotations

import io

from ..errors import GPUFault, KernelError
from .diagnostics import compile_error, warnings_of
from .nvrtc import full_source
from .signature import KernelSignature
from .source import SourceOrigin

# CUDA errors after which the context is unusable ("sticky"); driver and runtime share these codes
_STICKY = {
    700: "an illegal memory access (an index outside an array, or a bad pointer)",
    702: "the kernel ran too long and was stopped by the display driver's watchdog",
    710: "a device-side assert failed",
    714: "a hardware stack error (deep recursion or a corrupted stack)",
    715: "an illegal instruction",
    716: "a misaligned address (e.g. a float4 load from an address not a multiple of 16 bytes)",
    717: "an access to an invalid address space",
    718: "an invalid program counter",
    719: "an exception in the kernel (launch failure; a __trap() or an out-of-bounds shared-memory access)",
}
_OUT_OF_RESOURCES = 701
_BAD_CONFIG = {1, 9}  # invalid value / invalid configuration
_PTX_TOO_NEW = {218, 222}  # the driver is older than the NVRTC that produced the PTX

_context_lost: str | None = None  # set once a sticky error has been seen; every later launch refuses


def context_lost() -> str | None:
    """Why the CUDA context of this process is dead, or None while it is fine."""
    return _context_lost


def _restart_advice() -> str:
    return (
        "The CUDA context of this process is lost: no GPU work can run in it any more. Restart the notebook "
        "kernel (Kernel > Restart) and re-run the cells. To find the bad access, run the kernel on the cpu "
        "backend, which names the array and the index: `with llmc_kernels.runtime.use_backend('cpu'): ...` "
        "with NumPy arrays."
    )


def _ensure_alive(name: str) -> None:
    if _context_lost is not None:
        raise GPUFault(
            f"cannot launch: an earlier GPU fault ({_context_lost}) killed the CUDA context. " + _restart_advice(),
            kernel=name,
        )


def _status(e: Exception) -> int | None:
    status = getattr(e, "status", None)
    return int(status) if isinstance(status, int) else None


def cuda_error(e: Exception, name: str, when: str, check: bool) -> KernelError:
    """The package's error for a CUDA driver/runtime error raised by CuPy while ``when`` ('launching', ...)."""
    global _context_lost
    status = _status(e)
    if status in _STICKY:
        _context_lost = _STICKY[status]
        source = (
            "this kernel"
            if check
            else "this kernel or an earlier launch (launches are asynchronous: run with "
            "llmc_kernels.runtime.launch_options(check=True) to catch a fault at its source)"
        )
        return GPUFault(
            f"GPU fault while {when}: {_STICKY[status]} in {source} [{e}]. " + _restart_advice(), kernel=name
        )
    if status == _OUT_OF_RESOURCES:
        return KernelError(
            "too many resources requested for launch: the block needs more registers (or shared "
            "memory) than a multiprocessor has; use fewer threads per block",
            kernel=name,
        )
    if status in _BAD_CONFIG:
        return KernelError(f"the GPU refused the launch configuration (grid, block, shared memory): {e}", kernel=name)
    if status in _PTX_TOO_NEW:
        return KernelError(
            f"the GPU driver cannot load code from this CuPy's compiler ({e}): the driver is older "
            "than the CUDA version of the installed CuPy wheel. Update the driver, or install the "
            "CuPy wheel matching the driver's CUDA major version (cupy-cuda12x or cupy-cuda13x); "
            "`llmc doctor` says which",
            kernel=name,
        )
    return KernelError(f"CUDA error while {when}: {e}", kernel=name)


class CudaKernel:
    """One kernel compiled by CuPy for the current GPU; ``launch`` takes already-validated arguments."""

    def __init__(self, code: str, name: str, signature: KernelSignature, origin: SourceOrigin, options=()):
        self.code = code
        self.name = name
        self.signature = signature
        self.origin = origin
        self.options = tuple(options)
        self.warnings: list[str] = []
        self._kernel = None

    def compile(self) -> None:
        import cupy
        from cupy.cuda.compiler import CompileException

        _ensure_alive(self.name)
        kernel = cupy.RawKernel(full_source(self.code, self.origin), self.name, options=self.options)
        log = io.StringIO()  # NVRTC's log of a successful compile: the warnings (empty on a disk-cache hit)
        try:
            try:
                kernel.compile(log_stream=log)
            except TypeError:  # a CuPy without log_stream: compile anyway, without warnings
                kernel.compile()
        except CompileException as e:
            raise compile_error(
                str(e), kernel=self.name, code=self.code, origin=self.origin, compiler="NVRTC"
            ) from None
        except (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError) as e:
            raise cuda_error(e, self.name, "loading the compiled kernel", check=True) from None
        self.warnings = warnings_of(log.getvalue(), self.origin)
        self._kernel = kernel

    def launch(self, grid3, block3, args, shared_mem: int, check: bool = False, stream=None) -> None:
        import cupy

        _ensure_alive(self.name)
        if self._kernel is None:
            self.compile()
        errors = (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError)
        try:
            self._kernel(grid3, block3, args, shared_mem=shared_mem, stream=stream)
        except errors as e:
            raise cuda_error(e, self.name, "launching the kernel", check) from None
        if check:
            try:
                (stream or cupy.cuda.get_current_stream()).synchronize()
            except errors as e:
                raise cuda_error(e, self.name, "running the kernel", check) from None
