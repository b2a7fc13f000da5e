"""`llmc train` with GPT-2 small on a GPU (the lead runs `pytest -m gpu` on an H100), with each engine: the
loss falls, and the run reports tokens/s and memory (read them with `pytest -m gpu -s tests/test_train_gpu.py`)."""

from __future__ import annotations

import json

import pytest
from _model_helpers import data_dir_with_text

from llmc_kernels import train
from llmc_kernels.model.config import GPT2Config
from llmc_kernels.train import setup as train_setup


@pytest.mark.gpu
@pytest.mark.parametrize("engine", ["fast", "plain"])
@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_d12_trains_on_the_gpu(tmp_path, monkeypatch, capsys, precision, engine):
    cupy = pytest.importorskip("cupy")
    data_dir_with_text(tmp_path, monkeypatch)
    out = tmp_path / "run"
    rc = train.main(
        [
            "--backend",
            "cuda",
            "--model",
            "d12",
            "--steps",
            "20",
            "--val-every",
            "10",
            "--sample-every",
            "20",
            "--checkpoint-every",
            "0",
            "--precision",
            precision,
            "--engine",
            engine,
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert rc == 0, printed
    doc = json.loads((out / "log.json").read_text())
    s, o = doc["summary"], doc["options"]
    free, total = cupy.cuda.runtime.memGetInfo()
    pool = cupy.get_default_memory_pool().total_bytes()
    estimate = train_setup.engine_bytes(engine, GPT2Config.d12(), o["batch_size"], o["seq_len"])
    assert doc["engine"] == engine and doc["memory_estimate_bytes"] == estimate
    with capsys.disabled():
        print(
            f"\nd12 {engine} {precision}: B={o['batch_size']} T={o['seq_len']}: {s['mean_tokens_per_s']:,.0f} tok/s, "
            f"train loss {s['first_loss']:.3f} -> {s['last_loss']:.3f}, val {doc['initial_val_loss']:.3f} -> "
            f"{s['last_val_loss']:.3f}; CuPy pool {pool / 1e9:.2f} GB (estimate {estimate / 1e9:.2f} GB), "
            f"device {(total - free) / 1e9:.2f} of {total / 1e9:.1f} GB in use"
        )
    assert s["steps"] == 20 and s["last_val_loss"] < doc["initial_val_loss"] - 1.5
    assert pool <= 1.1 * estimate, "the memory estimate that picks the batch size covers what was allocated"
    if precision == "tf32" and "falling back" not in printed:
        from llmc_kernels import ops

        assert ops.matmul_precision() == "tf32"
