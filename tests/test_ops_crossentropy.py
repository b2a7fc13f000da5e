"""ops.crossentropy_forward / crossentropy_softmax_backward (kernels/crossentropy.cu) vs the reference.

Error model: the loss is one logf of a float32 probability (a few ulp: rtol 1e-6, atol 1e-6); each
dlogits element is one subtraction, multiplication and addition (rtol 1e-6 of |p - onehot| * |dloss| plus
the start value's rounding).
"""

import numpy as np
import pytest
from _ops_a_helpers import FakeCupyArray, assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import check, ops, reference
from llmc_kernels._honesty import package_scope
from llmc_kernels.ops import crossentropy as ce

SIZES = [(1, 1, 1, 1), (2, 37, 100, 128), (3, 5, 50, 61), (2, 3, 7, 8), (1, 3, 3001, 3004)]
SENTINEL = 5.0


def _case(B, T, V, Vp, seed):
    rng = np.random.default_rng(seed)
    logits = f32(2.0 * rng.standard_normal((B, T, Vp)))
    probs = np.empty((B, T, Vp))
    reference.softmax_forward(probs, logits, B, T, V, Vp)
    probs = f32(probs)
    probs[..., V:] = np.nan  # padding of an input: never read
    targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
    targets.flat[0] = V - 1
    targets.flat[-1] = 0
    return probs, targets


@pytest.mark.parametrize("B, T, V, Vp", SIZES)
def test_forward(dev, B, T, V, Vp):
    probs, targets = _case(B, T, V, Vp, V + T)
    losses = dev.put(np.full((B, T), np.nan))
    with dev.run():
        ops.crossentropy_forward(losses, dev.put(probs), dev.put(targets), B, T, Vp)
    want = np.empty((B, T))
    reference.crossentropy_forward(want, probs, targets, B, T, Vp)
    assert_close("losses", dev.get(losses), want, rtol=1e-6, atol=1e-6)


def _backward_case(B, T, V, Vp, seed):
    probs, targets = _case(B, T, V, Vp, seed)
    rng = np.random.default_rng(seed + 1)
    dlosses = f32(rng.uniform(0.1, 2.0, (B, T)))
    start = f32(rng.standard_normal((B, T, Vp)))
    start[..., V:] = SENTINEL
    return probs, targets, dlosses, start


def _assert_backward(got, start, probs, targets, dlosses, B, T, V, Vp):
    want = start.copy()
    reference.crossentropy_softmax_backward(want, dlosses, probs, targets, B, T, V, Vp)
    got = np.asarray(got, np.float64)
    assert (got[..., V:] == SENTINEL).all(), "columns >= V must be untouched"
    assert_close("dlogits", got[..., :V], want[..., :V], rtol=1e-6, atol=1e-7 * (1 + np.abs(start[..., :V])))


@pytest.mark.parametrize("B, T, V, Vp", SIZES)
def test_backward_accumulates(dev, B, T, V, Vp):
    probs, targets, dlosses, start = _backward_case(B, T, V, Vp, 3 * V + T)
    dlogits = dev.put(start)
    with dev.run():
        ops.crossentropy_softmax_backward(dlogits, dev.put(dlosses), dev.put(probs), dev.put(targets), B, T, V, Vp)
    _assert_backward(dev.get(dlogits), start, probs, targets, dlosses, B, T, V, Vp)


@pytest.mark.parametrize("block", [1, 32, 256])
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "unaligned"])
def test_backward_block_sizes_and_alignment(block, offset):
    B, T, V, Vp = 2, 3, 37, 40
    probs, targets, dlosses, start = _backward_case(B, T, V, Vp, block)
    buf = np.zeros(B * T * Vp + offset, np.float32)
    dlogits = buf[offset:].reshape(B, T, Vp)
    dlogits[...] = start
    assert ce.rows_vec(Vp, dlogits, probs.astype(np.float32)) == (offset == 0)
    ce.launch_backward(dlogits, dlosses.astype(np.float32), probs.astype(np.float32), targets, B * T, V, Vp, block)
    _assert_backward(dlogits, start, probs, targets, dlosses, B, T, V, Vp)


def _as_package(fn):
    def call(*args):
        with package_scope():
            fn(*args)

    return call


@pytest.mark.parametrize(
    "direction, name", [("forward", "crossentropy_forward"), ("backward", "crossentropy_softmax_backward")]
)
def test_passes_the_check(direction, name, capsys):
    result = getattr(check, direction)("crossentropy", _as_package(getattr(ops, name)))
    assert repr(result) == f"PASS {name}"
    assert capsys.readouterr().out == f"PASS {name}\n"


def test_errors_say_what_was_expected():
    B, T, V, Vp = 2, 3, 5, 8
    p, l = np.zeros((B, T, Vp), np.float32), np.zeros((B, T), np.float32)
    tg = np.zeros((B, T), np.int32)
    with pytest.raises(
        ValueError,
        match=r"crossentropy_forward: 'targets' must be a C-contiguous int32 array of "
        r"shape \(B, T\) = \(2, 3\); got dtype int64",
    ):
        ops.crossentropy_forward(l, p, tg.astype(np.int64), B, T, Vp)
    bad = tg.copy()
    bad[1, 2] = Vp
    with pytest.raises(
        ValueError,
        match=r"crossentropy_forward: 'targets' must lie in \[0, Vp\) = \[0, 8\); "
        r"got values from 0 to 8",
    ):
        ops.crossentropy_forward(l, p, bad, B, T, Vp)
    bad[1, 2] = V
    with pytest.raises(ValueError, match=r"crossentropy_softmax_backward: 'targets' must lie in \[0, V\) = \[0, 5\)"):
        ops.crossentropy_softmax_backward(p.copy(), l, p, bad, B, T, V, Vp)
    with pytest.raises(
        ValueError,
        match=r"crossentropy_softmax_backward: 'dlosses' must be .*\(B, T\) = \(2, 3\); "
        r"got shape \(3, 2\)",
    ):
        ops.crossentropy_softmax_backward(p.copy(), l.reshape(T, B), p, tg, B, T, V, Vp)
    with pytest.raises(ValueError, match=r"crossentropy_softmax_backward: all arrays must be NumPy"):
        ops.crossentropy_softmax_backward(p.copy(), l, FakeCupyArray(p), tg, B, T, V, Vp)


def test_out_of_range_targets_poison_rows_instead_of_reading_out_of_bounds(monkeypatch):
    """With the host-side check off (as for timing), a bad target gives NaN, never a wild read."""
    from llmc_kernels.ops import softmax as sm

    monkeypatch.setattr(sm, "CHECK_TARGETS", False)
    B, T, V, Vp = 1, 2, 5, 8
    probs, targets = _case(B, T, V, Vp, 0)
    probs = np.nan_to_num(probs).astype(np.float32)
    targets[0, 1] = Vp + 3
    losses = np.zeros((B, T), np.float32)
    ops.crossentropy_forward(losses, probs, targets, B, T, Vp)
    assert np.isfinite(losses[0, 0]) and np.isnan(losses[0, 1])
    targets[0, 1] = -1
    dlogits = np.zeros((B, T, Vp), np.float32)
    ops.crossentropy_softmax_backward(dlogits, np.ones((B, T), np.float32), probs, targets, B, T, V, Vp)
    assert np.isfinite(dlogits[0, 0]).all() and np.isnan(dlogits[0, 1, :V]).all() and (dlogits[0, 1, V:] == 0).all()


KERNELS = ["crossentropy_forward_kernel", "crossentropy_softmax_backward_kernel"]


@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
def test_kernels_compile_with_nvrtc_without_warnings(arch):
    """Every kernel of kernels/crossentropy.cu is extern "C" and compiles for the T4 and the H100 (no GPU needed)."""
    from llmc_kernels.ops import _loader
    from llmc_kernels.runtime import nvrtc
    from llmc_kernels.runtime.signature import find_kernel, list_kernels
    from llmc_kernels.runtime.source import SourceOrigin

    src = _loader.source("crossentropy.cu")
    assert list_kernels(src) == KERNELS and all(find_kernel(src, k).extern_c for k in KERNELS)
    if not nvrtc.available():
        pytest.skip(f"NVRTC unavailable: {nvrtc.unavailable_reason()}")
    assert nvrtc.check_compile(src, KERNELS[0], arch=arch, origin=SourceOrigin("crossentropy.cu", 1)) == []


@pytest.mark.gpu
def test_gpt2_sizes_on_gpu():
    cp = pytest.importorskip("cupy")
    B, T, V, Vp = 8, 1024, 50257, 50304
    crng = cp.random.default_rng(0)
    d_probs = crng.random((B, T, Vp), dtype=cp.float32) * np.float32(2.0 / V)
    d_targets = crng.integers(0, V, (B, T)).astype(cp.int32)
    losses = cp.full((B, T), cp.nan, cp.float32)
    ops.crossentropy_forward(losses, d_probs, d_targets, B, T, Vp)
    targets = d_targets.get()
    picked = cp.take_along_axis(d_probs, d_targets[..., None], axis=-1)[..., 0].get().astype(np.float64)
    assert_close("losses", losses.get(), -np.log(picked), rtol=1e-6, atol=1e-6)
    start = np.zeros((B, T, Vp), np.float32)
    start[..., V:] = SENTINEL
    dlogits = cp.asarray(start)
    dlosses = np.full((B, T), 1.0 / (B * T), np.float32)
    ops.crossentropy_softmax_backward(dlogits, cp.asarray(dlosses), d_probs, d_targets, B, T, V, Vp)
    b = [0, 7]
    _assert_backward(dlogits[b].get(), f32(start[b]), f32(d_probs[b].get()), targets[b], f32(dlosses[b]), 2, T, V, Vp)
