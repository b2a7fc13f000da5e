"""ops.layernorm_forward / layernorm_backward (kernels/layernorm.cu) against the float64 reference.

Error model (float32 kernel vs float64 math on the same float32 inputs): the row mean is a sum of C terms
in float32 (32 lane partials of C/32 terms, then a 5-step tree), off by up to ~(C/32 + 5) * 6e-8 * max|x|;
the normalized value n = (x - mean) * rstd inherits that times rstd. So per row
    tol_n = 1e-6 + (C/32 + 5) * 6e-8 * max|x| * rstd
and out = n * w + b is off by tol_n * |w| plus rounding (rtol 1e-5). The backward's dinp is rstd times
terms of size |w * dout| and n * mean(w * dout * n): tolerance rstd * max|w * dout| * 4 * (tol_n + 1e-6).
dweight and dbias sum B*T float32 terms: |error| <= 1e-6 * (sum of |terms| + |start value|).
"""

import numpy as np
import pytest
from _ops_a_helpers import FakeCupyArray, KernelSpy, assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import ops, reference

# (B, T, C, kind): awkward sizes; more rows than the cpu grid has warps; large-magnitude and near-constant
# rows (the variance is then smaller than eps)
CASES = [
    (1, 1, 1, "normal"),
    (2, 3, 5, "normal"),
    (3, 17, 64, "normal"),
    (2, 33, 100, "normal"),
    (1, 70, 33, "normal"),
    (2, 7, 768, "large"),
    (3, 5, 37, "near_constant"),
    (1, 2, 300, "large"),
]


def _inputs(B, T, C, kind, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, T, C))
    if kind == "large":
        x = x * 1e3 + 1e4
    elif kind == "near_constant":
        x = 5.0 + 1e-3 * x
    w = 1.0 + 0.5 * rng.standard_normal(C)
    b = 0.5 * rng.standard_normal(C)
    return f32(x), f32(w), f32(b)


def _tol_n(x, rstd):
    C = x.shape[-1]
    return 1e-6 + (C / 32 + 5) * 6e-8 * np.abs(x).max(axis=-1, keepdims=True) * rstd[..., None]


# threads per row: None = the wrapper's choice for the backend (cpu: 1), else forced (every shuffle width)
LANES = [None, 2, 8, 32]


@pytest.fixture(params=LANES, ids=lambda v: f"lanes={v or 'auto'}")
def lanes(request, monkeypatch):
    from llmc_kernels.ops import layernorm

    monkeypatch.setattr(layernorm, "LANES", request.param)
    return request.param


@pytest.mark.parametrize("B, T, C, kind", CASES)
def test_forward(dev, lanes, B, T, C, kind):
    x, w, b = _inputs(B, T, C, kind, C + T)
    out, mean, rstd = (dev.put(np.full(s, np.nan)) for s in ((B, T, C), (B, T), (B, T)))
    with dev.run():
        ops.layernorm_forward(out, mean, rstd, dev.put(x), dev.put(w), dev.put(b), B, T, C)
    want = [np.empty((B, T, C)), np.empty((B, T)), np.empty((B, T))]
    reference.layernorm_forward(*want, x, w, b, B, T, C)
    tol_n = _tol_n(x, want[2])
    assert_close("mean", dev.get(mean), want[1], rtol=1e-6, atol=(C / 32 + 5) * 6e-8 * np.abs(x).max(axis=-1))
    assert_close("rstd", dev.get(rstd), want[2], rtol=1e-5 + 2 * tol_n[..., 0], atol=0)
    assert_close("out", dev.get(out), want[0], rtol=1e-5, atol=tol_n * np.abs(w) + 1e-6)


def _backward_case(B, T, C, kind, seed):
    x, w, _ = _inputs(B, T, C, kind, seed)
    rng = np.random.default_rng(seed + 1)
    dout = f32(rng.standard_normal((B, T, C)))
    mean, rstd = np.empty((B, T)), np.empty((B, T))
    reference.layernorm_forward(np.empty((B, T, C)), mean, rstd, x, w, np.zeros(C), B, T, C)
    mean, rstd = f32(mean), f32(rstd)  # what the float32 forward hands the backward
    start = [f32(rng.standard_normal(s)) for s in ((B, T, C), (C,), (C,))]
    return x, w, dout, mean, rstd, start


def _check_backward(dev, B, T, C, kind, seed):
    x, w, dout, mean, rstd, start = _backward_case(B, T, C, kind, seed)
    grads = [dev.put(s) for s in start]
    with dev.run():
        ops.layernorm_backward(*grads, dev.put(dout), dev.put(x), dev.put(w), dev.put(mean), dev.put(rstd), B, T, C)
    want = [s.copy() for s in start]
    reference.layernorm_backward(*want, dout, x, w, mean, rstd, B, T, C)
    norm = (x - mean[..., None]) * rstd[..., None]
    tol_n = _tol_n(x, rstd)
    tol_dinp = rstd[..., None] * np.abs(w * dout).max(axis=-1, keepdims=True) * 4 * (tol_n + 1e-6)
    assert_close("dinp", dev.get(grads[0]), want[0], rtol=1e-5, atol=tol_dinp)
    mag_w = np.abs(start[1]) + np.abs(norm * dout).sum(axis=(0, 1)) + (tol_n * np.abs(dout)).sum(axis=(0, 1))
    assert_close("dweight", dev.get(grads[1]), want[1], rtol=0, atol=2e-6 * mag_w)
    assert_close(
        "dbias", dev.get(grads[2]), want[2], rtol=0, atol=1e-6 * (np.abs(start[2]) + np.abs(dout).sum(axis=(0, 1)))
    )


@pytest.mark.parametrize("B, T, C, kind", CASES)
def test_backward_accumulates(dev, lanes, B, T, C, kind):
    _check_backward(dev, B, T, C, kind, 7 * C + T)


def test_backward_wide_rows_use_global_atomics(dev, lanes, monkeypatch):
    """C > 6144: the block's shared dbias/dweight partials would exceed 48 KiB; the fallback kernel runs."""
    spy = KernelSpy(monkeypatch)
    _check_backward(dev, 1, 3, 6145, "normal", 11)
    assert spy.names == ["layernorm_backward_global_kernel"]


def test_forward_then_backward_matches_finite_differences():
    """The kernels' gradients of L = sum(out * dout) against central differences of the float64 forward."""
    B, T, C = 1, 2, 6
    x, w, b = _inputs(B, T, C, "normal", 3)
    dout = f32(np.random.default_rng(4).standard_normal((B, T, C)))
    out, mean, rstd = np.empty((B, T, C), np.float32), np.empty((B, T), np.float32), np.empty((B, T), np.float32)
    x32, w32, b32 = (a.astype(np.float32) for a in (x, w, b))
    ops.layernorm_forward(out, mean, rstd, x32, w32, b32, B, T, C)
    grads = {"inp": np.zeros((B, T, C), np.float32), "weight": np.zeros(C, np.float32), "bias": np.zeros(C, np.float32)}
    ops.layernorm_backward(
        grads["inp"], grads["weight"], grads["bias"], dout.astype(np.float32), x32, w32, mean, rstd, B, T, C
    )

    def loss(inp, weight, bias):
        o = np.empty((B, T, C))
        reference.layernorm_forward(o, np.empty((B, T)), np.empty((B, T)), inp, weight, bias, B, T, C)
        return float((o * dout).sum())

    point, h = {"inp": x, "weight": w, "bias": b}, 1e-6
    for name, got in grads.items():
        fd = np.empty(point[name].shape)
        for i in np.ndindex(fd.shape):
            plus, minus = point[name].copy(), point[name].copy()
            plus[i] += h
            minus[i] -= h
            fd[i] = (loss(**{**point, name: plus}) - loss(**{**point, name: minus})) / (2 * h)
        assert_close(f"d{name}", got, fd, rtol=1e-4, atol=1e-4)


def test_lanes_per_row():
    """A warp per row from C = 256 on the GPU, ~8 elements per lane below; one thread per row on the cpu."""
    from llmc_kernels.ops.layernorm import lanes_for

    assert [lanes_for("cuda", C) for C in (1, 7, 8, 16, 64, 100, 255, 256, 768)] == [1, 1, 1, 2, 8, 8, 16, 32, 32]
    assert lanes_for("cpu", 768) == 1


def test_errors_say_what_was_expected():
    B, T, C = 2, 3, 4
    a3, a2, a1 = np.zeros((B, T, C), np.float32), np.zeros((B, T), np.float32), np.zeros(C, np.float32)
    with pytest.raises(
        ValueError,
        match=r"layernorm_forward: 'rstd' must be a C-contiguous float32 array of shape \(B, T\) = \(2, 3\); got shape \(3, 2\)",  # noqa: E501
    ):
        ops.layernorm_forward(a3.copy(), a2.copy(), np.zeros((T, B), np.float32), a3, a1, a1, B, T, C)
    with pytest.raises(ValueError, match=r"'weight' must be .*got dtype float64"):
        ops.layernorm_forward(a3.copy(), a2.copy(), a2.copy(), a3, np.zeros(C), a1, B, T, C)
    with pytest.raises(ValueError, match=r"layernorm_backward: 'dinp' must be .*non-contiguous"):
        ops.layernorm_backward(
            np.zeros((B, T, 2 * C), np.float32)[..., ::2], a1.copy(), a1.copy(), a3, a3, a1, a2, a2, B, T, C
        )
    with pytest.raises(ValueError, match=r"layernorm_backward: all arrays must be NumPy \(cpu backend\) or all CuPy"):
        ops.layernorm_backward(a3.copy(), a1.copy(), a1.copy(), a3, FakeCupyArray(a3), a1, a2, a2, B, T, C)
    with pytest.raises(ValueError, match=r"size C must be a positive integer; got -4"):
        ops.layernorm_forward(a3.copy(), a2.copy(), a2.copy(), a3, a1, a1, B, T, -4)
