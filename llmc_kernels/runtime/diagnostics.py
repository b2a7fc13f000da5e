"""Turn a compiler's log into a KernelCompileError that a learner can read.

Both compilers see the kernel behind a ``#line`` directive (see :mod:`.source`), so the line numbers in
their logs are already the learner's. NVRTC writes ``file(12): error: expected a ";"``; g++ writes
``file:12:5: error: expected ';' ...``. We keep the errors (and the first few warnings), quote the source
line, and drop everything else (include stacks, CuPy's Python frames).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import KernelCompileError
from .source import SourceOrigin

_NVRTC = re.compile(r"^(?P<file>.*?)\((?P<line>\d+)\): (?P<kind>error|warning|catastrophic error)"
                    r"(?: #[\w-]+)?: (?P<msg>.*)$")
_GCC = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<kind>fatal error|error|warning)"
                  r": (?P<msg>.*)$")


@dataclass(frozen=True)
class Diagnostic:
    kind: str          # 'error' or 'warning'
    file_line: int     # line as the compiler reported it (the learner's file/cell line)
    kernel_line: int   # line within the kernel string
    message: str


def parse_log(log: str, origin: SourceOrigin) -> list[Diagnostic]:
    """Every error/warning line of an NVRTC or g++ log that refers to the kernel source."""
    diags = []
    for raw in log.splitlines():
        m = _NVRTC.match(raw) or _GCC.match(raw)
        if not m:
            continue
        kind = "error" if "error" in m.group("kind") else "warning"
        line = int(m.group("line"))
        diags.append(Diagnostic(kind, line, origin.kernel_line(line), m.group("msg").strip()))
    return diags


def warnings_of(log: str, origin: SourceOrigin) -> list[str]:
    """The warnings of a successful compile, one line each, for ``result.report()``-style display."""
    return [f"{origin.describe(d.kernel_line)}: warning: {d.message}"
            for d in parse_log(log, origin) if d.kind == "warning"]


def compile_error(log: str, *, kernel: str, code: str, origin: SourceOrigin, compiler: str) -> KernelCompileError:
    """A KernelCompileError for a failed compile: the first error's location, then each error with its line."""
    code_lines = code.split("\n")
    errors = [d for d in parse_log(log, origin) if d.kind == "error"]
    if not errors:   # a log we could not parse: show it, trimmed, rather than nothing
        tail = "\n".join(log.strip().splitlines()[-15:])
        return KernelCompileError(f"{compiler} failed to compile the kernel:\n{tail}", kernel=kernel,
                                  location=origin.display)
    parts = []
    for d in errors[:5]:
        text = code_lines[d.kernel_line - 1] if 1 <= d.kernel_line <= len(code_lines) else ""
        parts.append(f"  {origin.describe(d.kernel_line)} (kernel line {d.kernel_line}): {d.message}\n"
                     f"      {d.file_line:>4} | {text.rstrip()}")
    more = f"\n  ... and {len(errors) - 5} more errors" if len(errors) > 5 else ""
    first = errors[0]
    return KernelCompileError(f"{compiler} compile error{'s' if len(errors) > 1 else ''}:\n" + "\n".join(parts)
                              + more, kernel=kernel, location=origin.describe(first.kernel_line),
                              kernel_line=first.kernel_line)
