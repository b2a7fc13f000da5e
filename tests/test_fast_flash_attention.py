"""ops.flash_attention_forward / flash_attention_backward (kernels/flash_attention.cu) against the float64
reference attention (llmc_kernels.reference.attention_forward/backward's ``out`` and ``dinp``).

On the cpu backend the tensor-core instruction is emulated from the very fragments the GPU kernel builds,
so these tests check every index, mask and online-softmax step of the real kernel, under both thread
orders. Sizes: T not a multiple of the 64-row tiles (1, 13, 37, 70, 130: partial tiles, several key tiles,
the diagonal tile split over two 32-query steps), head sizes padded to a multiple of 8 (4, 5, 12, 16) or
not (32, 64), hs % 4 != 0 (scalar tile loads), B*NH > 1, scores in the hundreds.

Tolerances: precise (3xTF32, the fp32 path) products are as accurate as fp32 FMA: 2e-6 of the output's
largest magnitude (a few roundings through exp2, the sums over keys and the final division). TF32 reads
every operand truncated to 11 significant bits, as the tensor cores do (relative 2^-10 ~ 1e-3 at worst,
half that on average), so out and dinp are within ~3e-3.

Every test that launches the kernels runs each design of kernels/flash_attention.cu (``variant``): FA_VERSION 1
(the first kernels), 2 (pipelined; the default), 2 with two 16-row m-tiles per forward warp (FA_FWD_WM=2,
128-row blocks) and 2 with 8-warp forward blocks (FA_FWD_WARPS=8, 128 rows), under the same tolerances; the
designs also agree with each other (TF32: 3e-3 of the largest magnitude, both being TF32; precise: 2e-6), and
version 2's pipelined barriers pass the cpu backend's race detector.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _ops_a_helpers import assert_close, dev, f32  # noqa: F401  (dev: fixture)

from llmc_kernels import ops, reference
from llmc_kernels.ops import flash_attention as fa

SIZES = [(1, 1, 4, 1), (2, 13, 12, 3), (1, 37, 15, 3), (2, 70, 64, 4), (1, 130, 16, 1), (1, 67, 128, 2)]
PRECISE_TOL, TF32_TOL = 3e-6, 3e-3
# name -> (FA_VERSION, version 2's tuning macros for both precisions)
VARIANTS = {"v1": (1, {}), "v2": (2, {}), "v2-wm2": (2, {"FA_FWD_WM": 2}), "v2-w8": (2, {"FA_FWD_WARPS": 8})}


def _use(monkeypatch, name):
    version, macros = VARIANTS[name]
    monkeypatch.setattr(fa, "VERSION", version)
    monkeypatch.setattr(fa, "TUNING", {p: {**t, **macros} for p, t in fa.TUNING.items()})


@pytest.fixture(params=list(VARIANTS))
def variant(request, monkeypatch):
    """Each design of the kernels (ops.flash_attention.VERSION and TUNING) for the test's launches."""
    _use(monkeypatch, request.param)
    return request.param


def _inputs(B, T, C, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return f32(rng.standard_normal((B, T, 3 * C)) * scale), f32(rng.standard_normal((B, T, C)))


def _reference(inp, dout, B, T, C, NH, dinp0):
    out, preatt, att = np.empty((B, T, C)), np.zeros((B, NH, T, T)), np.zeros((B, NH, T, T))
    reference.attention_forward(out, preatt, att, inp, B, T, C, NH)
    dinp = dinp0.copy()
    reference.attention_backward(dinp, np.zeros_like(att), np.zeros_like(att), dout, inp, att, B, T, C, NH)
    return out, preatt, dinp


def _lse2(preatt, T, hs):
    """log2 sum_j exp(S_ij) per row, S = preatt (already scaled by 1/sqrt(hs)), causal."""
    s = np.where(np.tri(T, T, dtype=bool), preatt, -np.inf)
    m = s.max(-1, keepdims=True)
    return (m[..., 0] + np.log(np.exp(s - m).sum(-1))) / math.log(2)


def _close(name, got, want, tol):
    assert_close(name, got, want, rtol=0, atol=tol * max(np.abs(want).max(), 1e-30))


@pytest.mark.parametrize("precise", [True, False], ids=["3xtf32", "tf32"])
@pytest.mark.parametrize("B, T, C, NH", SIZES)
def test_forward_and_backward_match_the_reference(dev, variant, B, T, C, NH, precise):
    inp, dout = _inputs(B, T, C, B * 1000 + T * 10 + C)
    dinp0 = f32(np.random.default_rng(T).standard_normal((B, T, 3 * C)))  # backward accumulates
    out, lse = dev.put(np.full((B, T, C), np.nan)), dev.put(np.full((B, NH, T), np.nan))
    dinp = dev.put(dinp0)
    with dev.run():
        ops.flash_attention_forward(out, lse, dev.put(inp), B, T, C, NH, precise=precise)
        ops.flash_attention_backward(dinp, dev.put(dout), dev.put(inp), out, lse, B, T, C, NH, precise=precise)
    want_out, preatt, want_dinp = _reference(inp, dout, B, T, C, NH, dinp0)
    tol = PRECISE_TOL if precise else TF32_TOL
    _close("out", dev.get(out), want_out, tol)
    assert_close("lse", dev.get(lse), _lse2(preatt, T, C // NH), rtol=0, atol=tol * 100)
    _close("dinp - dinp0", dev.get(dinp) - dinp0, want_dinp - dinp0, 3 * tol)


def test_large_scores_and_zero_gradient(variant):
    """Scores in the hundreds: the running maximum keeps exp2 finite; dout = 0 adds exactly nothing."""
    B, T, C, NH = 1, 45, 16, 2
    inp, _ = _inputs(B, T, C, 5, scale=12.0)
    out, lse = np.full((B, T, C), np.nan, np.float32), np.full((B, NH, T), np.nan, np.float32)
    ops.flash_attention_forward(out, lse, inp.astype(np.float32), B, T, C, NH)
    want_out, _, _ = _reference(inp, np.zeros((B, T, C)), B, T, C, NH, np.zeros((B, T, 3 * C)))
    _close("out", out, want_out, PRECISE_TOL)
    dinp = np.full((B, T, 3 * C), 0.25, np.float32)
    ops.flash_attention_backward(dinp, np.zeros((B, T, C), np.float32), inp.astype(np.float32), out, lse, B, T, C, NH)
    assert (dinp == 0.25).all()


def test_first_row_attends_only_to_itself(variant):
    """Causality: row 0's output is v_0 exactly (one key, probability 1), whatever the other keys hold."""
    B, T, C, NH = 1, 70, 8, 1
    inp, _ = _inputs(B, T, C, 9)
    out, lse = np.zeros((B, T, C), np.float32), np.zeros((B, NH, T), np.float32)
    ops.flash_attention_forward(out, lse, inp.astype(np.float32), B, T, C, NH)
    np.testing.assert_allclose(out[0, 0], inp[0, 0, 2 * C :], rtol=1e-6)
    changed = inp.copy()
    changed[0, 1:, C:] += 5.0  # later keys and values
    out2 = np.zeros_like(out)
    ops.flash_attention_forward(out2, lse, changed.astype(np.float32), B, T, C, NH)
    assert (out2[0, 0] == out[0, 0]).all()


def test_matches_the_plain_attention_ops(variant):
    """The same numbers as the package's llm.c-style attention (the model's plain path)."""
    B, T, C, NH = 2, 33, 24, 3
    inp, dout = (a.astype(np.float32) for a in _inputs(B, T, C, 2))
    out, preatt, att = (
        np.zeros((B, T, C), np.float32),
        np.zeros((B, NH, T, T), np.float32),
        np.zeros((B, NH, T, T), np.float32),
    )
    ops.attention_forward(out, preatt, att, inp, B, T, C, NH)
    dinp = np.zeros((B, T, 3 * C), np.float32)
    ops.attention_backward(dinp, np.zeros_like(att), np.zeros_like(att), dout, inp, att, B, T, C, NH)
    fout, lse, fdinp = np.zeros_like(out), np.zeros((B, NH, T), np.float32), np.zeros_like(dinp)
    ops.flash_attention_forward(fout, lse, inp, B, T, C, NH)
    ops.flash_attention_backward(fdinp, dout, inp, fout, lse, B, T, C, NH)
    _close("out", fout, out, 1e-5)
    _close("dinp", fdinp, dinp, 1e-5)


def _run(inp, dout, dinp0, B, T, C, NH, precise):
    out, lse = np.full((B, T, C), np.nan, np.float32), np.full((B, NH, T), np.nan, np.float32)
    dinp = dinp0.copy()
    ops.flash_attention_forward(out, lse, inp, B, T, C, NH, precise=precise)
    ops.flash_attention_backward(dinp, dout, inp, out, lse, B, T, C, NH, precise=precise)
    return {"out": out, "lse": lse, "dinp": dinp}


# T not a multiple of 32 or 64 (several 16- and 32-query steps, a partial last tile), hs 8, 20 (padded to 24,
# scalar loads), 64; NH = 3
AGREE_SIZES = [(1, 77, 60, 3), (2, 45, 24, 3), (1, 100, 192, 3)]


@pytest.mark.parametrize("precise", [True, False], ids=["3xtf32", "tf32"])
@pytest.mark.parametrize("B, T, C, NH", AGREE_SIZES)
def test_the_designs_agree(monkeypatch, B, T, C, NH, precise):
    """Every design gives version 1's out, lse and dinp (accumulated onto dinp0)."""
    rng = np.random.default_rng(T * 7 + C)
    inp = rng.standard_normal((B, T, 3 * C)).astype(np.float32)
    dout = rng.standard_normal((B, T, C)).astype(np.float32)
    dinp0 = rng.standard_normal((B, T, 3 * C)).astype(np.float32)
    got = {}
    for name in VARIANTS:
        _use(monkeypatch, name)
        got[name] = _run(inp, dout, dinp0, B, T, C, NH, precise)
    tol = 2e-6 if precise else TF32_TOL
    for name in VARIANTS:
        for key, want in got["v1"].items():
            want = want.astype(np.float64) - (dinp0 if key == "dinp" else 0)
            have = got[name][key].astype(np.float64) - (dinp0 if key == "dinp" else 0)
            _close(f"{name} {key}", have, want, tol)


@pytest.mark.slow  # the race detector: a few times a plain launch
@pytest.mark.parametrize("variant_name", ["v2", "v2-wm2", "v2-w8"])
@pytest.mark.parametrize("precise", [True, False], ids=["3xtf32", "tf32"])
def test_the_pipeline_has_no_races(monkeypatch, variant_name, precise):
    """Version 2 issues the next tile's copies while warps still compute on others: its barriers are checked by
    the cpu backend's race detector (a race raises), at sizes with several key tiles and query steps."""
    from llmc_kernels import runtime

    _use(monkeypatch, variant_name)
    B, T, C, NH = (1, 70, 64, 1) if not precise else (1, 40, 32, 1)
    inp, dout = (a.astype(np.float32) for a in _inputs(B, T, C, 11))
    with runtime.launch_options(races=True):
        got = _run(inp, dout, np.zeros((B, T, 3 * C), np.float32), B, T, C, NH, precise)
    want_out, _, want_dinp = _reference(inp, dout, B, T, C, NH, np.zeros((B, T, 3 * C)))
    tol = PRECISE_TOL if precise else TF32_TOL
    _close("out", got["out"], want_out, tol)
    _close("dinp", got["dinp"], want_dinp, 3 * tol)


def test_arguments_are_checked():
    x = np.zeros((1, 4, 3 * 130), np.float32)
    with pytest.raises(ValueError, match="head size"):
        ops.flash_attention_forward(np.zeros((1, 4, 130), np.float32), np.zeros((1, 1, 4), np.float32), x, 1, 4, 130, 1)
    with pytest.raises(ValueError, match="lse"):
        ops.flash_attention_forward(
            np.zeros((1, 4, 8), np.float32),
            np.zeros((1, 2, 4), np.float32),
            np.zeros((1, 4, 24), np.float32),
            1,
            4,
            8,
            1,
        )
    assert fa.head_pad(5) == 8 and fa.head_pad(64) == 64


@pytest.mark.slow  # NVRTC compiles the flash kernels
def test_kernels_compile_for_the_gpu():
    """NVRTC (no GPU needed) compiles every design (``VARIANTS``) in both precisions,
    with the wrapper's options, without a warning, for sm_90 and sm_80 (TF32 tensor cores; cp.async; sm_90 also
    red.global.add.v2.f32) and sm_75 (T4: the emulated path, plain copies)."""
    from llmc_kernels.ops import _loader
    from llmc_kernels.runtime import nvrtc
    from llmc_kernels.runtime.signature import list_kernels
    from llmc_kernels.runtime.source import SourceOrigin

    if not nvrtc.available():
        pytest.skip(f"NVRTC unavailable: {nvrtc.unavailable_reason()}")
    src = _loader.source("flash_attention.cu")
    assert list_kernels(src) == [
        "flash_attention_forward_kernel",
        "flash_attention_delta_kernel",
        "flash_attention_backward_kernel",
    ]
    for name, (version, macros) in VARIANTS.items():
        for precise in (True, False):
            tuning = {**fa.TUNING[precise], **macros} if version >= 2 else {}
            options = ("-DFA_HS=64", f"-DFA_PRECISE={int(precise)}", f"-DFA_VERSION={version}")
            options += tuple(f"-D{k}={v}" for k, v in sorted(tuning.items()))
            for arch in ("compute_75", "compute_80", "compute_90"):
                warnings = nvrtc.check_compile(
                    src,
                    "flash_attention_backward_kernel",
                    arch=arch,
                    origin=SourceOrigin("flash_attention.cu", 1),
                    options=options,
                )
                assert warnings == [], (name, precise, arch, warnings)
