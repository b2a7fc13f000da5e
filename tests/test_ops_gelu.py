"""ops.gelu_forward / gelu_backward (kernels/gelu.cu) against the float64 reference.

Tolerances (float32 kernel vs float64 math on the same float32 inputs): rtol 1e-5 for the few-ulp error of
tanhf and the products, atol 1e-5 for the cancellation in 1 + tanh(u) when x is very negative (there the
result is ~0 and tanhf's absolute error of ~1e-7 is multiplied by 0.5|x|).
"""

import numpy as np
import pytest
from _ops_a_helpers import FakeCupyArray, KernelSpy, assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import ops, reference

SIZES = [1, 3, 5, 255, 1029, 10007]
EXTREMES = [0.0, -0.0, 1e-30, 3.0, -3.0, 8.0, -8.0, 20.0, -20.0, 1e4, -1e4, 1e20, -1e20]


def _inputs(N, seed):
    x = np.random.default_rng(seed).standard_normal(N) * 3
    x[: min(N, len(EXTREMES))] = EXTREMES[:N]  # saturated tanh, huge |x| (x^3 overflows float32)
    return f32(x)


@pytest.mark.parametrize("N", SIZES)
def test_forward(dev, N):
    x = _inputs(N, N)
    out = dev.put(np.full(N, np.nan))
    with dev.run():
        ops.gelu_forward(out, dev.put(x), N)
    want = np.empty(N)
    reference.gelu_forward(want, x, N)
    assert_close("out", dev.get(out), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("N", SIZES)
def test_backward_accumulates(dev, N):
    rng = np.random.default_rng(1000 + N)
    x = _inputs(N, N)
    dout, d0 = f32(rng.standard_normal(N)), f32(rng.standard_normal(N))
    dinp = dev.put(d0)
    with dev.run():
        ops.gelu_backward(dinp, dev.put(x), dev.put(dout), N)
    want = d0.copy()
    reference.gelu_backward(want, x, dout, N)
    assert_close("dinp", dev.get(dinp), want, rtol=1e-5, atol=1e-5)


def test_known_values():
    """gelu(0) = 0, gelu(x) -> x and gelu'(x) -> 1 for large x, -> 0 for very negative x."""
    x = np.array([0.0, 10.0, -10.0, 1e20], np.float32)
    out = np.full(4, np.nan, np.float32)
    ops.gelu_forward(out, x, 4)
    assert out[0] == 0 and out[1] == np.float32(10.0) and abs(out[2]) < 1e-6 and out[3] == np.float32(1e20)
    dinp = np.zeros(4, np.float32)
    ops.gelu_backward(dinp, x, np.ones(4, np.float32), 4)
    assert dinp[0] == np.float32(0.5) and dinp[1] == 1 and abs(dinp[2]) < 1e-6 and dinp[3] == 1


@pytest.mark.parametrize(
    "offset, fwd, bwd",
    [(0, "gelu_forward_vec4_kernel", "gelu_backward_vec4_kernel"), (1, "gelu_forward_kernel", "gelu_backward_kernel")],
)
def test_vec4_only_when_aligned(monkeypatch, offset, fwd, bwd):
    spy = KernelSpy(monkeypatch)
    N = 1031
    x = _inputs(N, 3)
    buf = np.r_[np.zeros(offset), x].astype(np.float32)[offset:]
    out = np.full(N + offset, np.nan, np.float32)[offset:]
    ops.gelu_forward(out, buf, N)
    dinp = np.zeros(N + offset, np.float32)[offset:]
    ops.gelu_backward(dinp, buf, np.ones(N + offset, np.float32)[offset:], N)
    assert spy.names == [fwd, bwd]
    want, dwant = np.empty(N), np.zeros(N)
    reference.gelu_forward(want, x, N)
    reference.gelu_backward(dwant, x, np.ones(N), N)
    assert_close("out", out, want, rtol=1e-5, atol=1e-5)
    assert_close("dinp", dinp, dwant, rtol=1e-5, atol=1e-5)


def test_errors_say_what_was_expected():
    a = np.ones(8, np.float32)
    with pytest.raises(
        ValueError, match=r"gelu_forward: 'inp' must be a C-contiguous float32 array of N = 8 .*dtype int32"
    ):
        ops.gelu_forward(a.copy(), np.ones(8, np.int32), 8)
    with pytest.raises(ValueError, match=r"gelu_backward: 'dinp' must be .*got 7 elements"):
        ops.gelu_backward(np.ones(7, np.float32), a, a, 8)
    with pytest.raises(
        ValueError, match=r"gelu_backward: all arrays must be NumPy \(cpu backend\) or all CuPy .*dout: cupy"
    ):
        ops.gelu_backward(a.copy(), a, FakeCupyArray(a), 8)
