"""Turn a compiler's log into a KernelCompileError that a learner can read.

Both compilers see the kernel behind a ``#line`` directive (see :mod:`.source`), so the line numbers in
their logs are already the learner's. NVRTC writes ``file(12): error: expected a ";"``; g++ writes
``file:12:5: error: expected ';' ...``. We keep the errors (and the first few warnings), quote the source
line, and drop everything else (include stacks, caret lines, CuPy's Python frames).

A missing ``;`` is reported by NVRTC (and often by g++) on the line *after* the one that lacks it, where the
compiler first sees a token that cannot continue the statement; we then also name the previous line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import KernelCompileError
from .signature import strip_comments
from .source import SourceOrigin

_NVRTC = re.compile(
    r"^(?P<file>.*?)\((?P<line>\d+)\): (?P<kind>error|warning|catastrophic error)"
    r"(?: #[\w-]+)?: (?P<msg>.*)$"
)
_GCC = re.compile(
    r"^(?P<file>[^:\n]+):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<kind>fatal error|error|warning)"
    r": (?P<msg>.*)$"
)
# NVRTC: expected a ";"   g++: expected ';' before 'x' / expected ‘,’ or ‘;’ before ‘x’
_EXPECTED_SEMI = re.compile(r"""expected (?:a )?(?:["'‘],["'’] or )?["'‘];["'’]""")
_CONTROL = re.compile(r"(?:if|for|while|switch|else|do|case|default)\b")


@dataclass(frozen=True)
class Diagnostic:
    kind: str  # 'error' or 'warning'
    file_line: int  # line as the compiler reported it (the learner's file/cell line)
    kernel_line: int  # line within the kernel string
    message: str
    file: str = ""  # the file the compiler named; the learner's code is the origin's #line name


def _origin_file(origin: SourceOrigin) -> str:
    """The file name compilers use for the learner's lines (as written into the #line directive)."""
    m = re.match(r'#line \d+ "(.*)"', origin.line_directive())
    return m.group(1) if m else origin.display


def parse_log(log: str, origin: SourceOrigin) -> list[Diagnostic]:
    """Every error/warning line of an NVRTC or g++ log."""
    diags = []
    for raw in log.splitlines():
        m = _NVRTC.match(raw) or _GCC.match(raw)
        if not m:
            continue
        kind = "error" if "error" in m.group("kind") else "warning"
        line = int(m.group("line"))
        diags.append(Diagnostic(kind, line, origin.kernel_line(line), m.group("msg").strip(), m.group("file").strip()))
    return diags


def _in_learner_code(d: Diagnostic, origin: SourceOrigin) -> bool:
    return not d.file or d.file == _origin_file(origin)


def warnings_of(log: str, origin: SourceOrigin) -> list[str]:
    """The warnings of a successful compile, one line each, for ``result.report()``-style display."""
    return [
        f"{origin.describe(d.kernel_line)}: warning: {d.message}"
        if _in_learner_code(d, origin)
        else f"{d.file}({d.file_line}): warning: {d.message}"
        for d in parse_log(log, origin)
        if d.kind == "warning"
    ]


def missing_semicolon_line(code: str, kernel_line: int) -> int | None:
    """For an "expected ';'" error on ``kernel_line``: the previous code line if it looks unterminated."""
    lines = strip_comments(code).split("\n")
    i = kernel_line - 2
    while i >= 0 and not lines[i].strip():
        i -= 1
    if i < 0 or i >= len(lines):
        return None
    text = lines[i].strip()
    # a statement can end in a name, a number, ')', ']', a quote, '++'/'--'; not in ; { } , ( : or an operator
    if text.startswith("#") or not re.search(r"""[\w)\]"']$|\+\+$|--$""", text) or _CONTROL.match(text):
        return None
    return i + 1


def compile_error(log: str, *, kernel: str, code: str, origin: SourceOrigin, compiler: str) -> KernelCompileError:
    """A KernelCompileError for a failed compile: the first error's location, then each error with its line."""
    code_lines = code.split("\n")

    def quote(kernel_line: int, file_line: int) -> str:
        text = code_lines[kernel_line - 1] if 1 <= kernel_line <= len(code_lines) else ""
        return f"      {file_line:>4} | {text.rstrip()}"

    diags = [d for d in parse_log(log, origin) if d.kind == "error"]
    errors = [d for d in diags if _in_learner_code(d, origin)]
    if not errors:
        if diags:  # errors only outside the learner's code (a header): show them as they are
            lines = "\n".join(f"  {d.file}({d.file_line}): {d.message}" for d in diags[:5])
            return KernelCompileError(
                f"{compiler} compile error outside the kernel source:\n{lines}", kernel=kernel, location=origin.display
            )
        # a log we could not parse: show it, trimmed, rather than nothing
        tail = "\n".join(log.strip().splitlines()[-15:])
        return KernelCompileError(
            f"{compiler} failed to compile the kernel:\n{tail}", kernel=kernel, location=origin.display
        )
    parts = []
    for d in errors[:5]:
        parts.append(
            f"  {origin.describe(d.kernel_line)} (kernel line {d.kernel_line}): {d.message}\n"
            + quote(d.kernel_line, d.file_line)
        )
        prev = missing_semicolon_line(code, d.kernel_line) if _EXPECTED_SEMI.search(d.message) else None
        if prev is not None:
            file_line = d.file_line - (d.kernel_line - prev)
            parts.append(
                f"    hint: a ';' is probably missing at the end of {origin.describe(prev)} "
                f"(kernel line {prev}):\n" + quote(prev, file_line)
            )
    more = f"\n  ... and {len(errors) - 5} more errors" if len(errors) > 5 else ""
    first = errors[0]
    return KernelCompileError(
        f"{compiler} compile error{'s' if len(errors) > 1 else ''}:\n" + "\n".join(parts) + more,
        kernel=kernel,
        location=origin.describe(first.kernel_line),
        kernel_line=first.kernel_line,
    )
