"""FastGPT2 (llmc_kernels/model/fast.py) is GPT2 trained faster: the same numbers, interface and files.

On the cpu backend (every kernel of the fast path runs there, flash attention's tensor-core instruction
emulated), GPT-2's vocabulary on the tiny body at an awkward B=2, T=13 (not a multiple of anything):
- loss and every gradient against GPT2 built from the same parameters; step() against forward + zero_grad +
  backward + update over 3 AdamW steps; probabilities without targets; recompute_gelu; checkpoints both ways;
  bad inputs; the memory plan that llmc train's batch-size fit reads;
- the classifier in chunks (classifier_rows=ROWS: B*T = 26 rows in chunks of 7, 7, 7 and a ragged 5) against
  one chunk and GPT2 over 3 steps, forward() + backward() against step(), and what the plan saves.
Marked gpu (run them with the command in the module's last section): on cuda the CUDA-graph step() (eager,
captured, graph, graph) against graph=False in fp32 and TF32, a new shape starting over, the memory plan;
the chunked classifier's graphed step against eager and GPT2, and the pool after its first step.

Tolerances, and why (float32 throughout):
- loss: |fast - plain| <= 1e-6 * loss + 1e-6. Both sum the same B*T per-position losses; the fast model
  rounds their double mean to float32 (half an ulp: 4.8e-7 at 10.8), the rows' log-sum-exps differ by a few ulps.
- gradients: |fast - plain| <= 1e-4 * |plain| + 1e-5 * max|plain of that tensor|. The same sums in another
  order (BLAS/cuBLAS blocking against the plain kernels' loops, flash attention's online softmax against a
  two-pass one, 3xTF32 products): errors of a few ulps of the tensor's largest terms (seen: <= 6e-7 * max).
- parameters after AdamW: _model_helpers.assert_runs_close (rtol 1e-5, atol 1e-6 for all but rare
  rounding-level entries; the key biases, whose gradient is exactly 0, only within AdamW's bound).
"""

from __future__ import annotations

import numpy as np
import pytest
from _model_helpers import adamw_bound, assert_runs_close, host

from llmc_kernels import ops as package_ops
from llmc_kernels.model import GPT2
from llmc_kernels.model import fast as model_fast
from llmc_kernels.model.config import GPT2Config, training_bytes
from llmc_kernels.model.fast import CLASSIFIER_ROWS, FastGPT2, classifier_chunks, fast_path_problem, fast_training_bytes
from llmc_kernels.ops import linear

CFG = GPT2Config.tiny()  # V = 50257 (Vp = 50304), L = 2, NH = 4, C = 64: head size 16
B, T = 2, 13
HYPER = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
LRS = (1e-3, 2e-3, 5e-4)  # a different lr each step: the step must read this step's numbers


def batch(seed, b=B, t=T, cfg=CFG):
    rng = np.random.default_rng(seed)
    tok = rng.integers(0, cfg.vocab_size, (b, t + 1)).astype(np.int32)
    return np.ascontiguousarray(tok[:, :-1]), np.ascontiguousarray(tok[:, 1:])


def pair(**fast_options):
    """A GPT2 and a FastGPT2 with the same parameters (GPT-2's init, seed 0)."""
    return GPT2.from_config(CFG, seed=0), FastGPT2.from_config(CFG, seed=0, **fast_options)


def assert_loss_close(got, want):
    assert abs(got - want) <= 1e-6 * abs(want) + 1e-6, (got, want)


def assert_grads_close(fast, plain):
    for name, want in plain.grads.items():
        want, got = host(want).astype(np.float64), host(fast.grads[name]).astype(np.float64)
        scale = float(np.abs(want).max())
        assert scale > 0 or name == "lnfb", f"{name}: no gradient at all"
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale, err_msg=f"d{name}")


# ---------------------------------------------------------------------------------------------- cpu
def test_loss_and_every_gradient_match_gpt2():
    plain, fast = pair()
    x, y = batch(1)
    want = plain.forward(x, y)
    got = fast.forward(x, y)
    assert isinstance(got, float)
    assert_loss_close(got, want)
    for m in (plain, fast):
        m.grads_memory[...] = 7.0  # zero_grad must clear what a previous step left
        m.zero_grad()
        m.backward()
    assert_grads_close(fast, plain)
    with pytest.raises(RuntimeError, match="forward"):
        fast.backward()  # the loss was consumed: a second backward has nothing to differentiate


def test_step_is_forward_zero_grad_backward_update():
    plain, fast = pair()
    for t, lr in enumerate(LRS, start=1):
        x, y = batch(10 + t)
        want = plain.forward(x, y)
        plain.zero_grad()
        plain.backward()
        plain.update(lr=lr, t=t, **HYPER)
        got = fast.step(x, y, lr=lr, t=t, **HYPER)
        assert fast.last_step_mode == "eager"  # the cpu backend has no graphs
        assert_loss_close(got, want)
    assert_runs_close(
        "params", fast.params_memory, plain.params_memory, CFG, rtol=1e-5, atol=1e-6, bound=adamw_bound(sum(LRS))
    )
    # the moments are weighted sums of the gradients (m) and their squares (v): the gradients' tolerance,
    # twice that for the squares
    assert_runs_close("m", fast.m, plain.m, CFG, rtol=1e-4, atol=1e-5, atol_of_max=True)
    assert_runs_close("v", fast.v, plain.v, CFG, rtol=2e-4, atol=2e-5, atol_of_max=True)
    with pytest.raises(ValueError, match="targets"):
        fast.step(batch(0)[0], None, lr=1e-3, t=4, **HYPER)
    with pytest.raises(ValueError, match="t counts from 1"):
        fast.step(*batch(0), lr=1e-3, t=0, **HYPER)


def test_forward_without_targets_gives_the_same_probabilities():
    plain, fast = pair()
    x, _ = batch(2)
    assert plain.forward(x) is None and fast.forward(x) is None
    # logits: C-term dot products in another order (a few ulps of |terms| ~ 0.1); probs ~ 1/V: relative
    for name, atol in (("logits", 1e-6), ("probs", 1e-11)):
        np.testing.assert_allclose(host(fast.acts[name]), host(plain.acts[name]), rtol=1e-5, atol=atol, err_msg=name)
    assert not host(fast.acts["probs"])[..., CFG.vocab_size :].any(), "padded columns are 0"
    with pytest.raises(RuntimeError, match="forward"):
        fast.backward()  # no targets: nothing to differentiate
    # greedy sampling reads the same logits: the same tokens
    prompt = [50256, 464, 3290]
    assert fast.generate(prompt, 3, temperature=0).tolist() == plain.generate(prompt, 3, temperature=0).tolist()


@pytest.mark.parametrize(
    "bad, expected",
    [
        (np.zeros((B, T), np.int64), "int32"),
        (np.zeros((B, T), np.float32), "int32"),
        (np.zeros(T, np.int32), "2-D int32 array"),
        (np.zeros((1, B, T), np.int32), "2-D int32 array"),
        ([[1, 2, 3]], "2-D int32 array"),
        (np.zeros((B, CFG.max_seq_len + 1), np.int32), "maxT=64"),
        (np.full((B, T), CFG.vocab_size, np.int32), r"the vocabulary is \[0, 50257\)"),
        (np.full((B, T), -1, np.int32), r"\[-1, -1\]"),
    ],
    ids=["int64", "float32", "1-D", "3-D", "list", "T>maxT", "id=V", "id=-1"],
)
def test_bad_inputs_are_refused_with_what_was_expected(bad, expected):
    plain, fast = pair()
    x, y = batch(3)
    want = fast.forward(x, y)
    for call in (
        lambda: fast.forward(bad, None),
        lambda: fast.forward(x, bad),
        lambda: fast.step(bad, y, lr=1e-3, t=1, **HYPER),
        lambda: plain.forward(bad, None),
    ):
        with pytest.raises(ValueError, match=expected):
            call()
    with pytest.raises(ValueError, match="differ in shape"):
        fast.forward(x, y[:, :-1])
    assert fast.forward(x, y) == want, "a refused call leaves the model as it was"


@pytest.mark.slow  # several steps of both engines
def test_checkpoints_load_into_the_other_model(tmp_path):
    plain, fast = pair()
    for t, lr in enumerate(LRS[:2], start=1):
        fast.step(*batch(20 + t), lr=lr, t=t, **HYPER)
    fast.save_checkpoint(tmp_path / "fast.bin")
    fast.save_state(tmp_path / "fast_state.bin", 2, {"note": "fast"})
    # fast -> plain: the same bytes, the same optimizer state, the same next step
    plain = GPT2.from_checkpoint(tmp_path / "fast.bin")
    assert plain.load_state(tmp_path / "fast_state.bin") == (2, {"note": "fast"})
    np.testing.assert_array_equal(host(plain.params_memory), host(fast.params_memory))
    np.testing.assert_array_equal(host(plain.m), host(fast.m))
    plain.save_checkpoint(tmp_path / "plain.bin")
    assert (tmp_path / "plain.bin").read_bytes() == (tmp_path / "fast.bin").read_bytes()
    # plain -> fast: from_checkpoint keeps FastGPT2's options
    again = FastGPT2.from_checkpoint(tmp_path / "plain.bin", graph=False, recompute_gelu=True)
    assert isinstance(again, FastGPT2) and again.recompute_gelu and not again.use_graph
    again.load_state(tmp_path / "fast_state.bin")
    x, y = batch(23)
    want = plain.forward(x, y)
    plain.zero_grad()
    plain.backward()
    plain.update(lr=LRS[2], t=3, **HYPER)
    assert_loss_close(again.step(x, y, lr=LRS[2], t=3, **HYPER), want)
    assert_loss_close(fast.step(x, y, lr=LRS[2], t=3, **HYPER), want)
    np.testing.assert_array_equal(host(again.params_memory), host(fast.params_memory))
    assert_runs_close(
        "params", again.params_memory, plain.params_memory, CFG, rtol=1e-5, atol=1e-6, bound=adamw_bound(LRS[2])
    )


@pytest.mark.slow  # several steps of both engines
def test_recompute_gelu_gives_the_same_numbers_in_less_memory():
    _, fast = pair()
    _, lean = pair(recompute_gelu=True)
    x, y = batch(4)
    assert lean.forward(x, y) == fast.forward(x, y)
    for m in (fast, lean):
        m.zero_grad()
        m.backward()
    for name in fast.grads:  # the GELU recomputed from the same pre-activation by the same formula
        np.testing.assert_array_equal(host(lean.grads[name]), host(fast.grads[name]), err_msg=name)
    for t in (1, 2):
        assert lean.step(x, y, lr=1e-3, t=t, **HYPER) == fast.step(x, y, lr=1e-3, t=t, **HYPER)
    np.testing.assert_array_equal(host(lean.params_memory), host(fast.params_memory))
    L, C = CFG.num_layers, CFG.channels
    # every layer's fch_gelu goes (L x B*T x 4C floats, a multiple of the 64-float alignment here); the
    # recomputed one lives in the scratch dfch shares (fast_scratch_shapes), so nothing is added
    assert (L * B * T * 4 * C) % 64 == 0
    saved = 4 * L * B * T * 4 * C
    assert fast_training_bytes(CFG, B, T) - fast_training_bytes(CFG, B, T, recompute_gelu=True) == saved


def test_memory_plan_is_what_is_allocated():
    """fast_training_bytes (what llmc train fits the batch size with) counts every buffer a step allocates."""
    for recompute in (False, True):
        _, fast = pair(recompute_gelu=recompute)
        fast.step(*batch(5), lr=1e-3, t=1, **HYPER)
        held = (
            fast.params_memory,
            fast.grads_memory,
            fast.m,
            fast.v,
            fast.acts_memory,
            fast.gacts_memory,
            fast._token_buffer,
        )
        assert sum(int(a.nbytes) for a in held) == fast_training_bytes(CFG, B, T, recompute_gelu=recompute)
        assert fast._sampling_memory is None, "training never allocates the [B,T,Vp] probabilities"
        fast.generate([50256], 4, seed=0)  # llmc train samples between steps
        assert fast._sampling_memory is None, "sampling's probabilities fit in the activation block's tail"
        assert sum(int(a.nbytes) for a in held) == fast_training_bytes(CFG, B, T, recompute_gelu=recompute)
    # nothing keeps a dropped model (and its device memory) alive until the garbage collector runs
    import gc
    import weakref

    gc.disable()
    try:
        ref = weakref.ref(fast)
        del fast, held
        assert ref() is None, "a reference cycle holds the model"
    finally:
        gc.enable()
    # GPT-2 small at B=8, T=1024: no [B,NH,T,T] buffers, no probabilities, one chunk of the logits (the
    # classifier's chunks' own test: test_the_plan_keeps_one_chunk_of_logits)
    d12 = GPT2Config.d12()
    assert 8.0e9 < fast_training_bytes(d12, 8, 1024, classifier_rows=None) < 9.5e9 < 15e9 < training_bytes(d12, 8, 1024)
    assert fast_training_bytes(d12, 8, 1024) < 7.6e9
    assert fast_training_bytes(d12, 8, 1024, recompute_gelu=True) < 6.5e9


def test_what_the_fast_path_cannot_run():
    wide = GPT2Config(max_seq_len=16, vocab_size=50, padded_vocab_size=64, num_layers=1, num_heads=1, channels=128)
    assert "head size 128 > 64" in fast_path_problem(wide)
    with pytest.raises(ValueError, match="head size 128 > 64.*use GPT2"):
        FastGPT2.from_config(wide)
    assert fast_path_problem(CFG) is None and fast_path_problem(CFG, package_ops) is None
    from llmc_kernels import reference

    assert "lacks" in fast_path_problem(CFG, reference) and "flash_attention_forward" in fast_path_problem(
        CFG, reference
    )
    assert set(model_fast.FAST_OPS) <= set(dir(package_ops)), "every op the fast path calls is the package's"


def test_scratch_shares_what_is_never_live_together():
    """The scratch block: dres (also the forward's proj), dln and one [B,T,4C] "layer" (dfch, or datty + dqkv
    side by side, or recompute_gelu's fch_gelu), plus the small per-row and per-step numbers: 6 x [B,T,C],
    and the 3xTF32 products' operands (ops/linear.py: at this C every product of a layer may take them, and
    fcproj's forward, [B*T, 4C] x [C, 4C], is the largest). The sharing's correctness is every gradient test
    above (recompute_gelu's bit for bit)."""
    C, NH = CFG.channels, CFG.num_heads
    split = linear.split_numel(B * T, 4 * C, C)
    small = B * NH * T + B * T + 1 + 7 + split  # delta [B,NH,T], dlosses [B,T], loss, hyper (before padding)
    for rg in (False, True):
        _, fast = pair(recompute_gelu=rg)
        fast.forward(*batch(8))
        s = fast.gacts
        assert 6 * B * T * C <= s["layer"].size + s["dres"].size + s["dln"].size < 6 * B * T * C + 64
        assert 6 * B * T * C + small <= fast.gacts_memory.size <= 6 * B * T * C + small + 7 * 64
        assert s["proj"] is s["dres"] and np.shares_memory(s["dfch"], s["layer"])
        assert np.shares_memory(s["datty"], s["layer"]) and np.shares_memory(s["dqkv"], s["layer"])
        assert not np.shares_memory(s["datty"], s["dqkv"]), "flash attention's backward reads one, writes the other"
        assert not np.shares_memory(s["dln"], s["layer"]) and not np.shares_memory(s["dres"], s["layer"])
        assert s["split"].size == split and not any(
            np.shares_memory(s["split"], s[n]) for n in ("layer", "dres", "dln")
        )
        assert ("fch_gelu" in s) == rg and (not rg or s["fch_gelu"] is s["dfch"])


# ---------------------------------------------------------------------------------------------- chunks
# The classifier in chunks of ROWS rows of lnf. Tolerances as above: a chunk's products are the same sums as
# the whole batch's, blocked by BLAS for another shape, and dwte's sum over rows is split at the chunks (seen
# on the cpu: losses equal, gradients <= 8e-7 x max apart, one chunk against four); forward() + backward()
# and step() run the same kernels in the same order, so on the cpu they agree bit for bit.
ROWS = 7


def test_classifier_chunks():
    assert classifier_chunks(B * T, ROWS) == [(0, 7), (7, 14), (14, 21), (21, 26)]
    assert classifier_chunks(8 * 1024) == [(0, 2048), (2048, 4096), (4096, 6144), (6144, 8192)]
    assert classifier_chunks(26, None) == classifier_chunks(26, 26) == classifier_chunks(26, 1000) == [(0, 26)]
    for bad in (0, -3, 2.5, True, "7"):
        with pytest.raises(ValueError, match="classifier_rows must be a positive integer or None"):
            FastGPT2.from_config(CFG, classifier_rows=bad)


def test_chunked_step_matches_one_chunk_and_gpt2():
    """step() with the classifier in chunks: each step's loss and gradients (a step leaves them in grads)
    against one chunk (classifier_rows=None, the whole [B*T, Vp] logits) and GPT2; parameters and moments
    after 3 AdamW steps as test_step_is_forward_zero_grad_backward_update."""
    plain = GPT2.from_config(CFG, seed=0)
    whole = FastGPT2.from_config(CFG, seed=0, classifier_rows=None)
    chunked = FastGPT2.from_config(CFG, seed=0, classifier_rows=ROWS)
    for t, lr in enumerate(LRS, start=1):
        x, y = batch(80 + t)
        want = plain.forward(x, y)
        plain.zero_grad()
        plain.backward()
        plain.update(lr=lr, t=t, **HYPER)
        one = whole.step(x, y, lr=lr, t=t, **HYPER)
        got = chunked.step(x, y, lr=lr, t=t, **HYPER)
        assert [c["n"] for c in chunked._chunks] == [7, 7, 7, 5] and len(whole._chunks) == 1
        assert_loss_close(got, one)
        assert_loss_close(got, want)
        assert_grads_close(chunked, whole)
        assert_grads_close(chunked, plain)
    for other in (whole, plain):
        assert_runs_close(
            "params", chunked.params_memory, other.params_memory, CFG, rtol=1e-5, atol=1e-6, bound=adamw_bound(sum(LRS))
        )
        assert_runs_close("m", chunked.m, other.m, CFG, rtol=1e-4, atol=1e-5, atol_of_max=True)
        assert_runs_close("v", chunked.v, other.v, CFG, rtol=2e-4, atol=2e-5, atol_of_max=True)


def test_chunked_forward_and_backward_are_the_step():
    """forward(x, y) keeps only the losses; backward() recomputes the chunks' logits: the same numbers as
    step(), bit for bit on the cpu. Then a forward without targets at B*T > ROWS (the [B,T,Vp] logits and
    probabilities in their own buffer, as GPT2's) leaves the plan intact for the next step."""
    sep = FastGPT2.from_config(CFG, seed=0, classifier_rows=ROWS)
    stepped = FastGPT2.from_config(CFG, seed=0, classifier_rows=ROWS)
    x, y = batch(6)
    loss = sep.forward(x, y)
    assert sep.forward(x, y) == loss, "forward(x, y) again: the same loss (it changed nothing it reads)"
    sep.grads_memory[...] = 7.0
    sep.zero_grad()
    sep.backward()
    sep.update(lr=1e-3, t=1, **HYPER)
    assert stepped.step(x, y, lr=1e-3, t=1, **HYPER) == loss
    for name in sep.grads:
        np.testing.assert_array_equal(host(sep.grads[name]), host(stepped.grads[name]), err_msg=f"d{name}")
    np.testing.assert_array_equal(host(sep.params_memory), host(stepped.params_memory))
    assert sep._sampling_memory is None
    # sampling-style forward over the whole batch: 26 rows > ROWS, so logits and probs get their own buffer
    plain = GPT2.on(sep.state)  # the same parameters
    assert sep.forward(x) is None and plain.forward(x) is None
    for name, atol in (("logits", 1e-6), ("probs", 1e-11)):  # as test_forward_without_targets_...
        np.testing.assert_allclose(host(sep.acts[name]), host(plain.acts[name]), rtol=1e-5, atol=atol, err_msg=name)
    assert sep._sampling_memory is not None and sep.acts["logits_chunk"].shape == (ROWS, CFG.padded_vocab_size)
    x2, y2 = batch(7)
    assert sep.step(x2, y2, lr=2e-3, t=2, **HYPER) == stepped.step(x2, y2, lr=2e-3, t=2, **HYPER)
    np.testing.assert_array_equal(host(sep.params_memory), host(stepped.params_memory))


def test_the_plan_keeps_one_chunk_of_logits():
    """The chunked plan is the whole-batch one less (B*T - min(B*T, rows)) rows of Vp logits, and nothing
    else: the rows are Vp = 50304 floats, a multiple of the 64-float alignment, so no padding moves."""
    d12 = GPT2Config.d12()
    cases = ((CFG, B, T, ROWS), (CFG, B, T, 4 * B * T), (d12, 8, 1024, CLASSIFIER_ROWS), (d12, 8, 1024, 1000))
    for cfg, b, t, rows in cases:
        assert cfg.padded_vocab_size % 64 == 0
        saved = 4 * (b * t - min(b * t, rows)) * cfg.padded_vocab_size
        for rg in (False, True):
            whole = fast_training_bytes(cfg, b, t, rg, classifier_rows=None)
            assert whole - fast_training_bytes(cfg, b, t, rg, classifier_rows=rows) == saved, (cfg, b, t, rows, rg)
    # GPT-2 small at B=8, T=1024 (the measure): a quarter of the logits, 1.24 GB saved
    assert (
        fast_training_bytes(d12, 8, 1024)
        == fast_training_bytes(d12, 8, 1024, classifier_rows=None)
        - 4 * (8 * 1024 - CLASSIFIER_ROWS) * d12.padded_vocab_size
    )
    # what a chunked model holds is its plan, evaluation (forward(x, y)) and backward() included
    fast = FastGPT2.from_config(CFG, seed=0, classifier_rows=ROWS)
    fast.step(*batch(5), lr=1e-3, t=1, **HYPER)
    fast.forward(*batch(6))
    fast.backward()
    held = (fast.params_memory, fast.grads_memory, fast.m, fast.v, fast.acts_memory, fast.gacts_memory)
    assert sum(int(a.nbytes) for a in held + (fast._token_buffer,)) == fast_training_bytes(
        CFG, B, T, classifier_rows=ROWS
    )
    assert fast._sampling_memory is None


def test_the_forced_sm75_path_matches_gpt2(monkeypatch):
    """LLMC_FORCE_SM75=1 (ops/arch.py), the path of a T4: FastGPT2's flash attention runs the SIMT kernels
    (kernels/flash_attention_simt.cu, fp32 FMA), chosen inside the ops, and gives GPT2's loss, gradients and
    three AdamW steps within the tolerances above (the same float32 arithmetic in yet another order)."""
    from llmc_kernels.ops import arch
    from llmc_kernels.ops import flash_attention as fa

    launched = []
    simt_kernel = fa._simt_kernel
    monkeypatch.setattr(fa, "_simt_kernel", lambda name, hs: launched.append(name) or simt_kernel(name, hs))
    monkeypatch.setenv(arch.FORCE_ENV, "1")
    plain, fast = pair()
    assert "SIMT flash attention (the sm_75 path)" in fast.describe()
    x, y = batch(1)
    assert_loss_close(fast.forward(x, y), plain.forward(x, y))
    for m in (plain, fast):
        m.zero_grad()
        m.backward()
    assert_grads_close(fast, plain)
    backward = ["flash_attention_simt_backward_dq_kernel", "flash_attention_simt_backward_kernel"]
    assert launched == ["flash_attention_simt_forward_kernel"] * CFG.num_layers + backward * CFG.num_layers
    for t, lr in enumerate(LRS, start=1):
        x, y = batch(10 + t)
        want = plain.step(x, y, lr=lr, t=t, **HYPER)
        assert_loss_close(fast.step(x, y, lr=lr, t=t, **HYPER), want)
    assert_runs_close(
        "params", fast.params_memory, plain.params_memory, CFG, rtol=1e-5, atol=1e-6, bound=adamw_bound(sum(LRS))
    )


# ---------------------------------------------------------------------------------------------- cuda
# The lead runs these on the GPU machine:
#   python -m pytest -q -p no:cacheprovider -m gpu tests/test_fast_model.py
GPU_CFG = GPT2Config(
    max_seq_len=256, vocab_size=50257, padded_vocab_size=50304, num_layers=2, num_heads=4, channels=256
)  # GPT-2's head size 64 and vocabulary
GPU_B, GPU_T = 4, 200  # T not a multiple of flash attention's 64-row tiles


def _cuda():
    cupy = pytest.importorskip("cupy")
    from llmc_kernels import runtime

    if not runtime.gpu_available():
        pytest.skip("no usable GPU")
    return cupy


@pytest.fixture
def precision(request):
    package_ops.set_matmul_precision(request.param)
    yield request.param
    package_ops.set_matmul_precision("fp32")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "tf32"], indirect=True)
def test_cuda_graph_step_matches_eager_steps(precision):
    """step() x 4 with the graph: eager (warm-up), captured, graph, graph; each with new tokens and a new lr,
    against graph=False. The same kernels in the same precision: only the atomics' order differs (flash
    attention's dq, encoder_backward's dwte), so losses agree to 1e-5 relative in fp32 and 1e-4 in TF32 (a
    parameter nudged by atomics' rounding can round to another TF32 operand), parameters as
    assert_runs_close says in fp32. In TF32 a parameter nudged by the atomics' rounding can round to another
    TF32 operand, so gradients differ by ~2^-11 relative, not ~2^-24, and AdamW passes such a change on
    scaled to its step (~lr): there, entries must agree to 1% of the summed learning rates, and up to 1% of
    a tensor's entries (measured on an H100: 0.29% of wte) only to AdamW's bound."""
    cupy = _cuda()
    from llmc_kernels.runtime import use_backend

    with use_backend("cuda"):
        graphed = FastGPT2.from_config(GPU_CFG, seed=0, xp=cupy)
        eager = FastGPT2.from_config(GPU_CFG, seed=0, xp=cupy, graph=False)
        lrs = (1e-3, 3e-4, 2e-3, 5e-4)
        modes = []
        for t, lr in enumerate(lrs, start=1):
            x, y = batch(30 + t, GPU_B, GPU_T, GPU_CFG)
            if t % 2:
                x, y = cupy.asarray(x), cupy.asarray(y)  # device tokens as well as host tokens
            got = graphed.step(x, y, lr=lr, t=t, **HYPER)
            modes.append(graphed.last_step_mode)
            want = eager.step(x, y, lr=lr, t=t, **HYPER)
            assert eager.last_step_mode == "eager"
            rel = 1e-5 if precision == "fp32" else 1e-4
            assert abs(got - want) <= rel * abs(want), (t, got, want)
        assert graphed.graph_failure is None
        assert modes == ["eager", "captured", "graph", "graph"]
        assert graphed._graph.captures == 1 and graphed._graph.replays == 2
        fp32 = precision == "fp32"
        assert_runs_close(
            "params",
            graphed.params_memory,
            eager.params_memory,
            GPU_CFG,
            rtol=1e-5,
            atol=1e-6 if fp32 else 0.01 * sum(lrs),
            bound=adamw_bound(sum(lrs)),
            noise_fraction=None if fp32 else 0.01,
        )
        # a forward between steps (validation) and a new shape start the graph over; the old shape again too
        graphed.forward(*batch(40, GPU_B, GPU_T, GPU_CFG))
        graphed.step(*batch(41, GPU_B, GPU_T, GPU_CFG), lr=1e-3, t=5, **HYPER)
        assert graphed.last_step_mode == "graph", "a forward between steps keeps the graph's buffers"
        shorter = []
        for t in (6, 7, 8):
            graphed.step(*batch(40 + t, GPU_B, 77, GPU_CFG), lr=1e-3, t=t, **HYPER)
            shorter.append(graphed.last_step_mode)
        assert shorter == ["eager", "captured", "graph"]
        graphed.step(*batch(50, GPU_B, GPU_T, GPU_CFG), lr=1e-3, t=9, **HYPER)
        assert graphed.last_step_mode == "eager" and graphed.graph_failure is None


@pytest.mark.gpu
def test_cuda_fast_matches_plain_in_fp32():
    """On cuda too: FastGPT2's loss and gradients against GPT2's (cuBLAS both, fp32). Atomics and cuBLAS's
    reduction order add rounding on both sides, so the gradients get 10x the cpu test's atol."""
    cupy = _cuda()
    from llmc_kernels.runtime import use_backend

    package_ops.set_matmul_precision("fp32")
    with use_backend("cuda"):
        plain = GPT2.from_config(GPU_CFG, seed=0, xp=cupy)
        fast = FastGPT2.from_config(GPU_CFG, seed=0, xp=cupy)
        x, y = batch(60, GPU_B, GPU_T, GPU_CFG)
        assert_loss_close(fast.forward(x, y), plain.forward(x, y))
        for m in (plain, fast):
            m.zero_grad()
            m.backward()
        for name, want in plain.grads.items():
            want, got = host(want).astype(np.float64), host(fast.grads[name]).astype(np.float64)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()), err_msg=f"d{name}")


@pytest.mark.gpu
def test_cuda_memory_is_the_plan():
    """What a graphed step holds in CuPy's pool is fast_training_bytes (plus the test's own token arrays)."""
    cupy = _cuda()
    from llmc_kernels.runtime import use_backend

    pool = cupy.get_default_memory_pool()
    with use_backend("cuda"):
        before = pool.used_bytes()
        fast = FastGPT2.from_config(GPU_CFG, seed=0, xp=cupy)
        for t in (1, 2, 3):
            fast.step(*batch(70 + t, GPU_B, GPU_T, GPU_CFG), lr=1e-3, t=t, **HYPER)
        cupy.cuda.Device().synchronize()
        used = pool.used_bytes() - before
        plan = fast_training_bytes(GPU_CFG, GPU_B, GPU_T)
        assert fast.last_step_mode == "graph"
        assert plan <= used <= plan + 2**20, (used, plan)


GPU_ROWS = 300  # GPU_B * GPU_T = 800 rows: chunks of 300, 300 and a ragged 200


@pytest.mark.gpu
def test_cuda_chunked_classifier_graph_step():
    """The classifier in chunks on cuda, fp32: step() x 3 with the graph (eager, captured, graph) against
    graph=False and GPT2, new tokens and lr each step. Losses: graph against eager to 1e-5 relative (only the
    atomics' order differs, as test_cuda_graph_step_matches_eager_steps), against GPT2 as
    assert_loss_close; the first step's gradients against GPT2's as test_cuda_fast_matches_plain_in_fp32;
    parameters after 3 steps as assert_runs_close says in fp32. And the pool: after the first step it holds
    fast_training_bytes with these chunks plus at most 1 MiB (CuPy rounds each block up to 512 bytes; the
    slack is the existing test's), both in use and in total (bench/train.py's peak is the pool's total)."""
    cupy = _cuda()
    from llmc_kernels.runtime import use_backend

    package_ops.set_matmul_precision("fp32")
    pool = cupy.get_default_memory_pool()
    with use_backend("cuda"):
        # cuBLASLt's 32 MiB workspace belongs to the process, made at its first product: not the model's
        one = cupy.ones(1, dtype=cupy.float32)
        package_ops.linear_forward(cupy.empty(1, dtype=cupy.float32), one, one, 1, 1, 1)
        cupy.cuda.Device().synchronize()
        pool.free_all_blocks()
        used0, total0 = pool.used_bytes(), pool.total_bytes()
        graphed = FastGPT2.from_config(GPU_CFG, seed=0, xp=cupy, classifier_rows=GPU_ROWS)
        plan = fast_training_bytes(GPU_CFG, GPU_B, GPU_T, classifier_rows=GPU_ROWS)
        assert plan < fast_training_bytes(GPU_CFG, GPU_B, GPU_T, classifier_rows=None)
        lrs, modes, got = (1e-3, 3e-4, 2e-3), [], []
        data = [batch(90 + t, GPU_B, GPU_T, GPU_CFG) for t in range(len(lrs))]
        for t, (lr, (x, y)) in enumerate(zip(lrs, data), start=1):
            got.append(graphed.step(x, y, lr=lr, t=t, **HYPER))  # host tokens: no device arrays of the test's
            modes.append(graphed.last_step_mode)
            if t == 1:
                cupy.cuda.Device().synchronize()
                used, total = pool.used_bytes() - used0, pool.total_bytes() - total0
                assert plan <= used <= plan + 2**20, (used, plan)
                assert total <= plan + 2**20, (total, plan)
        assert modes == ["eager", "captured", "graph"] and graphed.graph_failure is None
        assert [c["n"] for c in graphed._chunks] == [300, 300, 200]
        assert pool.used_bytes() - used0 <= plan + 2**20, "the graph's replays allocate nothing either"
        eager = FastGPT2.from_config(GPU_CFG, seed=0, xp=cupy, graph=False, classifier_rows=GPU_ROWS)
        plain = GPT2.from_config(GPU_CFG, seed=0, xp=cupy)
        for t, (lr, (x, y)) in enumerate(zip(lrs, data), start=1):
            want = eager.step(x, y, lr=lr, t=t, **HYPER)
            assert abs(got[t - 1] - want) <= 1e-5 * abs(want), (t, got[t - 1], want)
            assert_loss_close(got[t - 1], plain.forward(x, y))
            plain.zero_grad()
            plain.backward()
            if t == 1:  # the same parameters still: eager's gradients (a step leaves them) against GPT2's
                for name, g in plain.grads.items():
                    g, mine = host(g).astype(np.float64), host(eager.grads[name]).astype(np.float64)
                    np.testing.assert_allclose(mine, g, rtol=1e-4, atol=1e-4 * float(np.abs(g).max()), err_msg=name)
            plain.update(lr=lr, t=t, **HYPER)
        for other in (eager, plain):
            assert_runs_close(
                "params",
                graphed.params_memory,
                other.params_memory,
                GPU_CFG,
                rtol=1e-5,
                atol=1e-6,
                bound=adamw_bound(sum(lrs)),
            )


@pytest.mark.gpu
def test_cuda_forced_sm75_path_trains_like_plain(monkeypatch):
    """LLMC_FORCE_SM75=1 on whatever GPU is present (on an H100: the stand-in for a T4): FastGPT2 with its CUDA
    graph (SIMT flash attention, fp32 products even with TF32 asked for) trains like GPT2 over 4 AdamW steps.
    Losses within 1e-5 relative (fp32 both; cuBLAS, atomics and the flash kernels sum in other orders, as in
    test_cuda_fast_matches_plain_in_fp32, whose gradients agree to 1e-4 of each tensor's largest entry:
    AdamW passes such a change on only where a gradient is that small, so parameters as assert_runs_close
    says, AdamW's bound for the rest). TF32 left on would miss by ~1e-3. Leaving the forced path changes the
    kernels, so (on a GPU with TF32) the graph starts over."""
    cupy = _cuda()
    from llmc_kernels.ops import arch
    from llmc_kernels.ops.matmul import tf32_supported
    from llmc_kernels.runtime import use_backend

    monkeypatch.setenv(arch.FORCE_ENV, "1")
    package_ops.set_matmul_precision("tf32")  # forced: the products stay fp32 all the same
    try:
        with use_backend("cuda"):
            assert arch.simt_path() and not tf32_supported()
            plain = GPT2.from_config(GPU_CFG, seed=0, xp=cupy)
            fast = FastGPT2.from_config(GPU_CFG, seed=0, xp=cupy)
            assert "SIMT flash attention" in fast.describe()
            lrs, modes = (1e-3, 3e-4, 2e-3, 5e-4), []
            for t, lr in enumerate(lrs, start=1):
                x, y = batch(80 + t, GPU_B, GPU_T, GPU_CFG)
                want = plain.step(cupy.asarray(x), cupy.asarray(y), lr=lr, t=t, **HYPER)
                got = fast.step(x, y, lr=lr, t=t, **HYPER)
                modes.append(fast.last_step_mode)
                assert abs(got - want) <= 1e-5 * abs(want), (t, got, want)
            assert fast.graph_failure is None and modes == ["eager", "captured", "graph", "graph"]
            assert_runs_close(
                "params",
                fast.params_memory,
                plain.params_memory,
                GPU_CFG,
                rtol=1e-5,
                atol=1e-6,
                bound=adamw_bound(sum(lrs)),
            )
            monkeypatch.delenv(arch.FORCE_ENV)
            fast.step(*batch(90, GPU_B, GPU_T, GPU_CFG), lr=1e-3, t=5, **HYPER)
            assert fast.last_step_mode == ("eager" if not arch.simt_path() else "graph")
    finally:
        package_ops.set_matmul_precision("fp32")
