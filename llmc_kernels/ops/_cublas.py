"""cublasGemmEx and its strided-batched form, through ctypes on the libcublas that CuPy loaded: the batched
products, and the single ones where cuBLASLt (``_cublaslt``, the usual path) cannot take them.

Why not CuPy's wrappers (``cupy_backends.cuda.libs.cublas``): every one of them first calls
cublasSetStream, which CuPy refuses while a stream captures a CUDA graph ("calling cuBLAS API during stream
capture is currently unsupported"), and FastGPT2 captures its whole training step. cuBLAS itself supports
capture; only the wrapper objects. The handle is CuPy's (so CuPy and we share one cuBLAS context and
workspace); the library is the very file CuPy mapped into the process, so the handle's ABI matches.
Values of the enums: cublas_api.h and library_types.h (stable across CUDA 11-13).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

OP_N, OP_T = 0, 1
R_32F = 0  # cudaDataType CUDA_R_32F
COMPUTE_32F, COMPUTE_32F_FAST_TF32 = 68, 77
GEMM_DEFAULT = -1
POINTER_MODE_HOST = 0

_p, _i, _ll = ctypes.c_void_p, ctypes.c_int, ctypes.c_longlong
_SIGNATURES = {
    "cublasSetStream_v2": (_p, _p),
    "cublasGetPointerMode_v2": (_p, ctypes.POINTER(_i)),
    "cublasSetPointerMode_v2": (_p, _i),
    "cublasGemmEx": (_p, _i, _i, _i, _i, _i, _p, _p, _i, _i, _p, _i, _i, _p, _p, _i, _i, _i, _i),
    "cublasGemmStridedBatchedEx": (
        _p,
        _i,
        _i,
        _i,
        _i,
        _i,
        _p,
        _p,
        _i,
        _i,
        _ll,
        _p,
        _i,
        _i,
        _ll,
        _p,
        _p,
        _i,
        _i,
        _ll,
        _i,
        _i,
        _i,
    ),
}


def _mapped_library(prefix: str) -> str | None:
    """The path of a shared library already mapped into this process whose file name starts with prefix."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1]
                if os.path.basename(path).startswith(prefix):
                    return path
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def _lib():
    import cupy

    cupy.cuda.device.get_cublas_handle()  # CuPy loads libcublas when it makes its handle
    path = _mapped_library("libcublas.so") or ctypes.util.find_library("cublas")
    if path is None:
        raise RuntimeError("cuBLAS: CuPy made a cuBLAS handle but its library file cannot be found")
    return bind(path, _SIGNATURES)


def bind(path: str, signatures: dict) -> ctypes.CDLL:
    """The library at ``path`` with each named function's argument types set (all return a status int)."""
    lib = ctypes.CDLL(path)
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, _i
    return lib


def _call(name: str, *args) -> None:
    status = getattr(_lib(), name)(*args)
    if status != 0:
        raise RuntimeError(f"cuBLAS {name} failed with status {status} (cublasStatus_t)")


def gemm(
    handle: int,
    stream: int,
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
    batch: int = 1,
    stride_a: int = 0,
    stride_b: int = 0,
    stride_c: int = 0,
) -> None:
    """Column-major C[m,n] = alpha op(A) op(B) + beta C in float32 on ``stream`` (batched when batch > 1),
    host-side alpha and beta (their values are taken at the call, so a captured graph keeps them)."""
    _call("cublasSetStream_v2", handle, stream)
    mode = _i()
    _call("cublasGetPointerMode_v2", handle, ctypes.byref(mode))
    if mode.value != POINTER_MODE_HOST:  # another library may have left it on device
        _call("cublasSetPointerMode_v2", handle, POINTER_MODE_HOST)
    a, b = ctypes.c_float(alpha), ctypes.c_float(beta)
    try:
        if batch == 1:
            _call(
                "cublasGemmEx",
                handle,
                op_a,
                op_b,
                m,
                n,
                k,
                ctypes.byref(a),
                A,
                R_32F,
                lda,
                B,
                R_32F,
                ldb,
                ctypes.byref(b),
                C,
                R_32F,
                ldc,
                compute,
                GEMM_DEFAULT,
            )
        else:
            _call(
                "cublasGemmStridedBatchedEx",
                handle,
                op_a,
                op_b,
                m,
                n,
                k,
                ctypes.byref(a),
                A,
                R_32F,
                lda,
                stride_a,
                B,
                R_32F,
                ldb,
                stride_b,
                ctypes.byref(b),
                C,
                R_32F,
                ldc,
                stride_c,
                batch,
                compute,
                GEMM_DEFAULT,
            )
    finally:
        if mode.value != POINTER_MODE_HOST:
            _call("cublasSetPointerMode_v2", handle, mode.value)
