"""Turn the runtime's error record into the KernelError a learner reads.

The runtime knows addresses, byte offsets and lines; Python knows what the arguments are (their names,
shapes, dtypes), so the wording is done here: "index 1024 of argument 0 'float* out' is past its end (it
has 1024 elements: shape (4, 256), float32)".
"""

from __future__ import annotations

import re

from ...errors import KernelDeadlock, KernelError, KernelOutOfBounds, KernelTimeout, KernelTrap
from . import launch as L


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Context:
    """What a message may mention about the launch that failed."""

    def __init__(self, kernel, origin, code, signature, args, grid, block, shared_mem, timeout, schedule):
        self.kernel, self.origin, self.code, self.signature = kernel, origin, code, signature
        self.args, self.grid, self.block, self.shared_mem = args, grid, block, shared_mem
        self.timeout, self.schedule = timeout, schedule
        self.nlines = code.count("\n") + 1

    def where(self, line: int) -> dict:
        """KernelError's location fields for a file line reported by the compiler's #line mapping."""
        k = self.origin.kernel_line(line) if line > 0 else 0
        if 1 <= k <= self.nlines:
            return {"location": self.origin.describe(k), "kernel_line": k}
        return {"location": self.origin.display}

    def lines(self, text: str) -> str:
        """'line 14' in the runtime's words -> 'line 14 (kernel line 3)' when they differ."""

        def sub(m):
            line = int(m.group(1))
            k = self.origin.kernel_line(line)
            return m.group(0) if k == line or not 1 <= k <= self.nlines else f"line {line} (kernel line {k})"

        return re.sub(r"\bline (\d+)", sub, text)


def _oob_argument(e: L.ErrorRecord, ctx: Context):
    p = ctx.signature.params[e.region]
    arr = ctx.args[e.region]
    verb = "read" if e.is_const else "access"
    buffer = f"argument {p.position} '{p.name}'"
    if arr is None:
        does = "reads" if e.is_const else "accesses"
        return (
            f"{p.describe()} is a null pointer (None was passed) and the kernel {does} memory through it",
            buffer,
            None,
        )
    elem = p.dtype.itemsize * p.components if p.dtype is not None else arr.itemsize
    count = arr.nbytes // elem
    unit = p.ctype if p.components > 1 else str(arr.dtype)
    has = f"it has {_plural(count, 'element')} of {unit}" + (
        f" (shape {tuple(arr.shape)})" if arr.ndim > 1 or p.components > 1 else ""
    )
    off, size = e.offset, e.size
    if size == elem and off % elem == 0:
        index = off // elem
        if index < 0:
            side = f"{-index} before its start"
        else:
            side = f"{index - count + 1} past its end" if index - count + 1 > 1 else "just past its end"
        valid = f"valid indices are 0..{count - 1}" if count else "the array is empty"
        return (f"out-of-bounds {verb}: index {index} of {p.describe()} is {side}: {has}, {valid}", buffer, index)
    # a different type than the parameter's (a float4 load from a float array), or an odd offset
    index = off // size if size else off
    first, last = off // arr.itemsize, (off + size - 1) // arr.itemsize
    return (
        f"out-of-bounds {verb}: a {size}-byte access at byte offset {off} of {p.describe()} (its {arr.dtype} "
        f"elements {first}..{last}) reaches outside it: {has} ({arr.nbytes} bytes)",
        buffer,
        index,
    )


def _oob(e: L.ErrorRecord, ctx: Context):
    if e.region >= 0 and e.region < len(ctx.signature.params):
        return _oob_argument(e, ctx)
    size, off = e.size, e.offset
    index = off // size if size else off
    if e.region == L.R_DYN_SHARED:
        have = ctx.shared_mem
        hint = (
            " The launch passed no dynamic shared memory: give its size in bytes as shared_mem=..." if have == 0 else ""
        )
        return (
            f"out-of-bounds access of dynamic shared memory (extern __shared__): index {index} of a "
            f"{size}-byte type touches bytes {off}..{off + size - 1}, but the launch has shared_mem={have} "
            f"bytes (valid indices 0..{have // size - 1 if size else 0}).{hint}",
            "extern __shared__",
            index,
        )
    if e.region == L.R_STATIC_SHARED:
        name = e.text.decode(errors="replace") or "?"
        count = e.extent // size if size else e.extent
        return (
            f"out-of-bounds access of __shared__ array '{name}' through a pointer: index {index} of a "
            f"{size}-byte type, but the array holds {count} (valid indices 0..{count - 1})",
            f"__shared__ {name}",
            index,
        )
    if e.region == L.R_NULL:
        return ("dereferenced a null pointer (a pointer variable that was never set, or nullptr)", None, None)
    return (f"invalid access at address {e.addr:#x}", None, None)


def _bad_address(e: L.ErrorRecord, ctx: Context) -> str:
    """Name the argument an invalid raw address lies next to, if any (a raw pointer that ran off its array)."""
    for p, a in zip(ctx.signature.params, ctx.args):
        if not p.pointer or a is None or a.nbytes == 0:
            continue
        lo, hi = a.ctypes.data, a.ctypes.data + a.nbytes
        if hi <= e.addr < hi + (1 << 20):
            return f" ({e.addr - hi} bytes past the end of {p.describe()})"
        if lo - (1 << 20) <= e.addr < lo:
            return f" ({lo - e.addr} bytes before the start of {p.describe()})"
    return ""


def error_from_record(e: L.ErrorRecord, ctx: Context) -> BaseException:
    text = ctx.lines(e.text.decode(errors="replace"))
    fields = dict(kernel=ctx.kernel, **ctx.where(e.line))
    if e.has_thread:
        fields.update(thread=tuple(e.thread), block=tuple(e.block))
    if e.kind == L.E_OOB:
        message, buffer, index = _oob(e, ctx)
        return KernelOutOfBounds(message, buffer=buffer, index=index, **fields)
    if e.kind == L.E_OOB_ARRAY:
        n = e.extent
        valid = f" (valid indices 0..{n - 1})" if n > 0 else ""
        return KernelOutOfBounds(
            f"out-of-bounds index {e.index} of {text}{valid}", buffer=text, index=e.index, **fields
        )
    if e.kind == L.E_DEADLOCK:
        return KernelDeadlock(text, **fields)
    if e.kind == L.E_TIMEOUT:
        running = ""
        if e.has_thread:
            running = (
                f"; blockIdx ({e.block[0]},{e.block[1]},{e.block[2]}), threadIdx "
                f"({e.thread[0]},{e.thread[1]},{e.thread[2]}) was running"
            )
        return KernelTimeout(
            f"the launch did not finish within {ctx.timeout:g} s and was stopped ({e.blocks_done} of "
            f"{e.blocks_total} blocks had finished{running}). Look for a loop that never ends (a loop "
            "variable that never changes, or a wait for another thread: on the cpu backend a thread runs until it "
            "reaches a barrier). If the work is real, raise the limit: launch_options(timeout=...) or "
            "LLMC_CPU_TIMEOUT.",
            **fields,
        )
    if e.kind == L.E_TRAP:
        if e.sub == L.T_BAD_ADDRESS:
            text += _bad_address(e, ctx)
        return KernelTrap(text, **fields)
    if e.kind == L.E_RACE:
        from . import races

        return races.error(e.race, ctx)
    if e.kind == L.E_INTERRUPT:
        return KeyboardInterrupt(f"interrupted while kernel '{ctx.kernel}' ran on the cpu backend")
    return KernelError(f"internal error of the cpu backend: {text}", **fields)
