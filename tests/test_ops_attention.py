"""ops.attention_forward / attention_backward (kernels/attention.cu) against the float64 reference.

Both paths (pure kernels; cuBLAS-or-NumPy products + softmax kernels) under several lane/block
configurations: a thread per row (the cpu default), a few lanes per row (groups sharing a warp), a warp
per row (the GPU's), each with rows left over in the last block. Sizes cover hs % 4 == 0 (float4 dot
products) and not, T beyond 32 (lanes loop), T = 1.

Tolerances: preatt is a float32 dot of hs terms (gamma_hs relative to sum |q k|, scaled); att and out
follow with a few float32 roundings per step: rtol 1e-4 with atol 1e-5 * max |expected| (forward) and
rtol 1e-3 / atol 1e-4 * max (backward, three chained steps), as the package's check uses.
"""

import numpy as np
import pytest
from _ops_a_helpers import FakeCupyArray, assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import check, ops, reference
from llmc_kernels._honesty import package_scope
from llmc_kernels.ops import attention as attn
from llmc_kernels.runtime import launch_options

SIZES = [(1, 1, 4, 1), (2, 13, 12, 3), (1, 37, 15, 3), (2, 40, 64, 4), (1, 70, 8, 2)]
CONFIGS = [("kernels", 1, 32), ("kernels", 4, 64), ("kernels", 32, 64), ("blas", 1, 32), ("blas", 32, 256)]
SCHEDULES = ["forward", "reverse"]  # cpu backend thread orders: a missing sync cannot pass by luck
SENTINEL = 7.0


def _causal(T):
    return np.tri(T, T, dtype=bool)


def _inputs(B, T, C, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return f32(rng.standard_normal((B, T, 3 * C)) * scale), f32(rng.standard_normal((B, T, C)))


def _close(name, got, want, rtol, rel_atol, mask=None):
    if mask is not None:
        got, want = got[..., mask], want[..., mask]
    assert_close(name, got, want, rtol=rtol, atol=rel_atol * max(np.abs(want).max(), 1e-30))


def _run_forward(B, T, C, NH, path, lanes, block, inp, put=np.asarray):
    out = put(np.full((B, T, C), np.nan, np.float32))
    preatt = put(np.full((B, NH, T, T), SENTINEL, np.float32))
    att = put(np.full((B, NH, T, T), np.nan, np.float32))
    run = attn.forward_kernels if path == "kernels" else attn.forward_blas
    run(out, preatt, att, put(inp.astype(np.float32)), B, T, C, NH, lanes, block)
    return out, preatt, att


def _want_forward(B, T, C, NH, inp):
    out, preatt, att = np.empty((B, T, C)), np.full((B, NH, T, T), SENTINEL), np.empty((B, NH, T, T))
    reference.attention_forward(out, preatt, att, inp, B, T, C, NH)
    return out, preatt, att


def _assert_forward(got, want, T):
    out, preatt, att = (np.asarray(a, np.float64) for a in got)
    m = _causal(T)
    _close("preatt", preatt, want[1], 1e-4, 1e-5, m)
    assert (preatt[..., ~m] == SENTINEL).all(), "masked preatt entries were written"
    _close("att", att, want[2], 1e-4, 1e-5)
    assert (att[..., ~m] == 0).all(), "masked att entries are not exactly 0"
    _close("out", out, want[0], 1e-4, 1e-5)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("path, lanes, block", CONFIGS)
@pytest.mark.parametrize("B, T, C, NH", SIZES)
def test_forward_configurations(B, T, C, NH, path, lanes, block, schedule):
    inp, _ = _inputs(B, T, C, B + T + C)
    with launch_options(schedule=schedule):
        got = _run_forward(B, T, C, NH, path, lanes, block, inp)
    _assert_forward(got, _want_forward(B, T, C, NH, inp), T)


def test_forward_large_scores():
    """Scores in the hundreds: the softmax must subtract the row maximum (no inf/NaN)."""
    B, T, C, NH = 1, 9, 16, 2
    inp, _ = _inputs(B, T, C, 1, scale=12.0)
    for path, lanes, block in CONFIGS:
        _assert_forward(_run_forward(B, T, C, NH, path, lanes, block, inp), _want_forward(B, T, C, NH, inp), T)


def _backward_buffers(B, T, C, NH, seed):
    """Inputs and pre-filled accumulators; att from the forward, NaN where masked (must never be read)."""
    inp, dout = _inputs(B, T, C, seed)
    _, _, att = _want_forward(B, T, C, NH, inp)
    att = f32(att)
    att[..., ~_causal(T)] = np.nan
    rng = np.random.default_rng(seed + 1)
    start = [f32(rng.standard_normal(s)) for s in ((B, T, 3 * C), (B, NH, T, T), (B, NH, T, T))]
    return inp, dout, att, start


def _assert_backward(got, start, inp, dout, att, B, T, C, NH):
    want = [s.copy() for s in start]
    reference.attention_backward(*want, dout, inp, att, B, T, C, NH)
    dinp, dpreatt, datt = (np.asarray(a, np.float64) for a in got)
    m = _causal(T)
    _close("dinp", dinp, want[0], 1e-3, 1e-4)
    _close("dpreatt", dpreatt, want[1], 1e-3, 1e-4, m)
    _close("datt", datt, want[2], 1e-3, 1e-4, m)
    assert (dpreatt[..., ~m] == start[1][..., ~m]).all(), "masked dpreatt entries changed"
    assert (datt[..., ~m] == start[2][..., ~m]).all(), "masked datt entries changed"


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("path, lanes, block", CONFIGS)
@pytest.mark.parametrize("B, T, C, NH", SIZES)
def test_backward_configurations(B, T, C, NH, path, lanes, block, schedule):
    inp, dout, att, start = _backward_buffers(B, T, C, NH, 2 * B + T + C)
    grads = [s.astype(np.float32) for s in start]
    run = attn.backward_kernels if path == "kernels" else attn.backward_blas
    with launch_options(schedule=schedule):
        run(*grads, dout.astype(np.float32), inp.astype(np.float32), att.astype(np.float32), B, T, C, NH, lanes, block)
    _assert_backward(grads, start, inp, dout, att, B, T, C, NH)


@pytest.mark.parametrize("B, T, C, NH", [(2, 13, 12, 3), (1, 37, 15, 3)])
def test_public_functions(dev, B, T, C, NH):
    """The SPEC entry points with each backend's default path and configuration."""
    inp, dout = _inputs(B, T, C, 5)
    out = dev.put(np.full((B, T, C), np.nan))
    preatt = dev.put(np.full((B, NH, T, T), SENTINEL))
    att = dev.put(np.full((B, NH, T, T), np.nan))
    with dev.run():
        ops.attention_forward(out, preatt, att, dev.put(inp), B, T, C, NH)
    _assert_forward([dev.get(a) for a in (out, preatt, att)], _want_forward(B, T, C, NH, inp), T)
    inp, dout, att_in, start = _backward_buffers(B, T, C, NH, 6)
    grads = [dev.put(s) for s in start]
    with dev.run():
        ops.attention_backward(*grads, dev.put(dout), dev.put(inp), dev.put(att_in), B, T, C, NH)
    _assert_backward([dev.get(g) for g in grads], start, inp, dout, att_in, B, T, C, NH)


def _as_package(fn):
    def call(*args):
        with package_scope():
            fn(*args)

    return call


@pytest.mark.parametrize("path", ["kernels", "blas"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_passes_the_check(direction, path, capsys):
    fn = getattr(ops, f"attention_{direction}")
    result = getattr(check, direction)("attention", _as_package(lambda *a: fn(*a, path=path)))
    assert repr(result) == f"PASS attention_{direction}"
    assert capsys.readouterr().out == f"PASS attention_{direction}\n"


def test_errors_say_what_was_expected():
    B, T, C, NH = 1, 2, 6, 4
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match=r"attention_forward: C = 6 must be a multiple of NH = 4"):
        ops.attention_forward(z(B, T, C), z(B, NH, T, T), z(B, NH, T, T), z(B, T, 3 * C), B, T, C, NH)
    NH = 2
    with pytest.raises(
        ValueError,
        match=r"attention_forward: 'inp' must be a C-contiguous float32 array of "
        r"shape \(B, T, 3C\) = \(1, 2, 18\); got shape \(1, 2, 6\)",
    ):
        ops.attention_forward(z(B, T, C), z(B, NH, T, T), z(B, NH, T, T), z(B, T, C), B, T, C, NH)
    with pytest.raises(ValueError, match=r"attention_backward: 'att' must be .*got dtype float64"):
        ops.attention_backward(
            z(B, T, 3 * C),
            z(B, NH, T, T),
            z(B, NH, T, T),
            z(B, T, C),
            z(B, T, 3 * C),
            np.zeros((B, NH, T, T)),
            B,
            T,
            C,
            NH,
        )
    with pytest.raises(ValueError, match=r"attention_backward: all arrays must be NumPy"):
        ops.attention_backward(
            z(B, T, 3 * C),
            z(B, NH, T, T),
            z(B, NH, T, T),
            FakeCupyArray(z(B, T, C)),
            z(B, T, 3 * C),
            z(B, NH, T, T),
            B,
            T,
            C,
            NH,
        )
    with pytest.raises(ValueError, match=r"path must be 'kernels' or 'blas'; got 'fast'"):
        ops.attention_forward(z(B, T, C), z(B, NH, T, T), z(B, NH, T, T), z(B, T, 3 * C), B, T, C, NH, path="fast")


# ---------------------------------------------------------------------------------------------------- GPU

KERNELS = [
    "attention_scores_softmax_kernel",
    "attention_softmax_forward_kernel",
    "attention_value_kernel",
    "attention_backward_rows_kernel",
    "attention_backward_kv_kernel",
    "attention_softmax_backward_kernel",
]


@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
def test_kernels_compile_with_nvrtc_without_warnings(arch):
    """Every kernel of kernels/attention.cu is extern "C" and compiles for the T4 and the H100 (no GPU needed)."""
    from llmc_kernels.ops import _loader
    from llmc_kernels.runtime import nvrtc
    from llmc_kernels.runtime.signature import find_kernel, list_kernels
    from llmc_kernels.runtime.source import SourceOrigin

    src = _loader.source("attention.cu")
    assert list_kernels(src) == KERNELS and all(find_kernel(src, k).extern_c for k in KERNELS)
    if not nvrtc.available():
        pytest.skip(f"NVRTC unavailable: {nvrtc.unavailable_reason()}")
    assert nvrtc.check_compile(src, KERNELS[0], arch=arch, origin=SourceOrigin("attention.cu", 1)) == []


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["blas", "kernels"])
def test_gpt2_sizes_on_gpu(path):
    """B=8, T=1024, C=768, NH=12 on the GPU; batches 0 and 7 compared with the float64 reference."""
    cp = pytest.importorskip("cupy")
    B, T, C, NH = 8, 1024, 768, 12
    rng = np.random.default_rng(0)
    inp = f32(rng.standard_normal((B, T, 3 * C)))
    dout = f32(rng.standard_normal((B, T, C)))
    out, preatt = cp.full((B, T, C), cp.nan, cp.float32), cp.full((B, NH, T, T), SENTINEL, cp.float32)
    att = cp.full((B, NH, T, T), cp.nan, cp.float32)
    d_inp = cp.asarray(inp.astype(np.float32))
    ops.attention_forward(out, preatt, att, d_inp, B, T, C, NH, path=path)
    dinp, dpreatt, datt = cp.zeros((B, T, 3 * C), cp.float32), cp.zeros_like(preatt), cp.zeros_like(att)
    ops.attention_backward(dinp, dpreatt, datt, cp.asarray(dout.astype(np.float32)), d_inp, att, B, T, C, NH, path=path)
    for b in (0, B - 1):
        want = _want_forward(1, T, C, NH, inp[b : b + 1])
        _assert_forward([out[b : b + 1].get(), preatt[b : b + 1].get(), att[b : b + 1].get()], want, T)
        start = [np.zeros((1, T, 3 * C)), np.zeros((1, NH, T, T)), np.zeros((1, NH, T, T))]
        _assert_backward(
            [dinp[b : b + 1].get(), dpreatt[b : b + 1].get(), datt[b : b + 1].get()],
            start,
            inp[b : b + 1],
            dout[b : b + 1],
            f32(att[b : b + 1].get()),
            1,
            T,
            C,
            NH,
        )
