"""The fast model's fused ops (llmc_kernels/ops/fused.py, ops/linear.py) against the SPEC references they
replace, on the cpu backend under both thread orders (and on cuda, marked gpu): awkward sizes (rows and
widths that are not multiples of 4, 32 or 256; a tiny case), float4 and scalar paths (offset views are not
16-byte aligned), accumulators pre-filled, outputs poisoned."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from _ops_a_helpers import assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import ops, reference
from llmc_kernels.ops import fused

ROWS = [(1, 1, 4), (2, 3, 37), (3, 5, 64), (2, 7, 300)]  # (B, T, C)


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))  # the same draw in every process


def _unaligned(d, host):
    """A device copy of ``host`` that starts 4 bytes into its allocation (float4 paths must step aside)."""
    flat = d.put(np.concatenate([[0.0], np.asarray(host, np.float64).reshape(-1)]))
    return flat[1:].reshape(np.shape(host))


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "offset"])
@pytest.mark.parametrize("with_residual", [True, False], ids=["residual", "plain"])
@pytest.mark.parametrize("B, T, C", ROWS)
def test_residual_layernorm_forward(dev, B, T, C, with_residual, aligned):
    rng = _rng(B, T, C, with_residual)
    x1, x2 = f32(rng.standard_normal((B, T, C)) * 3), f32(rng.standard_normal((B, T, C)))
    b2, w, b = f32(rng.standard_normal(C)), f32(rng.standard_normal(C)), f32(rng.standard_normal(C))
    put = dev.put if aligned else (lambda a: _unaligned(dev, a))
    res, out = put(np.full((B, T, C), np.nan)), put(np.full((B, T, C), np.nan))
    mean, rstd = dev.put(np.full((B, T), np.nan)), dev.put(np.full((B, T), np.nan))
    args = (put(x1), put(x2), put(b2)) if with_residual else (put(x1), None, None)
    with dev.run():
        ops.residual_layernorm_forward(res if with_residual else None, out, mean, rstd, *args, put(w), put(b), B, T, C)
    x = x1 + x2 + b2 if with_residual else x1
    want = [np.empty((B, T, C)), np.empty((B, T)), np.empty((B, T))]
    reference.layernorm_forward(*want, x, w, b, B, T, C)
    if with_residual:
        assert_close("res_out", dev.get(res), x, rtol=1e-6, atol=1e-6)
    else:
        assert np.isnan(dev.get(res)).all(), "res_out must not be written without inp2"
    assert_close("out", dev.get(out), want[0], rtol=1e-4, atol=3e-5)
    assert_close("mean", dev.get(mean), want[1], rtol=1e-5, atol=1e-6)
    assert_close("rstd", dev.get(rstd), want[2], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "offset"])
@pytest.mark.parametrize("B, T, OC", [(1, 1, 3), (2, 3, 36), (3, 5, 64), (2, 7, 300)])
def test_bias_gelu_and_bias_forward(dev, B, T, OC, aligned):
    rng = _rng(B, T, OC, "gelu")
    pre = f32(rng.standard_normal((B, T, OC)) * 4)
    pre.flat[0] = -30.0  # the saturated tail
    bias = f32(rng.standard_normal(OC))
    put = dev.put if aligned else (lambda a: _unaligned(dev, a))
    p, out, bb = put(pre), put(np.full((B, T, OC), np.nan)), put(bias)
    with dev.run():
        ops.bias_gelu_forward(p, out, bb, B, T, OC)
    x = pre + bias
    want = np.empty_like(x)
    reference.gelu_forward(want, x, x.size)
    assert_close("pre", dev.get(p), x, rtol=1e-6, atol=1e-6)
    assert_close("out", dev.get(out), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "offset"])
@pytest.mark.parametrize("N", [1, 7, 64, 1001])
def test_gelu_backward_inplace(dev, N, aligned):
    rng = _rng(N, "gelub")
    pre, d = f32(rng.standard_normal(N) * 4), f32(rng.standard_normal(N))
    put = dev.put if aligned else (lambda a: _unaligned(dev, a))
    dd = put(d)
    with dev.run():
        ops.gelu_backward_inplace(dd, put(pre), N)
    want = np.zeros(N)
    reference.gelu_backward(want, pre, d, N)
    assert_close("d", dev.get(dd), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "offset"])
@pytest.mark.parametrize("B, T, OC", [(1, 1, 1), (2, 3, 37), (4, 33, 64), (3, 50, 70), (5, 131, 516)])
def test_bias_backward_accumulates(dev, B, T, OC, aligned):
    """OC % 4 == 0 and aligned: the float4 kernel (columns not a multiple of its 128, rows not of its
    four-row unroll); otherwise the scalar one."""
    rng = _rng(B, T, OC, "biasb")
    dout, start = f32(rng.standard_normal((B, T, OC))), f32(rng.standard_normal(OC))
    put = dev.put if aligned else (lambda a: _unaligned(dev, a))
    db = put(start)
    with dev.run():
        ops.bias_backward(db, put(dout), B, T, OC)
    assert_close("dbias", dev.get(db), start + dout.reshape(-1, OC).sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("N", [1, 5, 300, 8192])
def test_mean_loss(dev, N):
    losses = f32(_rng(N, "loss").uniform(0, 11, N))
    out = dev.put(np.full(3, np.nan))
    with dev.run():
        ops.mean_loss(out, dev.put(losses), N)
    got = dev.get(out)
    assert abs(got[0] - losses.mean()) <= 1e-6 * losses.mean() and np.isnan(got[1:]).all()


@pytest.mark.parametrize("n", [1, 7, 1000, 4099])
@pytest.mark.parametrize("t", [1, 3, 1000])
def test_adamw_device_matches_adamw_update(dev, n, t):
    """The same arithmetic as ops.adamw_update, the step's numbers read from the device."""
    rng = _rng(n, t, "adamw")
    p, g = rng.standard_normal(n), rng.standard_normal(n)
    m, v = rng.standard_normal(n) * 0.1, rng.uniform(0, 0.1, n)
    a = [dev.put(x) for x in (p, g, m, v)]
    b = [dev.put(x) for x in (p, g, m, v)]
    lr, b1, b2, eps, wd = 3e-4, 0.9, 0.95, 1e-8, 0.1
    with dev.run():
        ops.adamw_update(*a, n, lr, b1, b2, eps, wd, t)
        ops.adamw_update_device(*b, dev.put(fused.adamw_hyper(lr, b1, b2, eps, wd, t)), n)
    for name, x, y in zip("pgmv", a, b):
        assert_close(name, dev.get(y), dev.get(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("aligned", [True, False], ids=["aligned", "offset"])
@pytest.mark.parametrize("M, K, N", [(1, 1, 1), (6, 37, 5), (40, 64, 192), (333, 70, 129)])
def test_linear_products(dev, M, K, N, aligned):
    """On cuda through cuBLASLt (bias in the epilogue); offset views are only 4-byte aligned, which the
    plan must be told (its default assumes 256)."""
    rng = _rng(M, K, N, "linear")
    x, w, dy = (f32(rng.standard_normal(s)) for s in ((M, K), (N, K), (M, N)))
    bias, start = f32(rng.standard_normal(N)), f32(rng.standard_normal((N, K)))
    put = dev.put if aligned else (lambda a: _unaligned(dev, a))
    out, outb, dx = put(np.full((M, N), np.nan)), put(np.full((M, N), np.nan)), put(np.full((M, K), np.nan))
    dw, X, W, DY, BIAS = put(start), put(x), put(w), put(dy), put(bias)
    with dev.run():
        ops.linear_forward(out, X, W, M, K, N)
        ops.linear_forward(outb, X, W, M, K, N, BIAS)
        ops.linear_backward_input(dx, DY, W, M, K, N)
        ops.linear_backward_weight(dw, DY, X, M, K, N)
    tol = dict(rtol=1e-4, atol=1e-5 * max(K, M))
    assert_close("out", dev.get(out), x @ w.T, **tol)
    assert_close("out with bias", dev.get(outb), x @ w.T + bias, **tol)
    assert_close("dinp", dev.get(dx), dy @ w, **tol)
    assert_close("dweight", dev.get(dw), start + dy.T @ x, **tol)
    with dev.run():
        ops.linear_backward_input(dx, DY, W, M, K, N, accumulate=True)
    assert_close("dinp accumulated", dev.get(dx), 2 * (dy @ w), **tol)


@pytest.mark.gpu
def test_linear_bias_without_cublaslt(monkeypatch):
    """Where cuBLASLt is missing the products fall back to cublasGemmEx and the bias to a second pass."""
    import cupy as cp

    from llmc_kernels.ops import _cublaslt

    rng = _rng("no lt")
    x, w, bias = (f32(rng.standard_normal(s)) for s in ((50, 24), (30, 24), 30))
    X, W, BIAS = (cp.asarray(a, dtype=cp.float32) for a in (x, w, bias))
    out, out2 = (cp.full((50, 30), np.nan, dtype=cp.float32) for _ in range(2))
    ops.linear_forward(out, X, W, 50, 24, 30, BIAS)
    assert not _cublaslt._unavailable and any(_cublaslt._plans.values()), "the product went through cuBLASLt"
    monkeypatch.setattr(_cublaslt, "_unavailable", ["simulated"])
    ops.linear_forward(out2, X, W, 50, 24, 30, BIAS)
    assert_close("out (cuBLASLt)", cp.asnumpy(out), x @ w.T + bias, rtol=1e-4, atol=1e-4)
    assert_close("out (GemmEx + bias pass)", cp.asnumpy(out2), x @ w.T + bias, rtol=1e-4, atol=1e-4)


def test_fused_ops_validate_arguments():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="bias2"):
        ops.residual_layernorm_forward(
            x,
            x,
            np.zeros((2, 3), np.float32),
            np.zeros((2, 3), np.float32),
            x,
            x,
            None,
            np.ones(4, np.float32),
            np.zeros(4, np.float32),
            2,
            3,
            4,
        )
    with pytest.raises(ValueError, match="bias_backward: 'dbias' must be .*shape \\(OC\\) = \\(4,\\)"):
        ops.bias_backward(np.zeros(5, np.float32), x, 2, 3, 4)
    with pytest.raises(ValueError, match="t counts from 1"):
        fused.adamw_hyper(1e-3, 0.9, 0.999, 1e-8, 0.0, 0)
