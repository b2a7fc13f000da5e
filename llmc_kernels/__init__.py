"""GPT-2 from the kernels up: the course package (kernels, runtime, references, checks, model, trainer)."""

from .errors import (
    CheckFailed,
    ForbiddenCall,
    GPUFault,
    KernelArgumentError,
    KernelCompileError,
    KernelDeadlock,
    KernelError,
    KernelOutOfBounds,
    KernelRace,
    KernelTimeout,
    KernelTrap,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "KernelError",
    "KernelCompileError",
    "KernelArgumentError",
    "KernelOutOfBounds",
    "KernelDeadlock",
    "KernelRace",
    "KernelTimeout",
    "KernelTrap",
    "GPUFault",
    "ForbiddenCall",
    "CheckFailed",
    "profile",
]


def __getattr__(name):
    # profile pulls in NumPy: imported on first use, so `llmc` and `import llmc_kernels` stay light
    if name == "profile":
        from .profiling import profile

        return profile
    raise AttributeError(f"module 'llmc_kernels' has no attribute {name!r}")
