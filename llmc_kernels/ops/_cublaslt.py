"""cuBLASLt: the package's single (unbatched) products through cuBLAS's matmul API, as PyTorch makes them.

Why not only cublasGemmEx (``_cublas.gemm``): measured on an H100 at GPT-2's shapes (fp32, B*T = 8192),
cuBLASLt's first heuristic choice with a 32 MiB workspace ran 2-3% faster than GemmEx on the same products
timed alone (130.9 against 133.8 ms for the 49 x 3 products of a training step), and cuBLASLt adds the bias
in the product's epilogue (``CUBLASLT_EPILOGUE_BIAS``), which saves a pass over the output; inside
FastGPT2's whole step the two together saved 1.5 ms of 159 (fp32) and 1 ms of 49 (TF32). Only the
heuristic's first choice is used, never a timed search, so which kernel runs does not depend on timing noise.

A plan (descriptors + algorithm) is made once per product shape, outside any CUDA-graph capture (FastGPT2's
first step runs eagerly), and reused; ``gemm`` returns False, so the caller falls back to GemmEx, when
cuBLASLt is missing, finds no algorithm, or a plan would have to be made during a capture.
Enum values: cublasLt.h (stable across CUDA 11-13).
"""

from __future__ import annotations

import ctypes
import functools
import threading

from . import _cublas

WORKSPACE = 32 << 20  # cuBLAS's advice for Hopper
ATTR_TRANSA, ATTR_TRANSB, ATTR_EPILOGUE, ATTR_BIAS_POINTER = 3, 4, 7, 8
EPILOGUE_DEFAULT, EPILOGUE_BIAS = 1, 4
PREF_MAX_WORKSPACE_BYTES, PREF_MIN_ALIGNMENT_A = 1, 5  # ... B, C, D: 6, 7, 8

_p, _i, _u64, _i64, _sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int64, ctypes.c_size_t
_SIGNATURES = {
    "cublasLtCreate": (ctypes.POINTER(_p),),
    "cublasLtMatmulDescCreate": (ctypes.POINTER(_p), _i, _i),
    "cublasLtMatmulDescSetAttribute": (_p, _i, _p, _sz),
    "cublasLtMatrixLayoutCreate": (ctypes.POINTER(_p), _i, _u64, _u64, _i64),
    "cublasLtMatmulPreferenceCreate": (ctypes.POINTER(_p),),
    "cublasLtMatmulPreferenceSetAttribute": (_p, _i, _p, _sz),
    "cublasLtMatmulAlgoGetHeuristic": (_p, _p, _p, _p, _p, _p, _p, _i, _p, ctypes.POINTER(_i)),
    "cublasLtMatmul": (_p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _p, _sz, _p),
}


class _Heuristic(ctypes.Structure):
    """cublasLtMatmulHeuristicResult_t."""

    _fields_ = [
        ("algo", _u64 * 8),
        ("workspaceSize", _sz),
        ("state", _i),
        ("wavesCount", ctypes.c_float),
        ("reserved", _i * 4),
    ]


class _Plan:
    """One product's descriptors and algorithm; ``bias`` is set per call (an address in the descriptor)."""

    def __init__(self, desc, a, b, c, heuristic):
        self.desc, self.a, self.b, self.c, self.heuristic = desc, a, b, c, heuristic


_lock = threading.Lock()
_state: dict = {}  # device id -> (lt handle, workspace array)
_plans: dict = {}  # key -> _Plan, or None: cuBLASLt has no algorithm for it (use GemmEx)
_unavailable: list = []  # one reason, once cuBLASLt has been found missing


@functools.lru_cache(maxsize=1)
def _lib():
    _cublas._lib()  # CuPy's libcublas, which loads libcublasLt
    path = _cublas._mapped_library("libcublasLt.so")
    if path is None:
        raise OSError("libcublasLt is not mapped into this process")
    return _cublas.bind(path, _SIGNATURES)


def _call(name: str, *args) -> None:
    status = getattr(_lib(), name)(*args)
    if status != 0:
        raise RuntimeError(f"cuBLASLt {name} failed with status {status} (cublasStatus_t)")


def _set(desc, attr: int, value) -> None:
    _call("cublasLtMatmulDescSetAttribute", desc, attr, ctypes.byref(value), ctypes.sizeof(value))


def _device_state(cupy):
    dev = cupy.cuda.Device().id
    if dev not in _state:
        handle = _p()
        _call("cublasLtCreate", ctypes.byref(handle))
        _state[dev] = (handle, cupy.empty(WORKSPACE, dtype=cupy.uint8))
    return _state[dev]


def _layout(rows: int, cols: int, ld: int):
    layout = _p()
    _call("cublasLtMatrixLayoutCreate", ctypes.byref(layout), _cublas.R_32F, rows, cols, ld)
    return layout


def alignment(*addresses: int) -> int:
    """The largest power of two up to 256 dividing every address: the heuristic assumes 256-byte aligned
    operands unless told, and our operands are often views at a float's offset into a larger buffer."""
    align = 256
    for a in addresses:
        while a % align:
            align //= 2
    return align


def _make_plan(handle, op_a, op_b, m, n, k, lda, ldb, ldc, compute, epilogue, align):
    desc = _p()
    _call("cublasLtMatmulDescCreate", ctypes.byref(desc), compute, _cublas.R_32F)
    _set(desc, ATTR_TRANSA, _i(op_a))
    _set(desc, ATTR_TRANSB, _i(op_b))
    _set(desc, ATTR_EPILOGUE, _i(epilogue))
    a = _layout(m, k, lda) if op_a == _cublas.OP_N else _layout(k, m, lda)
    b = _layout(k, n, ldb) if op_b == _cublas.OP_N else _layout(n, k, ldb)
    c = _layout(m, n, ldc)
    pref = _p()
    _call("cublasLtMatmulPreferenceCreate", ctypes.byref(pref))
    _call("cublasLtMatmulPreferenceSetAttribute", pref, PREF_MAX_WORKSPACE_BYTES, ctypes.byref(_u64(WORKSPACE)), 8)
    for operand in range(4):  # A, B, C, D (D is C)
        _call(
            "cublasLtMatmulPreferenceSetAttribute",
            pref,
            PREF_MIN_ALIGNMENT_A + operand,
            ctypes.byref(ctypes.c_uint32(align)),
            4,
        )
    found, count = _Heuristic(), _i()
    _call("cublasLtMatmulAlgoGetHeuristic", handle, desc, a, b, c, c, pref, 1, ctypes.byref(found), ctypes.byref(count))
    return _Plan(desc, a, b, c, found) if count.value > 0 and found.state == 0 else None


def gemm(
    stream,
    op_a: int,
    op_b: int,
    m: int,
    n: int,
    k: int,
    alpha: float,
    A: int,
    lda: int,
    B: int,
    ldb: int,
    beta: float,
    C: int,
    ldc: int,
    compute: int,
    bias: int = 0,
) -> bool:
    """Column-major C[m,n] = alpha op(A) op(B) + beta C (+ bias[m] down every column when ``bias`` is an
    address) on ``stream`` (a cupy Stream); False, having done nothing, where cuBLASLt cannot."""
    if _unavailable:
        return False
    import cupy

    dev = cupy.cuda.Device().id
    epilogue = EPILOGUE_BIAS if bias else EPILOGUE_DEFAULT
    key = (dev, op_a, op_b, m, n, k, lda, ldb, ldc, compute, epilogue, alignment(A, B, C, bias))
    with _lock:
        if key not in _plans:  # (a plan exists only once its device's state does)
            if stream.is_capturing():  # no allocation or plan-making inside a graph
                return False
            try:
                handle, _ = _device_state(cupy)
                _plans[key] = _make_plan(handle, op_a, op_b, m, n, k, lda, ldb, ldc, compute, epilogue, key[-1])
            except (OSError, AttributeError) as exc:  # no libcublasLt, or one without these entry points
                _unavailable.append(str(exc))
                return False
        plan = _plans[key]
        if plan is None:
            return False
        handle, workspace = _state[dev]
        if bias:
            _set(plan.desc, ATTR_BIAS_POINTER, _p(bias))
        a, b = ctypes.c_float(alpha), ctypes.c_float(beta)
        _call(
            "cublasLtMatmul",
            handle,
            plan.desc,
            ctypes.byref(a),
            A,
            plan.a,
            B,
            plan.b,
            ctypes.byref(b),
            C,
            plan.c,
            C,
            plan.c,
            ctypes.byref(plan.heuristic.algo),
            workspace.data.ptr,
            WORKSPACE,
            stream.ptr,
        )
    return True
