"""ops.softmax_forward (kernels/softmax.cu) against the float64 reference.

Error model: p = exp(x - m) / s. x - m is one float32 rounding (absolute 6e-8 |x - m|, which exp turns
into the same relative error), expf and the division a few ulp, and s a float32 sum of V positive terms
(each thread's V/block in a row, then a tree of log2(block) steps, plus the rescalings of the online
form): relative error within 2.4e-7 * (V/block + 16) + 1e-5 overall, far below any real mistake (a
wrong row, a missed column, a lost partial sum: errors of 1/V or more).
"""

import time

import numpy as np
import pytest
from _ops_a_helpers import FakeCupyArray, assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import check, ops, reference
from llmc_kernels._honesty import package_scope
from llmc_kernels.ops import softmax as sm
from llmc_kernels.runtime import launch_options

# (B, T, V, Vp): one column; Vp % 4 == 0 (float4) and not; V not a multiple of 4; wide rows
SIZES = [(1, 1, 1, 1), (2, 3, 37, 40), (2, 3, 37, 41), (1, 5, 1000, 1024), (3, 2, 257, 300), (1, 2, 5000, 5004)]
BLOCKS = [1, 2, 8, 32, 64, 256, 1024]


def _logits(B, T, V, Vp, seed, large=False):
    rng = np.random.default_rng(seed)
    x = 300.0 + 100.0 * rng.standard_normal((B, T, Vp)) if large else 3.0 * rng.standard_normal((B, T, Vp))
    x[..., V:] = np.nan  # padding: must never matter
    return f32(x)


def _want(x, B, T, V, Vp):
    p = np.empty((B, T, Vp))
    reference.softmax_forward(p, x, B, T, V, Vp)
    return p


def _assert_probs(got, want, V, block):
    got = np.asarray(got, np.float64)
    assert (got[..., V:] == 0).all(), "padded columns must be exactly 0"
    assert_close("probs", got[..., :V], want[..., :V], rtol=1e-5 + 2.4e-7 * (V / block + 16), atol=1e-12)


@pytest.mark.parametrize("schedule", ["forward", "reverse"])
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("B, T, V, Vp", SIZES)
def test_block_sizes(B, T, V, Vp, block, schedule):
    """Every block size the kernel supports, on the cpu backend: the shuffle and shared-memory paths."""
    x = _logits(B, T, V, Vp, V + block)
    probs = np.full((B, T, Vp), np.nan, np.float32)
    with launch_options(schedule=schedule):
        sm.launch_softmax(probs, x.astype(np.float32), B * T, V, Vp, block)
    _assert_probs(probs, _want(x, B, T, V, Vp), V, block)


@pytest.mark.parametrize("large", [False, True], ids=["normal", "large"])
@pytest.mark.parametrize("B, T, V, Vp", SIZES)
def test_forward(dev, B, T, V, Vp, large):
    x = _logits(B, T, V, Vp, 7 * V, large)
    probs = dev.put(np.full((B, T, Vp), np.nan))
    with dev.run():
        ops.softmax_forward(probs, dev.put(x), B, T, V, Vp)
    _assert_probs(dev.get(probs), _want(x, B, T, V, Vp), V, 1)


def test_unaligned_rows_take_the_scalar_path():
    B, T, V, Vp = 2, 3, 50, 64
    x = _logits(B, T, V, Vp, 3)
    buf = np.zeros(B * T * Vp + 1, np.float32)
    xs = buf[1:].reshape(B, T, Vp)
    xs[...] = x
    assert sm.rows_vec(Vp, xs) == 0
    probs = np.full((B, T, Vp), np.nan, np.float32)
    sm.launch_softmax(probs, xs, B * T, V, Vp, 32)
    _assert_probs(probs, _want(x, B, T, V, Vp), V, 32)


def test_gpt2_vocabulary_rows_are_fast_on_cpu():
    """The tiny model trains on the cpu backend with 256 rows of Vp = 50304 per step."""
    B, T, V, Vp = 4, 64, 50257, 50304
    x = _logits(B, T, V, Vp, 1)
    probs = np.empty((B, T, Vp), np.float32)
    x32 = x.astype(np.float32)
    ops.softmax_forward(probs, x32, B, T, V, Vp)  # compiles
    start = time.perf_counter()
    ops.softmax_forward(probs, x32, B, T, V, Vp)
    seconds = time.perf_counter() - start
    rows = [0, 100, 255]
    want = _want(x.reshape(B * T, 1, Vp)[rows], len(rows), 1, V, Vp)
    _assert_probs(probs.reshape(B * T, 1, Vp)[rows], want, V, 1)
    assert seconds < 2.0, f"softmax_forward of 256 x 50304 took {seconds:.2f} s on the cpu backend"


def _as_package(fn):
    def call(*args):
        with package_scope():
            fn(*args)

    return call


def test_passes_the_check(capsys):
    assert repr(check.forward("softmax", _as_package(ops.softmax_forward))) == "PASS softmax_forward"
    assert capsys.readouterr().out == "PASS softmax_forward\n"


def test_errors_say_what_was_expected():
    B, T, V, Vp = 2, 3, 5, 8
    z = np.zeros((B, T, Vp), np.float32)
    with pytest.raises(
        ValueError,
        match=r"softmax_forward: 'logits' must be a C-contiguous float32 array of "
        r"shape \(B, T, Vp\) = \(2, 3, 8\); got shape \(2, 3, 5\)",
    ):
        ops.softmax_forward(z, np.zeros((B, T, V), np.float32), B, T, V, Vp)
    with pytest.raises(ValueError, match=r"softmax_forward: the padded vocabulary Vp = 4 must be at least V = 5"):
        ops.softmax_forward(np.zeros((B, T, 4), np.float32), np.zeros((B, T, 4), np.float32), B, T, V, 4)
    with pytest.raises(ValueError, match=r"softmax_forward: all arrays must be NumPy"):
        ops.softmax_forward(z, FakeCupyArray(z), B, T, V, Vp)
    with pytest.raises(ValueError, match=r"'probs' must be .*got dtype float64"):
        ops.softmax_forward(np.zeros((B, T, Vp)), z, B, T, V, Vp)


KERNELS = ["softmax_forward_kernel"]


@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
def test_kernels_compile_with_nvrtc_without_warnings(arch):
    """Every kernel of kernels/softmax.cu is extern "C" and compiles for the T4 and the H100 (no GPU needed)."""
    from llmc_kernels.ops import _loader
    from llmc_kernels.runtime import nvrtc
    from llmc_kernels.runtime.signature import find_kernel, list_kernels
    from llmc_kernels.runtime.source import SourceOrigin

    src = _loader.source("softmax.cu")
    assert list_kernels(src) == KERNELS and all(find_kernel(src, k).extern_c for k in KERNELS)
    if not nvrtc.available():
        pytest.skip(f"NVRTC unavailable: {nvrtc.unavailable_reason()}")
    assert nvrtc.check_compile(src, KERNELS[0], arch=arch, origin=SourceOrigin("softmax.cu", 1)) == []


@pytest.mark.gpu
def test_gpt2_sizes_on_gpu():
    cp = pytest.importorskip("cupy")
    B, T, V, Vp = 8, 1024, 50257, 50304
    x = cp.random.default_rng(0).standard_normal((B, T, Vp), dtype=cp.float32) * 3
    x[..., V:] = cp.nan
    probs = cp.full((B, T, Vp), cp.nan, cp.float32)
    ops.softmax_forward(probs, x, B, T, V, Vp)
    rows = np.r_[0:3, 4000:4003, B * T - 3 : B * T]
    xh = f32(x.reshape(B * T, Vp)[rows].get())
    want = _want(xh[:, None], len(rows), 1, V, Vp)
    _assert_probs(probs.reshape(B * T, 1, Vp)[rows].get(), want, V, sm.row_block("cuda", V))
