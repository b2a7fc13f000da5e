"""TinyShakespeare as llm.c has it: the download/verification, the tokens, llm.c's token files."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
from _model_helpers import data_dir_with_text, need_shared_text, use_shared_tiktoken

from llmc_kernels.train import data


def test_tokens_match_llm_c_counts(monkeypatch):
    """SPEC: 338,028 tokens; <|endoftext|> first and after every blank line."""
    use_shared_tiktoken(monkeypatch)
    text = need_shared_text().read_text(encoding="utf-8")
    tokens = data.tokenize_text(text)
    assert tokens.dtype == np.uint16 and tokens.size == 338_028
    assert tokens[0] == data.EOT
    assert (tokens == data.EOT).sum() == text.count("\n\n") + 1
    # the first section is "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    enc = data.gpt2_encoding()
    first_break = int(np.flatnonzero(tokens == data.EOT)[1])
    assert enc.decode(tokens[1:first_break].tolist()) == text[: text.index("\n\n") + 2]


def test_split_and_cache(tmp_path, monkeypatch):
    folder = data_dir_with_text(tmp_path, monkeypatch)
    (train,), (val,) = data.prepare(None)
    assert (train.parent, train.name, val.name) == (folder, "tiny_shakespeare_train.bin", "tiny_shakespeare_val.bin")
    assert data.read_tokens(val).size == 32_768 and data.read_tokens(train).size == 305_260
    assert train.stat().st_size == 1024 + 2 * 305_260
    stamp = train.stat().st_mtime_ns
    assert data.prepare(None) == ([train], [val]) and train.stat().st_mtime_ns == stamp, "cached, not redone"
    train.write_bytes(train.read_bytes()[:-2])  # a corrupt cache is rebuilt
    data.prepare(None)
    assert data.read_tokens(train).size == 305_260


def test_token_file_round_trip(tmp_path):
    tokens = np.array([50256, 0, 1, 65535, 42], dtype=np.uint16)
    path = data.write_tokens(tmp_path / "x_train.bin", tokens)
    header = np.fromfile(path, dtype=np.int32, count=256)
    assert header[:3].tolist() == [20240520, 1, 5] and not header[3:].any()
    assert path.stat().st_size == 1024 + 10
    assert np.array_equal(data.read_tokens(path), tokens)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(data.DataError, match="truncated"):
        data.read_tokens(path)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(np.zeros(300, np.int32).tobytes())
    with pytest.raises(data.DataError, match="not an llm.c token file"):
        data.read_tokens(bad)
    with pytest.raises(ValueError):
        data.write_tokens(tmp_path / "y.bin", [70000])


def test_verify_names_what_is_wrong(tmp_path):
    assert data.verify_tinyshakespeare(need_shared_text())
    wrong = tmp_path / "tinyshakespeare.txt"
    raw = bytearray(need_shared_text().read_bytes())
    raw[100] ^= 1  # same size, one bit off: only the sha256 can tell
    wrong.write_bytes(bytes(raw))
    with pytest.raises(data.DataError) as e:
        data.verify_tinyshakespeare(wrong)
    assert data.TINYSHAKESPEARE_SHA256 in str(e.value) and data.TINYSHAKESPEARE_URL in str(e.value)
    wrong.write_text("short")
    with pytest.raises(data.DataError, match="5 bytes"):
        data.verify_tinyshakespeare(wrong)


def test_download_verifies_and_reports(tmp_path, monkeypatch):
    shared_text = need_shared_text()  # before LLMC_DATA_DIR points at the empty folder
    monkeypatch.setenv("LLMC_DATA_DIR", str(tmp_path))
    dest = tmp_path / "tinyshakespeare.txt"

    # no network: the message says what to download and where to put it
    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(data, "_urlopen", offline)
    with pytest.raises(data.DataError) as e:
        data.tinyshakespeare_path()
    assert data.TINYSHAKESPEARE_URL in str(e.value) and str(dest) in str(e.value) and "--data" in str(e.value)
    assert not list(tmp_path.iterdir()), "nothing half-downloaded is left behind"
    with pytest.raises(data.DataError, match="is not at"):
        data.tinyshakespeare_path(download=False)
    monkeypatch.undo()
    monkeypatch.setenv("LLMC_DATA_DIR", str(tmp_path))
    # the real fetch code on file:// URLs: the right file lands, a wrong one is refused
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not shakespeare")
    with pytest.raises(data.DataError, match="not TinyShakespeare"):
        data.download_tinyshakespeare(dest, url=wrong.as_uri())
    assert not dest.exists()
    data.download_tinyshakespeare(dest, url=shared_text.as_uri())
    assert data.tinyshakespeare_path() == dest and dest.read_bytes() == shared_text.read_bytes()


def test_prepare_other_sources(tmp_path, monkeypatch):
    use_shared_tiktoken(monkeypatch)
    shards = tmp_path / "shards"
    shards.mkdir()
    data.write_tokens(shards / "fw_val_000000.bin", np.arange(100))
    data.write_tokens(shards / "fw_train_000002.bin", np.arange(100))
    data.write_tokens(shards / "fw_train_000001.bin", np.arange(100))
    train, val = data.prepare(shards)
    assert [p.name for p in train] == ["fw_train_000001.bin", "fw_train_000002.bin"]
    assert [p.name for p in val] == ["fw_val_000000.bin"]
    with pytest.raises(data.DataError, match=r"\*_train.bin"):
        data.prepare(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="found 0 and 0"):
        data.prepare(tmp_path / "empty")
    with pytest.raises(data.DataError, match="pass the folder"):
        data.prepare(shards / "fw_val_000000.bin")
    # any text file: tokenised and cached beside it, first 32,768 tokens for validation
    text = tmp_path / "poems.txt"
    text.write_text(need_shared_text().read_text(encoding="utf-8")[:300_000])
    train, val = data.prepare(text)
    assert [p.name for p in train + val] == ["poems_train.bin", "poems_val.bin"]
    assert data.read_tokens(val[0]).size == 32_768 and data.read_tokens(train[0]).size > 40_000
    text.write_text("too short\n\nfor a split")
    with pytest.raises(data.DataError, match="need at least"):
        data.prepare(text)


def test_read_only_text_folder_is_left_untouched(tmp_path, monkeypatch):
    """A shared read-only copy (as CI's ../shared/data): the token files go to the package cache."""
    use_shared_tiktoken(monkeypatch)
    monkeypatch.setenv("LLMC_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "tinyshakespeare.txt").write_bytes(need_shared_text().read_bytes())
    folder.chmod(0o555)
    try:
        (train,), (val,) = data.prepare(folder / "tinyshakespeare.txt")
        assert sorted(p.name for p in folder.iterdir()) == ["tinyshakespeare.txt"]
        assert (tmp_path / "cache" / "tokens") in train.parents and val.parent == train.parent
        assert data.read_tokens(train).size == 305_260
    finally:
        folder.chmod(0o755)
