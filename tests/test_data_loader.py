"""The batch loader: llm.c's sequential reading with wrap-around, shards, resumable state."""

from __future__ import annotations

import numpy as np
import pytest

from llmc_kernels.train import data


@pytest.fixture
def shard(tmp_path):
    return data.write_tokens(tmp_path / "a_train.bin", np.arange(100) % 65536)


def test_batches_are_shifted_sequential_windows(shard):
    loader = data.DataLoader(shard, B=2, T=5, xp=np)
    x, y = loader.next_batch()
    assert x.dtype == np.int32 and y.dtype == np.int32 and x.shape == (2, 5) and x.flags.c_contiguous
    assert x.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert y.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]  # the next token of each input
    x2, _ = loader.next_batch()
    assert x2[0, 0] == 10, "the next batch starts where the previous inputs ended (B*T later)"
    assert len(loader) == 9  # (100 - 1) // 10


def test_wraps_around_when_a_batch_does_not_fit(shard):
    loader = data.DataLoader(shard, B=3, T=10, xp=np)  # 31 tokens per batch
    starts = [int(loader.next_batch()[0][0, 0]) for _ in range(5)]
    assert starts == [0, 30, 60, 0, 30]  # 90 + 31 > 100: back to the start


def test_state_resumes_exactly(shard):
    a = data.DataLoader(shard, B=2, T=7, xp=np)
    for _ in range(4):
        a.next_batch()
    b = data.DataLoader(shard, B=2, T=7, xp=np)
    b.set_state(a.state())
    for _ in range(10):
        xa, ya = a.next_batch()
        xb, yb = b.next_batch()
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    b.reset()
    assert b.next_batch()[0][0, 0] == 0
    with pytest.raises(data.DataError):
        b.set_state({"shard": 3, "position": 0})


def test_shards_are_read_in_turn(tmp_path):
    one = data.write_tokens(tmp_path / "s_train_1.bin", np.arange(0, 25))
    two = data.write_tokens(tmp_path / "s_train_2.bin", np.arange(1000, 1012))
    loader = data.DataLoader([one, two], B=1, T=10, xp=np)
    starts = [int(loader.next_batch()[0][0, 0]) for _ in range(5)]
    assert starts == [0, 10, 1000, 0, 10]
    assert loader.num_tokens == 37 and len(loader) == 3


def test_too_small_data_is_explained(shard):
    with pytest.raises(data.DataError, match="smaller --batch-size or --seq-len"):
        data.DataLoader(shard, B=10, T=10, xp=np)
    with pytest.raises(data.DataError, match="no token file"):
        data.DataLoader(shard.with_name("nope.bin"), B=1, T=1, xp=np)
