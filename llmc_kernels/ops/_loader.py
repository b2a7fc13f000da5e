"""Load the package's ``kernels/<op>.cu`` sources once and hand out one RawKernel per kernel name.

A RawKernel built with ``backend=None`` picks its backend from the arrays of each call, so the same object
serves NumPy arrays (cpu backend) and CuPy arrays (cuda backend), compiling lazily once per backend.
"""

from __future__ import annotations

import functools
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent.parent / "kernels"


@functools.cache
def source(filename: str) -> str:
    """The text of ``kernels/<filename>``."""
    return (KERNEL_DIR / filename).read_text()


@functools.cache
def kernel(filename: str, name: str, options: tuple = ()):
    """The package's kernel ``name`` from ``kernels/<filename>`` (refused inside a learner's check)."""
    from ..runtime import RawKernel
    from ..runtime.source import file_origin

    return RawKernel(
        source(filename), name, options=options, internal=True, origin=file_origin(str(KERNEL_DIR / filename))
    )
