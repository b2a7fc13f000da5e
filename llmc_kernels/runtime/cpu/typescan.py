"""The type names a kernel source can use anywhere, so that ``T * x`` can be told from ``a * b``.

Built-in and CUDA types are known; the source adds its own: struct/class/union/enum names, typedef and
``using`` aliases, and object-like macros that expand to one type word (``#define real float``). These are
the fallback of :mod:`.scopes`, which knows better where a declaration is in sight (template parameters,
and variables that hide a type name, such as ``float half``, exist only there). Also noted: whether the
source says ``using namespace cooperative_groups`` and which names alias that namespace.
"""

from __future__ import annotations

from .tokens import Token

BUILTIN = frozenset(
    {
        "void",
        "bool",
        "char",
        "short",
        "int",
        "long",
        "float",
        "double",
        "signed",
        "unsigned",
        "auto",
        "wchar_t",
        "char16_t",
        "char32_t",
        "size_t",
        "ptrdiff_t",
        "intptr_t",
        "uintptr_t",
        "int8_t",
        "uint8_t",
        "int16_t",
        "uint16_t",
        "int32_t",
        "uint32_t",
        "int64_t",
        "uint64_t",
        "half",
        "__half",
        "half2",
        "__half2",
        "__nv_bfloat16",
        "nv_bfloat16",
        "__nv_bfloat162",
        "nv_bfloat162",
        "dim3",
    }
    | {
        f"{base}{n}"
        for base in (
            "float",
            "int",
            "uint",
            "char",
            "uchar",
            "short",
            "ushort",
            "long",
            "ulong",
            "longlong",
            "ulonglong",
            "double",
        )
        for n in (1, 2, 3, 4)
    }
)
CV = frozenset({"const", "volatile", "__restrict__", "__restrict"})
ELABORATED = frozenset({"struct", "class", "union", "enum"})


class Types:
    def __init__(self):
        self.user: set[str] = set()
        self.using_cg = False  # `using namespace cooperative_groups;` at file scope
        self.cg_aliases: set[str] = set()  # `namespace cg = cooperative_groups;`

    def is_type(self, name: str) -> bool:
        return name in BUILTIN or name in self.user


ATTRIBUTES = frozenset({"__align__", "alignas", "__attribute__", "__declspec"})


def _skip_attributes(code: list[str], j: int) -> int:
    while j + 1 < len(code) and code[j] in ATTRIBUTES and code[j + 1] == "(":
        depth, j = 0, j + 1
        while j < len(code):
            depth += {"(": 1, ")": -1}.get(code[j], 0)
            j += 1
            if depth == 0:
                break
    return j


def scan(tokens: list[Token], regions: list[list[int]]) -> Types:
    types = Types()
    code = [tokens[i].text for i in regions[0]]
    n = len(code)
    for i, x in enumerate(code):
        nxt = code[i + 1] if i + 1 < n else ""
        if x in ELABORATED and not (x == "class" and i and code[i - 1] in ("<", ",")):  # not template <class T>
            j = i + 1
            if nxt == "class":  # enum class X
                j += 1
            j = _skip_attributes(code, j)  # struct __align__(16) X, struct alignas(8) X
            if j < n and code[j].isidentifier():
                types.user.add(code[j])
        elif x == "using" and i + 2 < n and code[i + 2] == "=":
            types.user.add(nxt)
        elif x == "namespace" and i + 3 < n and code[i + 2] == "=" and code[i + 3] == "cooperative_groups":
            types.cg_aliases.add(nxt)
        elif x == "typedef":
            depth, j = 0, i + 1
            while j < n and not (depth == 0 and code[j] == ";"):
                depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(code[j], 0)
                j += 1
            k = j - 1
            while k > i and code[k] == "]":  # typedef float vec[4];
                while k > i and code[k] != "[":
                    k -= 1
                k -= 1
            if k > i and code[k].isidentifier():
                types.user.add(code[k])
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
    types.using_cg = any(
        code[i] == "using"
        and code[i + 1] == "namespace"
        and (code[i + 2] == "cooperative_groups" or code[i + 2] in types.cg_aliases)
        for i in range(n - 2)
    )
    types.user -= {"auto"}
    return types
