"""Every error a learner can cause, in one place.

All of them derive from :class:`KernelError`, so a notebook can catch one type. Each carries the fields it
knows (kernel name, the learner's source line, thread and block, buffer and index) and formats them into a
message a learner can act on. ``CheckFailed`` is raised by :mod:`llmc_kernels.check` when a result is wrong.
"""

from __future__ import annotations


class KernelError(Exception):
    """A learner-caused failure of a kernel: compiling, launching or running it.

    Fields (``None`` where unknown): ``kernel`` (its name), ``location`` (``"cell In[5], line 12"`` or
    ``"layernorm.cu:40"``), ``kernel_line`` (line within the kernel string), ``thread`` and ``block``
    (``(x, y, z)`` tuples), ``buffer`` (argument name/position), ``index`` (element index).
    """

    def __init__(
        self,
        message: str,
        *,
        kernel: str | None = None,
        location: str | None = None,
        kernel_line: int | None = None,
        thread: tuple | None = None,
        block: tuple | None = None,
        buffer: str | None = None,
        index: int | None = None,
    ):
        self.kernel = kernel
        self.location = location
        self.kernel_line = kernel_line
        self.thread = thread
        self.block = block
        self.buffer = buffer
        self.index = index
        self.detail = message
        super().__init__(self._format(message))

    def _format(self, message: str) -> str:
        where = []
        if self.kernel:
            where.append(f"kernel '{self.kernel}'")
        if self.location:
            loc = self.location
            if self.kernel_line is not None:
                loc += f" (kernel line {self.kernel_line})"
            where.append(loc)
        elif self.kernel_line is not None:
            where.append(f"kernel line {self.kernel_line}")
        if self.block is not None:
            where.append("blockIdx=({},{},{})".format(*self.block))
        if self.thread is not None:
            where.append("threadIdx=({},{},{})".format(*self.thread))
        head = ", ".join(where)
        return f"{head}: {message}" if head else message


class KernelCompileError(KernelError):
    """The kernel source did not compile (NVRTC on the GPU, the C++ compiler on the CPU backend)."""


class KernelArgumentError(KernelError, TypeError):
    """Wrong launch arguments: count, dtype, a Python float for a ``float`` parameter, grid/block shape."""


class KernelOutOfBounds(KernelError, IndexError):
    """A read or write outside a kernel argument or outside dynamic shared memory (CPU backend)."""


class KernelDeadlock(KernelError):
    """A barrier or warp operation that not every thread of its block (or warp) reached."""


class KernelTimeout(KernelError):
    """A launch ran past its time limit (an infinite loop, or far too much work) and was stopped."""


class KernelTrap(KernelError):
    """A fault inside the kernel: integer division by zero, stack overflow, a bad pointer, ``__trap()``."""


class KernelRace(KernelError):
    """A data race found by the CPU backend: two threads touch the same memory, at least one writing, and
    nothing (a barrier, a warp synchronisation, atomics on both sides) orders them. Also a read of
    ``__shared__`` memory that no thread of the block has written.

    Besides :class:`KernelError`'s fields (``thread``/``block``/``kernel_line`` are those of the first
    access, ``buffer`` is the argument's or ``__shared__`` array's name, ``index`` the element): ``kind``
    (``"write-write"``, ``"read-after-write"``, ``"write-after-read"`` or ``"uninitialised-read"``),
    ``accesses`` (the two :class:`RaceAccess`, one for an uninitialised read), ``pairs`` (how many racing
    pairs the detector found in the launch) and ``hint`` (what to change).
    """

    def __init__(self, message: str, *, kind: str, accesses: tuple = (), pairs: int = 1, hint: str = "", **fields):
        self.kind = kind
        self.accesses = tuple(accesses)
        self.pairs = pairs
        self.hint = hint
        super().__init__(message, **fields)

    @property
    def lines(self) -> tuple:
        """The learner's lines (within the kernel string) of the accesses."""
        return tuple(a.line for a in self.accesses)


class RaceAccess:
    """One side of a race: who (``block``, ``thread`` as (x, y, z), ``warp``, ``lane``), where (``line``
    within the kernel string, ``location``) and what (``op``: "read", "write", "update" (+=, ++), "atomic")."""

    __slots__ = ("block", "thread", "warp", "lane", "line", "location", "op")

    def __init__(self, block, thread, warp, lane, line, location, op):
        self.block, self.thread, self.warp, self.lane = tuple(block), tuple(thread), warp, lane
        self.line, self.location, self.op = line, location, op

    def __repr__(self):
        return (
            f"RaceAccess(block={self.block}, thread={self.thread}, warp={self.warp}, lane={self.lane}, "
            f"line={self.line}, op={self.op!r})"
        )


class GPUFault(KernelError):
    """A fault that reached the GPU: the CUDA context is dead and the notebook kernel must be restarted."""


class ForbiddenCall(KernelError):
    """During a check, the learner's function called the package's own kernels, ``ops`` or ``reference``."""


class CheckFailed(AssertionError):
    """A check found a wrong result; the message says which tensor, where, and by how much."""
