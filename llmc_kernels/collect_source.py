"""Turn a learner's exercise cells into the body of a Python function, for ``llmc collect``.

Each op of a collected module is the learner's cells wrapped in a function of its own, so that the names one
chapter defines (a ``TILE``, a helper called ``grid``) cannot change another chapter's functions, which read
them at call time. Wrapping indents the code, but never the lines *inside* a multi-line string: the kernel
strings stay byte for byte what the learner wrote (the same compile cache, the same line numbers in errors).

IPython magics (``%time``, ``!nvidia-smi``) have no meaning in a module: their lines become ``pass``.
"""

from __future__ import annotations

import ast
import builtins
import io
import re
import tokenize

_MAGIC = re.compile(r"^(\s*)[%!]")


def _string_continuation_lines(source: str) -> set[int]:
    """1-based numbers of the lines that start inside a multi-line string (they must not be re-indented)."""
    inside = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            (start, _), (end, _) = tok.start, tok.end
            if end > start and tok.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.COMMENT):
                inside.update(range(start + 1, end + 1))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # the compiler will name the problem when the module is imported
    return inside


def without_magics(source: str) -> str:
    """``source`` with each IPython magic line (outside strings) replaced by ``pass``."""
    lines = source.split("\n")
    inside = _string_continuation_lines(source)
    return "\n".join(
        _MAGIC.sub(r"\1pass  # an IPython magic was here: ", line, count=1)
        if (i not in inside and _MAGIC.match(line))
        else line
        for i, line in enumerate(lines, 1)
    )


def indented(source: str, prefix: str = "    ") -> str:
    """``source`` indented by ``prefix``, except the lines inside multi-line strings."""
    source = without_magics(source)
    inside = _string_continuation_lines(source)
    return "\n".join(
        line if (i in inside or not line.strip()) else prefix + line for i, line in enumerate(source.split("\n"), 1)
    )


def _bound_and_loaded(tree: ast.AST) -> tuple[set[str], set[str]]:
    bound, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
    return bound, loaded


def free_names(sources: list[str]) -> set[str]:
    """Names the cells read but never define (nor Python's built-ins): what they need from elsewhere."""
    bound, loaded = set(), set()
    for source in sources:
        try:
            b, l = _bound_and_loaded(ast.parse(without_magics(source)))
        except SyntaxError:
            continue
        bound |= b
        loaded |= l
    return loaded - bound - set(dir(builtins))


def imports_for(names: set[str], cells: list[str]) -> tuple[list[str], set[str]]:
    """The top-level import statements of ``cells`` that bind some of ``names`` (cut down to those names),
    and the names no such import binds."""
    found, left = [], set(names)
    for source in cells:
        try:
            tree = ast.parse(without_magics(source))
        except SyntaxError:
            continue
        for node in tree.body:
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            wanted = [a for a in node.names if (a.asname or a.name).split(".")[0] in left]
            if not wanted:
                continue
            cut = (
                ast.Import(names=wanted)
                if isinstance(node, ast.Import)
                else ast.ImportFrom(module=node.module, names=wanted, level=node.level)
            )
            found.append(ast.unparse(cut))
            left -= {(a.asname or a.name).split(".")[0] for a in wanted}
    return found, left
