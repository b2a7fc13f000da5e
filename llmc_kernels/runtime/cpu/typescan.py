"""Which identifiers name types in a kernel source, so that ``T * x`` can be told from ``a * b``.

Built-in and CUDA types are known; the source adds its own: struct/class/union/enum names, typedef and
``using`` aliases, template type parameters, and object-like macros that expand to one type word
(``#define real float``).
"""
from __future__ import annotations

from .tokens import Token

BUILTIN = frozenset({
    "void", "bool", "char", "short", "int", "long", "float", "double", "signed", "unsigned", "auto",
    "wchar_t", "char16_t", "char32_t", "size_t", "ptrdiff_t", "intptr_t", "uintptr_t",
    "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t", "int64_t", "uint64_t",
    "half", "__half", "__half2", "__nv_bfloat16", "dim3"}
    | {f"{base}{n}" for base in ("float", "int", "uint", "char", "uchar", "short", "ushort", "long", "ulong",
                                 "longlong", "ulonglong", "double") for n in (1, 2, 3, 4)})
CV = frozenset({"const", "volatile", "__restrict__", "__restrict"})
ELABORATED = frozenset({"struct", "class", "union", "enum"})


class Types:
    def __init__(self):
        self.user: set[str] = set()

    def is_type(self, name: str) -> bool:
        return name in BUILTIN or name in self.user


def scan(tokens: list[Token], regions: list[list[int]]) -> Types:
    types = Types()
    code = [tokens[i].text for i in regions[0]]
    n = len(code)
    for i, x in enumerate(code):
        nxt = code[i + 1] if i + 1 < n else ""
        if x in ELABORATED:
            j = i + 1
            if nxt == "class":      # enum class X
                j += 1
            if j < n and code[j].isidentifier():
                types.user.add(code[j])
        elif x == "using" and i + 2 < n and code[i + 2] == "=":
            types.user.add(nxt)
        elif x == "typedef":
            depth, j = 0, i + 1
            while j < n and not (depth == 0 and code[j] == ";"):
                depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(code[j], 0)
                j += 1
            k = j - 1
            while k > i and code[k] == "]":       # typedef float vec[4];
                while k > i and code[k] != "[":
                    k -= 1
                k -= 1
            if k > i and code[k].isidentifier():
                types.user.add(code[k])
        elif x == "template" and nxt == "<":
            depth, j = 0, i + 1
            while j < n:
                depth += {"<": 1, ">": -1, ">>": -2}.get(code[j], 0)
                if code[j] in ("typename", "class") and j + 1 < n and code[j + 1].isidentifier():
                    types.user.add(code[j + 1])
                if depth <= 0:
                    break
                j += 1
    # #define NAME <one type word>
    for i, tok in enumerate(tokens):
        if tok.directive == "define" and tok.text == "#":
            words = []
            j = i
            while j < len(tokens) and tokens[j].kind != "nl":
                if tokens[j].code:
                    words.append(tokens[j].text)
                j += 1
            if len(words) == 4 and types.is_type(words[3]):
                types.user.add(words[2])
    types.user -= {"auto"}
    return types
