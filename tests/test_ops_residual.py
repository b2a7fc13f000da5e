"""ops.residual_forward / residual_backward (kernels/residual.cu) against the float64 reference.

A float32 add of two float32 numbers is correctly rounded, so the only error allowed is one rounding:
rtol 1e-6 (float32's half-ulp is 6e-8), no atol.
"""

import numpy as np
import pytest
from _ops_a_helpers import FakeCupyArray, KernelSpy, assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import ops, reference

SIZES = [1, 3, 4, 5, 255, 1029, 4097, 10007]  # not multiples of 4 or of the block; > the cpu grid's threads


@pytest.mark.parametrize("N", SIZES)
def test_forward(dev, N):
    rng = np.random.default_rng(N)
    a, b = f32(rng.standard_normal(N) * 10), f32(rng.standard_normal(N) * 1e3)
    out = dev.put(np.full(N, np.nan))
    with dev.run():
        ops.residual_forward(out, dev.put(a), dev.put(b), N)
    want = np.empty(N)
    reference.residual_forward(want, a, b, N)
    assert_close("out", dev.get(out), want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("N", SIZES)
def test_backward_accumulates(dev, N):
    rng = np.random.default_rng(100 + N)
    d1, d2, dout = (f32(rng.standard_normal(N)) for _ in range(3))
    g1, g2 = dev.put(d1), dev.put(d2)
    with dev.run():
        ops.residual_backward(g1, g2, dev.put(dout), N)
    w1, w2 = d1.copy(), d2.copy()
    reference.residual_backward(w1, w2, dout, N)
    assert_close("dinp1", dev.get(g1), w1, rtol=1e-6, atol=0)
    assert_close("dinp2", dev.get(g2), w2, rtol=1e-6, atol=0)


@pytest.mark.parametrize("offset, kernel", [(0, "residual_forward_vec4_kernel"), (1, "residual_forward_kernel")])
def test_vec4_only_when_aligned(dev, monkeypatch, offset, kernel):
    """Whole allocations take the float4 kernel; a view starting 4 bytes in falls back to the scalar one."""
    spy = KernelSpy(monkeypatch)
    N = 1030
    rng = np.random.default_rng(7)
    a, b = f32(rng.standard_normal(N)), f32(rng.standard_normal(N))
    out = dev.put(np.full(N + 1, np.nan))[offset : offset + N]
    with dev.run():
        ops.residual_forward(out, dev.put(np.r_[0, a])[1:] if offset else dev.put(a), dev.put(b), N)
    assert spy.names == [kernel]
    assert_close("out", dev.get(out), a + b, rtol=1e-6, atol=0)


def test_any_shape_with_N_elements():
    a = np.ones((2, 3, 4), np.float32)
    out = np.zeros((2, 3, 4), np.float32)
    ops.residual_forward(out, a, a, 24)
    assert np.all(out == 2)


def test_errors_say_what_was_expected():
    a = np.ones(8, np.float32)
    with pytest.raises(
        ValueError, match=r"residual_forward: 'inp2' must be a C-contiguous float32 array of N = 8 .*dtype float64"
    ):
        ops.residual_forward(a.copy(), a, np.ones(8), 8)
    with pytest.raises(ValueError, match=r"'out' must be .* N = 9 .*got 8 elements"):
        ops.residual_forward(a.copy(), a, a, 9)
    with pytest.raises(ValueError, match=r"'dout' must be .*non-contiguous"):
        ops.residual_backward(a.copy(), a.copy(), np.ones(16, np.float32)[::2], 8)
    with pytest.raises(ValueError, match=r"all arrays must be NumPy \(cpu backend\) or all CuPy"):
        ops.residual_forward(a.copy(), a, FakeCupyArray(a), 8)
    with pytest.raises(ValueError, match=r"size N must be a positive integer"):
        ops.residual_forward(a.copy(), a, a, 0)
