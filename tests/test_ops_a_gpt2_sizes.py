"""GPU: encoder, layernorm, gelu, residual and adamw at GPT-2 124M sizes (B=8, T=1024, C=768, V=50304)
against the float64 reference computed on the host, with the same error models as tests/test_ops_<op>.py.
(The small awkward sizes run on cuda too: the ``cuda`` cases of those files.)"""

import numpy as np
import pytest
from _ops_a_helpers import Dev, assert_close, f32
from test_ops_adamw import _tolerances as _adamw_tolerances
from test_ops_layernorm import _tol_n

from llmc_kernels import ops, reference, runtime

pytestmark = pytest.mark.gpu
B, T, C, V = 8, 1024, 768, 50304


@pytest.fixture(scope="module")
def gpu():
    return Dev("cuda", None)


@pytest.mark.parametrize("token_range", [V, 64])  # 64 distinct tokens: thousands of dwte collisions
def test_encoder(gpu, token_range):
    rng = np.random.default_rng(token_range)
    inp = rng.integers(0, token_range, size=(B, T)).astype(np.int32)
    wte, wpe = f32(rng.standard_normal((V, C), np.float32)), f32(rng.standard_normal((T, C), np.float32))
    out = gpu.put(np.full((B, T, C), np.nan, np.float32))
    d_inp = gpu.put(inp)
    with runtime.launch_options(check=True):
        ops.encoder_forward(out, d_inp, gpu.put(wte), gpu.put(wpe), B, T, C)
    want = np.empty((B, T, C))
    reference.encoder_forward(want, inp, wte, wpe, B, T, C)
    assert_close("out", gpu.get(out), want, rtol=1e-6, atol=0)

    dout = f32(rng.standard_normal((B, T, C), np.float32))
    dwte0, dwpe0 = f32(rng.standard_normal((V, C), np.float32)), f32(rng.standard_normal((T, C), np.float32))
    dwte, dwpe = gpu.put(dwte0), gpu.put(dwpe0)
    with runtime.launch_options(check=True):
        ops.encoder_backward(dwte, dwpe, gpu.put(dout), d_inp, B, T, C)
    mag_te, mag_pe = np.abs(dwte0), np.abs(dwpe0)  # |start| + sum of |terms| added into each element
    reference.encoder_backward(dwte0, dwpe0, dout, inp, B, T, C)
    reference.encoder_backward(mag_te, mag_pe, np.abs(dout), inp, B, T, C)
    assert_close("dwte", gpu.get(dwte), dwte0, rtol=0, atol=1e-6 * mag_te)
    assert_close("dwpe", gpu.get(dwpe), dwpe0, rtol=0, atol=1e-6 * mag_pe)


def test_layernorm(gpu):
    rng = np.random.default_rng(1)
    x = f32(rng.standard_normal((B, T, C), np.float32) * 3 + 1)
    w, b = f32(1 + 0.1 * rng.standard_normal(C)), f32(0.1 * rng.standard_normal(C))
    out, mean, rstd = (gpu.put(np.full(s, np.nan, np.float32)) for s in ((B, T, C), (B, T), (B, T)))
    dx, dw, db = gpu.put(x), gpu.put(w), gpu.put(b)
    with runtime.launch_options(check=True):
        ops.layernorm_forward(out, mean, rstd, dx, dw, db, B, T, C)
    want = [np.empty((B, T, C)), np.empty((B, T)), np.empty((B, T))]
    reference.layernorm_forward(*want, x, w, b, B, T, C)
    tol_n = _tol_n(x, want[2])
    assert_close("mean", gpu.get(mean), want[1], rtol=1e-6, atol=(C / 32 + 5) * 6e-8 * np.abs(x).max(axis=-1))
    assert_close("rstd", gpu.get(rstd), want[2], rtol=1e-5 + 2 * tol_n[..., 0], atol=0)
    assert_close("out", gpu.get(out), want[0], rtol=1e-5, atol=tol_n * np.abs(w) + 1e-6)

    m32, r32 = f32(gpu.get(mean)), f32(gpu.get(rstd))
    dout = f32(rng.standard_normal((B, T, C), np.float32))
    start = [f32(rng.standard_normal(s, np.float32)) for s in ((B, T, C), (C,), (C,))]
    grads = [gpu.put(s) for s in start]
    with runtime.launch_options(check=True):
        ops.layernorm_backward(*grads, gpu.put(dout), dx, dw, gpu.put(m32), gpu.put(r32), B, T, C)
    mag_w, mag_b = np.abs(start[1]), np.abs(start[2])
    reference.layernorm_backward(*start, dout, x, w, m32, r32, B, T, C)
    norm = (x - m32[..., None]) * r32[..., None]
    tol_n = _tol_n(x, r32)
    tol_dinp = r32[..., None] * np.abs(w * dout).max(axis=-1, keepdims=True) * 4 * (tol_n + 1e-6)
    assert_close("dinp", gpu.get(grads[0]), start[0], rtol=1e-5, atol=tol_dinp)
    assert_close(
        "dweight",
        gpu.get(grads[1]),
        start[1],
        rtol=0,
        atol=2e-6 * (mag_w + np.abs(norm * dout).sum(axis=(0, 1)) + (tol_n * np.abs(dout)).sum(axis=(0, 1))),
    )
    assert_close("dbias", gpu.get(grads[2]), start[2], rtol=0, atol=1e-6 * (mag_b + np.abs(dout).sum(axis=(0, 1))))


def test_gelu_and_residual(gpu):
    rng = np.random.default_rng(2)
    N = B * T * 4 * C
    x, dout = f32(rng.standard_normal(N, np.float32) * 3), f32(rng.standard_normal(N, np.float32))
    out, dinp = gpu.put(np.full(N, np.nan, np.float32)), gpu.put(dout)
    with runtime.launch_options(check=True):
        ops.gelu_forward(out, gpu.put(x), N)
        ops.gelu_backward(dinp, gpu.put(x), gpu.put(dout), N)
    want, dwant = np.empty(N), dout.copy()
    reference.gelu_forward(want, x, N)
    reference.gelu_backward(dwant, x, dout, N)
    assert_close("gelu out", gpu.get(out), want, rtol=1e-5, atol=1e-5)
    assert_close("gelu dinp", gpu.get(dinp), dwant, rtol=1e-5, atol=1e-5)

    N = B * T * C
    a, b2 = x[:N], dout[:N]
    out = gpu.put(np.full(N, np.nan, np.float32))
    g1, g2 = gpu.put(a), gpu.put(b2)
    with runtime.launch_options(check=True):
        ops.residual_forward(out, g1, g2, N)
        ops.residual_backward(g1, g2, gpu.put(b2), N)
    assert_close("residual out", gpu.get(out), a + b2, rtol=1e-6, atol=0)
    assert_close("residual dinp1", gpu.get(g1), a + b2, rtol=1e-6, atol=0)
    assert_close("residual dinp2", gpu.get(g2), 2 * b2, rtol=1e-6, atol=0)


def test_adamw_10m(gpu):
    n = 10_000_003
    rng = np.random.default_rng(3)
    state = [f32(rng.standard_normal(n, np.float32) * s) for s in (0.02, 0.01, 0.003)]
    state.append(f32(np.abs(rng.standard_normal(n, np.float32)) * 1e-4))
    hyper = dict(lr=6e-4, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
    d = [gpu.put(a) for a in state]
    with runtime.launch_options(check=True):
        ops.adamw_update(*d, n, *hyper.values(), 7)
    want = [a.copy() for a in state]
    reference.adamw_update(*want, n, **hyper, t=7)
    tol_m, tol_p = _adamw_tolerances(state[0], state[1], state[2], want[2], want[3], 7, **hyper)
    assert_close("m", gpu.get(d[2]), want[2], rtol=3e-5, atol=tol_m)
    assert_close("v", gpu.get(d[3]), want[3], rtol=3e-5, atol=0)
    assert_close("params", gpu.get(d[0]), want[0], rtol=0, atol=tol_p)
