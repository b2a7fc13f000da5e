"""Chapter 04 (attention): what the notebook's prose relies on, beyond nbval and the student-copy tests.

- the exercise functions have the SPEC signatures (the checks and the grader call them by position);
- the solution backward follows llm.c's buffer semantics exactly as the chapter explains them, including
  what the checks cannot see (they start the causal parts of datt/dpreatt at zero): the softmax step
  reads the whole datt after its +=, the q.k step the whole dpreatt after its +=, and masked entries are
  neither read (NaN there changes nothing) nor written;
- the forward leaves preatt's masked entries unwritten and writes 0 into att's;
- exercise 3's flash forward matches the reference at GPT-2's head size (64, which the checks' cases do not
  reach) over several key tiles, never touches preatt or att, and refuses head sizes above 64.
"""

from __future__ import annotations

import numpy as np
import pytest
from _chapter_cells import assert_exercises_follow_the_contract, run

from llmc_kernels import reference, runtime

CHAPTER = "04_attention"


def _cpu_backend_or_skip():
    try:
        from llmc_kernels.runtime.cpu import CpuKernel  # noqa: F401
    except ImportError as err:
        pytest.skip(f"the CPU backend is not importable here: {err}")


def test_exercises_follow_the_contract():
    assert_exercises_follow_the_contract(
        CHAPTER,
        {
            "attention_forward": 'check.forward("attention", attention_forward)',
            "attention_backward": 'check.backward("attention", attention_backward)',
            "attention_forward_flash": 'check.performance("attention_forward", attention_forward_flash)',
        },
    )


def _inputs(B, T, C, NH, seed=0):
    g = np.random.default_rng(seed)
    inp = g.standard_normal((B, T, 3 * C)).astype(np.float32)
    att = np.empty((B, NH, T, T))
    reference.attention_forward(np.empty((B, T, C)), np.empty((B, NH, T, T)), att, inp.astype(np.float64), B, T, C, NH)
    return g, inp, att.astype(np.float32)


def test_forward_leaves_masked_preatt_alone_and_zeroes_masked_att():
    _cpu_backend_or_skip()
    ns, _ = run(CHAPTER, ["imports", "ex-attention_forward"])
    B, T, C, NH = 2, 9, 12, 3
    _, inp, _ = _inputs(B, T, C, NH)
    out = np.empty((B, T, C), dtype=np.float32)
    preatt = np.full((B, NH, T, T), 7.0, dtype=np.float32)
    att = np.full((B, NH, T, T), 7.0, dtype=np.float32)
    with runtime.use_backend("cpu"):
        ns["attention_forward"](out, preatt, att, inp, B, T, C, NH)
    masked = ~np.tri(T, dtype=bool)
    assert np.all(preatt[:, :, masked] == 7.0)
    assert np.all(att[:, :, masked] == 0.0)


def test_backward_uses_the_whole_buffers_and_never_touches_masked_entries():
    _cpu_backend_or_skip()
    ns, _ = run(CHAPTER, ["imports", "ex-attention_backward"])
    B, T, C, NH = 2, 11, 12, 3
    g, inp, att = _inputs(B, T, C, NH)
    causal = np.tri(T, dtype=bool)
    dout = g.standard_normal((B, T, C)).astype(np.float32)
    dinp = g.standard_normal((B, T, 3 * C)).astype(np.float32)
    # non-zero gradient already in the causal parts (the checks start them at 0), NaN in the masked parts
    datt = np.where(causal, g.standard_normal((B, NH, T, T)), np.nan).astype(np.float32)
    dpreatt = np.where(causal, g.standard_normal((B, NH, T, T)), np.nan).astype(np.float32)
    att_nan = np.where(causal, att, np.nan).astype(np.float32)  # masked att entries must not be read either
    expected = [a.astype(np.float64) for a in (dinp, dpreatt, datt)]
    reference.attention_backward(
        *expected, dout.astype(np.float64), inp.astype(np.float64), att_nan.astype(np.float64), B, T, C, NH
    )
    with runtime.use_backend("cpu"):
        ns["attention_backward"](dinp, dpreatt, datt, dout, inp, att_nan, B, T, C, NH)
    for name, got, want in zip(("dinp", "dpreatt", "datt"), (dinp, dpreatt, datt), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, equal_nan=True, err_msg=name)
    for got in (dpreatt, datt):
        assert np.all(np.isnan(got[:, :, ~causal]))


def test_flash_forward_at_head_size_64_never_touches_preatt_or_att():
    ns, _ = run(CHAPTER, ["imports", "ex-attention_forward_flash"])
    flash = ns["attention_forward_flash"]
    B, T, C, NH = 2, 70, 128, 2  # hs = 64; three tiles of queries and of keys, the last partial
    rng = np.random.default_rng(4)
    inp = rng.standard_normal((B, T, 3 * C)).astype(np.float32)
    out = np.full((B, T, C), np.nan, dtype=np.float32)
    preatt = np.full((B, NH, T, T), 7.0, dtype=np.float32)
    att = np.full((B, NH, T, T), -3.0, dtype=np.float32)
    with runtime.use_backend("cpu"):
        flash(out, preatt, att, inp, B, T, C, NH)
    expected = np.empty((B, T, C))
    reference.attention_forward(
        expected, np.empty((B, NH, T, T)), np.empty((B, NH, T, T)), inp.astype(np.float64), B, T, C, NH
    )
    assert np.abs(out - expected).max() < 1e-5
    assert (preatt == 7.0).all() and (att == -3.0).all()
    with pytest.raises(ValueError, match="up to 64"), runtime.use_backend("cpu"):
        flash(out, preatt, att, np.zeros((1, 2, 3 * 130), dtype=np.float32), 1, 2, 130, 2)
