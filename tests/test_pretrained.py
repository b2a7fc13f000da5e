"""`llmc train --init gpt2`: GPT-2's released weights, cached; a clear error offline. Nothing here downloads:
the network is replaced by a function that fails, and the cache holds files the tests write."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from _model_helpers import data_dir_with_text

from llmc_kernels import pretrained, train
from llmc_kernels.model import checkpoint
from llmc_kernels.model.config import GPT2Config, num_params, param_shapes

TINY = GPT2Config.tiny()


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network, and the cache of GPT-2's weights in tmp_path (the kernels' compile cache is left alone)."""

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    cached = tmp_path / "pretrained" / pretrained.FILE_NAME
    monkeypatch.setattr(pretrained, "cached_path", lambda: cached)
    return cached


def test_offline_without_the_file_is_a_clear_error(offline):
    with pytest.raises(pretrained.PretrainedUnavailable) as info:
        pretrained.init_path("gpt2")
    text = str(info.value)
    assert "download failed" in text and "name resolution" in text
    assert pretrained.LLMC_URL in text and pretrained.HF_URL in text
    assert str(offline) in text and "--init PATH" in text and "497,904,640 bytes" in text
    assert not offline.exists() and not list(offline.parent.glob(".*part*")), "no partial file is left"


def test_llmc_train_init_gpt2_offline_exits_with_the_message(offline, tmp_path, capsys):
    rc = train.main(["--backend", "cpu", "--init", "gpt2", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("llmc train: error: --init gpt2 needs OpenAI's GPT-2 124M weights")


def test_a_cached_checkpoint_is_used_without_the_network(offline, tmp_path, monkeypatch, capsys):
    # an llm.c-format file written here stands for gpt2_124M.bin (the tiny shape keeps it small)
    offline.parent.mkdir(parents=True)
    params = np.random.default_rng(0).standard_normal(num_params(TINY)).astype(np.float32) * 0.02
    checkpoint.write_model(offline, TINY, params)
    assert pretrained.init_path("gpt2") == offline
    assert pretrained.init_path("scratch") is None
    assert pretrained.init_path("~/x.bin").name == "x.bin"
    data_dir_with_text(tmp_path, monkeypatch)
    out = tmp_path / "run"
    rc = train.main(
        [
            "--backend",
            "cpu",
            "--init",
            "gpt2",
            "--steps",
            "1",
            "--batch-size",
            "1",
            "--seq-len",
            "16",
            "--val-every",
            "0",
            "--sample-every",
            "0",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr()
    log = json.loads((out / "log.json").read_text())
    assert log["init"] == "gpt2"
    first = checkpoint.read_model(out / "model_00000001.bin")[1]
    assert np.abs(first - params).max() < 0.01, "training started from the cached weights"


def test_a_damaged_cached_file_is_named(offline):
    offline.parent.mkdir(parents=True)
    offline.write_bytes(b"\0" * 2048)
    with pytest.raises(checkpoint.CheckpointError, match="not an llm.c GPT-2 checkpoint"):
        pretrained.init_path("gpt2")


def _write_safetensors(path, tensors: dict) -> None:
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        blob = np.ascontiguousarray(t, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(blobs))


def test_hugging_face_weights_convert_to_llmc(tmp_path):
    # a GPT-2 in Hugging Face's layout (Conv1D weights [in, out], V rows of wte, a "transformer." prefix)
    cfg = GPT2Config(max_seq_len=16, vocab_size=50, padded_vocab_size=128, num_layers=2, num_heads=2, channels=128)
    rng = np.random.default_rng(1)
    ours = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in param_shapes(cfg).items()}
    ours["wte"][cfg.vocab_size :] = 0
    hf = {
        "transformer.wte.weight": ours["wte"][: cfg.vocab_size],
        "transformer.wpe.weight": ours["wpe"],
        "transformer.ln_f.weight": ours["lnfw"],
        "transformer.ln_f.bias": ours["lnfb"],
    }
    for name, (key, transpose) in pretrained._HF_NAMES.items():
        if "{l}" in key:
            for l in range(cfg.num_layers):
                hf["transformer." + key.format(l=l)] = ours[name][l].T if transpose else ours[name][l]
    _write_safetensors(tmp_path / "model.safetensors", hf)
    got_cfg = pretrained.convert_hf(tmp_path / "model.safetensors", tmp_path / "gpt2.bin")
    assert got_cfg == cfg
    _, params = checkpoint.read_model(tmp_path / "gpt2.bin")
    np.testing.assert_array_equal(params, np.concatenate([t.reshape(-1) for t in ours.values()]))
