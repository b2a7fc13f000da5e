"""The NumPy references against PyTorch (float64, CPU), forward and autograd backward.

PyTorch is test-only and optional: without it these tests skip.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmc_kernels import reference as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, ATOL = 1e-11, 1e-12


@pytest.fixture
def rng():
    return np.random.default_rng(2024)


def tt(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def close(got, want, what, rtol=RTOL, atol=ATOL):
    want = want.detach().numpy() if isinstance(want, torch.Tensor) else want
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


# ------------------------------------------------------------------------------------------ encoder
def test_encoder_vs_embedding(rng):
    B, T, C, V, maxT = 3, 5, 6, 4, 8
    inp = rng.integers(0, V, size=(B, T)).astype(np.int32)
    wte_np, wpe_np = rng.standard_normal((V, C)), rng.standard_normal((maxT, C))
    wte, wpe = tt(wte_np, True), tt(wpe_np, True)
    y = F.embedding(torch.from_numpy(inp).long(), wte) + F.embedding(torch.arange(T), wpe)[None]
    dout = rng.standard_normal((B, T, C))
    y.backward(tt(dout))

    out = np.full((B, T, C), np.nan)
    ref.encoder_forward(out, inp, wte_np, wpe_np, B, T, C)
    close(out, y, "out")
    g1, g2 = rng.standard_normal((V, C)), rng.standard_normal((maxT, C))
    dwte, dwpe = g1.copy(), g2.copy()
    ref.encoder_backward(dwte, dwpe, dout, inp, B, T, C)
    close(dwte - g1, wte.grad, "dwte")
    close(dwpe - g2, wpe.grad, "dwpe")


# ------------------------------------------------------------------------------------------ layernorm
@pytest.mark.parametrize("B,T,C", [(2, 3, 7), (4, 5, 64)])
def test_layernorm_vs_torch(rng, B, T, C):
    x_np = 2.0 + 3.0 * rng.standard_normal((B, T, C))
    w_np, b_np = rng.standard_normal(C), rng.standard_normal(C)
    x, w, b = tt(x_np, True), tt(w_np, True), tt(b_np, True)
    y = F.layer_norm(x, (C,), w, b, eps=1e-5)
    dout = rng.standard_normal((B, T, C))
    y.backward(tt(dout))

    out, mean, rstd = np.full((B, T, C), np.nan), np.full((B, T), np.nan), np.full((B, T), np.nan)
    ref.layernorm_forward(out, mean, rstd, x_np, w_np, b_np, B, T, C)
    close(out, y, "out")
    close(mean, x.mean(-1), "mean")
    close(rstd, torch.rsqrt(x.var(-1, unbiased=False) + 1e-5), "rstd")
    g = [rng.standard_normal(s) for s in ((B, T, C), (C,), (C,))]
    dinp, dweight, dbias = (a.copy() for a in g)
    ref.layernorm_backward(dinp, dweight, dbias, dout, x_np, w_np, mean, rstd, B, T, C)
    close(dinp - g[0], x.grad, "dinp")
    close(dweight - g[1], w.grad, "dweight")
    close(dbias - g[2], b.grad, "dbias")


# ------------------------------------------------------------------------------------------ matmul
@pytest.mark.parametrize("with_bias", [True, False])
def test_matmul_vs_linear(rng, with_bias):
    B, T, C, OC = 2, 5, 7, 3
    x_np, w_np = rng.standard_normal((B, T, C)), rng.standard_normal((OC, C))
    b_np = rng.standard_normal(OC) if with_bias else None
    x, w = tt(x_np, True), tt(w_np, True)
    b = tt(b_np, True) if with_bias else None
    y = F.linear(x, w, b)
    dout = rng.standard_normal((B, T, OC))
    y.backward(tt(dout))

    out = np.full((B, T, OC), np.nan)
    ref.matmul_forward(out, x_np, w_np, b_np, B, T, C, OC)
    close(out, y, "out")
    g = [rng.standard_normal(s) for s in ((B, T, C), (OC, C), (OC,))]
    dinp, dweight, dbias = (a.copy() for a in g)
    ref.matmul_backward(dinp, dweight, dbias if with_bias else None, dout, x_np, w_np, B, T, C, OC)
    close(dinp - g[0], x.grad, "dinp")
    close(dweight - g[1], w.grad, "dweight")
    if with_bias:
        close(dbias - g[2], b.grad, "dbias")
    else:
        np.testing.assert_array_equal(dbias, g[2])


# ------------------------------------------------------------------------------------------ attention
def _torch_attention(inp, B, T, C, NH):
    """Explicit causal attention: softmax(Q K^T / sqrt(hs)) V, keeping preatt and att for their grads."""
    hs = C // NH
    q, k, v = inp.split(C, dim=2)
    q, k, v = (z.view(B, T, NH, hs).transpose(1, 2) for z in (q, k, v))  # [B,NH,T,hs]
    preatt = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
    att = torch.softmax(preatt.masked_fill(~mask, float("-inf")), dim=-1)
    out = (att @ v).transpose(1, 2).reshape(B, T, C)
    preatt.retain_grad()
    att.retain_grad()
    return out, preatt, att, mask.numpy()


@pytest.mark.parametrize("B,T,C,NH", [(2, 7, 12, 3), (1, 5, 4, 1)])
@pytest.mark.parametrize("prefill", [False, True])
def test_attention_vs_torch(rng, B, T, C, NH, prefill):
    """With datt/dpreatt pre-filled (causal part g_att, g_pre), torch's loss gets sum(g_att*att) +
    sum(g_pre*preatt): the buffers' final contents are then torch's att.grad and preatt.grad."""
    inp_np = rng.standard_normal((B, T, 3 * C))
    inp = tt(inp_np, True)
    y, preatt_t, att_t, mask = _torch_attention(inp, B, T, C, NH)
    dout = rng.standard_normal((B, T, C))
    g_att = rng.standard_normal((B, NH, T, T)) * mask if prefill else np.zeros((B, NH, T, T))
    g_pre = rng.standard_normal((B, NH, T, T)) * mask if prefill else np.zeros((B, NH, T, T))
    loss = (y * tt(dout)).sum() + (att_t * tt(g_att)).sum() + (preatt_t * tt(g_pre)).sum()
    loss.backward()

    out = np.full((B, T, C), np.nan)
    preatt = np.full((B, NH, T, T), 9.0)
    att = np.full((B, NH, T, T), np.nan)
    ref.attention_forward(out, preatt, att, inp_np, B, T, C, NH)
    close(out, y, "out")
    close(att, att_t, "att")
    close(preatt[..., mask], preatt_t.detach().numpy()[..., mask], "preatt (causal part)")
    np.testing.assert_array_equal(preatt[..., ~mask], 9.0)

    dinp0 = rng.standard_normal((B, T, 3 * C))
    dinp = dinp0.copy()
    datt = np.where(mask, g_att, -1.0)
    dpreatt = np.where(mask, g_pre, -2.0)
    ref.attention_backward(dinp, dpreatt, datt, dout, inp_np, att, B, T, C, NH)
    close(dinp - dinp0, inp.grad, "dinp")
    close(datt[..., mask], att_t.grad.numpy()[..., mask], "datt (causal part)")
    close(dpreatt[..., mask], preatt_t.grad.numpy()[..., mask], "dpreatt (causal part)")
    np.testing.assert_array_equal(datt[..., ~mask], -1.0)
    np.testing.assert_array_equal(dpreatt[..., ~mask], -2.0)


def test_attention_vs_sdpa(rng):
    B, T, C, NH = 2, 9, 16, 4
    inp_np = rng.standard_normal((B, T, 3 * C))
    q, k, v = (z.view(B, T, NH, C // NH).transpose(1, 2) for z in tt(inp_np).split(C, dim=2))
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
    out, preatt, att = np.zeros((B, T, C)), np.zeros((B, NH, T, T)), np.zeros((B, NH, T, T))
    ref.attention_forward(out, preatt, att, inp_np, B, T, C, NH)
    close(out, want, "out")


# ------------------------------------------------------------------------------------------ gelu
def test_gelu_vs_torch(rng):
    x_np = np.concatenate([3.0 * rng.standard_normal(200), [-40.0, -8.0, 0.0, 8.0, 40.0]])
    N = x_np.size
    x = tt(x_np, True)
    y = F.gelu(x, approximate="tanh")
    dout = rng.standard_normal(N)
    y.backward(tt(dout))
    out = np.full(N, np.nan)
    ref.gelu_forward(out, x_np, N)
    close(out, y, "out")
    g = rng.standard_normal(N)
    dinp = g.copy()
    ref.gelu_backward(dinp, x_np, dout, N)
    close(dinp - g, x.grad, "dinp")


# ------------------------------------------------------------------------------------------ residual
def test_residual_vs_torch(rng):
    N = 50
    a_np, b_np = rng.standard_normal(N), rng.standard_normal(N)
    a, b = tt(a_np, True), tt(b_np, True)
    y = a + b
    dout = rng.standard_normal(N)
    y.backward(tt(dout))
    out = np.full(N, np.nan)
    ref.residual_forward(out, a_np, b_np, N)
    close(out, y, "out")
    g1, g2 = rng.standard_normal(N), rng.standard_normal(N)
    d1, d2 = g1.copy(), g2.copy()
    ref.residual_backward(d1, d2, dout, N)
    close(d1 - g1, a.grad, "dinp1")
    close(d2 - g2, b.grad, "dinp2")


# ------------------------------------------------------------------------------------------ softmax + crossentropy
@pytest.mark.parametrize("B,T,V,Vp", [(2, 3, 50, 64), (3, 4, 13, 13)])
def test_softmax_crossentropy_vs_torch(rng, B, T, V, Vp):
    logits_np = 4.0 * rng.standard_normal((B, T, Vp))
    targets = rng.integers(0, V, size=(B, T)).astype(np.int32)
    logits = tt(logits_np, True)
    loss = F.cross_entropy(logits[..., :V].reshape(B * T, V), torch.from_numpy(targets).long().reshape(-1))
    loss.backward()

    probs = np.full((B, T, Vp), np.nan)
    ref.softmax_forward(probs, logits_np, B, T, V, Vp)
    close(probs[..., :V], torch.softmax(logits[..., :V], -1), "probs")
    np.testing.assert_array_equal(probs[..., V:], 0.0)
    losses = np.full((B, T), np.nan)
    ref.crossentropy_forward(losses, probs, targets, B, T, Vp)
    per_position = F.cross_entropy(
        logits[..., :V].reshape(B * T, V), torch.from_numpy(targets).long().reshape(-1), reduction="none"
    )
    close(losses, per_position.reshape(B, T), "losses")
    close(losses.mean(), loss, "mean loss")

    g = rng.standard_normal((B, T, Vp))
    dlogits = g.copy()
    ref.crossentropy_softmax_backward(dlogits, np.full((B, T), 1.0 / (B * T)), probs, targets, B, T, V, Vp)
    close(dlogits - g, logits.grad, "dlogits")  # torch's grad is 0 in the padded columns...
    np.testing.assert_array_equal(dlogits[..., V:], g[..., V:])  # ...and ours leaves them untouched


# ------------------------------------------------------------------------------------------ adamw
@pytest.mark.parametrize("from_zero", [True, False])
def test_adamw_vs_torch(rng, from_zero):
    """llm.c: p -= lr*(mhat/(sqrt(vhat)+eps) + wd*p). torch.optim.AdamW: p *= 1 - lr*wd, then
    p -= lr*mhat/(sqrt(vhat)+eps). The Adam step does not depend on p, so the two are the same update
    (only float rounding differs): compared at 1e-12 over t = 1..5."""
    n = 101
    lr, beta1, beta2, eps, wd = 1e-2, 0.9, 0.95, 1e-8, 0.1
    p_np = rng.standard_normal(n)
    m_np = np.zeros(n) if from_zero else 0.1 * rng.standard_normal(n)
    v_np = np.zeros(n) if from_zero else 0.01 * rng.random(n)
    p = torch.tensor(p_np.copy(), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.AdamW([p], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd, foreach=False, fused=False)
    if not from_zero:  # start torch from the same moments, at step 0
        opt.state[p] = {
            "step": torch.tensor(0.0),
            "exp_avg": torch.tensor(m_np.copy()),
            "exp_avg_sq": torch.tensor(v_np.copy()),
        }
    m, v = m_np.copy(), v_np.copy()
    moved = 0.0
    for t in range(1, 6):
        g = rng.standard_normal(n)
        p.grad = torch.tensor(g)
        opt.step()
        before = p_np.copy()
        ref.adamw_update(p_np, g, m, v, n, lr, beta1, beta2, eps, wd, t)
        moved = max(moved, np.max(np.abs(p_np - before)))
        close(p_np, p, f"params at t={t}", rtol=1e-12, atol=1e-13)
        close(m, opt.state[p]["exp_avg"], f"m at t={t}", rtol=1e-12, atol=1e-14)
        close(v, opt.state[p]["exp_avg_sq"], f"v at t={t}", rtol=1e-12, atol=1e-14)
    assert moved > 1e-3  # the steps are large enough that a wrong bias correction would show
