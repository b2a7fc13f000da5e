"""The benchmark scripts: they refuse the CPU backend with a message, write their results section without
touching the others, and bench/train.py's PyTorch GPT-2 computes the same loss as ours (so the timings
compare like with like). On a GPU (marked gpu), each script runs a short version end to end."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = ("kernels.py", "train.py", "step_breakdown.py", "capstone.py", "flash_attention.py", "linear_products.py")


@pytest.fixture
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


def run_script(name, *args, backend="cpu", timeout=600):
    env = dict(os.environ, LLMC_BACKEND=backend)
    return subprocess.run(
        [sys.executable, str(BENCH / name), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_refuse_the_cpu_backend(name):
    r = run_script(name)
    assert r.returncode == 2, r.stderr
    assert "needs a CUDA GPU" in r.stdout


def test_write_section_replaces_only_its_own(tmp_path, bench_path):
    results = importlib.import_module("_results")
    path = tmp_path / "RESULTS.md"
    results.write_section(str(path), "a", "A", "head a", ["| x |"])
    results.write_section(str(path), "b", "B", "head b", ["| y |"])
    results.write_section(str(path), "a", "A", "head a2", ["| z |"])
    text = path.read_text()
    assert text.count("<!-- a:start -->") == 1 and "| z |" in text and "| x |" not in text
    assert "| y |" in text and text.index("<!-- a:start -->") < text.index("<!-- b:start -->")


def test_commit_prefers_llmc_commit(bench_path, monkeypatch):
    """A tree copied to a GPU machine may carry a stale .git: LLMC_COMMIT, when set, is what was measured."""
    results = importlib.import_module("_results")
    monkeypatch.setenv("LLMC_COMMIT", "abc1234")
    assert results.git_commit() == "abc1234"
    monkeypatch.delenv("LLMC_COMMIT")
    assert results.git_commit() not in ("abc1234", "")


def test_capstone_row_of_a_stopped_run_shows_its_last_step(bench_path):
    """A run stopped early (SIGTERM, a time limit) is reported at the step it reached, not as '-' at --steps."""
    capstone = importlib.import_module("capstone")
    r = {"title": "t", "engine": "plain", "ms": 4566.7, "tok_s": 1794.0, "pool_gb": 16.7, "wall_s": 321.0,
         "done": 70, "losses": {70: (6.1392, None)}, "initial_val": 11.057}  # fmt: skip
    head, _, row = capstone.table(r)
    assert "loss at 70 (train / val)" in head and "loss at 100" not in head
    assert "| 6.139 / - |" in row and "| 11.057 |" in row


def test_torch_gpt2_computes_our_loss(bench_path):
    """Same llm.c weights, same batch: the benchmark's PyTorch model and ours agree (tiny config, float32
    on both sides: 1e-4 relative on the loss)."""
    torch = pytest.importorskip("torch")
    from llmc_kernels.model import GPT2
    from llmc_kernels.model.config import GPT2Config

    TorchGPT2 = importlib.import_module("torch_gpt2").TorchGPT2
    cfg = GPT2Config.tiny()
    ours = GPT2.from_config(cfg, seed=3)
    rng = np.random.default_rng(0)
    tok = rng.integers(0, cfg.vocab_size, size=(2, 14), dtype=np.int32)
    x, y = np.ascontiguousarray(tok[:, :-1]), np.ascontiguousarray(tok[:, 1:])
    xp = ours.xp
    loss = ours.forward(xp.asarray(x), xp.asarray(y))
    host = {k: (v.get() if hasattr(v, "get") else np.asarray(v)) for k, v in ours.params.items()}
    theirs = TorchGPT2(cfg).load_llmc(host)
    with torch.no_grad():
        exact = theirs(torch.from_numpy(x).long(), torch.from_numpy(y).long(), exact=True).item()
        padded = theirs(torch.from_numpy(x).long(), torch.from_numpy(y).long()).item()
    assert abs(exact - loss) <= 1e-4 * abs(loss), (exact, loss)
    # the padded vocabulary (nanoGPT's way, used for speed) differs only by 47 never-target logits
    assert abs(padded - loss) < 0.05 * abs(loss)


@pytest.mark.gpu
def test_train_bench_runs_on_the_gpu():
    r = run_script("train.py", "--steps", "2", "--warmup", "2", "--only", "fast,eager", "--results", "", backend="cuda")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "llmc fast tf32" in r.stdout and "failed" not in r.stdout
    # --only fast takes the forced sm_75 row too: labelled as a stand-in, with its ratio to PyTorch eager fp32
    assert "| llmc fast (forced sm_75 path: SIMT flash attention, fp32) |" in r.stdout
    assert "(the sm_75 path forced on this GPU, a stand-in for a T4): **" in r.stdout


@pytest.mark.gpu
def test_step_breakdown_runs_on_the_gpu():
    r = run_script("step_breakdown.py", "--steps", "1", "-B", "2", "-T", "256", "--results", "", backend="cuda")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| flash_attention_forward |" in r.stdout and "| attention_forward |" in r.stdout


@pytest.mark.gpu
def test_capstone_bench_runs_on_the_gpu():
    """Chapter 10's run for the package's engines and the solutions' collected kernels, a few steps each."""
    r = run_script(
        "capstone.py", "--steps", "3", "--model", "tiny", "-B", "2", "-T", "64", "--results", "", backend="cuda"
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| package, fast engine (TF32) |" in r.stdout and "| solutions' kernels (fp32, --ops) |" in r.stdout
    assert "failed" not in r.stdout and "03_matmul.ipynb" in r.stdout


@pytest.mark.gpu
def test_flash_attention_bench_runs_on_the_gpu():
    """Every design and precision at one small size, with the outputs compared to version 1's."""
    r = run_script("flash_attention.py", "--sizes", "2x256", "--repeat", "2", "--results", "", backend="cuda")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| 2x256 | tf32 | v2 |" in r.stdout and "| 2x256 | fp32 (3xTF32) | v1 |" in r.stdout
    assert "nan" not in r.stdout


@pytest.mark.gpu
def test_linear_products_bench_runs_on_the_gpu():
    """Every product three ways: 3xTF32 within 2e-5 (fc's input gradient reduces over 3072: ~8e-6), TF32 far above."""
    r = run_script("linear_products.py", "-M", "512", "--repeat", "2", "--results", "", backend="cuda")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line.split("|")[1:-1] for line in r.stdout.splitlines() if line.startswith("| fc ")]
    assert [row[0].strip() for row in rows] == ["fc forward", "fc input gradient"]
    for row in rows:
        e32, e3, et = (float(x) for x in row[6:9])
        assert e3 < 2e-5 < et and e32 < 1e-5, row
