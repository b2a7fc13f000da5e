"""Where a kernel string came from, so errors can point at the learner's cell and line.

A kernel string is usually a triple-quoted literal in a notebook cell or a .py file. We find that literal in
the caller's source (``linecache`` also holds IPython cells) and remember the line where the string's first
line sits. Compilers are then told about it with a ``#line`` directive, so their messages already carry the
learner's line, on NVRTC and on g++ alike.
"""

from __future__ import annotations

import linecache
import os
import re
import sys
from dataclasses import dataclass

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class SourceOrigin:
    """``display`` names the file or cell ("cell In[5]", "solutions/02.py", "layernorm.cu"); line 1 of the
    kernel string is line ``first_line`` there."""

    display: str
    first_line: int = 1

    def describe(self, kernel_line: int) -> str:
        """'cell In[5], line 12' for kernel line 3 of a string starting on line 10."""
        return f"{self.display}, line {self.first_line + kernel_line - 1}"

    def kernel_line(self, file_line: int) -> int:
        return file_line - self.first_line + 1

    def line_directive(self) -> str:
        safe = re.sub(r'["\\\n]', "_", self.display)
        return f'#line {self.first_line} "{safe}"\n'


def _cell_name(filename: str) -> str | None:
    """'cell In[7]' for an IPython cell's pseudo-file, else None."""
    ip = sys.modules.get("IPython")
    if ip is None:
        return None
    try:
        shell = ip.get_ipython()
        count = shell.compile._filename_map.get(filename) if shell is not None else None
    except AttributeError:
        return None
    if count is None:
        return None
    return f"cell In[{count}]"


def _display_name(filename: str) -> str:
    cell = _cell_name(filename)
    if cell:
        return cell
    if filename.startswith("<") or not os.path.exists(filename):
        return filename.strip("<>")
    rel = os.path.relpath(filename)
    return rel if not rel.startswith("..") else filename


def locate_in_file(code: str, filename: str) -> int | None:
    """The 1-based line of ``filename`` that holds line 1 of ``code`` (a literal in that file), or None."""
    file_lines = [l.rstrip("\r\n") for l in linecache.getlines(filename)]
    code_lines = code.split("\n")
    if not file_lines or not code_lines:
        return None
    body = code_lines[1:]
    while body and body[-1].strip() == "":
        body.pop()  # the closing quotes may sit after trailing spaces
    first = code_lines[0]
    for i, line in enumerate(file_lines):
        if not line.endswith(first):
            continue
        if file_lines[i + 1 : i + 1 + len(body)] == body:
            return i + 1
    return None


def find_origin(code: str, skip_package: bool = True) -> SourceOrigin | None:
    """Look up the call stack for the first frame outside this package and find ``code`` in its source."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (skip_package and os.path.abspath(filename).startswith(_PACKAGE_DIR)):
            line = locate_in_file(code, filename)
            if line is not None:
                return SourceOrigin(_display_name(filename), line)
            # keep climbing: the string may have been defined one frame further up (a helper function)
        frame = frame.f_back
    return None


def file_origin(path: str) -> SourceOrigin:
    """Origin of a whole .cu file: its base name, line 1."""
    return SourceOrigin(os.path.basename(path), 1)
