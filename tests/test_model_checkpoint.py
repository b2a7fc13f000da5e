"""llm.c's checkpoint format: round trips, sizes, tensor order, GPT-2's init, the optimizer sidecar."""

from __future__ import annotations

import numpy as np
import pytest
from _model_helpers import host

from llmc_kernels import reference
from llmc_kernels.model import GPT2, checkpoint
from llmc_kernels.model.config import GPT2Config, checkpoint_bytes, num_params, param_shapes

ORDER = [
    "wte",
    "wpe",
    "ln1w",
    "ln1b",
    "qkvw",
    "qkvb",
    "attprojw",
    "attprojb",
    "ln2w",
    "ln2b",
    "fcw",
    "fcb",
    "fcprojw",
    "fcprojb",
    "lnfw",
    "lnfb",
]
SMALL = GPT2Config(max_seq_len=16, vocab_size=50, padded_vocab_size=64, num_layers=2, num_heads=2, channels=8)


def test_124m_size_arithmetic():
    """GPT-2 small: 124,475,904 parameters, a 497,904,640-byte file (SPEC), counted tensor by tensor."""
    maxT, Vp, L, C = 1024, 50304, 12, 768
    per_layer = (2 * C) + (3 * C * C + 3 * C) + (C * C + C) + (2 * C) + (4 * C * C + 4 * C) + (4 * C * C + C)
    total = Vp * C + maxT * C + L * per_layer + 2 * C
    assert total == 124_475_904 == num_params(GPT2Config.d12())
    assert checkpoint_bytes(GPT2Config.d12()) == 256 * 4 + 4 * total == 497_904_640
    assert list(param_shapes(GPT2Config.d12())) == ORDER


def test_round_trip_is_byte_identical(tmp_path):
    cfg = GPT2Config.tiny()
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    model = GPT2.from_config(cfg, seed=5, ops=reference)
    model.save_checkpoint(a)
    assert a.stat().st_size == checkpoint_bytes(cfg) == 1024 + 4 * num_params(cfg)
    header = np.fromfile(a, dtype=np.int32, count=256)
    assert header[:8].tolist() == [20240326, 3, 64, 50257, 2, 4, 64, 50304] and not header[8:].any()
    again = GPT2.from_checkpoint(a, ops=reference)
    assert again.config == cfg
    again.save_checkpoint(b)
    assert a.read_bytes() == b.read_bytes()
    for name in ORDER:
        np.testing.assert_array_equal(host(again.params[name]), host(model.params[name]))


def test_tensors_are_read_in_spec_order(tmp_path):
    """A file written by hand (each tensor filled with its index) lands in model.params[name]."""
    path = tmp_path / "hand.bin"
    header = np.zeros(256, np.int32)
    header[:8] = [20240326, 3, 16, 50, 2, 2, 8, 64]
    with open(path, "wb") as f:
        header.tofile(f)
        for i, name in enumerate(ORDER):
            np.full(param_shapes(SMALL)[name], i, np.float32).tofile(f)
    model = GPT2.from_checkpoint(path, ops=reference)
    assert model.config == SMALL
    for i, name in enumerate(ORDER):
        view = host(model.params[name])
        assert view.shape == param_shapes(SMALL)[name] and (view == i).all(), name
    # the views share one buffer: writing through a view changes params_memory
    model.params["lnfb"][0] = -1
    assert host(model.params_memory)[-8] == -1


def test_init_follows_gpt2(tmp_path):
    cfg = GPT2Config(max_seq_len=64, vocab_size=500, padded_vocab_size=512, num_layers=4, num_heads=4, channels=64)
    m = GPT2.from_config(cfg, seed=1, ops=reference)
    p = {k: host(v) for k, v in m.params.items()}
    for name in ("wpe", "qkvw", "fcw"):
        assert abs(p[name].std() - 0.02) < 0.002, name
    for name in ("attprojw", "fcprojw"):  # residual projections: 0.02 / sqrt(2 L)
        assert abs(p[name].std() - 0.02 / np.sqrt(2 * 4)) < 0.001, name
    assert abs(p["wte"][:500].std() - 0.02) < 0.002 and not p["wte"][500:].any()
    for name in ("qkvb", "attprojb", "fcb", "fcprojb", "ln1b", "ln2b", "lnfb"):
        assert not p[name].any(), name
    for name in ("ln1w", "ln2w", "lnfw"):
        assert (p[name] == 1).all(), name
    same = GPT2.from_config(cfg, seed=1, ops=reference)
    other = GPT2.from_config(cfg, seed=2, ops=reference)
    assert np.array_equal(host(same.params_memory), host(m.params_memory))
    assert not np.array_equal(host(other.params_memory), host(m.params_memory))


def test_bad_files_are_named(tmp_path):
    good = tmp_path / "good.bin"
    GPT2.from_config(SMALL, seed=0, ops=reference).save_checkpoint(good)
    data = good.read_bytes()
    cases = {
        "truncated.bin": (data[:-4], "truncated"),
        "magic.bin": (b"\0\0\0\0" + data[4:], "not an llm.c GPT-2 checkpoint"),
        "bf16.bin": (data[:4] + np.int32(5).tobytes() + data[8:], "version 5"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(checkpoint.CheckpointError, match=message):
            GPT2.from_checkpoint(tmp_path / name, ops=reference)
    with pytest.raises(FileNotFoundError):
        GPT2.from_checkpoint(tmp_path / "missing.bin", ops=reference)


def test_optimizer_state_round_trip(tmp_path):
    model = GPT2.from_config(SMALL, seed=0, ops=reference)
    path = tmp_path / "state.bin"
    model.save_state(path, 0, {"note": "before any update"})
    assert model.load_state(path) == (0, {"note": "before any update"}) and model.m is None
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (2, 16)).astype(np.int32)
    for t in (1, 2):
        model.forward(x, x)
        model.zero_grad()
        model.backward()
        model.update(1e-3, 0.9, 0.999, 1e-8, 0.1, t)
    m, v = host(model.m).copy(), host(model.v).copy()
    assert m.any() and v.any()
    model.save_state(path, 2, {"train_loader": {"shard": 0, "position": 64}})
    assert path.stat().st_size > 1024 + 8 * num_params(SMALL)
    fresh = GPT2.from_config(SMALL, seed=0, ops=reference)
    step, extra = fresh.load_state(path)
    assert step == 2 and extra == {"train_loader": {"shard": 0, "position": 64}}
    np.testing.assert_array_equal(host(fresh.m), m)
    np.testing.assert_array_equal(host(fresh.v), v)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(checkpoint.CheckpointError, match="truncated"):
        fresh.load_state(path)
