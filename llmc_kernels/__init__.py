"""GPT-2 from the kernels up: the course package (kernels, runtime, references, checks, model, trainer)."""
from .errors import (CheckFailed, ForbiddenCall, GPUFault, KernelArgumentError, KernelCompileError,
                     KernelDeadlock, KernelError, KernelOutOfBounds, KernelRace, KernelTimeout, KernelTrap)

__version__ = "0.1.0"

__all__ = ["__version__", "KernelError", "KernelCompileError", "KernelArgumentError", "KernelOutOfBounds",
           "KernelDeadlock", "KernelRace", "KernelTimeout", "KernelTrap", "GPUFault", "ForbiddenCall", "CheckFailed"]
