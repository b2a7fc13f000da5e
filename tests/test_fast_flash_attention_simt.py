"""Flash attention's sm_75 path: ops.flash_attention_forward/backward with ``simt=True``
(kernels/flash_attention_simt.cu, fp32 FMA, for GPUs without TF32 tensor cores), against the float64 reference
attention (llmc_kernels.reference.attention_forward/backward's ``out`` and ``dinp``) and against the
tensor-core kernels (kernels/flash_attention.cu), whose lse contract it shares.

On the cpu backend the SIMT kernels run as written (no emulation: plain FMAs, shuffles, barriers), under both
thread orders, with ``simt=True`` passed explicitly (the cpu backend's default stays the tensor-core kernels).
Marked gpu, the same comparisons run on cuda with ``LLMC_FORCE_SM75=1`` and no ``simt`` argument: the forced
path picks the SIMT kernels on whatever GPU is present (an H100 standing in for a T4).

Sizes: T not a multiple of the 64-row blocks nor of the 32-row tiles (1, 13, 37, 70, 130: partial blocks,
several tiles, warps that stop early on the diagonal), B*NH > 1, head sizes padded to a multiple of 8 (5, 20)
or not (8, 64), hs % 4 != 0 (scalar loads), scores in the hundreds.

Tolerances: fp32 FMA throughout, so like the tensor-core kernels' 3xTF32: out within 3e-6 of its largest
magnitude (roundings through exp2, the sums over keys and the final division), lse within 1e-5 (base-2 units,
values of a few units), dinp within 1e-5 of its largest magnitude (the backward's sums of products of those).
The SIMT and the tensor-core kernels are both that close to the reference, so to each other within twice that.
"""

from __future__ import annotations

import numpy as np
import pytest
from _ops_a_helpers import assert_close, dev, f32  # noqa: F401  (dev: fixture)
from test_fast_flash_attention import _close, _inputs, _lse2, _reference

from llmc_kernels import ops
from llmc_kernels.ops import arch
from llmc_kernels.ops import flash_attention as fa

OUT_TOL, LSE_TOL, DINP_TOL = 3e-6, 1e-5, 1e-5
SIZES = [(1, 1, 4, 1), (2, 13, 15, 3), (2, 37, 60, 3), (2, 70, 24, 3), (1, 130, 192, 3)]


def _run(dev, inp, dout, dinp0, B, T, C, NH, simt=True):
    out, lse = dev.put(np.full((B, T, C), np.nan)), dev.put(np.full((B, NH, T), np.nan))
    dinp = dev.put(dinp0)
    with dev.run():
        ops.flash_attention_forward(out, lse, dev.put(inp), B, T, C, NH, simt=simt)
        ops.flash_attention_backward(dinp, dev.put(dout), dev.put(inp), out, lse, B, T, C, NH, simt=simt)
    return dev.get(out), dev.get(lse), dev.get(dinp)


@pytest.mark.parametrize("B, T, C, NH", SIZES)
def test_forward_and_backward_match_the_reference(dev, monkeypatch, B, T, C, NH):
    inp, dout = _inputs(B, T, C, B * 1000 + T * 10 + C)
    dinp0 = f32(np.random.default_rng(T).standard_normal((B, T, 3 * C)))  # the backward accumulates
    if dev.name == "cuda":
        monkeypatch.setenv(arch.FORCE_ENV, "1")  # the forced sm_75 path picks the SIMT kernels by itself
        assert arch.simt_path("cuda")
    out, lse, dinp = _run(dev, inp, dout, dinp0, B, T, C, NH, simt=True if dev.name == "cpu" else None)
    want_out, preatt, want_dinp = _reference(inp, dout, B, T, C, NH, dinp0)
    _close("out", out, want_out, OUT_TOL)
    assert_close("lse", lse, _lse2(preatt, T, C // NH), rtol=0, atol=LSE_TOL)
    _close("dinp - dinp0", dinp - dinp0, want_dinp - dinp0, DINP_TOL)


def test_either_forward_feeds_either_backward():
    """The SIMT and the tensor-core kernels (3xTF32) agree on out and on lse (same base-2 units), so each
    backward works from the other's forward."""
    B, T, C, NH = 2, 37, 24, 3
    inp, dout = (a.astype(np.float32) for a in _inputs(B, T, C, 3))
    want_out, preatt, want_dinp = _reference(f32(inp), f32(dout), B, T, C, NH, np.zeros((B, T, 3 * C)))
    forwards = {}
    for simt in (True, False):
        out, lse = np.zeros((B, T, C), np.float32), np.zeros((B, NH, T), np.float32)
        ops.flash_attention_forward(out, lse, inp, B, T, C, NH, simt=simt)
        forwards[simt] = out, lse
    _close("out: simt vs tensor cores", forwards[True][0], forwards[False][0], 2 * OUT_TOL)
    assert_close("lse: simt vs tensor cores", forwards[True][1], forwards[False][1], rtol=0, atol=2 * LSE_TOL)
    for fwd, bwd in ((True, False), (False, True)):
        dinp = np.zeros((B, T, 3 * C), np.float32)
        ops.flash_attention_backward(dinp, dout, inp, *forwards[fwd], B, T, C, NH, simt=bwd)
        _close(f"dinp (forward simt={fwd}, backward simt={bwd})", dinp, want_dinp, DINP_TOL)


def test_the_path_is_chosen_per_call(monkeypatch):
    """simt=None follows arch.simt_path at each call: the tensor-core kernels on the cpu backend, the SIMT ones
    while LLMC_FORCE_SM75 is set; an explicit simt wins either way."""
    B, T, C, NH = 1, 21, 16, 2
    inp, _ = _inputs(B, T, C, 4)
    inp = inp.astype(np.float32)

    def forward(**kw):
        out, lse = np.zeros((B, T, C), np.float32), np.zeros((B, NH, T), np.float32)
        ops.flash_attention_forward(out, lse, inp, B, T, C, NH, **kw)
        return out

    simt, tensor = forward(simt=True), forward(simt=False)
    assert not np.array_equal(simt, tensor), "the two paths round differently: the comparison below can tell"
    monkeypatch.delenv(arch.FORCE_ENV, raising=False)
    assert not arch.forced() and not arch.simt_path("cpu")
    assert np.array_equal(forward(), tensor)
    for off in ("0", "false", "OFF", ""):
        monkeypatch.setenv(arch.FORCE_ENV, off)
        assert not arch.forced()
    monkeypatch.setenv(arch.FORCE_ENV, "1")
    assert arch.forced() and arch.simt_path("cpu") and arch.simt_path()
    assert np.array_equal(forward(), simt)
    assert np.array_equal(forward(simt=False), tensor)
    from llmc_kernels.ops.matmul import tf32_supported

    assert not tf32_supported(), "the forced path has fp32 products"


def test_large_scores_and_zero_gradient():
    """Scores in the hundreds: the running maximum keeps exp2 finite; dout = 0 adds exactly nothing; row 0
    attends only to itself (its output is v_0 exactly). Tolerance 2e-5: the scores reach ~1000 in base-2 units,
    where one fp32 ulp is 6e-5, so a probability carries a relative error ~1e-4 whatever the kernel; fp32 on
    the host, summing the same products in 20 different orders, lands between 2e-6 and 1.6e-5 here."""
    B, T, C, NH = 1, 45, 16, 2
    inp, _ = _inputs(B, T, C, 5, scale=12.0)
    inp32 = inp.astype(np.float32)
    out, lse = np.full((B, T, C), np.nan, np.float32), np.full((B, NH, T), np.nan, np.float32)
    ops.flash_attention_forward(out, lse, inp32, B, T, C, NH, simt=True)
    want_out, _, _ = _reference(inp, np.zeros((B, T, C)), B, T, C, NH, np.zeros((B, T, 3 * C)))
    _close("out", out, want_out, 2e-5)
    assert (out[0, 0] == inp32[0, 0, 2 * C :]).all()
    dinp = np.full((B, T, 3 * C), 0.25, np.float32)
    ops.flash_attention_backward(dinp, np.zeros((B, T, C), np.float32), inp32, out, lse, B, T, C, NH, simt=True)
    assert (dinp == 0.25).all()


def test_the_delta_scratch_is_written():
    """The SIMT backward's dQ pass writes delta = dO . O per row into the caller's scratch (the model passes
    its own buffer, so nothing is allocated inside a CUDA graph)."""
    B, T, C, NH = 2, 19, 12, 3
    inp, dout = (a.astype(np.float32) for a in _inputs(B, T, C, 6))
    out, lse = np.zeros((B, T, C), np.float32), np.zeros((B, NH, T), np.float32)
    ops.flash_attention_forward(out, lse, inp, B, T, C, NH, simt=True)
    delta, dinp = np.full((B, NH, T), np.nan, np.float32), np.zeros((B, T, 3 * C), np.float32)
    ops.flash_attention_backward(dinp, dout, inp, out, lse, B, T, C, NH, delta=delta, simt=True)
    hs = C // NH
    want = (f32(out) * f32(dout)).reshape(B, T, NH, hs).sum(-1).transpose(0, 2, 1)
    np.testing.assert_allclose(delta, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch_name, hs", [("compute_75", hs) for hs in range(8, 65, 8)] + [("compute_70", 64)])
def test_kernels_compile_for_sm75_at_every_head_size(arch_name, hs):
    """NVRTC (no GPU needed) compiles the SIMT kernels at every FA_HS the wrapper passes (head_pad: multiples
    of 8 up to 64), for the T4 (sm_75) and the V100 (sm_70), without warnings."""
    from llmc_kernels.ops import _loader
    from llmc_kernels.runtime import nvrtc
    from llmc_kernels.runtime.signature import list_kernels
    from llmc_kernels.runtime.source import SourceOrigin

    if not nvrtc.available():
        pytest.skip(f"NVRTC unavailable: {nvrtc.unavailable_reason()}")
    src = _loader.source("flash_attention_simt.cu")
    assert list_kernels(src) == [
        "flash_attention_simt_forward_kernel",
        "flash_attention_simt_backward_dq_kernel",
        "flash_attention_simt_backward_kernel",
    ]
    assert fa.head_pad(hs) == hs
    warnings = nvrtc.check_compile(
        src,
        "flash_attention_simt_backward_kernel",
        arch=arch_name,
        origin=SourceOrigin("flash_attention_simt.cu", 1),
        options=(f"-DFA_HS={hs}",),
    )
    assert warnings == [], warnings


@pytest.mark.parametrize("arch_name, hs", [("sm_75", 64), ("sm_75", 32), ("sm_70", 64), ("sm_90", 64)])
def test_kernels_keep_their_registers(arch_name, hs):
    """ptxas (through NVRTC, building the GPU's own code) spills nothing in any SIMT kernel: a spill turns the
    registers the design counts on (q and o, or k, v, dk and dv, per lane) into local-memory traffic. The
    __syncwarp in the backward kernels is what keeps sm_90's compiler from spilling kilobytes there."""
    import re

    from llmc_kernels.ops import _loader
    from llmc_kernels.runtime import nvrtc
    from llmc_kernels.runtime.source import SourceOrigin

    if not nvrtc.available():
        pytest.skip(f"NVRTC unavailable: {nvrtc.unavailable_reason()}")
    src = nvrtc.full_source(_loader.source("flash_attention_simt.cu"), SourceOrigin("flash_attention_simt.cu", 1))
    includes = [f"-I{d}" for d in nvrtc.header_dirs()]
    ok, log = nvrtc._lib().compile(src, [f"-arch={arch_name}", "-Xptxas=-v", f"-DFA_HS={hs}", *includes])
    assert ok, log
    spills = [int(n) for n in re.findall(r"(\d+) bytes spill stores", log)]
    if not spills:
        pytest.skip("this NVRTC does not report ptxas's statistics")
    assert len(spills) == 3 and not any(spills), log
