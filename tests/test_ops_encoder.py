"""ops.encoder_forward / encoder_backward (kernels/encoder.cu) against the float64 reference.

Forward: one float32 add, correctly rounded: rtol 1e-6. Backward: dwte/dwpe sum several float32 terms in
some order (atomics): |error| <= 1e-6 * (sum of the |terms| added into that element, start value included).
"""

import numpy as np
import pytest
from _ops_a_helpers import FakeCupyArray, KernelSpy, assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import ops, reference

# (B, T, C, V, maxT): C odd (scalar path) and C % 4 == 0 (float4 path); T < maxT; few tokens so ids repeat
CASES = [(1, 1, 1, 1, 1), (2, 5, 7, 11, 9), (3, 17, 64, 13, 20), (2, 9, 100, 50, 9), (4, 33, 48, 6, 40)]


def _case(B, T, C, V, maxT, seed):
    rng = np.random.default_rng(seed)
    inp = rng.integers(0, V, size=(B, T)).astype(np.int32)
    inp.flat[0] = V - 1  # the last row of wte is reachable
    return inp, f32(rng.standard_normal((V, C))), f32(rng.standard_normal((maxT, C)) * 1e2)


@pytest.mark.parametrize("B, T, C, V, maxT", CASES)
def test_forward(dev, B, T, C, V, maxT):
    inp, wte, wpe = _case(B, T, C, V, maxT, C)
    out = dev.put(np.full((B, T, C), np.nan))
    with dev.run():
        ops.encoder_forward(out, dev.put(inp), dev.put(wte), dev.put(wpe), B, T, C)
    want = np.empty((B, T, C))
    reference.encoder_forward(want, inp, wte, wpe, B, T, C)
    assert_close("out", dev.get(out), want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("B, T, C, V, maxT", CASES)
def test_backward_accumulates(dev, B, T, C, V, maxT):
    inp, dwte0, dwpe0 = _case(B, T, C, V, maxT, 50 + C)
    dout = f32(np.random.default_rng(C).standard_normal((B, T, C)))
    dwte, dwpe = dev.put(dwte0), dev.put(dwpe0)
    with dev.run():
        ops.encoder_backward(dwte, dwpe, dev.put(dout), dev.put(inp), B, T, C)
    want_te, want_pe = dwte0.copy(), dwpe0.copy()
    reference.encoder_backward(want_te, want_pe, dout, inp, B, T, C)
    mag_te, mag_pe = np.abs(dwte0), np.abs(dwpe0)
    reference.encoder_backward(mag_te, mag_pe, np.abs(dout), inp, B, T, C)
    assert_close("dwte", dev.get(dwte), want_te, rtol=0, atol=1e-6 * mag_te)
    assert_close("dwpe", dev.get(dwpe), want_pe, rtol=0, atol=1e-6 * mag_pe)
    # rows of wte no token used, and positions >= T, are untouched
    used = np.zeros(V, bool)
    used[inp.ravel()] = True
    assert np.array_equal(dev.get(dwte)[~used], dwte0[~used])
    assert np.array_equal(dev.get(dwpe)[T:], dwpe0[T:])


@pytest.mark.parametrize("offset, kernel", [(0, "encoder_forward_vec4_kernel"), (1, "encoder_forward_kernel")])
def test_vec4_only_when_aligned(monkeypatch, offset, kernel):
    spy = KernelSpy(monkeypatch)
    B, T, C, V, maxT = 2, 6, 12, 5, 8
    inp, wte, wpe = _case(B, T, C, V, maxT, 9)
    wte_view = np.r_[np.zeros(offset), wte.ravel()].astype(np.float32)[offset:].reshape(V, C)
    out = np.full((B, T, C), np.nan, np.float32)
    ops.encoder_forward(out, inp, wte_view, wpe.astype(np.float32), B, T, C)
    assert spy.names == [kernel]
    want = np.empty((B, T, C))
    reference.encoder_forward(want, inp, wte, wpe, B, T, C)
    assert_close("out", out, want, rtol=1e-6, atol=0)


def test_errors_say_what_was_expected():
    B, T, C, V = 2, 3, 4, 5
    out, wte, wpe = np.zeros((B, T, C), np.float32), np.zeros((V, C), np.float32), np.zeros((T, C), np.float32)
    inp = np.zeros((B, T), np.int32)
    with pytest.raises(ValueError, match=r"encoder_forward: 'inp' must be a C-contiguous int32 array .*dtype int64"):
        ops.encoder_forward(out, inp.astype(np.int64), wte, wpe, B, T, C)
    with pytest.raises(ValueError, match=r"'wte' must be .* \(V, C\) = \(5, 4\); got shape \(5, 3\)"):
        ops.encoder_forward(out, inp, np.zeros((V, 3), np.float32), wpe, B, T, C)
    with pytest.raises(ValueError, match=r"'wpe' has 2 rows .* T = 3"):
        ops.encoder_forward(out, inp, wte, wpe[:2].copy(), B, T, C)
    with pytest.raises(ValueError, match=r"token ids in 'inp' must lie in \[0, V\) = \[0, 5\) .*; got ids from 0 to 5"):
        ops.encoder_forward(out, np.full((B, T), V, np.int32) * np.eye(1, T, dtype=np.int32), wte, wpe, B, T, C)
    with pytest.raises(ValueError, match=r"token ids .* from -1 to 0"):
        ops.encoder_backward(wte.copy(), wpe.copy(), out, -np.eye(1, T, dtype=np.int32).repeat(B, 0), B, T, C)
    with pytest.raises(ValueError, match=r"encoder_backward: all arrays must be NumPy \(cpu backend\) or all CuPy"):
        ops.encoder_backward(wte.copy(), wpe.copy(), FakeCupyArray(out), inp, B, T, C)
