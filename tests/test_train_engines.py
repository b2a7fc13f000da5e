"""`llmc train --engine fast|plain`: the fast engine (FastGPT2) and the plain one (GPT2) train the tiny model to
the same losses, share checkpoints (a run resumes on either), and the choice and its reason are printed.

Tolerances: the same as tests/test_fast_model.py, for the same reasons (the engines do the same float32
arithmetic in another order): losses within 1e-5, parameters via _model_helpers.assert_runs_close (rtol 1e-5,
atol 1e-6; AdamW's bound for rounding-level entries), the moments at the gradients' tolerance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _model_helpers import adamw_bound, assert_runs_close, data_dir_with_text, ops_under_test

from llmc_kernels import train
from llmc_kernels.model import checkpoint
from llmc_kernels.model.config import GPT2Config, training_bytes
from llmc_kernels.model.fast import fast_training_bytes
from llmc_kernels.train import setup as train_setup
from llmc_kernels.train.log import read_log

LR, STEPS = 1e-3, 6
BASE = [
    "--backend",
    "cpu",
    "--model",
    "tiny",
    "--batch-size",
    "2",
    "--seq-len",
    "24",
    "--lr",
    str(LR),
    "--weight-decay",
    "0.1",
    "--val-every",
    "3",
    "--sample-every",
    "0",
    "--checkpoint-every",
    "3",
    "--steps",
    str(STEPS),
]


class Killed(Exception):
    """Stands for kill -9: the run stops with no chance to save."""


def kill_at(n):
    def on_step(step, model):
        if step == n:
            raise Killed

    return on_step


def run(out, *extra, on_step=None):
    return train.train(train.parse_args(BASE + ["--out", str(out), *extra]), ops=ops_under_test(), on_step=on_step)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """Uninterrupted runs of each engine: {"fast": (folder, summary), "plain": ...}."""
    tmp = tmp_path_factory.mktemp("engines")
    with pytest.MonkeyPatch.context() as mp:
        data_dir_with_text(tmp, mp)
        runs = {e: (tmp / e, run(tmp / e, "--engine", e)) for e in ("fast", "plain")}
        yield runs


@pytest.fixture
def data(tmp_path, monkeypatch):
    data_dir_with_text(tmp_path, monkeypatch)


def assert_runs_alike(a, b, same_engine: bool):
    """Logs and the final checkpoint of two runs agree (see the module doc); a resumed run of one engine
    repeats its arithmetic exactly on the cpu backend, and is held to the same tolerances anyway."""
    rows_a, rows_b = read_log(a / "log.csv"), read_log(b / "log.csv")
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b] == list(range(1, STEPS + 1))
    for ra, rb in zip(rows_a, rows_b):
        assert abs(ra["loss"] - rb["loss"]) < 1e-5, (ra, rb)
        assert (ra["val_loss"] is None) == (rb["val_loss"] is None)
        if ra["val_loss"] is not None:
            assert abs(ra["val_loss"] - rb["val_loss"]) < 1e-5, (ra, rb)
    cfg, pa = checkpoint.read_model(a / f"model_{STEPS:08d}.bin")
    _, pb = checkpoint.read_model(b / f"model_{STEPS:08d}.bin")
    assert_runs_close("params", pb, pa, cfg, rtol=1e-5, atol=1e-6, bound=adamw_bound(LR * STEPS))
    sa, sb = checkpoint.read_state(a / f"state_{STEPS:08d}.bin"), checkpoint.read_state(b / f"state_{STEPS:08d}.bin")
    assert sa[0] == sb[0] == STEPS and sa[3]["train_loader"] == sb[3]["train_loader"]
    k = 1 if same_engine else 10
    assert_runs_close("AdamW m", sb[1], sa[1], cfg, rtol=1e-5 * k, atol=1e-6 * k, atol_of_max=True)
    assert_runs_close("AdamW v", sb[2], sa[2], cfg, rtol=2e-5 * k, atol=2e-6 * k, atol_of_max=True)


@pytest.mark.slow  # a training run
def test_fast_and_plain_engines_train_alike(whole):
    (fast, s_fast), (plain, s_plain) = whole["fast"], whole["plain"]
    assert s_fast["engine"] == "fast" and s_plain["engine"] == "plain"
    assert json.loads((fast / "log.json").read_text())["engine"] == "fast"
    estimate = json.loads((plain / "log.json").read_text())["memory_estimate_bytes"]
    assert estimate == training_bytes(GPT2Config.tiny(), 2, 24)
    assert json.loads((fast / "log.json").read_text())["memory_estimate_bytes"] == fast_training_bytes(
        GPT2Config.tiny(), 2, 24
    )
    losses = [r["loss"] for r in read_log(fast / "log.csv")]
    assert losses[-1] < losses[0] - 0.3, f"the tiny model learns: {losses}"
    assert_runs_alike(fast, plain, same_engine=False)


@pytest.mark.slow  # a training run
def test_a_fast_run_resumes(whole, data, tmp_path):
    broken = tmp_path / "broken"
    with pytest.raises(Killed):
        run(broken, on_step=kill_at(5))  # the default engine: fast (the package's ops, head size 16)
    assert [c[0] for c in train.checkpoints(broken)] == [3]
    summary = train.train(train.parse_args(["--out", str(broken), "--resume"]), ops=ops_under_test())
    assert summary["engine"] == "fast" and summary["steps_done"] == STEPS
    assert_runs_alike(whole["fast"][0], broken, same_engine=True)


@pytest.mark.slow  # a training run
@pytest.mark.parametrize("first, then", [("plain", "fast"), ("fast", "plain")])
def test_a_run_resumes_on_the_other_engine(whole, data, tmp_path, first, then):
    broken = tmp_path / "broken"
    with pytest.raises(Killed):
        run(broken, "--engine", first, on_step=kill_at(4))
    summary = train.train(train.parse_args(["--out", str(broken), "--resume", "--engine", then]), ops=ops_under_test())
    assert summary["engine"] == then and summary["steps_done"] == STEPS
    assert_runs_alike(whole[first][0], broken, same_engine=False)


@pytest.mark.slow  # a training run
def test_the_engine_and_why_are_printed(data, tmp_path, capsys):
    import llmc_kernels.ops as package_ops

    quick = [
        "--backend",
        "cpu",
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--seq-len",
        "8",
        "--val-every",
        "0",
        "--sample-every",
        "0",
    ]
    assert train.main(quick + ["--out", str(tmp_path / "a")], ops=ops_under_test()) == 0
    assert "engine: fast (FastGPT2" in capsys.readouterr().out
    assert train.main(quick + ["--engine", "plain", "--out", str(tmp_path / "b")], ops=ops_under_test()) == 0
    printed = capsys.readouterr().out
    assert "engine: plain (GPT2" in printed and "not the fast engine" not in printed
    # ops from outside (a learner's kernels; here the package's functions in a dict): the plain engine, and why
    learner = {name: getattr(package_ops, name) for name in dir(package_ops)}
    assert train.main(quick + ["--out", str(tmp_path / "c")], ops=learner) == 0
    assert (
        "engine: plain (GPT2: the SPEC ops one at a time); not the fast engine: it runs only the package's "
        "own fused kernels, and this run trains with dict" in capsys.readouterr().out
    )
    assert train.main(quick + ["--engine", "fast", "--out", str(tmp_path / "d")], ops=learner) == 2
    assert "--engine fast cannot train this model" in capsys.readouterr().err


def test_engine_choice_and_its_memory_estimate():
    tiny, d12 = GPT2Config.tiny(), GPT2Config.d12()
    wide = GPT2Config(
        max_seq_len=64, vocab_size=50257, padded_vocab_size=50304, num_layers=2, num_heads=1, channels=128
    )
    assert train_setup.choose_engine(None, tiny) == ("fast", None)
    assert train_setup.choose_engine("fast", d12, ops_under_test()) == ("fast", None)
    assert train_setup.choose_engine("plain", tiny) == ("plain", "--engine plain")
    engine, why = train_setup.choose_engine(None, wide)
    assert engine == "plain" and "head size 128 > 64" in why
    with pytest.raises(train_setup.SetupError, match="head size 128 > 64.*--engine plain"):
        train_setup.choose_engine("fast", wide)
    with pytest.raises(train_setup.SetupError, match="fast or plain"):
        train_setup.choose_engine("turbo", tiny)
    # a 15 GiB GPU (a T4): the plain engine's [B,NH,T,T] attention buffers need B=4; the fast engine fits B=16
    # (no attention buffers, and one chunk of [CLASSIFIER_ROWS, Vp] logits whatever B: 12.5 GB)
    free = 15 * 2**30
    assert train_setup.fit_batch_size(d12, 8, 1024, free, explicit=False)[0] == 4
    fast = lambda c, b, t: train_setup.engine_bytes("fast", c, b, t)  # noqa: E731
    assert train_setup.fit_batch_size(d12, 16, 1024, free, explicit=False, estimate=fast) == (16, None)
    B, note = train_setup.fit_batch_size(d12, 32, 1024, free, explicit=False, estimate=fast)
    assert B == 16 and f"{fast(d12, 16, 1024) / 1e9:.1f} GB" in note
    assert train_setup.engine_bytes("plain", d12, 8, 1024) == training_bytes(d12, 8, 1024)


def test_the_sm75_path_trains_with_the_fast_engine(monkeypatch):
    """A GPU without TF32 (a T4, compute capability 7.5) or the sm_75 path forced (LLMC_FORCE_SM75=1, ops/arch.py)
    still gets the fast engine by default (its flash attention then runs the SIMT kernels), in fp32."""
    from llmc_kernels.ops import arch

    tiny, d12 = GPT2Config.tiny(), GPT2Config.d12()
    monkeypatch.delenv(arch.FORCE_ENV, raising=False)
    monkeypatch.setattr(arch, "compute_capability", lambda: 75)  # a T4, without one
    assert arch.simt_path("cuda") and not arch.simt_path("cpu")
    assert train_setup.choose_engine(None, d12) == ("fast", None)
    assert train_setup.resolve_precision("tf32", "cuda", (7, 5, "Tesla T4"))[0] == "fp32"
    monkeypatch.setattr(arch, "compute_capability", lambda: 90)  # an H100: the tensor-core path ...
    assert not arch.simt_path("cuda")
    assert train_setup.resolve_precision("tf32", "cuda", (9, 0, "NVIDIA H100")) == ("tf32", None)
    monkeypatch.setenv(arch.FORCE_ENV, "1")  # ... unless the sm_75 path is forced
    assert arch.simt_path("cuda") and arch.simt_path("cpu")
    for cfg in (tiny, d12):
        assert train_setup.choose_engine(None, cfg) == ("fast", None)
    precision, note = train_setup.resolve_precision("tf32", "cuda", (9, 0, "NVIDIA H100"))
    assert precision == "fp32" and "sm_75 path is forced (LLMC_FORCE_SM75=1" in note and "falling back" in note


@pytest.mark.slow  # a training run
def test_a_forced_sm75_run_says_so(data, tmp_path, capsys, monkeypatch):
    from llmc_kernels.ops import arch

    monkeypatch.setenv(arch.FORCE_ENV, "1")
    quick = ["--backend", "cpu", "--steps", "1", "--batch-size", "1", "--seq-len", "8", "--val-every", "0"]
    assert train.main(quick + ["--sample-every", "0", "--out", str(tmp_path / "a")], ops=ops_under_test()) == 0
    assert "engine: fast (FastGPT2: fused kernels, SIMT flash attention (the sm_75 path)" in capsys.readouterr().out


# ------------------------------------------------------------------------------ one interface, shared state
def test_both_engines_offer_one_interface_over_one_state():
    """model.ENGINES: the same calls on either engine (step() included); FastGPT2.on(state) trains the
    parameters of another engine in place, and the plain engine's step is its four calls."""
    from llmc_kernels.model import ENGINES, Engine, ParameterState
    from llmc_kernels.train.loop import _set_precision as set_precision

    cfg, B, T = GPT2Config.tiny(), 2, 5
    rng = np.random.default_rng(0)
    tok = rng.integers(0, cfg.vocab_size, (B, T + 1)).astype(np.int32)
    x, y = np.ascontiguousarray(tok[:, :-1]), np.ascontiguousarray(tok[:, 1:])
    hyper = (1e-3, 0.9, 0.999, 1e-8, 0.1)
    for name, cls in ENGINES.items():
        model = cls.from_config(cfg, seed=0)
        assert isinstance(model, Engine) and isinstance(model.state, ParameterState) and model.name == name
        assert model.ops_name == "llmc_kernels.ops"  # what `llmc train --precision` asks of either engine
        set_precision(model, "tf32")  # the package's ops: the setter, not the "has no set_matmul_precision" note
        set_precision(model, "fp32")
        assert isinstance(model.step(x, y, *hyper, 1), float) and model.graph_failure is None
        assert model.training_bytes(cfg, B, T) > 4 * 4 * model.num_parameters - 1
    plain, twin = ENGINES["plain"].from_config(cfg, seed=0), ENGINES["plain"].from_config(cfg, seed=0)
    fast = ENGINES["fast"].on(plain.state)
    assert fast.params_memory is plain.params_memory and fast.state is plain.state
    before = plain.params_memory.copy()
    fast.step(x, y, *hyper, 1)  # the fast engine moves the plain model's parameters
    assert not np.array_equal(before, plain.params_memory) and plain.m is not None
    loss = twin.forward(x, y)  # step() is forward, zero_grad, backward, update
    twin.zero_grad()
    twin.backward()
    twin.update(*hyper, 1)
    again = ENGINES["plain"].from_config(cfg, seed=0)
    assert again.step(x, y, *hyper, 1) == loss
    np.testing.assert_array_equal(again.params_memory, twin.params_memory)
