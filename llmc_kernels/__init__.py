"""GPT-2 from the kernels up: the course package (kernels, runtime, references, checks, model, trainer)."""
from .errors import (CheckFailed, ForbiddenCall, GPUFault, KernelArgumentError, KernelCompileError,
                     KernelDeadlock, KernelError, KernelOutOfBounds, KernelTimeout, KernelTrap)

__version__ = "0.1.0"

__all__ = ["__version__", "KernelError", "KernelCompileError", "KernelArgumentError", "KernelOutOfBounds",
           "KernelDeadlock", "KernelTimeout", "KernelTrap", "GPUFault", "ForbiddenCall", "CheckFailed"]
