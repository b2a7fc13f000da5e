"""Recognise the package's own kernels in a submission: normalised token streams of ``__global__`` functions.

A learner could pass a check by compiling the package's kernel sources (``llmc_kernels/kernels/*.cu``) under
their own ``RawKernel``, or by pasting a kernel from them with new names and comments. ``llmc grade`` refuses
a launched kernel whose function, as a token stream with comments and whitespace dropped and every identifier
that is not a C/CUDA keyword or built-in replaced by its order of first appearance, equals one of the package's.

Short kernels are exempt: a grid-stride ``out[i] = a[i] + b[i]`` is what anyone writes (chapter 05 teaches
it), so a kernel of fewer than :data:`MIN_TOKENS` tokens (its function and the device functions it calls, with
object-like macros expanded) is only refused when the whole source string is a package file (then it was read
from there, not written).
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..runtime.cpu.tokens import tokenize

KERNELS_DIR = Path(__file__).resolve().parents[1] / "kernels"
MIN_TOKENS = 100

# identifiers kept as they are: renaming them could make different code look the same
KEEP = frozenset(
    """
auto bool break case char const constexpr continue default do double else enum extern float for goto if inline
int long register restrict return short signed sizeof static struct switch typedef union unsigned void volatile
while true false nullptr NULL size_t template typename class namespace using reinterpret_cast static_cast
const_cast uint8_t int8_t uint16_t int16_t uint32_t int32_t uint64_t int64_t
__global__ __device__ __host__ __shared__ __restrict__ __forceinline__ __noinline__ __launch_bounds__ __constant__
threadIdx blockIdx blockDim gridDim warpSize __syncthreads __syncwarp __threadfence
float2 float3 float4 int2 int4 make_float2 make_float4 make_int2 make_int4 half __half __nv_bfloat16
""".split()
)


def _macros(tokens) -> dict:
    """Object-like ``#define NAME value`` macros of a token list (with whitespace): NAME -> value tokens."""
    found, i = {}, 0
    while i < len(tokens):
        t = tokens[i]
        if t.directive == "define" and t.kind == "ident" and t.text == "define":
            j = i + 1
            while j < len(tokens) and tokens[j].kind == "ws":
                j += 1
            if j < len(tokens) and tokens[j].kind == "ident":
                name = tokens[j].text
                k = j + 1
                if not (k < len(tokens) and tokens[k].text == "("):  # not a function-like macro
                    body = []
                    while k < len(tokens) and tokens[k].directive == "define" and tokens[k].kind != "nl":
                        if tokens[k].code:
                            body.append(tokens[k])
                        k += 1
                    found[name] = body
                i = k
                continue
        i += 1
    return found


def _code_tokens(code: str):
    """The significant tokens of ``code`` outside preprocessor lines, object-like macros expanded."""
    tokens = tokenize(code)
    macros = _macros(tokens)
    out = [t for t in tokens if t.code and t.directive is None]
    for _ in range(3):
        if not any(t.kind == "ident" and t.text in macros for t in out):
            break
        out = [x for t in out for x in (macros[t.text] if t.kind == "ident" and t.text in macros else [t])]
    return out


def normalise(tokens) -> tuple[str, ...]:
    names: dict[str, str] = {}
    out = []
    for t in tokens:
        member = bool(out) and out[-1] in (".", "->")  # .x of a float4, a struct's field: kept
        if t.kind == "ident" and t.text not in KEEP and not member:
            out.append(names.setdefault(t.text, f"${len(names)}"))
        else:
            out.append(t.text)
    return tuple(out)


def _functions(toks) -> dict[str, tuple[bool, list]]:
    """Every ``__global__`` and ``__device__`` function defined in ``toks``: name -> (is a kernel, its tokens
    from the qualifier to the closing brace of its body)."""
    found = {}
    for i, t in enumerate(toks):
        if t.text not in ("__global__", "__device__"):
            continue
        j, name = i + 1, None
        while j < len(toks) and toks[j].text not in ("(", ";", "{", "="):
            if toks[j].text == "__launch_bounds__":  # skip its (...) argument
                depth = 0
                j += 1
                while j < len(toks):
                    depth += {"(": 1, ")": -1}.get(toks[j].text, 0)
                    if depth == 0:
                        break
                    j += 1
            elif toks[j].kind == "ident" and toks[j].text not in KEEP:
                name = toks[j].text
            j += 1
        if name is None or j >= len(toks) or toks[j].text != "(":
            continue
        while j < len(toks) and toks[j].text not in ("{", ";"):
            j += 1
        if j >= len(toks) or toks[j].text != "{":
            continue
        depth, k = 0, j
        while k < len(toks):
            depth += {"{": 1, "}": -1}.get(toks[k].text, 0)
            if depth == 0:
                break
            k += 1
        found.setdefault(name, (t.text == "__global__", toks[i : k + 1]))
    return found


def kernel_functions(code: str) -> dict[str, tuple[str, ...]]:
    """Every kernel of ``code`` by name: the normalised tokens of its function followed by those of the device
    functions it calls (transitively, in order of first call), so a kernel is recognised with its helpers."""
    funcs = _functions(_code_tokens(code))
    out = {}
    for name, (is_kernel, _toks) in funcs.items():
        if not is_kernel:
            continue
        order, queue = [name], [name]
        while queue:
            for t in funcs[queue.pop(0)][1]:
                if t.kind == "ident" and t.text in funcs and t.text not in order and not funcs[t.text][0]:
                    order.append(t.text)
                    queue.append(t.text)
        out[name] = normalise([t for n in order for t in funcs[n][1]])
    return out


@functools.cache
def package_kernels() -> tuple[dict, dict]:
    """``({normalised kernel: 'file.cu: kernel'}, {normalised file: 'file.cu'})`` of the package's sources."""
    kernels, files = {}, {}
    for path in sorted(KERNELS_DIR.glob("*.cu*")):
        code = path.read_text(encoding="utf-8", errors="replace")
        files[normalise([t for t in tokenize(code) if t.code])] = path.name
        for name, toks in kernel_functions(code).items():
            if len(toks) >= MIN_TOKENS:
                kernels.setdefault(toks, f"{path.name}: {name}")
    return kernels, files


def package_match(code: str, name: str) -> str | None:
    """Where in the package kernel ``name`` of ``code`` comes from ('gelu.cu: gelu_forward_kernel'), or None."""
    kernels, files = package_kernels()
    whole = files.get(normalise([t for t in tokenize(code) if t.code]))
    if whole is not None:
        return f"{whole} (the whole file)"
    toks = kernel_functions(code).get(name)
    if toks is not None and len(toks) >= MIN_TOKENS:
        return kernels.get(toks)
    return None
