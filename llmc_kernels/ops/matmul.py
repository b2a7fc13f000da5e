"""The linear layer, out = inp @ weight.T + bias, and its backward (SPEC signatures).

    matmul_forward(out[B,T,OC], inp[B,T,C], weight[OC,C], bias[OC] or None, B, T, C, OC)
    matmul_backward(dinp[B,T,C], dweight[OC,C], dbias[OC] or None, dout[B,T,OC], inp, weight, B, T, C, OC)
        dinp += dout @ weight,  dweight += dout^T @ inp,  dbias += column sums of dout  (accumulate)

Two implementations with these signatures:

- ``matmul_forward`` / ``matmul_backward``: the vendor BLAS, as llm.c uses cuBLAS. On cuda, cuBLASLt
  (``cublas_gemm``), writing straight into the caller's buffers; the backward passes beta = 1, so cuBLAS
  adds into dinp/dweight with no temporary and no extra pass. The forward adds the bias in the product's
  epilogue (where cuBLASLt cannot, in a second, memory-bound pass, as llm.c's first versions did).
  dbias is ``matmul_backward_bias_kernel`` (one deterministic pass). On cpu, NumPy's BLAS
  (``np.matmul(..., out=)``; the backward adds a product into the buffers).
- ``matmul_forward_kernel`` / ``matmul_backward_kernel``: the package's own tiled SGEMM
  (``kernels/matmul.cu``: 128x128 tiles per 256-thread block, 8x8 outputs per thread, double-buffered
  shared memory, float4 where aligned) on either backend. Launch: grid (ceil(M/128), ceil(N/128)),
  M = rows of the product (B*T, or OC for dweight), N its columns (OC, or C); any size. On cuda the
  backward splits a product's reduction over grid z (split-K, atomicAdd of partial tiles) when it has too
  few tiles to fill the GPU (dweight: 36 tiles for 768 x 768); that makes its float sums order-dependent.

Precision (cuda only): ``set_matmul_precision("tf32")`` makes every cuBLAS product of this package use
TF32 tensor cores (``CUBLAS_COMPUTE_32F_FAST_TF32``: inputs rounded to 10 mantissa bits, fp32 accumulate,
about 1e-3 relative error), ``"fp32"`` (the default) plain fp32 (``CUBLAS_COMPUTE_32F``). The compute type
is passed with each cuBLAS call, so it takes effect at once and does not depend on when CuPy was imported
(``CUPY_TF32=1`` is read only once, at CuPy's first matmul). The setter also switches CuPy's own default
for float32 (``cupy._core._routines_linalg.set_compute_type``), so ``cupy.matmul`` (e.g. the SGEMM ceiling
of ``llmc_kernels.speed``) follows. On a GPU without TF32 (compute capability < 8.0, e.g. a T4), and with
the sm_75 path forced (``LLMC_FORCE_SM75=1``, ops/arch.py), the products run in fp32; ``tf32_supported()``
says which. The tiled kernels and the cpu backend are always fp32.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from . import _loader, _validate
from ._grid import aligned16, resident_blocks

TILE = 128  # rows and columns of the product per block (kernels/matmul.cu BM, BN)
GEMM_THREADS = 256
MAX_GRID_Y = 65535
PRECISIONS = ("fp32", "tf32")

_precision = "fp32"


# -------------------------------------------------------------------------------------------- precision


def matmul_precision() -> str:
    """The precision of the cuBLAS products: "fp32" (default) or "tf32"."""
    return _precision


def set_matmul_precision(precision: str) -> None:
    """Use "fp32" or "tf32" for the cuBLAS products from now on (see the module docstring)."""
    global _precision
    if precision not in PRECISIONS:
        raise ValueError(f"set_matmul_precision: precision must be 'fp32' or 'tf32'; got {precision!r}")
    _precision = precision
    _set_cupy_default(precision)


def _set_cupy_default(precision: str) -> None:
    """Make cupy.matmul/dot on float32 follow too (best effort: a private CuPy function, GPU only)."""
    from ..runtime import gpu_available

    if "cupy" not in sys.modules and not gpu_available():
        return
    try:
        from cupy._core import _routines_linalg as linalg

        if precision == "tf32" and not tf32_supported():
            return  # CuPy would warn and fall back itself
        ct = (
            getattr(linalg, "COMPUTE_TYPE_TF32", 7)
            if precision == "tf32"
            else getattr(linalg, "COMPUTE_TYPE_DEFAULT", 1)
        )
        linalg.set_compute_type(np.float32, ct)
    except Exception:  # an older/newer CuPy without it: our own products still follow the setting
        pass


def tf32_supported() -> bool:
    """True on a GPU with TF32 tensor cores (compute capability >= 8.0: A100, H100, RTX 30xx and later), unless
    the sm_75 path is forced (``LLMC_FORCE_SM75=1``, ops/arch.py: the GPU then plays a T4)."""
    from ..runtime import gpu_available
    from .arch import compute_capability, forced

    if forced() or not gpu_available():
        return False
    return compute_capability() >= 80


# ------------------------------------------------------------------------------------------------ cuBLAS


def _ptr(a, offset: int = 0) -> int:
    """Device address of element ``offset`` of the CuPy array ``a`` (float32)."""
    return int(a.data.ptr) + 4 * int(offset)


_HANDLES: dict = {}


def _cublas_handle(cupy) -> int:
    """CuPy's cuBLAS handle for this thread and device, fetched once: CuPy refuses to hand it out while a
    stream is capturing a CUDA graph (FastGPT2's step), though the handle itself works there. The first
    call of a step always runs eagerly (graph.StepGraph), so the handle is known before any capture."""
    key = (threading.get_ident(), cupy.cuda.Device().id)
    if key not in _HANDLES:
        _HANDLES[key] = cupy.cuda.device.get_cublas_handle()
    return _HANDLES[key]


def cublas_gemm(
    trans_a: bool,
    trans_b: bool,
    M: int,
    N: int,
    K: int,
    alpha: float,
    A: int,
    lda: int,
    B: int,
    ldb: int,
    beta: float,
    C: int,
    ldc: int,
    batch: int = 1,
    stride_a: int = 0,
    stride_b: int = 0,
    stride_c: int = 0,
    bias: int = 0,
    tf32: bool | None = None,
) -> bool:
    """Row-major ``C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C`` with cuBLAS, float32, in the
    precision of ``matmul_precision()`` (``tf32=True``: TF32 whatever it says, for operands that are already
    TF32 values, ops/linear.py's 3xTF32); ``batch`` products at element strides ``stride_*``.

    A, B, C are device addresses (``_ptr``), lda/ldb/ldc row strides in elements; op(A) = A^T when
    ``trans_a`` (A stored [K, M]). cuBLAS is column-major, and a row-major X is a column-major X^T, so we
    ask it for C^T = op(B)^T op(A)^T: the operands swap and keep their transpose flags.

    Single products go through cuBLASLt (``_cublaslt``: faster kernels, and ``bias``, the address of N
    floats, added to every row in the product's epilogue), batched ones and any cuBLASLt cannot take
    through cublasGemmEx. Returns True when the bias was added; False means the caller must add it.
    """
    import cupy

    from . import _cublas, _cublaslt

    if tf32 is None:
        tf32 = _precision == "tf32" and tf32_supported()
    op = lambda t: _cublas.OP_T if t else _cublas.OP_N
    compute = _cublas.COMPUTE_32F_FAST_TF32 if tf32 else _cublas.COMPUTE_32F
    stream = cupy.cuda.get_current_stream()
    if batch == 1 and _cublaslt.gemm(
        stream, op(trans_b), op(trans_a), N, M, K, alpha, B, ldb, A, lda, beta, C, ldc, compute, bias
    ):
        return bool(bias)
    _cublas.gemm(
        _cublas_handle(cupy),
        stream.ptr,
        op(trans_b),
        op(trans_a),
        N,
        M,
        K,
        alpha,
        B,
        ldb,
        A,
        lda,
        beta,
        C,
        ldc,
        compute,
        batch,
        stride_b,
        stride_a,
        stride_c,
    )
    return False


def strided_gemm(
    trans_a: bool,
    trans_b: bool,
    M: int,
    N: int,
    K: int,
    alpha: float,
    A,
    a_off: int,
    lda: int,
    sa: int,
    B,
    b_off: int,
    ldb: int,
    sb: int,
    beta: float,
    C,
    c_off: int,
    ldc: int,
    sc: int,
    batch: int = 1,
) -> None:
    """``cublas_gemm`` on whole arrays plus element offsets: batch i uses the matrices at offsets
    ``x_off + i * sx`` of the flat (C-contiguous) arrays. CuPy arrays go to cuBLAS; NumPy arrays to
    NumPy with the very same offsets and strides (strided views), so a cpu test proves the arithmetic.
    Every matrix is checked to lie inside its array first (cuBLAS would not notice)."""
    shapes = {
        "A": (A, a_off, (K, M) if trans_a else (M, K), lda, sa),
        "B": (B, b_off, (N, K) if trans_b else (K, N), ldb, sb),
        "C": (C, c_off, (M, N), ldc, sc),
    }
    for name, (arr, off, (rows, cols), ld, s) in shapes.items():
        last = off + (batch - 1) * s + (rows - 1) * ld + cols - 1
        if off < 0 or cols > ld or last >= arr.size:
            raise IndexError(
                f"strided_gemm: operand {name} ({batch} x {rows} x {cols}, ld {ld}, stride {s}, "
                f"offset {off}) does not fit its array of {arr.size} elements"
            )
    if not isinstance(C, np.ndarray):
        cublas_gemm(
            trans_a,
            trans_b,
            M,
            N,
            K,
            alpha,
            _ptr(A, a_off),
            lda,
            _ptr(B, b_off),
            ldb,
            beta,
            _ptr(C, c_off),
            ldc,
            batch,
            sa,
            sb,
            sc,
        )
        return

    def view(name):
        arr, off, (rows, cols), ld, s = shapes[name]
        return np.lib.stride_tricks.as_strided(arr.reshape(-1)[off:], (batch, rows, cols), (4 * s, 4 * ld, 4))

    a = view("A").transpose(0, 2, 1) if trans_a else view("A")
    b = view("B").transpose(0, 2, 1) if trans_b else view("B")
    c = view("C")
    prod = np.float32(alpha) * (a @ b)
    c[...] = prod if beta == 0 else np.float32(beta) * c + prod


# ----------------------------------------------------------------------------------------------- checks


def _bias_grad(backend, dbias, dout, M, N) -> None:
    """dbias[n] += sum_m dout[m, n] with matmul_backward_bias_kernel: 32 columns per block."""
    rows = 16 if backend == "cuda" else 4  # cpu: fewer fibers per block (they all meet at a barrier)
    _loader.kernel("matmul.cu", "matmul_backward_bias_kernel")(
        (-(-N // 32),), (32, rows), (dbias, dout, np.int32(M), np.int32(N))
    )


# ------------------------------------------------------------------------------------- vendor BLAS path


def matmul_forward(out, inp, weight, bias, B, T, C, OC):
    """out = inp @ weight.T + bias with cuBLAS (cuda) or NumPy's BLAS (cpu); bias may be None."""
    backend, _ = _validate.arguments("matmul_forward", locals())
    M = B * T
    if backend == "cuda":
        fused = cublas_gemm(
            False,
            True,
            M,
            OC,
            C,
            1.0,
            _ptr(inp),
            C,
            _ptr(weight),
            C,
            0.0,
            _ptr(out),
            OC,
            bias=0 if bias is None else _ptr(bias),
        )
        if bias is not None and not fused:
            out.reshape(M, OC)[...] += bias
    else:
        out2 = out.reshape(M, OC)
        np.matmul(inp.reshape(M, C), weight.T, out=out2)
        if bias is not None:
            out2 += bias


def matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC):
    """dinp += dout @ weight, dweight += dout^T @ inp, dbias += sums of dout's columns (dbias may be None)."""
    backend, _ = _validate.arguments("matmul_backward", locals())
    M = B * T
    if backend == "cuda":
        cublas_gemm(False, False, M, C, OC, 1.0, _ptr(dout), OC, _ptr(weight), C, 1.0, _ptr(dinp), C)
        cublas_gemm(True, False, OC, C, M, 1.0, _ptr(dout), OC, _ptr(inp), C, 1.0, _ptr(dweight), C)
        if dbias is not None:
            _bias_grad(backend, dbias, dout, M, OC)
    else:
        dy = dout.reshape(M, OC)
        dinp.reshape(M, C)[...] += dy @ weight
        dweight += dy.T @ inp.reshape(M, C)
        if dbias is not None:
            dbias += dy.sum(axis=0)


# ------------------------------------------------------------------------------------ the tiled kernels


def _grid(fn: str, M: int, N: int) -> tuple[int, int]:
    gy = -(-N // TILE)
    if gy > MAX_GRID_Y:
        raise ValueError(f"{fn}: {N} output columns need {gy} blocks along grid y, more than CUDA's {MAX_GRID_Y}")
    return -(-M // TILE), gy


def _vec(ld: int, *arrays) -> np.int32:
    """1 when rows of ``ld`` floats starting at these arrays' data are all 16-byte aligned (float4 access)."""
    return np.int32(ld % 4 == 0 and aligned16(*arrays))


def matmul_forward_kernel(out, inp, weight, bias, B, T, C, OC):
    """matmul_forward with the package's tiled SGEMM (kernels/matmul.cu), on either backend."""
    fn = "matmul_forward_kernel"
    _validate.arguments(fn, locals())
    M = B * T
    _loader.kernel("matmul.cu", "matmul_forward_kernel")(
        _grid(fn, M, OC),
        (GEMM_THREADS,),
        (
            out,
            inp,
            weight,
            bias,
            np.int32(M),
            np.int32(OC),
            np.int32(C),
            np.int32(bias is not None),
            _vec(C, inp),
            _vec(C, weight),
            _vec(OC, out),
        ),
    )


def _splits(backend: str, tiles: int, K: int) -> int:
    """Split-K slices for a backward product of ``tiles`` 128x128 blocks and reduction length K: about
    two blocks per SM (what fits: 128 registers x 256 threads is half the register file), each slice at
    least 32 k-steps (256 rows). cpu: 1 (no atomics, deterministic)."""
    if backend != "cuda":
        return 1
    sms = resident_blocks(backend, 2048)  # blocks of 2048 threads: one per SM
    want = -(-2 * sms // tiles)
    return max(1, min(want, K // 256))


def launch_backward_kernels(
    dinp, dweight, dout, inp, weight, M: int, C: int, OC: int, splits_dinp: int, splits_dweight: int
) -> None:
    """The two tiled products of the backward with the given split-K slice counts (1 = no atomics)."""
    sizes = (np.int32(M), np.int32(C), np.int32(OC))
    fn = "matmul_backward_kernel"
    _loader.kernel("matmul.cu", "matmul_backward_dinp_kernel")(
        (*_grid(fn, M, C), splits_dinp),
        (GEMM_THREADS,),
        (dinp, dout, weight, *sizes, _vec(OC, dout), _vec(C, weight), _vec(C, dinp)),
    )
    _loader.kernel("matmul.cu", "matmul_backward_dweight_kernel")(
        (*_grid(fn, OC, C), splits_dweight),
        (GEMM_THREADS,),
        (dweight, dout, inp, *sizes, _vec(OC, dout), _vec(C, inp), _vec(C, dweight)),
    )


def matmul_backward_kernel(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC):
    """matmul_backward with the package's tiled SGEMM (kernels/matmul.cu), on either backend."""
    fn = "matmul_backward_kernel"
    backend, _ = _validate.arguments(fn, locals())
    M = B * T
    gx, gy = _grid(fn, M, C)
    ox, oy = _grid(fn, OC, C)
    launch_backward_kernels(
        dinp, dweight, dout, inp, weight, M, C, OC, _splits(backend, gx * gy, OC), _splits(backend, ox * oy, M)
    )
    if dbias is not None:
        _bias_grad(backend, dbias, dout, M, OC)
