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
- ``#pragma unroll`` and the CUDA/C headers the prelude already provides are blanked.

Everything else (keywords, intrinsics, math, atomics, warp functions) is defined by ``include/cuda_cpu.h``.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import typescan
from .tokens import Token, render, tokenize

SYNC_FUNCTIONS = frozenset({
    "__syncthreads", "__syncthreads_count", "__syncthreads_and", "__syncthreads_or", "__syncwarp",
    "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync", "__any_sync",
    "__all_sync", "__activemask"})

# headers whose content the prelude provides (NVRTC needs none of them, but learners write them)
PROVIDED_HEADERS = frozenset({
    "cuda_runtime.h", "cuda.h", "cuda_runtime_api.h", "device_launch_parameters.h", "device_functions.h",
    "vector_types.h", "stdio.h", "cstdio", "math.h", "cmath", "float.h", "cfloat", "stdint.h", "cstdint",
    "limits.h", "climits", "assert.h", "cassert", "string.h", "cstring", "stddef.h", "cstddef", "stdlib.h",
    "cstdlib", "sm_30_intrinsics.h", "sm_32_intrinsics.h", "math_functions.h"})

UNARY_PREV = frozenset({
    "(", "[", "{", "}", ";", ",", "=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", "?", ":",
    "!", "~", "&&", "||", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>",
    "return", "case", "sizeof", "else", "do", "throw", "#", "##"})
PREFIX_OPS = frozenset({"*", "&", "-", "+", "!", "~", "++", "--"})
CONTROL = frozenset({"if", "while", "for", "switch"})
CASTS = frozenset({"static_cast", "reinterpret_cast", "const_cast", "dynamic_cast"})


@dataclass
class Translation:
    text: str              # the C++ the compiler sees (prelude, #line, learner's code, entry points)
    uses_sync: bool        # barriers or warp operations: each thread needs its own fiber


class Seq:
    """The significant tokens of one region (the code, or one #define body), with parsing helpers."""

    def __init__(self, tokens: list[Token], idx: list[int], types: typescan.Types):
        self.toks = tokens
        self.idx = idx
        self.types = types
        self.consumed: set[int] = set()     # positions whose token a rewrite already handled
        self._match = self._brackets()

    def __len__(self):
        return len(self.idx)

    def tok(self, i: int) -> Token:
        return self.toks[self.idx[i]]

    def t(self, i: int) -> str:
        return self.toks[self.idx[i]].text if 0 <= i < len(self.idx) else ""

    def kind(self, i: int) -> str:
        return self.toks[self.idx[i]].kind if 0 <= i < len(self.idx) else ""

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

    # -- classification
    def is_typeword(self, i: int) -> bool:
        x = self.t(i)
        return self.kind(i) == "ident" and self.types.is_type(x)

    def is_typeish(self, i: int) -> bool:
        """Can be part of a type: a type word, a cv-qualifier, struct/union/enum/class + its name."""
        x = self.t(i)
        if self.kind(i) != "ident":
            return False
        if x in typescan.CV or x in typescan.ELABORATED or self.types.is_type(x):
            return True
        return self.t(i - 1) in typescan.ELABORATED     # the name after 'struct'

    def type_group(self, a: int, b: int) -> bool:
        """Tokens a..b (inclusive) spell a type (a cast's parentheses, a template argument)."""
        if a > b:
            return False
        has_type = False
        for i in range(a, b + 1):
            if self.t(i) in ("*", "&", "&&"):
                continue
            if not self.is_typeish(i):
                return False
            has_type |= self.is_typeword(i) or self.t(i - 1) in typescan.ELABORATED
        return has_type


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
            drop = False
            if tok.directive == "pragma":
                drop = len(words) > 2 and words[2] == "unroll"
            else:
                name = "".join(words[2:]).strip("<>\"")
                drop = name in PROVIDED_HEADERS
            if drop:    # keep the newlines of backslash continuations: the lines below must not move
                for k in range(i, j):
                    tokens[k].out = "\n" * tokens[k].text.count("\n")
            i = j
        i += 1


def _regions(tokens: list[Token]) -> list[list[int]]:
    """The code (outside directives) and the body of each #define, as lists of significant token indices."""
    code = [i for i, t in enumerate(tokens) if t.code and t.directive is None]
    regions = [code]
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
            body = sig[3:]
            if len(sig) > 3 and tokens[sig[3]].text == "(" and sig[3] == sig[2] + 1:
                depth, k = 0, 3
                for k in range(3, len(sig)):
                    depth += {"(": 1, ")": -1}.get(tokens[sig[k]].text, 0)
                    if depth == 0:
                        break
                body = sig[k + 1:]
            regions.append(body)
            i = j
        i += 1
    return regions


def translate(code: str, kernels: list[tuple[str, int]], line_directive: str) -> Translation:
    """The C++ for ``code``, with entry points for each ``(kernel name, parameter count)``."""
    from . import rewrite      # the passes (split out to keep this file readable)

    tokens = tokenize(code)
    _blank_directives(tokens)
    regions = _regions(tokens)
    types = typescan.scan(tokens, regions)
    uses_sync = any(tokens[i].kind == "ident" and tokens[i].text in SYNC_FUNCTIONS for r in regions for i in r)
    for n, region in enumerate(regions):
        seq = Seq(tokens, region, types)
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
