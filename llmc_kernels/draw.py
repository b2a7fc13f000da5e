"""The distributions a check draws an op's inputs from; each ``opspec`` row names the ones its arrays use
(``OpSpec.values``: argument name -> one of these), everything else is :func:`standard`.

A generator is ``draw(pool, shape) -> ndarray`` (float64 or int; the pool rounds it to the argument's dtype).
``pool.rng`` is the case's seeded generator, ``pool.kind`` the case kind (``"large"``: inputs of large
magnitude, ``"nearconst"``: near-constant rows), ``pool.sizes`` its sizes. Plain NumPy, no opspec import:
opspec imports this module.
"""

from __future__ import annotations

import math

import numpy as np


def standard(pool, shape):
    """N(0, 1); x1e3 in a large case."""
    x = pool.rng.standard_normal(shape) * 1.0
    return x * (1e3 if pool.kind == "large" else 1.0)


def activations(pool, shape):
    """N(0, 1); x100 in a large case (products over C of them stay far from float32's overflow)."""
    return standard(pool, shape) / (10.0 if pool.kind == "large" else 1.0)


def normal(scale: float = 1.0, offset: float = 0.0):
    """N(offset, scale^2) whatever the case kind (weights near 1, upstream gradients)."""
    return lambda pool, shape: pool.rng.standard_normal(shape) * scale + offset


def normal_or_large(scale: float, large: float):
    """N(0, scale^2), N(0, large^2) in a large case."""
    return lambda pool, shape: pool.rng.standard_normal(shape) * (large if pool.kind == "large" else scale)


def fan_in(dim: str):
    """N(0, 1/n) with n = the size ``dim``: a weight matrix whose products keep the inputs' scale."""
    return lambda pool, shape: pool.rng.standard_normal(shape) / math.sqrt(pool.sizes[dim])


def layernorm_rows(pool, shape):
    """Rows of their own mean and spread; large: scale 1e3 around 1e3; nearconst: every other row of
    variance ~1e-8 (far below eps = 1e-5) and one exactly constant row."""
    rng = pool.rng
    rows = shape[:-1]
    sigma = rng.uniform(0.5, 2.0, rows + (1,))
    loc = rng.uniform(-1.0, 1.0, rows + (1,))
    x = rng.standard_normal(shape) * sigma + loc
    if pool.kind == "large":
        x = x * 1e3 + 1e3
    elif pool.kind == "nearconst":
        flat = x.reshape(-1, shape[-1])
        # offsets stay small so one-pass variance (E[x^2] - mean^2) is still accurate enough in float32
        near = rng.uniform(-0.01, 0.01, (flat.shape[0], 1)) + 1e-4 * rng.standard_normal(flat.shape)
        flat[::2] = near[::2]
        flat[0] = 0.0075
        x = flat.reshape(shape)
    return x


def qkv(pool, shape):
    """Attention's [B,T,3C] input; large: q and k of scale 10, so scores q.k/sqrt(hs) are of order 100 (exp
    overflows float32 without the max subtracted)."""
    x = pool.rng.standard_normal(shape)
    if pool.kind == "large":
        C = pool.sizes["C"]
        x[..., : 2 * C] *= 10.0
    return x


def logits(large_center: float | None, large_scale: float):
    """[.., Vp] logits of scale 2 (large: ``large_center`` + N(0, large_scale^2)); the padded columns
    (>= V) get junk that must never be read."""

    def draw(pool, shape):
        V, rng = pool.sizes["V"], pool.rng
        if pool.kind != "large":
            x = 2.0 * rng.standard_normal(shape)
        elif large_center is None:
            x = large_scale * rng.standard_normal(shape)
        else:
            x = large_center + large_scale * rng.standard_normal(shape)
        x[..., V:] = 3.0 + 2.0 * rng.standard_normal(x[..., V:].shape)
        return x

    return draw


def mean_loss_weights(pool, shape):
    """dlosses near 1/(B*T): the gradient of a mean loss, not quite uniform."""
    B, T = pool.sizes["B"], pool.sizes["T"]
    return pool.rng.uniform(0.5, 1.5, shape) / (B * T)


def token_ids(pool, shape):
    """Ids in [0, V), repeating (several positions hold one token)."""
    return pool.rng.integers(0, pool.sizes["V"], size=shape)


def reachable_targets(pool, shape):
    """token_ids; with peaked (large) logits, only targets whose float32 probability is comfortably > 0."""
    ids = token_ids(pool, shape)
    if pool.kind != "large":
        return ids
    from . import opspec

    z = pool.get(opspec.OPS["softmax"].forward.arg("logits")).astype(np.float64)[..., : pool.sizes["V"]]
    ok = z - z.max(axis=-1, keepdims=True) > -60.0
    for idx in np.ndindex(ids.shape):
        if not ok[idx][ids[idx]]:
            ids[idx] = pool.rng.choice(np.flatnonzero(ok[idx]))
    return ids


# AdamW's state at the sizes seen in GPT-2 training
def adamw_params(pool, shape):
    """Weights of scale 0.05, every 7th of order 1 (layernorm weights)."""
    x = pool.rng.standard_normal(shape) * 0.05
    x[::7] = pool.rng.standard_normal(x[::7].shape)
    return x


def adamw_grads(pool, shape):
    """Gradients of scale 0.01 spread over e^-2..e^2."""
    rng = pool.rng
    return rng.standard_normal(shape) * 0.01 * np.exp(rng.uniform(-2, 2, shape))


def adamw_m(pool, shape):
    return pool.rng.standard_normal(shape) * 0.005


def adamw_v(pool, shape):
    """v >= 0: squares of gradient-sized numbers, plus a little."""
    rng = pool.rng
    return (rng.standard_normal(shape) * 0.01) ** 2 + 1e-6 * rng.uniform(0, 1, shape)
