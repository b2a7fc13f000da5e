"""ops.adamw_update (kernels/adamw.cu) against the float64 reference.

Tolerances. The kernel computes 1 - beta in float32 (float32(0.999) is 1.3e-8 off, so 1 - beta2 is 1.3e-5
off relative) and the float64 reference does not: v agrees to rtol 3e-5. m = beta1 m + (1 - beta1) g may
cancel, so its error is relative to the terms: 1e-6 * (beta1 |m0| + (1 - beta1) |g|) (+ rtol 3e-5). The
parameter step lr * r, r = m_hat / (sqrt(v_hat) + eps), inherits those: lr * (dm / (1 - beta1^t) /
(sqrt(v_hat) + eps) + 3e-5 |r|), plus a float32 rounding of p. A missing bias correction, decay or eps,
or 1 - beta swapped for beta, is orders of magnitude above that.
"""

import numpy as np
import pytest
from _ops_a_helpers import FakeCupyArray, assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import ops, reference

HYPER = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)


def _state(n, seed):
    rng = np.random.default_rng(seed)
    params = f32(rng.standard_normal(n) * 0.02)
    grads = f32(rng.standard_normal(n) * 0.01)
    m = f32(rng.standard_normal(n) * 0.003)  # realistic moments from earlier steps
    v = f32(np.abs(rng.standard_normal(n)) * 1e-4)
    return params, grads, m, v


def _tolerances(p0, g, m0, m, v, t, lr, beta1, beta2, eps, weight_decay):
    tol_m = 1e-6 * (beta1 * np.abs(m0) + (1 - beta1) * np.abs(g))
    denom = np.sqrt(v / (1 - beta2**t)) + eps
    r = m / (1 - beta1**t) / denom
    tol_p = lr * ((tol_m + 3e-5 * np.abs(m)) / (1 - beta1**t) / denom + 3e-5 * np.abs(r)) + 1.2e-7 * np.abs(p0)
    return tol_m, tol_p


@pytest.mark.parametrize("n", [1, 3, 1000, 10007])
@pytest.mark.parametrize("t", [1, 2, 10, 1000])
def test_update(dev, n, t):
    params, grads, m, v = _state(n, n + t)
    d = [dev.put(a) for a in (params, grads, m, v)]
    with dev.run():
        ops.adamw_update(*d, n, HYPER["lr"], HYPER["beta1"], HYPER["beta2"], HYPER["eps"], HYPER["weight_decay"], t)
    want = [a.copy() for a in (params, grads, m, v)]
    reference.adamw_update(*want, n, **HYPER, t=t)
    tol_m, tol_p = _tolerances(params, grads, m, want[2], want[3], t, **HYPER)
    assert_close("m", dev.get(d[2]), want[2], rtol=3e-5, atol=tol_m)
    assert_close("v", dev.get(d[3]), want[3], rtol=3e-5, atol=0)
    assert_close("params", dev.get(d[0]), want[0], rtol=0, atol=tol_p)
    assert np.array_equal(dev.get(d[1]), grads)


def test_first_step_moves_each_parameter_by_lr():
    """At t=1 with m = v = 0: m_hat = g and v_hat = g^2, so p -= lr * (g / (|g| + eps) + wd * p)."""
    n = 64
    params, grads, _, _ = _state(n, 5)
    p, g = params.astype(np.float32), grads.astype(np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    ops.adamw_update(p, g, m, v, n, 1e-2, 0.9, 0.95, 1e-8, 0.0, 1)
    assert_close("params", p, params - 1e-2 * grads / (np.abs(grads) + 1e-8), rtol=0, atol=1e-8)


def test_any_shape_and_numpy_hyperparameters():
    params, grads, m, v = (a.astype(np.float32).reshape(10, 10) for a in _state(100, 1))
    want = [a.astype(np.float64).copy() for a in (params, grads, m, v)]
    ops.adamw_update(params, grads, m, v, 100, np.float32(1e-3), 0.9, np.float64(0.999), 1e-8, 0, np.int64(3))
    reference.adamw_update(*want, 100, 1e-3, 0.9, 0.999, 1e-8, 0.0, 3)
    _, tol_p = _tolerances(
        *(a.astype(np.float64).ravel() for a in _state(100, 1)[:3]),
        want[2].ravel(),
        want[3].ravel(),
        3,
        1e-3,
        0.9,
        0.999,
        1e-8,
        0.0,
    )
    assert_close("params", params.ravel(), want[0].ravel(), rtol=0, atol=tol_p)


@pytest.mark.parametrize("offset, kernel", [(0, "adamw_vec4_kernel"), (1, "adamw_kernel")])
def test_vec4_only_when_aligned(monkeypatch, offset, kernel):
    """Whole allocations take the float4 kernel (tail included); views 4 bytes in take the scalar one."""
    from _ops_a_helpers import KernelSpy

    spy = KernelSpy(monkeypatch)
    n = 1031
    state = _state(n, 8)
    bufs = [np.r_[np.zeros(offset), a].astype(np.float32)[offset:] for a in state]
    ops.adamw_update(*bufs, n, **HYPER, t=5)
    assert spy.names == [kernel]
    want = [a.copy() for a in state]
    reference.adamw_update(*want, n, **HYPER, t=5)
    tol_m, tol_p = _tolerances(state[0], state[1], state[2], want[2], want[3], 5, **HYPER)
    assert_close("m", bufs[2], want[2], rtol=3e-5, atol=tol_m)
    assert_close("params", bufs[0], want[0], rtol=0, atol=tol_p)


def test_errors_say_what_was_expected():
    a = np.zeros(8, np.float32)
    args = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)
    with pytest.raises(
        ValueError, match=r"adamw_update: 'v' must be a C-contiguous float32 array of N = 8 .*dtype float64"
    ):
        ops.adamw_update(a.copy(), a, a.copy(), np.zeros(8), 8, **args, t=1)
    with pytest.raises(ValueError, match=r"'params' must be .*got 9 elements"):
        ops.adamw_update(np.zeros(9, np.float32), a, a.copy(), a.copy(), 8, **args, t=1)
    with pytest.raises(ValueError, match=r"size t must be a positive integer; got 0"):
        ops.adamw_update(a.copy(), a, a.copy(), a.copy(), 8, **args, t=0)
    with pytest.raises(ValueError, match=r"beta2 must lie in \[0, 1\); got 1.0"):
        ops.adamw_update(a.copy(), a, a.copy(), a.copy(), 8, **{**args, "beta2": 1.0}, t=1)
    with pytest.raises(ValueError, match=r"lr must be a real number; got '0.1'"):
        ops.adamw_update(a.copy(), a, a.copy(), a.copy(), 8, **{**args, "lr": "0.1"}, t=1)
    with pytest.raises(ValueError, match=r"all arrays must be NumPy \(cpu backend\) or all CuPy"):
        ops.adamw_update(a.copy(), FakeCupyArray(a), a.copy(), a.copy(), 8, **args, t=1)
