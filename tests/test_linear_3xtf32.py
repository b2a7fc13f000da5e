"""3xTF32 products of the fast model's linear layers (ops/linear.py, kernels/tf32_split.cu).

The split kernel runs on every backend: each element x becomes hi + lo, both exact TF32 values (the low 13
mantissa bits clear), hi + lo = x within 2^-22 |x| (lo is rounded to 11 bits: |x - hi - lo| <= 2^-11 |lo|
<= 2^-22 |x|), a NaN or inf gives a NaN hi; the three copies land where the product's reduction expects
them, side by side per row or stacked, at awkward sizes.

On a GPU with TF32 (gpu marker): with ``split`` and precision "fp32" the products with a reduction of at most
SPLIT_MAX_K run as one TF32 cuBLAS product over 3K, and come within 4e-6 of the float64 product, relative to
its largest magnitude (SGEMM: ~1.4e-6 at K = 768, measured; plain TF32: ~3e-4, which this tolerance
rejects, so the test sees a product that skipped the split); longer reductions, precision "tf32" and no
``split`` give exactly the product without it; a scratch too small is a ValueError.
"""

from __future__ import annotations

import numpy as np
import pytest
from _ops_a_helpers import dev  # noqa: F401  (fixture)

from llmc_kernels import ops, runtime
from llmc_kernels.ops import linear
from llmc_kernels.ops.matmul import matmul_precision, set_matmul_precision, tf32_supported

LOW13 = 0x1FFF


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("rows, cols", [(1, 1), (7, 13), (33, 70), (130, 5)])
@pytest.mark.parametrize("stacked", [False, True], ids=["side-by-side", "stacked"])
def test_tf32_split3_kernel(dev, rows, cols, stacked):  # noqa: F811
    rng = np.random.default_rng(rows * 1000 + cols)
    x = rng.standard_normal((rows, cols)) * np.exp(rng.uniform(-20, 20, (rows, cols)))
    x.flat[0] = 0.0
    if x.size > 3:
        x.flat[1], x.flat[2], x.flat[3] = -1.0 / 3.0, 3.0e34, np.nan
    x = x.astype(np.float32)
    parts = 0b101  # copies 0 and 2 lo, copy 1 hi: any pattern goes where it is asked
    out = dev.put(np.full(3 * x.size, np.nan))
    with dev.run():
        linear.tf32_parts(out, dev.put(x), rows, cols, parts, stacked, backend=dev.name)
    got = dev.get(out).astype(np.float32)
    copies = got.reshape(3, rows, cols) if stacked else got.reshape(rows, 3, cols).transpose(1, 0, 2)
    lo, hi = copies[0], copies[1]
    np.testing.assert_array_equal(_bits(copies[2]), _bits(lo), err_msg="copy 2 is lo, as copy 0")
    finite = np.isfinite(x)
    assert np.all(_bits(hi[finite]) & LOW13 == 0) and np.all(_bits(lo[finite]) & LOW13 == 0), "not TF32 values"
    x64, err = x[finite].astype(np.float64), np.abs(x[finite].astype(np.float64) - hi[finite] - lo[finite])
    assert np.all(err <= 2.0**-22 * np.abs(x64)), f"hi + lo misses x by {np.max(err / np.maximum(np.abs(x64), 1e-300))}"
    assert np.all(np.abs(lo[finite]) <= 2.0**-11 * np.abs(x64) * (1 + 2.0**-10)), "lo is not the small part"
    assert np.all(np.isnan(hi[~finite])), "a NaN must stay a NaN"


def _gpu():
    cp = pytest.importorskip("cupy")
    if not runtime.gpu_available():
        pytest.skip(f"no usable GPU: {runtime.gpu_status()[1]}")
    if not tf32_supported():
        pytest.skip("no TF32 tensor cores (compute capability < 8.0) or the sm_75 path forced")
    return cp


@pytest.fixture
def fp32_precision():
    before = matmul_precision()
    set_matmul_precision("fp32")
    yield
    set_matmul_precision(before)


def _rel(got, want) -> float:
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.mark.gpu
@pytest.mark.parametrize("M, K, N", [(333, 70, 129), (1000, 768, 77), (64, 1024, 300)])
def test_linear_products_3xtf32(M, K, N, fp32_precision):
    """Forward (with and without bias) and input gradient (written and accumulated) as 3xTF32."""
    cp = _gpu()
    from llmc_kernels.ops import _cublas, _cublaslt

    rng = np.random.default_rng(M + K + N)
    x, w, dy, bias = (
        rng.standard_normal((M, K)),
        rng.standard_normal((N, K)),
        rng.standard_normal((M, N)),
        rng.standard_normal(N),
    )
    X, W, DY, BIAS = (cp.asarray(a, dtype=cp.float32) for a in (x, w, dy, bias))
    x, w, dy, bias = (a.astype(np.float32).astype(np.float64) for a in (x, w, dy, bias))
    split = cp.empty(max(linear.split_numel(M, K, N), linear.split_numel(M, N, K)), dtype=cp.float32)
    out, outb, dx = cp.empty((M, N), cp.float32), cp.empty((M, N), cp.float32), cp.empty((M, K), cp.float32)
    _cublaslt._plans.clear()
    ops.linear_forward(out, X, W, M, K, N, split=split)
    ops.linear_forward(outb, X, W, M, K, N, BIAS, split=split)
    tol = 4e-6
    assert _rel(cp.asnumpy(out), x @ w.T) < tol
    assert _rel(cp.asnumpy(outb), x @ w.T + bias) < tol
    tf32_plans = [k for k, p in _cublaslt._plans.items() if p and k[9] == _cublas.COMPUTE_32F_FAST_TF32]
    assert any(k[5] == 3 * K for k in tf32_plans), "the forward ran one TF32 product over 3K"
    if N <= linear.SPLIT_MAX_K:
        ops.linear_backward_input(dx, DY, W, M, K, N, split=split)
        assert _rel(cp.asnumpy(dx), dy @ w) < tol
        ops.linear_backward_input(dx, DY, W, M, K, N, accumulate=True, split=split)
        assert _rel(cp.asnumpy(dx), 2 * (dy @ w)) < tol
    plain = cp.empty((M, N), cp.float32)
    set_matmul_precision("tf32")  # the tolerance tells a plain TF32 product from a 3xTF32 one
    ops.linear_forward(plain, X, W, M, K, N)
    assert _rel(cp.asnumpy(plain), x @ w.T) > tol
    ops.linear_forward(out, X, W, M, K, N, split=split)  # precision "tf32": the split is not used
    assert cp.array_equal(out, plain)


@pytest.mark.gpu
def test_linear_long_reduction_keeps_sgemm(fp32_precision):
    """A reduction longer than SPLIT_MAX_K ignores ``split``: bit for bit the SGEMM product."""
    cp = _gpu()
    M, K, N = 96, linear.SPLIT_MAX_K + 5, 40
    rng = np.random.default_rng(7)
    X, W = cp.asarray(rng.standard_normal((M, K)), cp.float32), cp.asarray(rng.standard_normal((N, K)), cp.float32)
    a, b = cp.empty((M, N), cp.float32), cp.empty((M, N), cp.float32)
    ops.linear_forward(a, X, W, M, K, N, split=cp.empty(linear.split_numel(M, K, N), cp.float32))
    ops.linear_forward(b, X, W, M, K, N)
    assert cp.array_equal(a, b)


@pytest.mark.gpu
def test_linear_bad_split(fp32_precision):
    """A scratch too small, of another dtype or shape, or overlapping the product's arrays: a ValueError
    before anything is written."""
    cp = _gpu()
    M, K, N = 10, 8, 6
    one = cp.ones((M, K), cp.float32)
    need = linear.split_numel(M, K, N)
    for bad in (cp.empty(need, cp.float64), cp.empty((2, need), cp.float32), cp.empty(2 * need, cp.float32)[::2]):
        with pytest.raises(ValueError, match="contiguous 1-D CuPy float32"):
            ops.linear_forward(cp.empty((M, N), cp.float32), one, cp.ones((N, K), cp.float32), M, K, N, split=bad)
    big = cp.zeros(need + M * N, cp.float32)
    out = big[need:].reshape(M, N)
    with pytest.raises(ValueError, match="overlap"):
        ops.linear_forward(out, one, cp.ones((N, K), cp.float32), M, K, N, split=big)
    assert not out.any(), "nothing written"
    with pytest.raises(ValueError, match="split_numel"):
        ops.linear_forward(
            cp.empty((M, N), cp.float32), one, cp.ones((N, K), cp.float32), M, K, N, split=cp.empty(5, cp.float32)
        )


def test_linear_split_ignored_on_cpu():
    """On the cpu backend the products are NumPy's, ``split`` or not."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((9, 5)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    a, b = np.empty((9, 4), np.float32), np.empty((9, 4), np.float32)
    ops.linear_forward(a, x, w, 9, 5, 4, split=np.empty(linear.split_numel(9, 5, 4), np.float32))
    ops.linear_forward(b, x, w, 9, 5, 4)
    np.testing.assert_array_equal(a, b)
