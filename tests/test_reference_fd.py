"""The NumPy references against central finite differences of their own forward (float64), and the op
registry (llmc_kernels.opspec) against the references.

Every backward is called with pre-filled, non-zero gradient buffers: what it adds (new - old) must be the
finite-difference gradient of L = sum(w * out) for a random w (for softmax + cross-entropy: of the loss).
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from llmc_kernels import ForbiddenCall, opspec
from llmc_kernels import reference as ref
from llmc_kernels._honesty import learner_scope
from llmc_kernels.check import fd as check_fd

FD_TOL = 1e-6


def numgrad(loss, x):
    """check_fd's central differences, with the step FD_TOL was set for."""
    return check_fd.numgrad(loss, x, h=1e-5)


def assert_grad(got, want, what, tol=FD_TOL):
    """Element-wise relative error, with a floor of 1e-3 of the tensor's largest entry for near-zero ones."""
    assert got.shape == want.shape, what
    assert np.all(np.isfinite(got)), f"{what}: non-finite values"
    scale = np.max(np.abs(want))
    assert scale > 0, f"{what}: a zero gradient cannot test anything"
    err = np.max(np.abs(got - want) / (np.abs(want) + 1e-3 * scale))
    assert err < tol, f"{what}: relative error {err:.3g} >= {tol:g}"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def randn(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def prefilled(rng, *shape):
    """An accumulator that already holds something: the backward must add to it."""
    return rng.standard_normal(shape)


# ------------------------------------------------------------------------------------------ vector_add
def test_vector_add(rng):
    a, b = randn(rng, 1000), randn(rng, 1000)
    out = np.full(1000, np.nan)
    assert ref.vector_add(out, a, b, 1000) is None
    np.testing.assert_array_equal(out, a + b)


# ------------------------------------------------------------------------------------------ encoder
@pytest.mark.parametrize("B,T,C,V,maxT", [(3, 4, 5, 3, 6), (1, 1, 1, 1, 1), (2, 7, 3, 5, 7)])
def test_encoder_fd(rng, B, T, C, V, maxT):
    inp = rng.integers(0, V, size=(B, T)).astype(np.int32)
    if B * T > V:
        assert len(np.unique(inp)) < inp.size  # repeated tokens: dwte rows collect several +=
    wte, wpe = randn(rng, V, C), randn(rng, maxT, C)
    w = randn(rng, B, T, C)

    def loss():
        out = np.full((B, T, C), np.nan)
        ref.encoder_forward(out, inp, wte, wpe, B, T, C)
        return np.sum(w * out)

    dwte0, dwpe0 = prefilled(rng, V, C), prefilled(rng, maxT, C)
    dwte, dwpe = dwte0.copy(), dwpe0.copy()
    assert ref.encoder_backward(dwte, dwpe, w, inp, B, T, C) is None
    assert_grad(dwte - dwte0, numgrad(loss, wte), "dwte")
    assert_grad(dwpe - dwpe0, numgrad(loss, wpe), "dwpe")
    np.testing.assert_array_equal(dwpe[T:], dwpe0[T:])  # rows past T untouched


def test_encoder_forward_values(rng):
    B, T, C, V, maxT = 2, 3, 4, 5, 8
    inp = rng.integers(0, V, size=(B, T)).astype(np.int32)
    wte, wpe = randn(rng, V, C), randn(rng, maxT, C)
    out = np.full((B, T, C), np.nan)
    ref.encoder_forward(out, inp, wte, wpe, B, T, C)
    for b in range(B):
        for t in range(T):
            np.testing.assert_array_equal(out[b, t], wte[inp[b, t]] + wpe[t])


# ------------------------------------------------------------------------------------------ layernorm
@pytest.mark.parametrize("B,T,C,loc,scale", [(2, 3, 7, 0.0, 1.0), (1, 5, 2, 3.0, 0.1), (3, 1, 33, -20.0, 10.0)])
def test_layernorm_fd(rng, B, T, C, loc, scale):
    inp = loc + randn(rng, B, T, C, scale=scale)
    weight, bias = randn(rng, C), randn(rng, C)
    w = randn(rng, B, T, C)

    def forward():
        out, mean, rstd = (np.full(s, np.nan) for s in ((B, T, C), (B, T), (B, T)))
        ref.layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C)
        return out, mean, rstd

    def loss():
        return np.sum(w * forward()[0])

    out, mean, rstd = forward()
    np.testing.assert_allclose(mean, inp.mean(-1), rtol=1e-12, atol=1e-12 * abs(loc))
    np.testing.assert_allclose(rstd, 1 / np.sqrt(inp.var(-1) + 1e-5), rtol=1e-10)
    dinp0, dweight0, dbias0 = prefilled(rng, B, T, C), prefilled(rng, C), prefilled(rng, C)
    dinp, dweight, dbias = dinp0.copy(), dweight0.copy(), dbias0.copy()
    assert ref.layernorm_backward(dinp, dweight, dbias, w, inp, weight, mean, rstd, B, T, C) is None
    assert_grad(dinp - dinp0, numgrad(loss, inp), "dinp")
    assert_grad(dweight - dweight0, numgrad(loss, weight), "dweight")
    assert_grad(dbias - dbias0, numgrad(loss, bias), "dbias")


def test_layernorm_biased_variance_and_eps():
    # one row [0, 2]: mean 1, biased variance 1 -> rstd = 1/sqrt(1 + 1e-5); out = [-1, 1] * rstd
    inp = np.array([[[0.0, 2.0]]])
    out, mean, rstd = np.zeros((1, 1, 2)), np.zeros((1, 1)), np.zeros((1, 1))
    ref.layernorm_forward(out, mean, rstd, inp, np.ones(2), np.zeros(2), 1, 1, 2)
    r = 1 / math.sqrt(1 + 1e-5)
    assert mean[0, 0] == 1.0 and rstd[0, 0] == pytest.approx(r, rel=1e-14)
    np.testing.assert_allclose(out[0, 0], [-r, r], rtol=1e-14)


# ------------------------------------------------------------------------------------------ matmul
@pytest.mark.parametrize("B,T,C,OC", [(2, 3, 5, 4), (1, 1, 1, 1), (1, 2, 3, 7)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matmul_fd(rng, B, T, C, OC, with_bias):
    inp, weight = randn(rng, B, T, C), randn(rng, OC, C)
    bias = randn(rng, OC) if with_bias else None
    w = randn(rng, B, T, OC)

    def loss():
        out = np.full((B, T, OC), np.nan)
        ref.matmul_forward(out, inp, weight, bias, B, T, C, OC)
        return np.sum(w * out)

    dinp0, dweight0 = prefilled(rng, B, T, C), prefilled(rng, OC, C)
    dbias0 = prefilled(rng, OC) if with_bias else None
    dinp, dweight = dinp0.copy(), dweight0.copy()
    dbias = dbias0.copy() if with_bias else None
    assert ref.matmul_backward(dinp, dweight, dbias, w, inp, weight, B, T, C, OC) is None
    assert_grad(dinp - dinp0, numgrad(loss, inp), "dinp")
    assert_grad(dweight - dweight0, numgrad(loss, weight), "dweight")
    if with_bias:
        assert_grad(dbias - dbias0, numgrad(loss, bias), "dbias")


def test_matmul_forward_layout(rng):
    """weight is [OC, C]: out[b,t,o] = bias[o] + sum_i inp[b,t,i] weight[o,i]."""
    B, T, C, OC = 1, 2, 3, 4
    inp, weight, bias = randn(rng, B, T, C), randn(rng, OC, C), randn(rng, OC)
    out = np.full((B, T, OC), np.nan)
    ref.matmul_forward(out, inp, weight, bias, B, T, C, OC)
    for t in range(T):
        for o in range(OC):
            assert out[0, t, o] == pytest.approx(bias[o] + sum(inp[0, t, i] * weight[o, i] for i in range(C)))


# ------------------------------------------------------------------------------------------ attention
def _attention(inp, B, T, C, NH, sentinel=7.0):
    out = np.full((B, T, C), np.nan)
    preatt = np.full((B, NH, T, T), sentinel)
    att = np.full((B, NH, T, T), np.nan)
    assert ref.attention_forward(out, preatt, att, inp, B, T, C, NH) is None
    return out, preatt, att


@pytest.mark.parametrize("B,T,C,NH", [(2, 5, 6, 2), (1, 3, 4, 1), (1, 4, 12, 3), (1, 1, 2, 2)])
@pytest.mark.parametrize("prefill_att_grads", [False, True])
def test_attention_fd(rng, B, T, C, NH, prefill_att_grads):
    """L = sum(w*out) + sum(g_att*att) + sum(g_pre*preatt) over the causal part, where g_att/g_pre are what
    datt/dpreatt held before the call (zero or not): llm.c's backward propagates the whole buffers."""
    mask = np.tri(T, T, dtype=bool)
    inp = randn(rng, B, T, 3 * C)
    w = randn(rng, B, T, C)
    if prefill_att_grads:
        g_att, g_pre = randn(rng, B, NH, T, T) * mask, randn(rng, B, NH, T, T) * mask
    else:
        g_att, g_pre = np.zeros((B, NH, T, T)), np.zeros((B, NH, T, T))

    def loss():
        out, preatt, att = _attention(inp, B, T, C, NH)
        return np.sum(w * out) + np.sum(g_att * att) + np.sum(np.where(mask, g_pre * preatt, 0.0))

    out, preatt, att = _attention(inp, B, T, C, NH)
    # masked (t2 > t) entries are held as sentinels: they must be neither read nor written
    masked_att = np.where(mask, g_att, -3.0)
    masked_pre = np.where(mask, g_pre, 5.0)
    dinp0 = prefilled(rng, B, T, 3 * C)
    dinp, datt, dpreatt = dinp0.copy(), masked_att.copy(), masked_pre.copy()
    att_in = np.where(mask, att, np.nan)  # the backward must not read att where t2 > t
    assert ref.attention_backward(dinp, dpreatt, datt, w, inp, att_in, B, T, C, NH) is None
    assert_grad(dinp - dinp0, numgrad(loss, inp), "dinp")
    np.testing.assert_array_equal(datt[..., ~mask], -3.0)
    np.testing.assert_array_equal(dpreatt[..., ~mask], 5.0)
    assert np.all(np.isfinite(datt)) and np.all(np.isfinite(dpreatt))


def test_attention_forward_semantics(rng):
    B, T, C, NH = 2, 6, 8, 2
    hs = C // NH
    inp = randn(rng, B, T, 3 * C, scale=3.0)
    out, preatt, att = _attention(inp, B, T, C, NH, sentinel=7.0)
    mask = np.tri(T, T, dtype=bool)
    np.testing.assert_array_equal(preatt[..., ~mask], 7.0)  # masked preatt untouched (llm.c)
    np.testing.assert_array_equal(att[..., ~mask], 0.0)  # masked att written as 0
    np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-13)
    # one score by hand: b=1, head 1, t=4, t2=2
    q = inp[1, 4, hs : 2 * hs]
    k = inp[1, 2, C + hs : C + 2 * hs]
    assert preatt[1, 1, 4, 2] == pytest.approx(q @ k / math.sqrt(hs), rel=1e-13)
    # out at b=0, t=3, head 0 from att and v
    v = inp[0, :4, 2 * C : 2 * C + hs]
    np.testing.assert_allclose(out[0, 3, :hs], att[0, 0, 3, :4] @ v, rtol=1e-13)


def test_attention_large_scores_are_stable():
    B, T, C, NH = 1, 4, 2, 1
    inp = np.full((B, T, 3 * C), 100.0)
    inp[0, :, C : 2 * C] *= np.arange(1, T + 1)[:, None]  # scores up to ~ 1e4 * 4 / sqrt(2)
    out, preatt, att = _attention(inp, B, T, C, NH)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(att))
    np.testing.assert_allclose(att.sum(-1), 1.0)


# ------------------------------------------------------------------------------------------ gelu
def test_gelu_fd(rng):
    x = np.concatenate([randn(rng, 40, scale=2.0), [-30.0, -6.0, -1e-3, 0.0, 1e-3, 6.0, 30.0]])
    N = x.size
    w = randn(rng, N)

    def loss():
        out = np.full(N, np.nan)
        ref.gelu_forward(out, x, N)
        return np.sum(w * out)

    d0 = prefilled(rng, N)
    d = d0.copy()
    assert ref.gelu_backward(d, x, w, N) is None
    assert_grad(d - d0, numgrad(loss, x), "dinp")


def test_gelu_forward_values():
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    out = np.zeros(5)
    ref.gelu_forward(out, x, 5)
    s = math.sqrt(2 / math.pi)
    want = [0.5 * v * (1 + math.tanh(s * (v + 0.044715 * v**3))) for v in x]
    np.testing.assert_allclose(out, want, rtol=1e-15)


def test_gelu_backward_float32_large_inputs():
    x = np.array([-200.0, -90.0, 90.0, 200.0], dtype=np.float32)
    d = np.zeros(4, dtype=np.float32)
    with np.errstate(all="raise"):
        ref.gelu_backward(d, x, np.ones(4, dtype=np.float32), 4)
    np.testing.assert_array_equal(d, [0.0, 0.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------ residual
def test_residual_fd(rng):
    N = 23
    a, b, w = randn(rng, N), randn(rng, N), randn(rng, N)

    def loss():
        out = np.full(N, np.nan)
        ref.residual_forward(out, a, b, N)
        return np.sum(w * out)

    d1_0, d2_0 = prefilled(rng, N), prefilled(rng, N)
    d1, d2 = d1_0.copy(), d2_0.copy()
    assert ref.residual_backward(d1, d2, w, N) is None
    assert_grad(d1 - d1_0, numgrad(loss, a), "dinp1")
    assert_grad(d2 - d2_0, numgrad(loss, b), "dinp2")


# ------------------------------------------------------------------------------------------ softmax + crossentropy
def _losses(logits, targets, B, T, V, Vp):
    probs = np.full((B, T, Vp), np.nan)
    ref.softmax_forward(probs, logits, B, T, V, Vp)
    losses = np.full((B, T), np.nan)
    ref.crossentropy_forward(losses, probs, targets, B, T, Vp)
    return probs, losses


@pytest.mark.parametrize("B,T,V,Vp", [(2, 3, 7, 10), (1, 1, 1, 1), (1, 4, 5, 5), (3, 2, 2, 8)])
@pytest.mark.parametrize("mean_loss", [True, False])
def test_softmax_crossentropy_fd(rng, B, T, V, Vp, mean_loss):
    logits = randn(rng, B, T, Vp, scale=2.0)
    targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
    dlosses = np.full((B, T), 1.0 / (B * T)) if mean_loss else randn(rng, B, T)

    def loss():
        return np.sum(dlosses * _losses(logits, targets, B, T, V, Vp)[1])

    probs, _ = _losses(logits, targets, B, T, V, Vp)
    dlogits0 = prefilled(rng, B, T, Vp)
    dlogits = dlogits0.copy()
    assert ref.crossentropy_softmax_backward(dlogits, dlosses, probs, targets, B, T, V, Vp) is None
    fd = numgrad(loss, logits)
    np.testing.assert_array_equal(fd[..., V:], 0.0)
    np.testing.assert_array_equal(dlogits[..., V:], dlogits0[..., V:])  # padded columns untouched
    if V > 1:
        assert_grad(dlogits[..., :V] - dlogits0[..., :V], fd[..., :V], "dlogits")
    else:  # one class: the loss is constant 0, so is the gradient
        np.testing.assert_allclose(dlogits - dlogits0, 0.0, atol=1e-15)


def test_softmax_padding_and_stability():
    B, T, V, Vp = 2, 2, 5, 8
    logits = np.linspace(-1000, 1000, B * T * Vp).reshape(B, T, Vp)
    logits[..., V:] = np.nan  # padded columns must not be read
    for dtype in (np.float64, np.float32):
        probs = np.full((B, T, Vp), np.nan, dtype=dtype)
        ref.softmax_forward(probs, logits.astype(dtype), B, T, V, Vp)
        assert probs.dtype == dtype
        np.testing.assert_array_equal(probs[..., V:], 0.0)
        assert np.all(np.isfinite(probs))
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_crossentropy_forward_values(rng):
    B, T, V, Vp = 2, 3, 4, 6
    logits = randn(rng, B, T, Vp)
    targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
    probs, losses = _losses(logits, targets, B, T, V, Vp)
    z = logits[..., :V]
    lse = np.log(np.exp(z).sum(-1))
    want = lse - np.take_along_axis(z, targets[..., None].astype(int), -1)[..., 0]
    np.testing.assert_allclose(losses, want, rtol=1e-13)


# ------------------------------------------------------------------------------------------ adamw
def _adamw_llmc_loop(params, grads, m, v, lr, beta1, beta2, eps, wd, t):
    """llm.c's gpt2_update, element by element."""
    for i in range(params.size):
        mi = beta1 * m[i] + (1 - beta1) * grads[i]
        vi = beta2 * v[i] + (1 - beta2) * grads[i] * grads[i]
        m_hat = mi / (1 - beta1**t)
        v_hat = vi / (1 - beta2**t)
        m[i], v[i] = mi, vi
        params[i] -= lr * (m_hat / (math.sqrt(v_hat) + eps) + wd * params[i])


def test_adamw_matches_llmc_loop(rng):
    n = 37
    p, m, v = randn(rng, n), randn(rng, n, scale=0.1), np.abs(randn(rng, n, scale=0.01))
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    for t in range(1, 6):
        g = randn(rng, n)
        assert ref.adamw_update(p, g, m, v, n, 1e-2, 0.9, 0.95, 1e-8, 0.1, t) is None
        _adamw_llmc_loop(p2, g, m2, v2, 1e-2, 0.9, 0.95, 1e-8, 0.1, t)
        np.testing.assert_allclose(p, p2, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(m, m2, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(v, v2, rtol=1e-14, atol=1e-15)


def test_adamw_first_step_size():
    """At t=1 from m = v = 0 the Adam step is lr * sign(g) (up to eps); decay adds lr*wd*p."""
    p = np.array([1.0, -2.0, 0.5])
    g = np.array([3.0, -0.5, 1e-3])
    m, v = np.zeros(3), np.zeros(3)
    ref.adamw_update(p, g, m, v, 3, 0.1, 0.9, 0.999, 1e-12, 0.0, 1)
    np.testing.assert_allclose(p, [0.9, -1.9, 0.4], rtol=1e-9)
    p = np.array([2.0])
    ref.adamw_update(p, np.array([1.0]), np.zeros(1), np.zeros(1), 1, 0.1, 0.9, 0.999, 0.0, 0.5, 1)
    assert p[0] == pytest.approx(2.0 - 0.1 * (1.0 + 0.5 * 2.0), rel=1e-14)


# ------------------------------------------------------------------------------------------ dtypes
def test_float32_inputs_compute_in_float32(rng):
    B, T, C = 2, 3, 16
    x = randn(rng, B, T, C).astype(np.float32)
    w, b = np.ones(C, np.float32), np.zeros(C, np.float32)
    out32, mean32, rstd32 = np.zeros((B, T, C), np.float32), np.zeros((B, T), np.float32), np.zeros((B, T), np.float32)
    ref.layernorm_forward(out32, mean32, rstd32, x, w, b, B, T, C)
    out64, mean64, rstd64 = np.zeros((B, T, C)), np.zeros((B, T)), np.zeros((B, T))
    ref.layernorm_forward(out64, mean64, rstd64, x.astype(np.float64), w.astype(float), b.astype(float), B, T, C)
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-5)
    assert not np.array_equal(out32.astype(np.float64), out64)  # float32 arithmetic, not float64 rounded


def test_outputs_must_be_views_not_copies(rng):
    """A non-contiguous output cannot be written through a reshape: refuse instead of silently dropping."""
    strided = np.zeros((4, 2))[:, 0]  # a view that needs no copy: written through
    ref.vector_add(strided, np.ones(4), np.ones(4), 4)
    np.testing.assert_array_equal(strided, 2.0)
    out = np.zeros((4, 4))[:, :2]  # flattening it would need a copy
    with pytest.raises(ValueError):
        ref.vector_add(out, np.ones(8), np.ones(8), 8)


# ------------------------------------------------------------------------------------------ honesty
@pytest.mark.parametrize("name", opspec.FUNCTIONS)
def test_refused_inside_a_check(name):
    spec, fn = opspec.function(name)
    with learner_scope("some_exercise"), pytest.raises(ForbiddenCall, match=f"reference.{name}"):
        getattr(ref, name)(*([None] * len(fn.args)))


# ------------------------------------------------------------------------------------------ the registry
def test_registry_covers_every_op():
    assert set(opspec.OPS) == {
        "encoder",
        "layernorm",
        "matmul",
        "attention",
        "gelu",
        "residual",
        "softmax",
        "crossentropy",
        "fused_classifier",
        "adamw",
        "vector_add",
        "transpose",
    }
    assert set(opspec.CHAPTER_ONLY) == {"vector_add", "transpose"} <= set(opspec.OPS)
    assert set(opspec.OPTIONAL) == {"fused_classifier"} <= set(opspec.OPS)
    for fn in opspec.FUNCTIONS:
        assert fn in ref.__all__


@pytest.mark.parametrize("name", opspec.FUNCTIONS)
def test_registry_signature_matches_reference(name):
    spec, fn = opspec.function(name)
    assert tuple(inspect.signature(getattr(ref, name)).parameters) == fn.arg_names
    for a in fn.args:
        assert a.role in opspec.ROLES
        for d in a.shape:
            assert d.split("*")[-1] in spec.dims, (name, a.name, d)
        if a.role == opspec.SIZE:
            assert a.name in spec.dims and a.dtype == "int"
        if a.source:
            src_fn, src_arg = a.source.split(".")
            _, src = opspec.function(src_fn)
            assert src.arg(src_arg).role == opspec.OUTPUT and src.arg(src_arg).shape == a.shape
        if a.grad_of and spec.backward is fn:
            fwd = spec.forward
            target = a.grad_of.split(".")[-1]
            owner = opspec.function(a.grad_of.split(".")[0])[1] if "." in a.grad_of else fwd
            assert owner.arg(target).shape == a.shape
    ex = spec.example_sizes
    assert set(ex) == set(spec.dims)
    for c in spec.constraints:
        assert eval(c, {}, dict(ex)), c


def _build(name, sizes, rng, cache, dtype=np.float64):
    """Arguments for function `name`, built only from the registry (how the checks engineer will)."""
    spec, fn = opspec.function(name)
    args = []
    for a in fn.args:
        if a.role == opspec.SIZE:
            args.append(int(sizes[a.name]))
        elif a.role == opspec.HYPER:
            args.append(float(a.example))
        elif a.role == opspec.STEP:
            args.append(3)
        elif a.source:
            if a.source not in cache:
                src_fn = a.source.split(".")[0]
                src_args = _build(src_fn, sizes, rng, cache, dtype)
                getattr(ref, src_fn)(*src_args)
                for sa, val in zip(opspec.function(src_fn)[1].args, src_args):
                    if sa.role == opspec.OUTPUT:
                        cache[f"{src_fn}.{sa.name}"] = val
            args.append(cache[a.source].copy())
        else:
            shp = opspec.shape(a, sizes)
            if a.role == opspec.OUTPUT:
                val = np.full(shp, np.nan, dtype=dtype)
            elif a.dtype == "int32":
                lo, hi = a.values.strip("[)").split(",")
                val = rng.integers(int(lo), sizes[hi], size=shp).astype(np.int32)
            else:
                val = rng.standard_normal(shp).astype(dtype)
                if a.name == "v":
                    val = np.abs(val)
            if a.role == opspec.INPUT:  # inputs are shared by name (forward and backward see one inp)
                val = cache.setdefault(a.name, val)
            args.append(val)
    return args


def _outside(region, arr, sizes):
    if region == opspec.CAUSAL:
        T = arr.shape[-1]
        return np.broadcast_to(~np.tri(T, T, dtype=bool), arr.shape)
    if region == opspec.COLS_LT_V:
        cols = np.arange(arr.shape[-1]) >= sizes["V"]
        return np.broadcast_to(cols, arr.shape)
    return np.zeros(arr.shape, dtype=bool)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", opspec.FUNCTIONS)
def test_registry_builds_valid_calls(name, dtype, rng):
    """Every function, called with arrays built from the registry: shapes fit, outputs are written where the
    registry says (and only there), accumulators are untouched outside their region, inputs are never
    modified, and input entries outside an input's region are never read (they hold NaN)."""
    spec, fn = opspec.function(name)
    sizes = spec.example_sizes
    args = _build(name, sizes, rng, {}, dtype)
    for a, val in zip(fn.args, args):
        if a.is_array:
            assert val.shape == opspec.shape(a, sizes), (a.name, val.shape)
            assert val.dtype == (np.int32 if a.dtype == "int32" else dtype), a.name
            if a.role == opspec.INPUT and a.dtype == "float32":
                val[_outside(a.region, val, sizes)] = np.nan
    before = [x.copy() if isinstance(x, np.ndarray) else x for x in args]
    assert getattr(ref, name)(*args) is None
    for a, old, new in zip(fn.args, before, args):
        if not a.is_array:
            continue
        out = _outside(a.region, new, sizes)
        if a.role == opspec.INPUT:
            np.testing.assert_array_equal(new, old, err_msg=a.name)
        elif a.role == opspec.OUTPUT:
            assert np.all(np.isfinite(new[~out])), a.name
            assert np.all(np.isnan(new[out])), a.name  # not written outside its region
        elif a.role == opspec.ACCUMULATE:
            assert np.all(np.isfinite(new)), a.name
            np.testing.assert_array_equal(new[out], old[out], err_msg=a.name)
            assert not np.array_equal(new[~out], old[~out]), a.name
        elif a.role == opspec.INOUT:
            assert np.all(np.isfinite(new)) and not np.array_equal(new, old), a.name


def test_registry_matmul_optional_bias(rng):
    _, fn = opspec.function("matmul_backward")
    assert fn.arg("dbias").optional and opspec.function("matmul_forward")[1].arg("bias").optional
    B, T, C, OC = 2, 3, 4, 5
    out = np.full((B, T, OC), np.nan)
    inp, weight = randn(rng, B, T, C), randn(rng, OC, C)
    ref.matmul_forward(out, inp, weight, None, B, T, C, OC)
    np.testing.assert_allclose(out, inp @ weight.T, rtol=1e-13)
    dinp, dweight = np.zeros((B, T, C)), np.zeros((OC, C))
    ref.matmul_backward(dinp, dweight, None, np.ones((B, T, OC)), inp, weight, B, T, C, OC)
    assert np.all(np.isfinite(dinp)) and np.all(np.isfinite(dweight))


@pytest.mark.parametrize("dlosses_given", [True, False], ids=["dlosses", "None"])
def test_fused_classifier_is_the_three_unfused_references(dlosses_given):
    """reference.fused_classifier = softmax_forward + crossentropy_forward + crossentropy_softmax_backward into a
    zeroed dlogits, the padding's gradient 0 (the logits overwritten); dlosses None is the mean loss's 1/(B*T)."""
    B, T, V, Vp = 2, 3, 7, 10
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((B, T, Vp)) * 3
    targets = rng.integers(0, V, (B, T)).astype(np.int32)
    dlosses = rng.uniform(0.5, 1.5, (B, T)) / (B * T) if dlosses_given else np.full((B, T), 1.0 / (B * T))
    probs, losses, dlogits = np.empty((B, T, Vp)), np.empty((B, T)), np.zeros((B, T, Vp))
    ref.softmax_forward(probs, logits, B, T, V, Vp)
    ref.crossentropy_forward(losses, probs, targets, B, T, Vp)
    ref.crossentropy_softmax_backward(dlogits, dlosses, probs, targets, B, T, V, Vp)
    fused, fused_losses = logits.copy(), np.empty((B, T))
    ref.fused_classifier(fused, fused_losses, dlosses if dlosses_given else None, targets, B, T, V, Vp)
    np.testing.assert_allclose(fused_losses, losses, rtol=1e-12)
    np.testing.assert_allclose(fused, dlogits, rtol=1e-12, atol=1e-15)
    assert (fused[..., V:] == 0).all()
