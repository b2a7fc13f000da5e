"""ops.matmul_* (vendor BLAS) and ops.matmul_*_kernel (the tiled SGEMM of kernels/matmul.cu) vs the reference.

Error model: a float32 dot product of K terms, summed in any order, is within gamma_K = K * 6e-8 (relative)
of the exact sum of |terms|. So every element is compared with
    atol = 1.2e-7 * K * (|a| @ |b|)  (+ the same for the bias add and the accumulated start value)
a bound no correct kernel exceeds and any wrong index, missed tile or lost k-step exceeds by orders of
magnitude. TF32 (GPU) rounds each input to 11 significant bits: 2 * 2^-11 per product on top.
"""

import numpy as np
import pytest
from _ops_a_helpers import FakeCupyArray, KernelSpy, assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import check, ops, reference
from llmc_kernels._honesty import package_scope
from llmc_kernels.ops import matmul as mm

# (B, T, C, OC): tile remainders in every dimension, K = C not a multiple of 8 or 4 (scalar loads),
# multiples of 4 (float4 paths) with partial tiles, one element, K longer than one k-step
SIZES = [(1, 1, 1, 1), (2, 67, 37, 150), (1, 130, 64, 132), (3, 45, 100, 257), (1, 129, 8, 128), (2, 9, 260, 5)]
FP32 = 1.2e-7


def _case(B, T, C, OC, seed):
    rng = np.random.default_rng(seed)
    return (
        f32(rng.standard_normal((B, T, C))),
        f32(rng.standard_normal((OC, C)) / np.sqrt(C)),
        f32(rng.standard_normal(OC)),
    )


def _forward_tol(x, w, bias, C, per_product=0.0):
    mag = np.abs(x).reshape(-1, C) @ np.abs(w).T
    return ((FP32 * C + per_product) * mag + (FP32 * np.abs(bias) if bias is not None else 0)).reshape(
        x.shape[:-1] + (w.shape[0],)
    ) + 1e-30


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("fn", ["matmul_forward", "matmul_forward_kernel"])
@pytest.mark.parametrize("B, T, C, OC", SIZES)
def test_forward(dev, fn, B, T, C, OC, use_bias):
    x, w, bias = _case(B, T, C, OC, B * T + C + OC)
    bias = bias if use_bias else None
    out = dev.put(np.full((B, T, OC), np.nan))
    with dev.run():
        getattr(ops, fn)(out, dev.put(x), dev.put(w), None if bias is None else dev.put(bias), B, T, C, OC)
    want = np.empty((B, T, OC))
    reference.matmul_forward(want, x, w, bias, B, T, C, OC)
    assert_close("out", dev.get(out), want, rtol=0, atol=_forward_tol(x, w, bias, C))


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("fn", ["matmul_backward", "matmul_backward_kernel"])
@pytest.mark.parametrize("B, T, C, OC", SIZES)
def test_backward_accumulates(dev, fn, B, T, C, OC, use_bias):
    x, w, _ = _case(B, T, C, OC, 3 * B * T + C + OC)
    rng = np.random.default_rng(C * OC)
    dout = f32(rng.standard_normal((B, T, OC)))
    start = [f32(rng.standard_normal(s)) for s in ((B, T, C), (OC, C), (OC,))]
    grads = [dev.put(s) for s in start]
    if not use_bias:
        grads[2] = None
    with dev.run():
        getattr(ops, fn)(*grads, dev.put(dout), dev.put(x), dev.put(w), B, T, C, OC)
    want = [s.copy() for s in start]
    reference.matmul_backward(want[0], want[1], want[2] if use_bias else None, dout, x, w, B, T, C, OC)
    M = B * T
    dy, xx = np.abs(dout).reshape(M, OC), np.abs(x).reshape(M, C)
    assert_close(
        "dinp",
        dev.get(grads[0]),
        want[0],
        rtol=0,
        atol=(FP32 * (OC + 1) * (dy @ np.abs(w))).reshape(B, T, C) + FP32 * np.abs(start[0]) + 1e-30,
    )
    assert_close(
        "dweight",
        dev.get(grads[1]),
        want[1],
        rtol=0,
        atol=FP32 * (M + 1) * (dy.T @ xx) + FP32 * np.abs(start[1]) + 1e-30,
    )
    if use_bias:
        assert_close(
            "dbias", dev.get(grads[2]), want[2], rtol=0, atol=FP32 * (M + 1) * (dy.sum(0) + np.abs(start[2])) + 1e-30
        )


@pytest.mark.parametrize("B, T, C, OC, splits", [(2, 67, 37, 150, 3), (1, 9, 16, 20, 3), (1, 300, 24, 8, 7)])
def test_backward_kernel_split_k(dev, monkeypatch, B, T, C, OC, splits):
    """Split-K (what the GPU uses for dweight's few tiles): slices of the k range atomically add their
    partial tiles; slice lengths that do not divide K, and an empty last slice (K = 9 in 3 slices of 8)."""
    monkeypatch.setattr(mm, "_splits", lambda backend, tiles, K: splits)
    test_backward_accumulates(dev, "matmul_backward_kernel", B, T, C, OC, True)


def test_split_k_fills_an_h100_and_only_there(monkeypatch):
    assert mm._splits("cpu", 1, 8192) == 1
    monkeypatch.setattr(mm, "resident_blocks", lambda backend, block: 132 * 2048 // block)  # 132 SMs
    assert mm._splits("cuda", 36, 8192) == 8  # dweight of 768 x 768 over B*T = 8192: 288 blocks
    assert mm._splits("cuda", 144, 8192) == 2  # 3072 x 768
    assert mm._splits("cuda", 384, 3072) == 1  # dinp of 8192 x 768: already 384 blocks
    assert mm._splits("cuda", 36, 600) == 2  # short K: slices of at least 256


def test_which_kernels_run_on_cpu(monkeypatch):
    """cpu: matmul_* are NumPy's BLAS (no kernel), matmul_*_kernel the tiled kernels (+ the bias kernel)."""
    B, T, C, OC = 1, 5, 8, 12
    x, w, bias = (a.astype(np.float32) for a in _case(B, T, C, OC, 0))
    out, dout = np.empty((B, T, OC), np.float32), np.ones((B, T, OC), np.float32)

    def grads():
        return np.zeros((B, T, C), np.float32), np.zeros((OC, C), np.float32), np.zeros(OC, np.float32)

    spy = KernelSpy(monkeypatch)
    ops.matmul_forward(out, x, w, bias, B, T, C, OC)
    ops.matmul_backward(*grads(), dout, x, w, B, T, C, OC)
    assert spy.names == []
    ops.matmul_forward_kernel(out, x, w, bias, B, T, C, OC)
    ops.matmul_backward_kernel(*grads(), dout, x, w, B, T, C, OC)
    assert spy.names == [
        "matmul_forward_kernel",
        "matmul_backward_dinp_kernel",
        "matmul_backward_dweight_kernel",
        "matmul_backward_bias_kernel",
    ]


def test_unaligned_rows_take_the_scalar_path():
    """An array starting 4 bytes past an allocation: no float4 access may touch it, results still exact."""
    B, T, C, OC = 1, 33, 12, 20
    x, w, bias = _case(B, T, C, OC, 5)
    buf = np.zeros(B * T * C + 1, np.float32)
    xs = buf[1:].reshape(B, T, C)  # 4-byte offset: misaligned for float4
    xs[...] = x
    assert mm._vec(C, xs) == 0 and mm._vec(C, x.astype(np.float32)) == 1
    out = np.full((B, T, OC), np.nan, np.float32)
    ops.matmul_forward_kernel(out, xs, w.astype(np.float32), bias.astype(np.float32), B, T, C, OC)
    want = np.empty((B, T, OC))
    reference.matmul_forward(want, x, w, bias, B, T, C, OC)
    assert_close("out", out, want, rtol=0, atol=_forward_tol(x, w, bias, C))


def test_strided_gemm_numpy_matches_plain_products():
    """The cpu stand-in for cuBLAS in strided_gemm (what attention's blas path runs on): offsets, row
    strides, batch strides, both transposes, alpha and beta."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal(400).astype(np.float32)
    Bm = rng.standard_normal(500).astype(np.float32)
    C0 = rng.standard_normal(300).astype(np.float32)
    C = C0.copy()
    # batch 2; op(A) = A^T with A stored [K=3, M=4] at offset 5, ld 7, batch stride 40;
    # B stored [K=3, N=5] at offset 2, ld 6, stride 50; C [4, 5] at offset 1, ld 9, stride 60
    mm.strided_gemm(True, False, 4, 5, 3, 0.5, A, 5, 7, 40, Bm, 2, 6, 50, 2.0, C, 1, 9, 60, batch=2)
    want = C0.astype(np.float64).copy()
    for i in range(2):
        a = np.array([[A[5 + 40 * i + k * 7 + m] for m in range(4)] for k in range(3)], np.float64).T
        b = np.array([[Bm[2 + 50 * i + k * 6 + n] for n in range(5)] for k in range(3)], np.float64)
        for m in range(4):
            for n in range(5):
                j = 1 + 60 * i + m * 9 + n
                want[j] = 2.0 * C0[j] + 0.5 * (a @ b)[m, n]
    assert_close("C", C, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(IndexError, match="operand C"):
        mm.strided_gemm(False, False, 4, 5, 3, 1.0, A, 0, 3, 12, Bm, 0, 5, 15, 0.0, C, 290, 5, 20)


def _as_package(fn):
    """The check calls ``fn`` as a learner's function; the package's own ops must be allowed inside it."""

    def call(*args):
        with package_scope():
            fn(*args)

    return call


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("suffix", ["", "_kernel"])
def test_passes_the_check(direction, suffix, capsys):
    fn = getattr(ops, f"matmul_{direction}{suffix}")
    result = getattr(check, direction)("matmul", _as_package(fn))
    assert repr(result) == f"PASS matmul_{direction}"
    assert capsys.readouterr().out == f"PASS matmul_{direction}\n"


def test_precision_setting():
    before = ops.matmul_precision()
    try:
        ops.set_matmul_precision("tf32")
        assert ops.matmul_precision() == "tf32"
        ops.set_matmul_precision("fp32")
        assert ops.matmul_precision() == "fp32"
        with pytest.raises(ValueError, match="precision must be 'fp32' or 'tf32'; got 'fp16'"):
            ops.set_matmul_precision("fp16")
    finally:
        ops.set_matmul_precision(before)


def test_errors_say_what_was_expected():
    B, T, C, OC = 2, 3, 4, 5
    x, w, o = np.zeros((B, T, C), np.float32), np.zeros((OC, C), np.float32), np.zeros((B, T, OC), np.float32)
    with pytest.raises(
        ValueError,
        match=r"matmul_forward: 'weight' must be a C-contiguous float32 array of "
        r"shape \(OC, C\) = \(5, 4\); got shape \(4, 5\)",
    ):
        ops.matmul_forward(o, x, w.T.copy(), None, B, T, C, OC)
    with pytest.raises(ValueError, match=r"matmul_forward_kernel: 'bias' must be .*\(OC\) = \(5,\); got dtype float64"):
        ops.matmul_forward_kernel(o, x, w, np.zeros(OC), B, T, C, OC)
    with pytest.raises(ValueError, match=r"matmul_backward: 'dinp' must be .*non-contiguous"):
        ops.matmul_backward(np.zeros((B, T, 2 * C), np.float32)[..., ::2], w.copy(), None, o, x, w, B, T, C, OC)
    with pytest.raises(ValueError, match=r"matmul_backward_kernel: all arrays must be NumPy \(cpu backend\)"):
        ops.matmul_backward_kernel(x.copy(), w.copy(), None, o, FakeCupyArray(x), w, B, T, C, OC)
    with pytest.raises(ValueError, match=r"matmul_forward: size OC must be a positive integer; got 0"):
        ops.matmul_forward(o, x, w, None, B, T, C, 0)


# ---------------------------------------------------------------------------------------------------- GPU


def _gpu():
    cp = pytest.importorskip("cupy")
    return cp


def _gpt2_case(cp, M, C, OC, seed=0):
    rng = cp.random.default_rng(seed)
    x = rng.standard_normal((M, C), dtype=cp.float32)
    w = (rng.standard_normal((OC, C), dtype=cp.float32) / np.float32(np.sqrt(C))).astype(cp.float32)
    b = rng.standard_normal(OC, dtype=cp.float32)
    return x, w, b


def _rows_check(name, got_rows, x_rows, w, bias, C, per_product=0.0):
    want = x_rows @ w.T + bias
    assert_close(name, got_rows, want, rtol=0, atol=_forward_tol(x_rows[None], w, bias, C, per_product)[0])


KERNELS = [
    "matmul_forward_kernel",
    "matmul_backward_dinp_kernel",
    "matmul_backward_dweight_kernel",
    "matmul_backward_bias_kernel",
]


@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
def test_kernels_compile_with_nvrtc_without_warnings(arch):
    """Every kernel of kernels/matmul.cu is extern "C" and compiles for the T4 and the H100 (no GPU needed)."""
    from llmc_kernels.ops import _loader
    from llmc_kernels.runtime import nvrtc
    from llmc_kernels.runtime.signature import find_kernel, list_kernels
    from llmc_kernels.runtime.source import SourceOrigin

    src = _loader.source("matmul.cu")
    assert list_kernels(src) == KERNELS and all(find_kernel(src, k).extern_c for k in KERNELS)
    if not nvrtc.available():
        pytest.skip(f"NVRTC unavailable: {nvrtc.unavailable_reason()}")
    assert nvrtc.check_compile(src, KERNELS[0], arch=arch, origin=SourceOrigin("matmul.cu", 1)) == []


@pytest.mark.gpu
@pytest.mark.parametrize("fn", ["matmul_forward", "matmul_forward_kernel"])
@pytest.mark.parametrize("OC", [3072, 50304], ids=["fc", "logits"])
def test_gpt2_forward_on_gpu(fn, OC):
    """B*T = 8192 rows, C = 768: the MLP's fc (OC = 3072) and the classifier (OC = Vp = 50304)."""
    cp = _gpu()
    M, C = 8192, 768
    x, w, b = _gpt2_case(cp, M, C, OC)
    out = cp.full((8, 1024, OC), cp.nan, dtype=cp.float32)
    getattr(ops, fn)(out, x.reshape(8, 1024, C), w, b, 8, 1024, C, OC)
    rows = np.r_[0:3, 4095:4100, M - 3 : M]
    xh, wh, bh = (f32(a.get()) for a in (x, w, b))
    _rows_check("out", out.reshape(M, OC)[rows].get(), xh[rows], wh, bh, C)


@pytest.mark.gpu
@pytest.mark.parametrize("fn", ["matmul_backward", "matmul_backward_kernel"])
def test_gpt2_backward_on_gpu(fn):
    cp = _gpu()
    M, C, OC = 8192, 768, 3072
    x, w, _ = _gpt2_case(cp, M, C, OC, 1)
    dout = cp.random.default_rng(2).standard_normal((M, OC), dtype=cp.float32)
    dinp, dw, db = cp.ones((M, C), cp.float32), cp.ones((OC, C), cp.float32), cp.ones(OC, cp.float32)
    getattr(ops, fn)(
        dinp.reshape(8, 1024, C), dw, db, dout.reshape(8, 1024, OC), x.reshape(8, 1024, C), w, 8, 1024, C, OC
    )
    xh, wh, dh = (f32(a.get()) for a in (x, w, dout))
    rows = np.r_[0:2, 5000:5003, M - 2 : M]
    assert_close(
        "dinp", dinp[rows].get(), 1 + dh[rows] @ wh, rtol=0, atol=FP32 * (OC + 1) * (np.abs(dh[rows]) @ np.abs(wh) + 1)
    )
    cols = np.r_[0:3, 1500:1503, OC - 3 : OC]  # dweight rows: sums over all 8192 positions
    assert_close(
        "dweight",
        dw[cols].get(),
        1 + dh[:, cols].T @ xh,
        rtol=0,
        atol=FP32 * (M + 1) * (np.abs(dh[:, cols]).T @ np.abs(xh) + 1),
    )
    assert_close("dbias", db.get(), 1 + dh.sum(0), rtol=0, atol=FP32 * (M + 1) * (np.abs(dh).sum(0) + 1))


@pytest.mark.gpu
def test_tf32_is_used_and_within_its_tolerance():
    cp = _gpu()
    if not mm.tf32_supported():
        pytest.skip("this GPU has no TF32 (compute capability < 8.0)")
    M, C, OC = 8192, 768, 3072
    x, w, b = _gpt2_case(cp, M, C, OC, 3)
    out = cp.empty((M, OC), cp.float32)
    before = ops.matmul_precision()
    ops.set_matmul_precision("tf32")
    try:
        ops.matmul_forward(out.reshape(8, 1024, OC), x.reshape(8, 1024, C), w, b, 8, 1024, C, OC)
        also = cp.matmul(x, w.T)  # CuPy's own default follows the setting
    finally:
        ops.set_matmul_precision(before)
    rows = np.r_[0:4, M - 4 : M]
    xh, wh, bh = (f32(a.get()) for a in (x, w, b))
    want = xh[rows] @ wh.T + bh
    mag = np.abs(xh[rows]) @ np.abs(wh.T)
    _rows_check("out (tf32)", out[rows].get(), xh[rows], wh, bh, C, per_product=2 * 2.0**-11)
    err = np.abs(out[rows].get() - want) / mag
    assert err.max() > 10 * FP32, "TF32 was asked for, but the results have fp32 accuracy"
    assert (np.abs(also[rows].get() + bh - want) / mag).max() > 10 * FP32, "cupy.matmul ignored the setting"


@pytest.mark.gpu
def test_tiled_kernel_within_2x_of_cublas():
    """The performance target: the tiled SGEMM within 2x of cuBLAS fp32 at 8192 x 768 -> 3072 (H100)."""
    cp = _gpu()
    M, C, OC = 8192, 768, 3072
    x, w, b = _gpt2_case(cp, M, C, OC)
    out = cp.empty((8, 1024, OC), cp.float32)
    args = (out, x.reshape(8, 1024, C), w, b, 8, 1024, C, OC)

    def timed(fn):
        for _ in range(3):
            fn(*args)
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(20):
            fn(*args)
        stop.record()
        stop.synchronize()
        return cp.cuda.get_elapsed_time(start, stop) / 20

    ms_kernel, ms_cublas = timed(ops.matmul_forward_kernel), timed(ops.matmul_forward)
    tflops = 2 * M * C * OC / 1e9
    print(
        f"tiled {ms_kernel:.3f} ms ({tflops / ms_kernel:.1f} TFLOP/s), cuBLAS {ms_cublas:.3f} ms "
        f"({tflops / ms_cublas:.1f} TFLOP/s), ratio {ms_kernel / ms_cublas:.2f}"
    )
    if "H100" in cp.cuda.runtime.getDeviceProperties(0)["name"].decode():
        assert ms_kernel <= 2 * ms_cublas
