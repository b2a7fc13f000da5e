"""Check and convert what a learner passes to ``kernel(grid, block, args, shared_mem)``, before any launch.

Both backends call these, so a wrong argument fails the same way on a laptop and on a GPU, with a message
that names the kernel, the parameter and what was expected. The checks matter most on the GPU: CuPy passes
a Python float as an 8-byte double and a Python int as an 8-byte int64 whatever the kernel declares, so a
``float`` parameter silently receives garbage; a wrong-dtype array is reinterpreted bit by bit.
"""

from __future__ import annotations

import numbers
import sys

import numpy as np

from ..errors import KernelArgumentError
from .signature import KernelSignature, Param

MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_SHARED_MEM = 48 * 1024  # the most a kernel gets without an explicit opt-in attribute

_ARRAY_TYPE_NAME = {"cpu": "numpy.ndarray", "cuda": "cupy.ndarray"}


def _is_cupy_array(x) -> bool:
    ndarray = getattr(sys.modules.get("cupy"), "ndarray", None)  # no CuPy array exists before cupy is imported
    return ndarray is not None and isinstance(x, ndarray)


def array_backend(x) -> str | None:
    """'cpu' for a NumPy array, 'cuda' for a CuPy array, None for anything else."""
    if isinstance(x, np.ndarray):
        return "cpu"
    if _is_cupy_array(x):
        return "cuda"
    return None


def _data_pointer(x) -> int:
    return int(x.data.ptr) if _is_cupy_array(x) else int(x.ctypes.data)


def describe_value(x) -> str:
    """How a value reads in a message: 'numpy.ndarray float64 (3, 4)', 'Python float 0.5', 'np.int64(5)'."""
    backend = array_backend(x)
    if backend is not None:
        return f"{_ARRAY_TYPE_NAME[backend]} of {x.dtype} with shape {tuple(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"{type(x).__module__}.ndarray of {x.dtype}"
    if isinstance(x, np.generic):
        return f"np.{type(x).__name__}({x!r})" if not repr(x).startswith("np.") else repr(x)
    if isinstance(x, bool):
        return f"Python bool {x!r}"
    if isinstance(x, int):
        return f"Python int {x!r}"
    if isinstance(x, float):
        return f"Python float {x!r}"
    if x is None:
        return "None"
    text = repr(x)
    return f"{type(x).__module__}.{type(x).__qualname__}" + (f" {text}" if len(text) < 40 else "")


def _fail(sig: KernelSignature, message: str, param: Param | None = None) -> KernelArgumentError:
    return KernelArgumentError(message, kernel=sig.name, buffer=param.name if param else None)


def _check_pointer(sig: KernelSignature, p: Param, x, kind: str):
    if x is None:
        return None  # a null pointer, as CuPy passes it (e.g. an optional bias the kernel tests for)
    got = array_backend(x)
    if got != kind:
        where = "a NumPy array (cpu backend)" if kind == "cpu" else "a CuPy array (cuda backend)"
        hint = ""
        if got == "cpu":
            hint = "; move it to the GPU with cupy.asarray(x)"
        elif got == "cuda":
            hint = "; bring it to the CPU with x.get() (or launch on the cuda backend)"
        return _fail(sig, f"{p.describe()} expects {where}, got {describe_value(x)}{hint}", p)
    want = p.dtype
    if want is not None and x.dtype != want:
        cast = f".astype(np.{want.name})"
        return _fail(
            sig, f"{p.describe()} expects a {want.name} array, got {describe_value(x)} (convert it with x{cast})", p
        )
    if not x.flags.c_contiguous:
        return _fail(
            sig,
            f"{p.describe()} expects a C-contiguous array, got a strided view "
            f"{describe_value(x)} with strides {tuple(x.strides)} (pass np.ascontiguousarray(x) "
            "or x.copy())",
            p,
        )
    if p.components > 1:
        n = p.components
        if x.size % n:
            return _fail(
                sig,
                f"{p.describe()} reads {p.ctype} ({n} x {want.name}), so the array's size must "
                f"be a multiple of {n}; got {x.size} elements",
                p,
            )
        align = n * want.itemsize
        if _data_pointer(x) % align:
            return _fail(
                sig,
                f"{p.describe()} reads {p.ctype}, which needs a {align}-byte aligned address; this "
                f"array (a slice?) starts at an address that is not (pass a copy: x.copy())",
                p,
            )
    if kind == "cpu" and not p.const and not x.flags.writeable:
        # the CPU backend would write straight into read-only memory and crash the Python process
        return _fail(
            sig,
            f"{p.describe()} may be written by the kernel but the array is read-only; pass a "
            "writable copy (x.copy()) or declare the parameter const",
            p,
        )
    return x


def _check_scalar(sig: KernelSignature, p: Param, x):
    want = p.dtype
    if want is None or p.components > 1:
        return _fail(
            sig,
            f"{p.describe()}: a kernel parameter of type '{p.ctype}' cannot be passed from "
            "Python; pass scalars as int/float types or the data through a pointer",
            p,
        )
    if array_backend(x) is not None or isinstance(x, np.ndarray):
        return _fail(
            sig,
            f"{p.describe()} is a single value, got {describe_value(x)} (did you mean a "
            f"pointer '{p.ctype}* {p.name}'?)",
            p,
        )
    ctor = f"np.{want.name}"
    if isinstance(x, np.generic):
        if x.dtype == want:
            return x
        if want.kind == "f" and want.itemsize == 4:
            return _fail(
                sig, f"{p.describe()} expects np.float32, got {describe_value(x)}: pass np.float32(x) instead", p
            )
        return _fail(sig, f"{p.describe()} expects {ctor}, got {describe_value(x)}: pass {ctor}(x) instead", p)
    if want.kind == "b":
        if isinstance(x, bool):
            return np.bool_(x)
        return _fail(sig, f"{p.describe()} expects a Python bool or np.bool_, got {describe_value(x)}", p)
    if want.kind in "iu":
        if isinstance(x, numbers.Integral) and not isinstance(x, bool):
            info = np.iinfo(want)
            if not info.min <= int(x) <= info.max:
                return _fail(
                    sig, f"{p.describe()}: the value {int(x)} does not fit in {p.ctype} ({info.min}..{info.max})", p
                )
            return want.type(int(x))
        return _fail(
            sig,
            f"{p.describe()} expects a Python int or {ctor}, got {describe_value(x)}"
            + (" (use // for integer division)" if isinstance(x, float) else ""),
            p,
        )
    if want.kind == "f":
        if want.itemsize == 8 and isinstance(x, numbers.Real) and not isinstance(x, bool):
            return np.float64(x)  # a Python float is a C double: exactly right for a double parameter
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            example = f"{ctor}({x!r})"
            if want.itemsize == 4:
                return _fail(
                    sig,
                    f"{p.describe()} is a 4-byte float, got {describe_value(x)}; Python numbers "
                    f"reach the GPU as 8-byte values, so pass np.float32(x) instead "
                    f"(here: {example})",
                    p,
                )
            return _fail(sig, f"{p.describe()} expects {ctor}, got {describe_value(x)}: pass {example}", p)
    return _fail(sig, f"{p.describe()} expects {ctor}, got {describe_value(x)}", p)


def validate(signature: KernelSignature, args, kind: str) -> tuple:
    """Check ``args`` against ``signature`` for backend ``kind`` ('cpu' or 'cuda'); return them converted.

    Python ints for integer parameters become NumPy scalars of the parameter's type (after a range check);
    everything else must already have the exact type. Raises KernelArgumentError naming the parameter.
    """
    if kind not in _ARRAY_TYPE_NAME:
        raise ValueError(f"unknown backend {kind!r} (expected 'cpu' or 'cuda')")
    if not isinstance(args, (tuple, list)):
        raise KernelArgumentError(
            f"args must be a tuple of the kernel's arguments, e.g. (out, inp, np.int32(N)); got {describe_value(args)}",
            kernel=signature.name,
        )
    params = signature.params
    if len(args) != len(params):
        names = ", ".join(p.name for p in params)
        raise KernelArgumentError(
            f"the kernel takes {len(params)} argument{'s' if len(params) != 1 else ''} ({names}), got {len(args)}",
            kernel=signature.name,
        )
    out = []
    for p, x in zip(params, args):
        value = _check_pointer(signature, p, x, kind) if p.pointer else _check_scalar(signature, p, x)
        if isinstance(value, KernelArgumentError):
            raise value
        out.append(value)
    return tuple(out)


def _dims(value, what: str, kernel: str) -> tuple[int, int, int]:
    items = value if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(items) <= 3:
        raise KernelArgumentError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}", kernel=kernel)
    dims = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            hint = " (use // instead of / to divide sizes)" if isinstance(v, (float, np.floating)) else ""
            raise KernelArgumentError(f"{what} must hold ints, got {value!r}{hint}", kernel=kernel)
        if int(v) < 1:
            raise KernelArgumentError(
                f"{what} {value!r}: every dimension must be at least 1 (a grid of 0 "
                "blocks launches nothing; round the block count up: (n + b - 1) // b)",
                kernel=kernel,
            )
        dims.append(int(v))
    return tuple(dims + [1] * (3 - len(dims)))


def normalize_grid(grid, kernel: str) -> tuple[int, int, int]:
    """``grid`` as a 3-tuple, within CUDA's limits (x < 2**31, y and z <= 65535)."""
    dims = _dims(grid, "grid", kernel)
    for axis, n, limit in zip("xyz", dims, MAX_GRID):
        if n > limit:
            raise KernelArgumentError(
                f"grid {grid!r}: gridDim.{axis} = {n} exceeds CUDA's limit {limit}", kernel=kernel
            )
    return dims


def normalize_block(block, kernel: str) -> tuple[int, int, int]:
    """``block`` as a 3-tuple of at most 1024 threads, each axis within (1024, 1024, 64)."""
    dims = _dims(block, "block", kernel)
    for axis, n, limit in zip("xyz", dims, MAX_BLOCK):
        if n > limit:
            raise KernelArgumentError(
                f"block {block!r}: blockDim.{axis} = {n} exceeds CUDA's limit {limit}", kernel=kernel
            )
    threads = dims[0] * dims[1] * dims[2]
    if threads > MAX_THREADS_PER_BLOCK:
        raise KernelArgumentError(
            f"block {block!r} has {threads} threads; a block holds at most {MAX_THREADS_PER_BLOCK}", kernel=kernel
        )
    return dims


def check_shared_mem(shared_mem, kernel: str) -> int:
    """Dynamic shared memory in bytes, 0..48 KiB."""
    if isinstance(shared_mem, bool) or not isinstance(shared_mem, numbers.Integral):
        raise KernelArgumentError(
            f"shared_mem must be an int number of bytes, got {describe_value(shared_mem)}", kernel=kernel
        )
    n = int(shared_mem)
    if n < 0 or n > MAX_SHARED_MEM:
        raise KernelArgumentError(
            f"shared_mem={n} bytes is outside 0..{MAX_SHARED_MEM} (48 KiB, the most a "
            "kernel gets without an opt-in); use smaller tiles",
            kernel=kernel,
        )
    return n


def validate_launch(signature: KernelSignature, grid, block, args, shared_mem, kind: str):
    """All of the above at once: ``(grid3, block3, args, shared_mem)`` ready for a backend's ``launch``."""
    name = signature.name
    return (
        normalize_grid(grid, name),
        normalize_block(block, name),
        validate(signature, args, kind),
        check_shared_mem(shared_mem, name),
    )
