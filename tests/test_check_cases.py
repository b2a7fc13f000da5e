"""The cases the checks draw (llmc_kernels.check.cases) and their finite differences (llmc_kernels.check.fd):
awkward sizes, poison, pre-fill, special inputs, and expected values that agree with the reference."""

from __future__ import annotations

import numpy as np
import pytest

from llmc_kernels import opspec
from llmc_kernels import reference as ref
from llmc_kernels.check import cases as cc
from llmc_kernels.check import fd as check_fd
from llmc_kernels.check.compare import is_poison

FUNCTIONS = [
    (spec.op, fn.name, d) for spec in opspec.OPS.values() for fn, d in zip(spec.functions, ("forward", "backward"))
]


def cases(op, direction):
    name = opspec.OPS[op].forward.name if direction == "forward" else opspec.OPS[op].backward.name
    return [cc.build(name, s, 0) for s in cc.default_specs(op, direction)]


@pytest.mark.parametrize("op,name,direction", FUNCTIONS, ids=[f[1] for f in FUNCTIONS])
def test_every_case_is_well_formed(op, name, direction):
    built = cases(op, direction)
    assert len(built) >= 4
    sizes = [c.sizes for c in built]
    assert any(
        all(v == 1 for k, v in s.items() if k not in ("V", "maxT", "Vp")) or min(s.values()) == 1 for s in sizes
    ), "a tiny case"
    assert any(any(v % 32 and v > 32 for v in s.values()) for s in sizes), "a size that is no multiple of 32"
    for c in built:
        for t in c.tensors:
            if t.initial is None:
                continue
            assert t.initial.dtype == np.dtype(t.arg.dtype) and t.initial.flags.c_contiguous
            assert t.initial.shape == opspec.shape(t.arg, c.sizes)
            if t.role == opspec.OUTPUT:
                assert is_poison(t.initial).all()
            elif t.role == opspec.ACCUMULATE:
                inside = cc.region_mask(t.arg.region, t.initial.shape, c.sizes)
                nonzero = t.initial != 0
                if t.arg.region == opspec.CAUSAL:  # causal part zero, masked part pre-filled
                    assert not nonzero[inside].any() and (c.sizes["T"] == 1 or nonzero[~inside].all())
                else:
                    assert nonzero.all()
            else:
                assert np.isfinite(t.initial).all() if t.initial.dtype == np.float32 else True
            if t.expected is not None:
                assert np.isfinite(t.expected[t.compare if t.compare is not None else ...]).all()


def test_ids_are_valid_and_tokens_repeat():
    for c in cases("encoder", "backward"):
        inp = c.values[3].initial
        assert inp.dtype == np.int32 and inp.min() >= 0 and inp.max() < c.sizes["V"]
    big = cases("encoder", "backward")[0]
    assert len(np.unique(big.values[3].initial)) < big.values[3].initial.size


def test_large_cases_are_large():
    soft = [c for c in cases("softmax", "forward") if c.spec.kind == "large"][0]
    logits = soft.values[1].initial[..., : soft.sizes["V"]]
    assert logits.max() > 300 and np.ptp(logits) > 200
    att = [c for c in cases("attention", "forward") if c.spec.kind == "large"][0]
    out = np.zeros((1, 2, 33, 33))
    ref.attention_forward(
        np.zeros((1, 33, 32)), out, np.zeros((1, 2, 33, 33)), att.values[3].initial.astype(np.float64), 1, 33, 32, 2
    )
    assert np.abs(out[:, :, np.tri(33, dtype=bool)]).max() > 100  # scores in the hundreds
    gelu = [c for c in cases("gelu", "forward") if c.spec.kind == "large"][0]
    assert np.abs(gelu.values[1].initial).max() > 60  # exp(2u) overflows float32


def test_near_constant_rows_have_variance_far_below_eps():
    c = [c for c in cases("layernorm", "forward") if c.spec.kind == "nearconst"][0]
    var = c.values[3].initial.astype(np.float64).reshape(-1, c.sizes["C"]).var(axis=-1)
    assert var[0] == 0 and np.sum(var < 1e-7) >= len(var) // 2


def test_padded_vocabulary():
    for op, d in (("softmax", "forward"), ("crossentropy", "forward"), ("crossentropy", "backward")):
        assert any(c.sizes["Vp"] > c.sizes["V"] for c in cases(op, d))
    ce = cases("crossentropy", "backward")[0]
    probs = ce.values[2].initial
    assert (probs[..., ce.sizes["V"] :] == 0).all()
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
    dl = ce.values[0]
    assert dl.outside is not None and dl.outside[..., ce.sizes["V"] :].all()
    np.testing.assert_array_equal(dl.expected[dl.outside], dl.initial[dl.outside])


def test_adamw_cases():
    built = cases("adamw", "forward")
    ts = [c.values[-1] for c in built]
    assert min(ts) == 1 and len(set(ts)) >= 3
    for c in built:
        params, grads, m, v = (c.values[i].initial for i in range(4))
        assert c.values[9] > 0  # weight decay
        assert np.all(m != 0) and np.all(v > 0)


def test_matmul_has_a_case_without_bias_in_both_directions():
    for d in ("forward", "backward"):
        built = cases("matmul", d)
        slot = 3 if d == "forward" else 2
        assert any(c.values[slot].initial is None for c in built)
        assert any(c.values[slot].initial is not None for c in built)


def test_attention_regions():
    fwd = cases("attention", "forward")[0]
    T = fwd.sizes["T"]
    pre, att = fwd.values[1], fwd.values[2]
    assert (pre.compare == np.tri(T, dtype=bool)).all()  # preatt compared in the causal part only
    assert att.compare is None and (att.expected[att.outside] == 0).all()
    bwd = cases("attention", "backward")[0]
    for t in bwd.values[1:3]:  # dpreatt, datt keep their masked values
        np.testing.assert_array_equal(t.expected[t.outside], t.initial[t.outside])


def test_accumulators_expected_is_prefill_plus_reference():
    c = cases("layernorm", "backward")[0]
    args = [v.initial.astype(np.float64).copy() if hasattr(v, "arg") else v for v in c.values]
    zero = [np.zeros_like(a) if i < 3 else a for i, a in enumerate(args)]
    ref.layernorm_backward(*zero)
    for i in range(3):
        np.testing.assert_allclose(c.values[i].expected, c.values[i].initial + zero[i], rtol=1e-12, atol=1e-12)
        assert np.std(c.values[i].initial) == pytest.approx(np.std(zero[i]), rel=0.5)  # pre-fill sized like it


@pytest.mark.parametrize("op", sorted(cc.FD_CASES))
def test_finite_differences_agree_with_the_reference_backward(op):
    """The FD case's expected gradients (central differences of the reference forward) match the reference
    backward run on the same float32-rounded inputs, to float32 rounding of the forward-derived inputs."""
    name = opspec.OPS[op].backward.name
    case = cc.build(name, cc.FD_CASES[op], 0)
    assert case.expected_from == "finite differences"
    args = [
        v.initial.astype(np.float64).copy()
        if hasattr(v, "arg") and v.initial is not None and v.initial.dtype == np.float32
        else (v.initial if hasattr(v, "arg") else v)
        for v in case.values
    ]
    getattr(ref, name)(*args)
    for t, a in zip(case.values, args):
        if hasattr(t, "arg") and t.role == opspec.ACCUMULATE and t.initial is not None:
            scale = np.abs(t.expected - t.initial).max()
            assert scale > 0
            np.testing.assert_allclose(t.expected, a, atol=1e-5 * scale, rtol=1e-5, err_msg=f"{name}.{t.name}")


def test_finite_differences_replace_only_input_gradients():
    _, grads, upstream = check_fd._wrt("attention_backward")
    assert [g for g, _ in grads] == ["dinp"] and upstream == [("dout", "out")]
    _, grads, upstream = check_fd._wrt("crossentropy_softmax_backward")
    assert [(g, a.name) for g, a in grads] == [("dlogits", "logits")] and upstream == [("dlosses", "losses")]


def test_numgrad_of_a_known_function():
    x = np.array([0.5, -1.0, 2.0])
    g = check_fd.numgrad(lambda: float(np.sum(np.sin(x) * x)), x)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-8)


def test_coordinate_names():
    assert cc.coord_names(("B", "NH", "T", "T")) == ("b", "h", "t", "t2")
    assert cc.coord_names(("B", "T", "3*C")) == ("b", "t", "c")
    assert cc.coord_names(("OC", "C")) == ("oc", "c")
    assert cc.coord_names(("num_params",)) == ("i",)


def test_cases_are_reproducible_and_seeded():
    a = cc.build("gelu_forward", cc.DEFAULT_CASES["gelu"][0], 0).values[1].initial
    b = cc.build("gelu_forward", cc.DEFAULT_CASES["gelu"][0], 0).values[1].initial
    c = cc.build("gelu_forward", cc.DEFAULT_CASES["gelu"][0], 1).values[1].initial
    assert np.array_equal(a, b) and not np.array_equal(a, c)
