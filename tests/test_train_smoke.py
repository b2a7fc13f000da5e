"""`llmc train` on the CPU backend: the tiny model learns TinyShakespeare, and writes what it promises."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pytest
from _model_helpers import data_dir_with_text, ops_under_test

from llmc_kernels import train
from llmc_kernels.model import GPT2
from llmc_kernels.model.config import GPT2Config, checkpoint_bytes

pytestmark = pytest.mark.slow  # trains for seconds on the CPU backend


def test_tiny_model_learns_tinyshakespeare(tmp_path, monkeypatch, capsys):
    data_dir_with_text(tmp_path, monkeypatch)
    out = tmp_path / "run"
    started = time.perf_counter()
    rc = train.main(
        [
            "--backend",
            "cpu",
            "--model",
            "tiny",
            "--steps",
            "30",
            "--batch-size",
            "4",
            "--seq-len",
            "64",
            "--lr",
            "1e-3",
            "--val-every",
            "10",
            "--sample-every",
            "15",
            "--sample-length",
            "16",
            "--checkpoint-every",
            "15",
            "--out",
            str(out),
        ]
    )  # the default ops: the package's kernels
    elapsed = time.perf_counter() - started
    printed = capsys.readouterr().out
    assert rc == 0
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "loss", "val_loss", "tokens_per_s", "ms"]
    rows = rows[1:]
    assert [int(r[0]) for r in rows] == list(range(1, 31))
    assert [r[0] for r in rows if r[2]] == ["10", "20", "30"], "val_loss only where measured, else empty"
    assert all(float(r[3]) > 0 and float(r[4]) > 0 for r in rows)
    loss = np.array([float(r[1]) for r in rows])
    assert abs(loss[0] - np.log(50257)) < 0.3
    assert loss[-5:].mean() < loss[:5].mean() - 1.0, f"the training loss should fall: {loss.round(2)}"
    summary = json.loads((out / "log.json").read_text())
    val = [v for _, v in summary["summary"]["val_losses"]]
    assert val[-1] < summary["initial_val_loss"] - 1.0 and val == sorted(val, reverse=True)
    assert (out / "loss.png").stat().st_size > 10_000
    assert (out / "samples.txt").read_text().count("--- step") == 2 and "sample at step 30" in printed
    assert sorted(p.name for p in out.glob("*.bin")) == [
        "model_00000015.bin",
        "model_00000030.bin",
        "state_00000015.bin",
        "state_00000030.bin",
    ]
    assert (out / "model_00000030.bin").stat().st_size == checkpoint_bytes(GPT2Config.tiny())
    # the final checkpoint reproduces the last validation loss
    from llmc_kernels.train import data

    model = GPT2.from_checkpoint(out / "model_00000030.bin", ops=ops_under_test())
    val_loader = data.DataLoader(data.prepare(None)[1], 4, 64, xp=model.xp)
    assert abs(train.evaluate(model, val_loader) - val[-1]) < 1e-4
    print(
        f"tiny on the CPU: {summary['summary']['mean_tokens_per_s']:.0f} tok/s, loss {loss[0]:.3f} -> "
        f"{loss[-1]:.3f}, val {summary['initial_val_loss']:.3f} -> {val[-1]:.3f}, {elapsed:.1f} s"
    )
