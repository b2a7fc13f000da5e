"""NumPy references for every op: the math, written plainly, with llm.c's conventions.

These are what the checks compare your kernels against (in float64). Each function has exactly the
signature of the SPEC table and of your kernel wrapper:

* outputs come first, the function writes into the arrays it is given and returns ``None``;
* every backward output **accumulates** (``+=``): the caller zeroes gradients once per step, so a tensor
  used twice collects both contributions;
* sizes are Python ``int``; hyperparameters Python ``float``;
* it computes in the dtype of the arrays it is given (the checks pass float64 arrays).

Shapes use llm.c's names: ``B`` batch, ``T`` sequence length, ``C`` channels, ``NH`` heads, ``hs = C/NH``
head size, ``OC`` output channels, ``V`` vocabulary, ``Vp`` padded vocabulary, ``N`` a flat element count.
Read each forward next to its backward, as in llm.c's ``train_gpt2.c``.

During a check these functions refuse to run (``ForbiddenCall``): your function must launch your kernel.
"""

from __future__ import annotations

import math

import numpy as np

from ._honesty import refuse_if_learner

LAYERNORM_EPS = 1e-5
GELU_SCALING_FACTOR = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715

__all__ = [
    "vector_add",
    "transpose",
    "encoder_forward",
    "encoder_backward",
    "layernorm_forward",
    "layernorm_backward",
    "matmul_forward",
    "matmul_backward",
    "attention_forward",
    "attention_backward",
    "gelu_forward",
    "gelu_backward",
    "residual_forward",
    "residual_backward",
    "softmax_forward",
    "crossentropy_forward",
    "crossentropy_softmax_backward",
    "fused_classifier",
    "adamw_update",
    "LAYERNORM_EPS",
    "GELU_SCALING_FACTOR",
    "GELU_CUBIC",
]


def _v(arr, *shape):
    """A view of ``arr`` with ``shape`` (never a copy, so writes reach the caller's buffer)."""
    known = math.prod(d for d in shape if d != -1)
    if (arr.size != known) if -1 not in shape else (known == 0 or arr.size % known):
        raise ValueError(f"an array of shape {arr.shape} where shape {shape} was expected")
    return np.reshape(arr, shape, copy=False)


def _causal_mask(T):
    """[T, T] booleans, True where t2 <= t (row t may look at columns 0..t)."""
    return np.tri(T, T, dtype=bool)


# ================================================================================================ 00
def vector_add(out, a, b, N):
    """out[i] = a[i] + b[i] for i < N.   out, a, b: [N]

    Chapter 00's first kernel: one thread per element.
    """
    refuse_if_learner("llmc_kernels.reference.vector_add")
    _v(out, N)[...] = _v(a, N) + _v(b, N)


# ================================================================================================ 04b
def transpose(out, inp, T, C):
    """out[c, t] = inp[t, c].   inp: [T, C], out: [C, T]

    Chapter 04b's exercise: a copy whose reads and writes cannot both run along rows, the classic kernel for
    coalescing and shared-memory bank conflicts.
    """
    refuse_if_learner("llmc_kernels.reference.transpose")
    _v(out, C, T)[...] = _v(inp, T, C).T


# ================================================================================================ encoder
def encoder_forward(out, inp, wte, wpe, B, T, C):
    """Token embedding plus position embedding.

    out [B,T,C], inp [B,T] int32 token ids in [0, V), wte [V,C], wpe [maxT,C] (maxT >= T)::

        out[b,t,:] = wte[inp[b,t], :] + wpe[t, :]
    """
    refuse_if_learner("llmc_kernels.reference.encoder_forward")
    ids = _v(inp, B, T)
    _v(out, B, T, C)[...] = _v(wte, -1, C)[ids] + _v(wpe, -1, C)[:T][None, :, :]


def encoder_backward(dwte, dwpe, dout, inp, B, T, C):
    """Backward of encoder_forward: scatter each position's gradient back to the rows it came from.

    dwte [V,C], dwpe [maxT,C] accumulate; dout [B,T,C]; inp [B,T]::

        dwte[inp[b,t], :] += dout[b,t,:]      for every (b, t)   (a token id may repeat: += each time)
        dwpe[t, :]        += sum_b dout[b,t,:]

    Rows of dwte whose token does not occur, and rows t >= T of dwpe, are left as they are.
    """
    refuse_if_learner("llmc_kernels.reference.encoder_backward")
    d = _v(dout, B, T, C)
    np.add.at(_v(dwte, -1, C), _v(inp, B, T).reshape(-1), d.reshape(B * T, C))
    _v(dwpe, -1, C)[:T] += d.sum(axis=0)


# ================================================================================================ layernorm
def layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C):
    """Layer normalisation over the channels of each position.

    out [B,T,C], mean [B,T], rstd [B,T] (outputs); inp [B,T,C], weight [C], bias [C]. For each (b, t),
    with x = inp[b,t,:]::

        mean = (1/C) sum_i x_i
        var  = (1/C) sum_i (x_i - mean)^2          (biased: divide by C, not C-1)
        rstd = 1 / sqrt(var + 1e-5)
        norm_i = (x_i - mean) * rstd
        out_i  = norm_i * weight_i + bias_i

    mean and rstd are kept for the backward.
    """
    refuse_if_learner("llmc_kernels.reference.layernorm_forward")
    x = _v(inp, B, T, C)
    mu = x.mean(axis=-1)
    xc = x - mu[..., None]
    var = (xc * xc).mean(axis=-1)
    r = 1.0 / np.sqrt(var + LAYERNORM_EPS)
    _v(out, B, T, C)[...] = xc * r[..., None] * _v(weight, C) + _v(bias, C)
    _v(mean, B, T)[...] = mu
    _v(rstd, B, T)[...] = r


def layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, B, T, C):
    """Backward of layernorm_forward.

    dinp [B,T,C], dweight [C], dbias [C] accumulate; dout [B,T,C]; inp [B,T,C]; weight [C];
    mean, rstd [B,T] as written by layernorm_forward. With norm_i = (x_i - mean) * rstd and
    dnorm_i = weight_i * dout_i at each (b, t)::

        dbias_i   += sum_{b,t} dout_i
        dweight_i += sum_{b,t} norm_i * dout_i
        dinp_i    += rstd * (dnorm_i - mean_j(dnorm_j) - norm_i * mean_j(dnorm_j * norm_j))

    The last line is the chain rule through mean and rstd: both depend on every x_j, which gives the two
    averages over j (llm.c's "two reduce operations").
    """
    refuse_if_learner("llmc_kernels.reference.layernorm_backward")
    x, dy = _v(inp, B, T, C), _v(dout, B, T, C)
    r = _v(rstd, B, T)[..., None]
    norm = (x - _v(mean, B, T)[..., None]) * r
    dnorm = _v(weight, C) * dy
    dnorm_mean = dnorm.mean(axis=-1, keepdims=True)
    dnorm_norm_mean = (dnorm * norm).mean(axis=-1, keepdims=True)
    _v(dbias, C)[...] += dy.sum(axis=(0, 1))
    _v(dweight, C)[...] += (norm * dy).sum(axis=(0, 1))
    _v(dinp, B, T, C)[...] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * r


# ================================================================================================ matmul
def matmul_forward(out, inp, weight, bias, B, T, C, OC):
    """A linear layer at every position.

    out [B,T,OC]; inp [B,T,C]; weight [OC,C] (PyTorch's Linear layout); bias [OC] or None::

        out[b,t,o] = bias[o] + sum_i inp[b,t,i] * weight[o,i]        i.e.  out = inp @ weight.T + bias
    """
    refuse_if_learner("llmc_kernels.reference.matmul_forward")
    y = _v(inp, B * T, C) @ _v(weight, OC, C).T
    if bias is not None:
        y += _v(bias, OC)
    _v(out, B * T, OC)[...] = y


def matmul_backward(dinp, dweight, dbias, dout, inp, weight, B, T, C, OC):
    """Backward of matmul_forward.

    dinp [B,T,C], dweight [OC,C], dbias [OC] or None accumulate; dout [B,T,OC]; inp [B,T,C];
    weight [OC,C]::

        dinp[b,t,i]  += sum_o dout[b,t,o] * weight[o,i]       dinp    += dout @ weight
        dweight[o,i] += sum_{b,t} dout[b,t,o] * inp[b,t,i]    dweight += dout^T @ inp   (over all b,t)
        dbias[o]     += sum_{b,t} dout[b,t,o]                 (skipped when dbias is None)
    """
    refuse_if_learner("llmc_kernels.reference.matmul_backward")
    dy = _v(dout, B * T, OC)
    x, w = _v(inp, B * T, C), _v(weight, OC, C)
    _v(dinp, B * T, C)[...] += dy @ w
    _v(dweight, OC, C)[...] += dy.T @ x
    if dbias is not None:
        _v(dbias, OC)[...] += dy.sum(axis=0)


# ================================================================================================ attention
def _qkv(inp, B, T, C, NH):
    """Split inp [B,T,3C] into q, k, v, each [B,NH,T,hs] (views)."""
    if C % NH:
        raise ValueError(f"attention: C={C} is not a multiple of NH={NH}")
    hs = C // NH
    qkv = _v(inp, B, T, 3, NH, hs)
    return (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))


def attention_forward(out, preatt, att, inp, B, T, C, NH):
    """Causal multi-head self-attention (the part after the qkv matmul and before the projection).

    out [B,T,C], preatt [B,NH,T,T], att [B,NH,T,T] (outputs); inp [B,T,3C] holds, at each (b, t),
    the query in columns [0,C), the key in [C,2C) and the value in [2C,3C); head h uses the hs = C/NH
    columns h*hs .. (h+1)*hs - 1 of each. With scale = 1/sqrt(hs), for every b, h and t::

        preatt[b,h,t,t2] = scale * sum_i q[b,t,h,i] * k[b,t2,h,i]          for t2 <= t
        att[b,h,t,t2]    = exp(preatt[t2] - max) / sum_{t3<=t} exp(preatt[t3] - max)   for t2 <= t
                         = 0                                                            for t2 > t
        out[b,t,h*hs+i]  = sum_{t2<=t} att[b,h,t,t2] * v[b,t2,h,i]

    (max = the largest preatt[t3], t3 <= t: subtracting it changes nothing mathematically and keeps exp
    from overflowing.) As in llm.c's train_gpt2.c, the masked entries of preatt (t2 > t) are NOT
    written: they keep whatever the buffer held. The masked entries of att are written as 0.
    """
    refuse_if_learner("llmc_kernels.reference.attention_forward")
    hs = C // NH
    scale = 1.0 / math.sqrt(hs)
    q, k, v = _qkv(inp, B, T, C, NH)
    mask = _causal_mask(T)
    scores = (q @ k.transpose(0, 1, 3, 2)) * scale  # [B,NH,T,T]
    pre = _v(preatt, B, NH, T, T)
    pre[:, :, mask] = scores[:, :, mask]
    s = np.where(mask, scores, -np.inf)
    s = s - s.max(axis=-1, keepdims=True)  # the diagonal is never masked
    e = np.exp(s)  # exp(-inf) = 0 where t2 > t
    a = e / e.sum(axis=-1, keepdims=True)
    _v(att, B, NH, T, T)[...] = a
    y = a @ v  # [B,NH,T,hs]
    _v(out, B, T, NH, hs)[...] = y.transpose(0, 2, 1, 3)


def attention_backward(dinp, dpreatt, datt, dout, inp, att, B, T, C, NH):
    """Backward of attention_forward, in llm.c's order (the forward's passes, last to first).

    dinp [B,T,3C], dpreatt [B,NH,T,T], datt [B,NH,T,T] accumulate; dout [B,T,C]; inp [B,T,3C];
    att [B,NH,T,T] as written by attention_forward. Only the causal entries (t2 <= t) of att, datt and
    dpreatt are read or written; their masked entries are left exactly as they are. For each b, h, t::

        (pass 4, out = att @ v)
        datt[t,t2]  += sum_i dout[t,i] * v[t2,i]                      t2 <= t
        dv[t2,i]    += att[t,t2] * dout[t,i]
        (passes 2-3, the softmax: d att[t2] / d preatt[t3] = att[t2] ([t2 == t3] - att[t3]))
        dpreatt[t,t3] += att[t,t3] * (datt[t,t3] - sum_{t2<=t} att[t,t2] * datt[t,t2])     t3 <= t
        (pass 1, preatt = scale * q . k)
        dq[t,i]     += scale * sum_{t2<=t} dpreatt[t,t2] * k[t2,i]
        dk[t2,i]    += scale * dpreatt[t,t2] * q[t,i]

    where dq, dk, dv are the query, key and value parts of dinp. Like llm.c, the softmax step reads the
    whole datt buffer after its +=, and the q/k step the whole dpreatt buffer after its +=: each buffer holds
    the total gradient of the loss with respect to att / preatt (anything it held before counts as gradient
    arriving from elsewhere), and that total is what flows further back.
    """
    refuse_if_learner("llmc_kernels.reference.attention_backward")
    hs = C // NH
    scale = 1.0 / math.sqrt(hs)
    q, k, v = _qkv(inp, B, T, C, NH)
    mask = _causal_mask(T)
    dy = _v(dout, B, T, NH, hs).transpose(0, 2, 1, 3)  # [B,NH,T,hs]
    a = np.where(mask, _v(att, B, NH, T, T), 0.0)  # never read the masked entries
    dA, dP = _v(datt, B, NH, T, T), _v(dpreatt, B, NH, T, T)

    dA[:, :, mask] += (dy @ v.transpose(0, 1, 3, 2))[:, :, mask]
    dv = a.transpose(0, 1, 3, 2) @ dy
    dA_total = np.where(mask, dA, 0.0)
    dP[:, :, mask] += (a * (dA_total - (a * dA_total).sum(axis=-1, keepdims=True)))[:, :, mask]
    dP_total = np.where(mask, dP, 0.0)
    dq = (dP_total @ k) * scale
    dk = (dP_total.transpose(0, 1, 3, 2) @ q) * scale

    d = _v(dinp, B, T, 3, NH, hs)
    for j, g in enumerate((dq, dk, dv)):
        d[:, :, j] += g.transpose(0, 2, 1, 3)


# ================================================================================================ gelu
def gelu_forward(out, inp, N):
    """GELU, tanh approximation (GPT-2's).   out, inp: [N]::

    out = 0.5 * x * (1 + tanh(s * (x + 0.044715 x^3))),   s = GELU_SCALING_FACTOR = sqrt(2/pi)
    """
    refuse_if_learner("llmc_kernels.reference.gelu_forward")
    x = _v(inp, N)
    _v(out, N)[...] = 0.5 * x * (1.0 + np.tanh(GELU_SCALING_FACTOR * (x + GELU_CUBIC * x * x * x)))


def gelu_backward(dinp, inp, dout, N):
    """Backward of gelu_forward.   dinp [N] accumulates; inp, dout: [N] (note the order)::

        u  = s * (x + 0.044715 x^3),   th = tanh(u),   sech^2(u) = 1 - th^2
        d out / d x = 0.5 * (1 + th) + 0.5 * x * sech^2(u) * s * (1 + 3 * 0.044715 x^2)
        dinp += (d out / d x) * dout

    (llm.c writes sech^2 as 1/cosh^2(u); cosh overflows float32 for |u| > ~89, 1 - tanh^2 does not.)
    """
    refuse_if_learner("llmc_kernels.reference.gelu_backward")
    x = _v(inp, N)
    th = np.tanh(GELU_SCALING_FACTOR * (x + GELU_CUBIC * x * x * x))
    sech2 = 1.0 - th * th
    local = 0.5 * (1.0 + th) + 0.5 * x * sech2 * GELU_SCALING_FACTOR * (1.0 + 3.0 * GELU_CUBIC * x * x)
    _v(dinp, N)[...] += local * _v(dout, N)


# ================================================================================================ residual
def residual_forward(out, inp1, inp2, N):
    """The residual connection.   out, inp1, inp2: [N]::

    out = inp1 + inp2
    """
    refuse_if_learner("llmc_kernels.reference.residual_forward")
    _v(out, N)[...] = _v(inp1, N) + _v(inp2, N)


def residual_backward(dinp1, dinp2, dout, N):
    """Backward of residual_forward: the gradient flows unchanged to both inputs.   All [N]::

    dinp1 += dout
    dinp2 += dout
    """
    refuse_if_learner("llmc_kernels.reference.residual_backward")
    d = _v(dout, N)
    _v(dinp1, N)[...] += d
    _v(dinp2, N)[...] += d


# ========================================================================================= softmax + crossentropy
def softmax_forward(probs, logits, B, T, V, Vp):
    """Softmax over the real vocabulary of each position.

    probs [B,T,Vp] (output); logits [B,T,Vp]. Columns V..Vp-1 are padding (llm.c pads the vocabulary to a
    multiple of 128): they are not read, and get probability 0. For each (b, t)::

        m = max_{i<V} logits[i]
        probs[i] = exp(logits[i] - m) / sum_{j<V} exp(logits[j] - m)      i < V
        probs[i] = 0                                                       V <= i < Vp

    Subtracting the maximum changes nothing mathematically and keeps exp from overflowing.
    """
    refuse_if_learner("llmc_kernels.reference.softmax_forward")
    z = _v(logits, B, T, Vp)[..., :V]
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    p = _v(probs, B, T, Vp)
    p[..., :V] = e / e.sum(axis=-1, keepdims=True)
    p[..., V:] = 0


def crossentropy_forward(losses, probs, targets, B, T, Vp):
    """The loss of each position: minus the log-probability of the right next token.

    losses [B,T] (output); probs [B,T,Vp] from softmax_forward; targets [B,T] int32 in [0, V)::

        losses[b,t] = -log(probs[b,t,targets[b,t]])

    The mean loss is sum(losses) / (B*T).
    """
    refuse_if_learner("llmc_kernels.reference.crossentropy_forward")
    p = _v(probs, B, T, Vp)
    ix = _v(targets, B, T).astype(np.intp)[..., None]
    _v(losses, B, T)[...] = -np.log(np.take_along_axis(p, ix, axis=-1)[..., 0])


def crossentropy_softmax_backward(dlogits, dlosses, probs, targets, B, T, V, Vp):
    """Backward through crossentropy_forward and softmax_forward together.

    dlogits [B,T,Vp] accumulates; dlosses [B,T] (filled by the caller: 1/(B*T) each for a mean loss);
    probs [B,T,Vp] from softmax_forward; targets [B,T]. With loss = -log p_y and p = softmax(z)::

        d loss / d z_i = p_i - [i == y]
        dlogits[b,t,i] += (probs[b,t,i] - [i == targets[b,t]]) * dlosses[b,t]        i < V

    Columns V..Vp-1 are left untouched (the padding gets no gradient).
    """
    refuse_if_learner("llmc_kernels.reference.crossentropy_softmax_backward")
    p = _v(probs, B, T, Vp)[..., :V]
    g = p * _v(dlosses, B, T)[..., None]
    bi, ti = np.indices((B, T))
    g[bi, ti, _v(targets, B, T)] -= _v(dlosses, B, T)
    _v(dlogits, B, T, Vp)[..., :V] += g


def fused_classifier(logits, losses, dlosses, targets, B, T, V, Vp):
    """softmax_forward, crossentropy_forward and crossentropy_softmax_backward in one, as llm.c's
    fused_classifier: the loss of each position, and the gradient written OVER the logits.

    logits [B,T,Vp] (read, then overwritten); losses [B,T] (output); dlosses [B,T], or None for 1/(B*T)
    everywhere (the mean loss); targets [B,T] int32 in [0, V). With p = softmax(logits[b,t,:V]) and
    y = targets[b,t]::

        losses[b,t]    = -log p_y = (m + log s) - logits[b,t,y]     (m the row's max, s = sum exp(z - m))
        logits[b,t,i] <- (p_i - [i == y]) * dlosses[b,t]            i < V
        logits[b,t,i] <- 0                                           V <= i < Vp

    No [B,T,Vp] probabilities are stored: that is the point of fusing (chapter 07's optimisation exercise).
    """
    refuse_if_learner("llmc_kernels.reference.fused_classifier")
    x = _v(logits, B, T, Vp)
    z = x[..., :V]
    m = z.max(axis=-1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=-1, keepdims=True)
    y = _v(targets, B, T).astype(np.intp)
    zy = np.take_along_axis(z, y[..., None], axis=-1)[..., 0]
    _v(losses, B, T)[...] = (m[..., 0] + np.log(s[..., 0])) - zy
    d = np.full((B, T), 1.0 / (B * T)) if dlosses is None else _v(dlosses, B, T)
    g = e / s
    bi, ti = np.indices((B, T))
    g[bi, ti, y] -= 1.0
    x[..., :V] = g * d[..., None]
    x[..., V:] = 0


# ================================================================================================ adamw
def adamw_update(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t):
    """One AdamW step, in place, as llm.c's gpt2_update.

    params, m, v [num_params] are updated; grads [num_params]; t is the step number, starting at 1::

        m      = beta1 * m + (1 - beta1) * g
        v      = beta2 * v + (1 - beta2) * g^2
        m_hat  = m / (1 - beta1^t)                  (bias corrections: m and v start at 0)
        v_hat  = v / (1 - beta2^t)
        param -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * param)

    The weight decay is decoupled (AdamW, not L2 in the gradient) and uses the parameter from before this
    step; that equals torch.optim.AdamW's p *= 1 - lr*wd followed by the Adam step.
    """
    refuse_if_learner("llmc_kernels.reference.adamw_update")
    p, g = _v(params, num_params), _v(grads, num_params)
    mm, vv = _v(m, num_params), _v(v, num_params)
    mm[...] = beta1 * mm + (1.0 - beta1) * g
    vv[...] = beta2 * vv + (1.0 - beta2) * g * g
    m_hat = mm / (1.0 - beta1**t)
    v_hat = vv / (1.0 - beta2**t)
    p[...] -= lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p)
