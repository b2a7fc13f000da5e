"""CUDA C kernel source -> C++ for the CPU backend, line for line.

The learner's string is rewritten token by token, never adding or removing a newline, and compiled behind
a ``#line`` directive, so compiler messages and runtime errors name the learner's own lines. What changes:

- pointer types become checked pointers: ``const float* __restrict__ inp`` -> ``llmc::ptr<const float> inp``
  (parameters, locals, casts, template arguments, struct members, ``float *a, *b;``);
- ``*p`` becomes ``(p)[0]`` and ``p->x`` becomes ``p[0].x``, so every access goes through the checked
  ``operator[]``, which learns the line from its argument;
- ``__shared__`` declarations become per-block storage (``llmc::shared_array``) and ``extern __shared__``
  the launch's dynamic shared memory (a checked pointer);
- ``reinterpret_cast``/``const_cast`` are renamed to templates that understand checked pointers;
- ``#pragma unroll`` and the CUDA/C headers the prelude already provides are blanked; an ``#include`` of
  ``<cooperative_groups.h>`` (or its ``reduce.h``/``scan.h``) becomes ``#include "llmc_cg.h"``, one of
  ``<cuda_fp16.h>``/``<cuda_bf16.h>`` ``#include "llmc_fp16.h"`` (half and bfloat16).

Everything else (keywords, intrinsics, math, atomics, warp functions) is defined by ``include/cuda_cpu.h``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import scopes, typescan
from .tokens import Token, render, tokenize

SYNC_FUNCTIONS = frozenset(
    {
        "__syncthreads",
        "__syncthreads_count",
        "__syncthreads_and",
        "__syncthreads_or",
        "__syncwarp",
        "__shfl_sync",
        "__shfl_up_sync",
        "__shfl_down_sync",
        "__shfl_xor_sync",
        "__ballot_sync",
        "__any_sync",
        "__all_sync",
        "__activemask",
    }
)

# cooperative groups synchronise and shuffle inside llmc_cg.h, where the scan for these names cannot look
NEEDS_FIBERS = SYNC_FUNCTIONS | {"cooperative_groups"}

# headers whose content the prelude provides (NVRTC needs none of them, but learners write them)
PROVIDED_HEADERS = frozenset(
    {
        "cuda_runtime.h",
        "cuda.h",
        "cuda_runtime_api.h",
        "device_launch_parameters.h",
        "device_functions.h",
        "vector_types.h",
        "stdio.h",
        "cstdio",
        "math.h",
        "cmath",
        "float.h",
        "cfloat",
        "stdint.h",
        "cstdint",
        "limits.h",
        "climits",
        "assert.h",
        "cassert",
        "string.h",
        "cstring",
        "stddef.h",
        "cstddef",
        "stdlib.h",
        "cstdlib",
        "sm_30_intrinsics.h",
        "sm_32_intrinsics.h",
        "math_functions.h",
    }
)

# headers we provide ourselves: the learner's #include names our file instead (same line)
MAPPED_HEADERS = {
    "cooperative_groups.h": "llmc_cg.h",
    "cooperative_groups/reduce.h": "llmc_cg.h",
    "cooperative_groups/scan.h": "llmc_cg.h",
    "cuda_fp16.h": "llmc_fp16.h",
    "cuda_bf16.h": "llmc_fp16.h",
}

UNARY_PREV = frozenset(
    {
        "(",
        "[",
        "{",
        "}",
        ";",
        ",",
        "=",
        "+=",
        "-=",
        "*=",
        "/=",
        "%=",
        "&=",
        "|=",
        "^=",
        "<<=",
        ">>=",
        "?",
        ":",
        "!",
        "~",
        "&&",
        "||",
        "==",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "+",
        "-",
        "*",
        "/",
        "%",
        "&",
        "|",
        "^",
        "<<",
        ">>",
        "return",
        "case",
        "sizeof",
        "else",
        "do",
        "throw",
        "#",
        "##",
    }
)
PREFIX_OPS = frozenset({"*", "&", "-", "+", "!", "~", "++", "--"})
CONTROL = frozenset({"if", "while", "for", "switch"})
CASTS = frozenset({"static_cast", "reinterpret_cast", "const_cast", "dynamic_cast"})


@dataclass
class Translation:
    text: str  # the C++ the compiler sees (prelude, #line, learner's code, entry points)
    uses_sync: bool  # barriers or warp operations: each thread needs its own fiber


class Seq:
    """The significant tokens of one region (the code, or one #define body), with parsing helpers."""

    def __init__(
        self,
        tokens: list[Token],
        idx: list[int],
        types: typescan.Types,
        scoped: bool = True,
        macro_params: frozenset[str] = frozenset(),
        hidden: frozenset[str] = frozenset(),
    ):
        self.toks = tokens
        self.idx = idx
        self.types = types
        self.consumed: set[int] = set()  # positions whose token a rewrite already handled
        self._texts = [tokens[i].text for i in idx]  # the original texts: the parser's hot path
        self._kinds = [tokens[i].kind for i in idx]
        self._match = self._brackets()
        self.spans = scopes.analyze(self, types, scoped, macro_params, hidden)

    def __len__(self):
        return len(self.idx)

    def tok(self, i: int) -> Token:
        return self.toks[self.idx[i]]

    def t(self, i: int) -> str:
        return self._texts[i] if 0 <= i < len(self._texts) else ""

    def kind(self, i: int) -> str:
        return self._kinds[i] if 0 <= i < len(self._kinds) else ""

    def set(self, i: int, text: str) -> None:
        self.tok(i).out = text

    def _brackets(self) -> dict[int, int]:
        pairs, stack = {}, []
        for i in range(len(self.idx)):
            x = self.t(i)
            if x in ("(", "[", "{"):
                stack.append(i)
            elif x in (")", "]", "}"):
                while stack:
                    j = stack.pop()
                    if "([{".index(self.t(j)) == ")]}".index(x):
                        pairs[j] = i
                        pairs[i] = j
                        break
        return pairs

    def match(self, i: int) -> int | None:
        return self._match.get(i)

    # -- classification (by scopes.analyze: a name is a type where its declaration in sight says so)
    def is_typeword(self, i: int) -> bool:
        """The name that makes a type span a type (`float`, the `value_type` of `typename T::value_type`)."""
        return 0 <= i < len(self.idx) and self.spans.typeword[i]

    def is_typeish(self, i: int) -> bool:
        """Part of a type span: a type word, a cv-qualifier, `struct`, a qualifier, template arguments."""
        return 0 <= i < len(self.idx) and self.spans.typeish[i]

    def type_start(self, end: int) -> int | None:
        """The first position of the type span that ends at ``end``, or None."""
        return self.spans.start_of.get(end)

    def type_group(self, a: int, b: int) -> bool:
        """Tokens a..b (inclusive) spell a type (a cast's parentheses, a template argument)."""
        while b >= a and (self.t(b) in ("*", "&", "&&") or self.t(b) in typescan.CV):
            b -= 1
        return b >= a and self.type_start(b) == a


def _blank_directives(tokens: list[Token]) -> None:
    """#pragma unroll and #include of headers the prelude provides: keep the line, drop the text."""
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.directive in ("pragma", "include") and tok.text == "#":
            j = i
            words = []
            while j < len(tokens) and tokens[j].kind != "nl":
                if tokens[j].code:
                    words.append(tokens[j].text)
                j += 1
            drop, name = False, ""
            if tok.directive == "pragma":
                drop = len(words) > 2 and words[2] == "unroll"
            else:
                name = "".join(words[2:]).strip('<>"')
                drop = name in PROVIDED_HEADERS or name in MAPPED_HEADERS
            if drop:  # keep the newlines of backslash continuations: the lines below must not move
                for k in range(i, j):
                    tokens[k].out = "\n" * tokens[k].text.count("\n")
                if name in MAPPED_HEADERS:
                    tok.out = f'#include "{MAPPED_HEADERS[name]}"'
            i = j
        i += 1


def _regions(tokens: list[Token]) -> tuple[list[list[int]], list[frozenset[str]]]:
    """The code (outside directives) and the body of each #define, as lists of significant token indices;
    and each region's macro parameter names (none for the code)."""
    code = [i for i, t in enumerate(tokens) if t.code and t.directive is None]
    regions, params = [code], [frozenset()]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.directive == "define" and tok.text == "#":
            sig = []
            j = i
            while j < len(tokens) and tokens[j].kind != "nl":
                if tokens[j].code:
                    sig.append(j)
                j += 1
            # '#', 'define', NAME, then '(' params ')' only when the '(' touches the name
            body, names = sig[3:], frozenset()
            if len(sig) > 3 and tokens[sig[3]].text == "(" and sig[3] == sig[2] + 1:
                depth, k = 0, 3
                for k in range(3, len(sig)):
                    depth += {"(": 1, ")": -1}.get(tokens[sig[k]].text, 0)
                    if depth == 0:
                        break
                body = sig[k + 1 :]
                names = frozenset(tokens[p].text for p in sig[4:k] if tokens[p].kind == "ident")
            regions.append(body)
            params.append(names)
            i = j
        i += 1
    return regions, params


def translate(code: str, kernels: list[tuple[str, int]], line_directive: str) -> Translation:
    """The C++ for ``code``, with entry points for each ``(kernel name, parameter count)``."""
    from . import rewrite  # the passes (split out to keep this file readable)

    tokens = tokenize(code)
    _blank_directives(tokens)
    regions, macro_params = _regions(tokens)
    types = typescan.scan(tokens, regions)
    uses_sync = any(tokens[i].kind == "ident" and tokens[i].text in NEEDS_FIBERS for r in regions for i in r)
    variables: frozenset[str] = frozenset()
    for n, region in enumerate(regions):
        seq = Seq(tokens, region, types, scoped=n == 0, macro_params=macro_params[n], hidden=variables)
        if n == 0:  # #define bodies have no scopes: what the code calls a variable is one there too
            variables = frozenset(seq.spans.values - types.user)
        if n == 0:
            rewrite.shared_declarations(seq)
        rewrite.declarations(seq)
        rewrite.pointer_types(seq)
        rewrite.dereferences(seq)
        rewrite.arrows(seq)
        rewrite.cast_keywords(seq)
        rewrite.accesses(seq)
    body = render(tokens)
    if not body.endswith("\n"):
        body += "\n"
    entries = "".join(f"LLMC_ENTRY({name}, {', '.join(str(i) for i in range(n))})\n" for name, n in kernels)
    text = '#include "cuda_cpu.h"\n' + line_directive + body + '#line 1 "<llmc entry points>"\n' + entries
    return Translation(text, uses_sync)
