"""--resume: a run stopped (killed, or by SIGTERM) and resumed matches a run never stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _model_helpers import adamw_bound, assert_runs_close, data_dir_with_text, ops_under_test

from llmc_kernels import train
from llmc_kernels.model import GPT2
from llmc_kernels.model.checkpoint import read_state
from llmc_kernels.train.log import read_log

pytestmark = pytest.mark.slow  # trains for seconds on the CPU backend

BASE = [
    "--backend",
    "cpu",
    "--model",
    "tiny",
    "--batch-size",
    "2",
    "--seq-len",
    "32",
    "--lr",
    "1e-3",
    "--weight-decay",
    "0.1",
    "--val-every",
    "4",
    "--sample-every",
    "0",
]


class Killed(Exception):
    """Stands for kill -9: the run stops with no chance to save."""


def run(out, *extra, on_step=None):
    return train.train(train.parse_args(BASE + ["--out", str(out), *extra]), ops=ops_under_test(), on_step=on_step)


def assert_same_run(a: Path, b: Path, step: int, lr: float = 1e-3):
    """The runs in ``a`` and ``b`` logged the same steps and losses and saved the same model and AdamW state at
    ``step``, up to float rounding. Tolerances: a resumed run repeats the same kernels on the same data, but
    not always in the same order (SPEC: atomics make bitwise equality impossible), so its gradients may differ
    by rounding. Losses: 1e-5 (1e-6 relative). Parameters and moments: _model_helpers.assert_runs_close (AdamW
    turns a gradient that is rounding noise, such as the key biases', into a step of up to ~lr: those entries
    are held to AdamW's bound, everything else to rtol 1e-5)."""
    rows_a, rows_b = read_log(a / "log.csv"), read_log(b / "log.csv")
    assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a] == list(range(1, step + 1))
    for ra, rb in zip(rows_a, rows_b):
        assert abs(ra["loss"] - rb["loss"]) < 1e-5, (ra, rb)
        assert (ra["val_loss"] is None) == (rb["val_loss"] is None)
        if ra["val_loss"] is not None:
            assert abs(ra["val_loss"] - rb["val_loss"]) < 1e-5
    ma = GPT2.from_checkpoint(a / f"model_{step:08d}.bin", ops=ops_under_test())
    mb = GPT2.from_checkpoint(b / f"model_{step:08d}.bin", ops=ops_under_test())
    cfg = ma.config
    assert_runs_close(
        "params", mb.params_memory, ma.params_memory, cfg, rtol=1e-5, atol=1e-6, bound=adamw_bound(lr * step)
    )
    sa, sb = read_state(a / f"state_{step:08d}.bin"), read_state(b / f"state_{step:08d}.bin")
    assert sa[0] == sb[0] == step and sa[3]["train_loader"] == sb[3]["train_loader"]
    assert_runs_close("AdamW m", sb[1], sa[1], cfg, rtol=1e-5, atol=1e-6, atol_of_max=True)
    assert_runs_close("AdamW v", sb[2], sa[2], cfg, rtol=2e-5, atol=2e-6, atol_of_max=True)


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    data_dir_with_text(tmp_path, monkeypatch)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    run(whole, "--steps", "8", "--checkpoint-every", "4")

    def kill_at_6(step, model):
        if step == 6:
            raise Killed

    with pytest.raises(Killed):
        run(broken, "--steps", "8", "--checkpoint-every", "4", on_step=kill_at_6)
    assert [c[0] for c in train.checkpoints(broken)] == [4]
    assert len(read_log(broken / "log.csv")) == 6, "rows of steps 5 and 6 are on disk, and will be redone"
    # the resumed run takes its options from the checkpoint: only --out and --resume are needed
    summary = train.train(train.parse_args(["--out", str(broken), "--resume"]), ops=ops_under_test())
    assert summary["steps_done"] == 8 and summary["options"]["weight_decay"] == 0.1
    assert_same_run(whole, broken, 8)
    assert [c[0] for c in train.checkpoints(broken)] == [4, 8]


def test_sigterm_saves_then_resume_matches(tmp_path, monkeypatch):
    data_dir_with_text(tmp_path, monkeypatch)
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    tests = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests.parent), str(tests)]))
    code = (
        "import sys; from llmc_kernels import train; from _model_helpers import ops_under_test; "
        "sys.exit(train.main(sys.argv[1:], ops=ops_under_test()))"
    )
    with open(tmp_path / "stdout", "w") as so, open(tmp_path / "stderr", "w") as se:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *BASE, "--steps", "1000", "--out", str(stopped)],
            cwd=tests,
            env=env,
            stdout=so,
            stderr=se,
        )
        try:
            deadline = time.monotonic() + 120
            while len(read_log(stopped / "log.csv")) < 3:
                assert proc.poll() is None, (tmp_path / "stderr").read_text()
                assert time.monotonic() < deadline, "the run did not reach step 3 in 2 minutes"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert rc == 130, (tmp_path / "stderr").read_text()
    assert "SIGTERM" in (tmp_path / "stderr").read_text()
    step = train.checkpoints(stopped)[-1][0]
    assert step >= 3 and len(read_log(stopped / "log.csv")) == step, "saved at the step it was in"
    target = str(step + 3)
    train.train(train.parse_args(["--out", str(stopped), "--resume", "--steps", target]), ops=ops_under_test())
    run(whole, "--steps", target)
    assert_same_run(whole, stopped, step + 3)
