"""`llmc train`'s options: refusals with a way forward, TF32 fallback, batch size vs GPU memory, schedule."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _model_helpers import data_dir_with_text, ops_under_test

from llmc_kernels import train
from llmc_kernels.model.config import GPT2Config, training_bytes
from llmc_kernels.train import setup as train_setup


def run(argv, capsys):
    rc = train.main(argv, ops=ops_under_test())
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_d12_is_refused_on_the_cpu(tmp_path, capsys):
    rc, _, err = run(["--backend", "cpu", "--model", "d12", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "--model tiny" in err and "cpu backend" in err


def test_tf32_falls_back_on_the_cpu_and_trains(tmp_path, monkeypatch, capsys):
    data_dir_with_text(tmp_path, monkeypatch)
    rc, out, _ = run(
        [
            "--backend",
            "cpu",
            "--precision",
            "tf32",
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
            str(tmp_path / "r"),
        ],
        capsys,
    )
    assert rc == 0 and "tf32" in out and "falling back to fp32" in out
    assert "training --model tiny" in out, "the cpu backend's default model is tiny"


def test_tf32_needs_compute_capability_8():
    precision, note = train_setup.resolve_precision("tf32", "cuda", (7, 5, "Tesla T4"))
    assert precision == "fp32" and "Tesla T4" in note and "7.5" in note and "falling back to fp32" in note
    assert train_setup.resolve_precision("tf32", "cuda", (9, 0, "NVIDIA H100")) == ("tf32", None)
    assert train_setup.resolve_precision("fp32", "cuda", (9, 0, "NVIDIA H100")) == ("fp32", None)


def test_batch_size_fits_gpu_memory():
    d12 = GPT2Config.d12()
    # B=8 at T=1024 needs ~16.7 GB (llm.c-style attention buffers): a T4's 15 GB free gets B=4
    assert 15e9 < training_bytes(d12, 8, 1024) < 18e9
    B, note = train_setup.fit_batch_size(d12, 8, 1024, free_bytes=15 * 2**30, explicit=False)
    assert B == 4 and "--batch-size 4" in note
    assert train_setup.fit_batch_size(d12, 8, 1024, free_bytes=80 * 2**30, explicit=False) == (8, None)
    B, note = train_setup.fit_batch_size(d12, 8, 1024, free_bytes=15 * 2**30, explicit=True)
    assert B == 8 and note.startswith("warning")
    with pytest.raises(train_setup.SetupError, match="even --batch-size 1"):
        train_setup.fit_batch_size(d12, 8, 1024, free_bytes=2 * 2**30, explicit=False)


def test_learning_rate_schedule():
    lr = train_setup.learning_rate
    assert [lr(s, 10, 1.0, 4, "constant") for s in (1, 2, 4, 5, 10)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert lr(5, 10, 1.0, 4, "cosine") == 1.0  # the first step after warmup: the peak
    assert math.isclose(lr(11, 10, 1.0, 0, "cosine"), 0.1)  # fully decayed: 10% of the peak
    cos = [lr(s, 100, 1.0, 0, "cosine") for s in range(1, 101)]
    assert cos == sorted(cos, reverse=True) and 0.1 < cos[-1] < 0.11
    with pytest.raises(train_setup.SetupError):
        lr(1, 10, 1.0, 0, "linear")


def test_bad_setups_are_explained(tmp_path, monkeypatch, capsys):
    data_dir_with_text(tmp_path, monkeypatch)
    quick = [
        "--backend",
        "cpu",
        "--steps",
        "1",
        "--val-every",
        "0",
        "--sample-every",
        "0",
        "--batch-size",
        "1",
        "--seq-len",
        "8",
    ]
    rc, _, err = run(["--backend", "cpu", "--seq-len", "65", "--out", str(tmp_path / "a")], capsys)
    assert rc == 2 and "max_seq_len 64" in err
    rc, _, err = run(quick + ["--data", str(tmp_path / "nothing.txt"), "--out", str(tmp_path / "b")], capsys)
    assert rc == 2 and "no such file or folder" in err
    rc, _, err = run(["--backend", "cpu", "--steps", "0", "--out", str(tmp_path / "c")], capsys)
    assert rc == 2 and "--steps must be at least 1" in err
    rc, _, err = run(quick + ["--init", str(tmp_path / "nope.bin"), "--out", str(tmp_path / "d")], capsys)
    assert rc == 2 and "no model checkpoint" in err
    # a folder that already holds a run is not overwritten by accident
    assert run(quick + ["--out", str(tmp_path / "e")], capsys)[0] == 0
    rc, _, err = run(quick + ["--out", str(tmp_path / "e")], capsys)
    assert rc == 2 and "--resume" in err
    with pytest.raises(SystemExit):
        train.parse_args(["--model", "d13"])


def test_init_from_a_checkpoint(tmp_path, monkeypatch, capsys):
    """--init PATH starts from llm.c weights (the model's shape comes from the file)."""
    data_dir_with_text(tmp_path, monkeypatch)
    from llmc_kernels.model import GPT2

    cfg = GPT2Config(max_seq_len=32, vocab_size=50257, padded_vocab_size=50304, num_layers=1, num_heads=2, channels=32)
    GPT2.from_config(cfg, seed=0, ops=ops_under_test()).save_checkpoint(tmp_path / "start.bin")
    rc, out, _ = run(
        [
            "--backend",
            "cpu",
            "--init",
            str(tmp_path / "start.bin"),
            "--steps",
            "2",
            "--val-every",
            "0",
            "--sample-every",
            "0",
            "--out",
            str(tmp_path / "r"),
        ],
        capsys,
    )
    assert rc == 0 and "T=32" in out and "checkpoint start.bin" in out
    assert GPT2.from_checkpoint(tmp_path / "r" / "model_00000002.bin", ops=ops_under_test()).config == cfg


def test_cuda_without_a_gpu_is_explained(tmp_path, capsys):
    from llmc_kernels import runtime

    if runtime.gpu_available():
        pytest.skip("a GPU is usable here")
    rc, _, err = run(["--backend", "cuda", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "no usable GPU" in err


def test_the_command_line_entry(tmp_path):
    """`python -m llmc_kernels train ...` reaches train.main and returns its status."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run(
        [sys.executable, "-m", "llmc_kernels", "train", "--backend", "cpu", "--model", "d12", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and "--model tiny" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "llmc_kernels", "train", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0 and "--lr-schedule" in done.stdout and "--sample-length" in done.stdout
