"""GPT2's interface: built only from its ops namespace, inputs checked, buffers sized, generation."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from _model_helpers import host, ops_under_test

from llmc_kernels import reference
from llmc_kernels.model import GPT2, REQUIRED_OPS
from llmc_kernels.model.config import GPT2Config

SMALL = GPT2Config(max_seq_len=16, vocab_size=50, padded_vocab_size=64, num_layers=3, num_heads=2, channels=8)


def tokens(B, T, V=50, seed=0):
    return np.random.default_rng(seed).integers(0, V, (B, T)).astype(np.int32)


def counting_namespace():
    """The references behind a dict that counts every call: the model may use nothing else."""
    calls = collections.Counter()

    def wrap(name):
        fn = getattr(reference, name)

        def counted(*args):
            calls[name] += 1
            return fn(*args)

        return counted

    return {name: wrap(name) for name in REQUIRED_OPS}, calls


def test_forward_backward_update_call_each_op_as_llm_c():
    ops, calls = counting_namespace()
    model = GPT2.from_config(SMALL, seed=0, ops=ops)
    L = SMALL.num_layers
    x = tokens(2, 8)
    loss = model.forward(x, tokens(2, 8, seed=1))
    assert isinstance(loss, float) and np.isfinite(loss)
    assert calls == {
        "encoder_forward": 1,
        "layernorm_forward": 2 * L + 1,
        "matmul_forward": 4 * L + 1,
        "attention_forward": L,
        "gelu_forward": L,
        "residual_forward": 2 * L,
        "softmax_forward": 1,
        "crossentropy_forward": 1,
    }
    calls.clear()
    model.zero_grad()
    model.backward()
    model.update(1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    assert calls == {
        "crossentropy_softmax_backward": 1,
        "matmul_backward": 4 * L + 1,
        "layernorm_backward": 2 * L + 1,
        "residual_backward": 2 * L,
        "gelu_backward": L,
        "attention_backward": L,
        "encoder_backward": 1,
        "adamw_update": 1,
    }


def test_missing_ops_are_listed():
    ops, _ = counting_namespace()
    del ops["gelu_backward"], ops["attention_forward"]
    with pytest.raises(AttributeError, match="attention_forward, gelu_backward"):
        GPT2.from_config(SMALL, seed=0, ops=ops)


def test_loss_at_init_is_near_log_vocab():
    """Small random weights give nearly uniform predictions over the real vocabulary: loss ~ ln V."""
    model = GPT2.from_config(GPT2Config.tiny(), seed=0, ops=ops_under_test())
    x = tokens(2, 64, V=50257)
    loss = model.forward(model.xp.asarray(x), model.xp.asarray(tokens(2, 64, V=50257, seed=3)))
    assert abs(loss - np.log(50257)) < 0.1


def test_forward_without_targets_gives_probabilities():
    model = GPT2.from_config(SMALL, seed=0, ops=reference)
    assert model.forward(tokens(2, 5)) is None
    probs = host(model.acts["probs"])
    assert probs.shape == (2, 5, 64)
    np.testing.assert_allclose(probs.sum(-1), 1, rtol=1e-5)
    assert not probs[..., 50:].any(), "padded vocabulary columns get probability 0"
    with pytest.raises(RuntimeError, match="forward"):
        model.backward()


def test_inputs_are_checked():
    model = GPT2.from_config(SMALL, seed=0, ops=reference)
    bad = [
        (tokens(2, 5).astype(np.int64), "int32"),
        (tokens(2, 17), "maxT"),
        (tokens(10, 1)[0], "2-D"),
        (tokens(2, 5) + 50, r"token ids in \[5\d, \d\d\]; the vocabulary is \[0, 50\)"),
    ]
    for arr, message in bad:
        with pytest.raises(ValueError, match=message):
            model.forward(arr)
    with pytest.raises(ValueError, match="differ"):
        model.forward(tokens(2, 5), tokens(2, 4))


def test_activations_follow_batch_shape_and_results_do_not_depend_on_history():
    model = GPT2.from_config(SMALL, seed=0, ops=reference)
    x, y = tokens(3, 16), tokens(3, 16, seed=9)
    first = model.forward(x, y)
    size = model.acts_memory.size
    model.forward(tokens(1, 4))  # smaller: same buffer, new views
    assert model.acts_memory.size == size and model.acts["ln1"].shape == (3, 1, 4, 8)
    assert model.forward(x, y) == first
    model.forward(tokens(4, 16), tokens(4, 16))  # larger: a new buffer
    assert model.acts_memory.size > size


def test_generate():
    model = GPT2.from_config(SMALL, seed=0, ops=reference)
    out = model.generate([1, 2, 3], 20, seed=4)
    assert out.shape == (23,) and out[:3].tolist() == [1, 2, 3] and 0 <= out.min() and out.max() < 50
    assert np.array_equal(out, model.generate([1, 2, 3], 20, seed=4)), "a seed makes sampling reproducible"
    greedy = model.generate([1, 2, 3], 5, temperature=0)
    assert np.array_equal(greedy, model.generate([1, 2, 3], 5, top_k=1, seed=9)), "top_k=1 is greedy"
    # greedy's next token is the argmax of the forward's last-position logits
    model.forward(np.array([[1, 2, 3]], np.int32))
    assert greedy[3] == host(model.acts["logits"])[0, -1, :50].argmax()
    batch = model.generate(np.array([[1, 2], [3, 4]]), 3, seed=0)
    assert batch.shape == (2, 5)
    assert model.generate([5], 30, seed=1).shape == (31,), "contexts longer than maxT are cropped"
    with pytest.raises(ValueError):
        model.generate([], 3)
