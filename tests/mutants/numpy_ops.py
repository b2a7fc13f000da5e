"""Float32 NumPy stand-ins for kernels (right ones), used to test the check machinery itself without the CPU
backend. Sums run sequentially in float32 (np.cumsum), as one thread of a naive kernel would."""
from __future__ import annotations

import numpy as np

F = np.float32


def ssum(x, axis=-1):
    """Sequential float32 sum along ``axis`` (a naive kernel's loop)."""
    return np.cumsum(x.astype(F), axis=axis, dtype=F).take(-1, axis=axis)


def vector_add(out, a, b, N):
    out[:] = a + b


def encoder_forward(out, inp, wte, wpe, B, T, C):
    out[...] = wte[inp] + wpe[:T][None]


def encoder_backward(dwte, dwpe, dout, inp, B, T, C):
    for b in range(B):
        for t in range(T):
            dwte[inp[b, t]] += dout[b, t]
            dwpe[t] += dout[b, t]


def layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C):
    m = ssum(inp) / F(C)
    xc = inp - m[..., None]
    var = ssum(xc * xc) / F(C)
    r = F(1) / np.sqrt(var + F(1e-5))
    out[...] = xc * r[..., None] * weight + bias
    mean[...] = m
    rstd[...] = r


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, T, C):
    norm = (inp - mean[..., None]) * rstd[..., None]
    dnorm = weight * dout
    a = ssum(dnorm) / F(C)
    b = ssum(dnorm * norm) / F(C)
    dbias += ssum(dout.reshape(-1, C), axis=0)
    dweight += ssum((norm * dout).reshape(-1, C), axis=0)
    dinp += (dnorm - a[..., None] - norm * b[..., None]) * rstd[..., None]


def matmul_forward(out, inp, weight, bias, B, T, C, OC):
    prod = inp.reshape(B * T, 1, C) * weight[None]            # [BT, OC, C]
    y = ssum(prod)
    if bias is not None:
        y = y + bias
    out[...] = y.reshape(B, T, OC)


def matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC):
    dy = dout.reshape(B * T, OC)
    x = inp.reshape(B * T, C)
    dinp += ssum(dy[:, :, None] * weight[None], axis=1).reshape(B, T, C)
    dweight += ssum(dy[:, :, None] * x[:, None, :], axis=0)
    if dbias is not None:
        dbias += ssum(dy, axis=0)


def attention_forward(out, preatt, att, inp, B, T, C, NH):
    hs = C // NH
    scale = F(1.0 / np.sqrt(hs))
    qkv = inp.reshape(B, T, 3, NH, hs)
    q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
    s = ssum(q[:, :, :, None, :] * k[:, :, None, :, :]) * scale          # [B,NH,T,T]
    mask = np.tri(T, dtype=bool)
    preatt[:, :, mask] = s[:, :, mask]
    z = np.where(mask, s, F(-np.inf))
    e = np.exp(z - z.max(-1, keepdims=True))
    a = e / ssum(e)[..., None]
    att[...] = a
    y = ssum(a[..., None] * v[:, :, None, :, :], axis=-2)                # [B,NH,T,hs]
    out[...] = y.transpose(0, 2, 1, 3).reshape(B, T, C)


def attention_backward(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH):
    hs = C // NH
    scale = F(1.0 / np.sqrt(hs))
    qkv = inp.reshape(B, T, 3, NH, hs)
    q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
    mask = np.tri(T, dtype=bool)
    dy = dout.reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
    a = np.where(mask, att, F(0))
    da = ssum(dy[:, :, :, None, :] * v[:, :, None, :, :])
    datt[:, :, mask] += da[:, :, mask]
    dA = np.where(mask, datt, F(0))
    dp = a * (dA - ssum(a * dA)[..., None])
    dpreatt[:, :, mask] += dp[:, :, mask]
    dP = np.where(mask, dpreatt, F(0))
    dq = ssum(dP[..., None] * k[:, :, None, :, :], axis=-2) * scale
    dk = ssum(dP[..., None] * q[:, :, :, None, :], axis=-3) * scale
    dv = ssum(a[..., None] * dy[:, :, :, None, :], axis=-3)
    d = dinp.reshape(B, T, 3, NH, hs)
    for j, g in enumerate((dq, dk, dv)):
        d[:, :, j] += g.transpose(0, 2, 1, 3)


S = F(np.sqrt(2.0 / np.pi))


def gelu_forward(out, inp, N):
    x = inp
    out[:] = F(0.5) * x * (F(1) + np.tanh(S * (x + F(0.044715) * x * x * x)))


def gelu_backward(dinp, inp, dout, N):
    x = inp
    th = np.tanh(S * (x + F(0.044715) * x * x * x))
    local = F(0.5) * (F(1) + th) + F(0.5) * x * (F(1) - th * th) * S * (F(1) + F(3 * 0.044715) * x * x)
    dinp += local * dout


def residual_forward(out, inp1, inp2, N):
    out[:] = inp1 + inp2


def residual_backward(dinp1, dinp2, dout, N):
    dinp1 += dout
    dinp2 += dout


def softmax_forward(probs, logits, B, T, V, Vp):
    z = logits[..., :V]
    e = np.exp(z - z.max(-1, keepdims=True))
    probs[..., :V] = e / ssum(e)[..., None]
    probs[..., V:] = 0


def crossentropy_forward(losses, probs, targets, B, T, Vp):
    bi, ti = np.indices((B, T))
    losses[...] = -np.log(probs[bi, ti, targets])


def crossentropy_softmax_backward(dlogits, dlosses, probs, targets, B, T, V, Vp):
    g = probs[..., :V] * dlosses[..., None]
    bi, ti = np.indices((B, T))
    g[bi, ti, targets] -= dlosses
    dlogits[..., :V] += g


def adamw_update(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t):
    b1, b2 = F(beta1), F(beta2)
    m[:] = b1 * m + (F(1) - b1) * grads
    v[:] = b2 * v + (F(1) - b2) * grads * grads
    mh = m / (F(1) - b1 ** F(t))
    vh = v / (F(1) - b2 ** F(t))
    params[:] -= F(lr) * (mh / (np.sqrt(vh) + F(eps)) + F(weight_decay) * params)


FORWARD = {"vector_add": vector_add, "encoder": encoder_forward, "layernorm": layernorm_forward,
           "matmul": matmul_forward, "attention": attention_forward, "gelu": gelu_forward,
           "residual": residual_forward, "softmax": softmax_forward, "crossentropy": crossentropy_forward,
           "adamw": adamw_update}
BACKWARD = {"encoder": encoder_backward, "layernorm": layernorm_backward, "matmul": matmul_backward,
            "attention": attention_backward, "gelu": gelu_backward, "residual": residual_backward,
            "crossentropy": crossentropy_softmax_backward}
