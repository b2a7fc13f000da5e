"""Read a kernel's parameter list from its CUDA C source.

Both backends use this to validate launch arguments before anything runs (a wrong dtype or a Python float
for a ``float`` parameter is the most common launch mistake), and the CPU backend uses it to generate the
C++ launcher that unpacks the arguments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import KernelCompileError

# C type (after dropping qualifiers) -> (numpy dtype of one scalar component, components per element)
_CTYPES = {
    "float": ("float32", 1),
    "double": ("float64", 1),
    "int": ("int32", 1),
    "signed int": ("int32", 1),
    "unsigned int": ("uint32", 1),
    "unsigned": ("uint32", 1),
    "long long": ("int64", 1),
    "long long int": ("int64", 1),
    "unsigned long long": ("uint64", 1),
    "size_t": ("uint64", 1),
    "long": ("int64", 1),
    "unsigned long": ("uint64", 1),
    "short": ("int16", 1),
    "unsigned short": ("uint16", 1),
    "char": ("int8", 1),
    "signed char": ("int8", 1),
    "unsigned char": ("uint8", 1),
    "bool": ("bool", 1),
    "int8_t": ("int8", 1),
    "uint8_t": ("uint8", 1),
    "int16_t": ("int16", 1),
    "uint16_t": ("uint16", 1),
    "int32_t": ("int32", 1),
    "uint32_t": ("uint32", 1),
    "int64_t": ("int64", 1),
    "uint64_t": ("uint64", 1),
    "float2": ("float32", 2),
    "float4": ("float32", 4),
    "int2": ("int32", 2),
    "int4": ("int32", 4),
    "double2": ("float64", 2),
    "half": ("float16", 1),
    "__half": ("float16", 1),
}
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict", "__grid_constant__"}


@dataclass(frozen=True)
class Param:
    """One kernel parameter: ``const float* __restrict__ inp`` -> ctype 'float', pointer, const."""

    position: int  # 0-based
    name: str
    ctype: str  # base type without qualifiers, e.g. 'float', 'unsigned short', 'float4'
    pointer: bool
    const: bool  # the pointee (for pointers) or the value is const

    @property
    def dtype(self) -> np.dtype | None:
        """The NumPy dtype of one scalar component (float4 -> float32); None for a type we do not know."""
        t = _CTYPES.get(self.ctype)
        return np.dtype(t[0]) if t else None

    @property
    def components(self) -> int:
        """Scalars per element: 4 for float4, 1 for float."""
        t = _CTYPES.get(self.ctype)
        return t[1] if t else 1

    def describe(self) -> str:
        star = "*" if self.pointer else ""
        const = "const " if self.const else ""
        return f"argument {self.position} '{const}{self.ctype}{star} {self.name}'"


@dataclass(frozen=True)
class KernelSignature:
    name: str
    params: tuple[Param, ...]
    line: int  # 1-based line of the kernel string where the name appears
    extern_c: bool


def strip_comments(code: str) -> str:
    """Remove // and /* */ comments and string literals' content, keeping every newline (line numbers hold)."""
    out = []
    i, n = 0, len(code)
    while i < n:
        c = code[i]
        if code.startswith("//", i):
            j = code.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif code.startswith("/*", i):
            j = code.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in code[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and code[j] != '"':
                j += 2 if code[j] == "\\" else 1
            out.append('"' + " " * (min(j, n) - i - 1) + ('"' if j < n else ""))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


_GLOBAL_RE = re.compile(
    r"__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+"
    r"(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\("
)


def list_kernels(code: str) -> list[str]:
    """Names of the ``__global__`` functions in ``code``, in order."""
    return [m.group(1) for m in _GLOBAL_RE.finditer(strip_comments(code))]


def _parse_param(position: int, text: str, kernel: str) -> Param:
    text = " ".join(text.replace("*", " * ").replace("&", " & ").split())
    tokens = text.split(" ")
    if len(tokens) < 2:
        raise KernelCompileError(
            f"cannot read parameter {position} '{text}' (expected e.g. 'const float* inp')", kernel=kernel
        )
    name = tokens[-1]
    stars = tokens.count("*")
    if "&" in tokens or stars > 1 or "[" in name:
        raise KernelCompileError(
            f"parameter '{text}': kernel parameters must be plain values or one-level "
            "pointers (e.g. 'float* out', 'int N')",
            kernel=kernel,
        )
    pointer = stars == 1
    star_at = tokens.index("*") if pointer else len(tokens) - 1
    before = tokens[:star_at]
    const = "const" in before if pointer else "const" in tokens[:-1]
    base = " ".join(t for t in before if t not in _QUALIFIERS)
    return Param(position, name, base, pointer, const)


def find_kernel(code: str, name: str) -> KernelSignature:
    """The signature of kernel ``name`` in ``code``; a KernelCompileError that lists the kernels if absent."""
    clean = strip_comments(code)
    for m in _GLOBAL_RE.finditer(clean):
        if m.group(1) != name:
            continue
        depth, j = 1, m.end()
        while j < len(clean) and depth:
            depth += {"(": 1, ")": -1}.get(clean[j], 0)
            j += 1
        arglist = clean[m.end() : j - 1].strip()
        parts = [p.strip() for p in arglist.split(",")] if arglist and arglist != "void" else []
        params = tuple(_parse_param(i, p, name) for i, p in enumerate(parts))
        line = clean.count("\n", 0, m.start(1)) + 1
        head = clean[max(0, clean.rfind(";", 0, m.start()), clean.rfind("}", 0, m.start())) : m.start()]
        extern_c = (
            re.search(r'extern\s+"', head) is not None
            or re.search(r'extern\s+"C"\s*\{', clean[: m.start()]) is not None
        )
        return KernelSignature(name, params, line, extern_c)
    found = list_kernels(code)
    hint = f" (it defines: {', '.join(found)})" if found else " (it defines no __global__ function)"
    raise KernelCompileError(f"no __global__ kernel named '{name}' in the source{hint}", kernel=name)
