"""``llmc train``: train GPT-2 with the package's kernels, as llm.c's train_gpt2_fp32.cu does.

    llmc train                                  # GPU: GPT-2 small (d12) on TinyShakespeare, B=8, T=1024
    llmc train --backend cpu --model tiny       # no GPU: a 3.3M-parameter model on the CPU backend
    llmc train --out runs/x --resume            # continue the newest checkpoint in runs/x
    llmc train --engine plain                   # the chapters' kernels, one op at a time
    llmc train --ops my_ops.py                  # your kernels, gathered by `llmc collect`
    llmc train --init gpt2                      # fine-tune OpenAI's GPT-2 124M (downloaded once)

Each step: the next batch (sequential, like llm.c's dataloader), forward, zero_grad, backward, AdamW.
Two engines run it (``setup.choose_engine``): ``fast`` (model.fast.FastGPT2: fused kernels, flash
attention, the whole step one CUDA graph; the default wherever it can run the model, a T4 included, where
its flash attention runs the SIMT kernels) and ``plain``
(model.plain.GPT2: the SPEC ops one at a time, and the only engine for ops passed in from outside). They share
parameters, checkpoint files and numbers (up to float rounding), so a run may resume on either.
OUT/log.csv gets one row per step (step,loss,val_loss,tokens_per_s,ms; val_loss after the steps that
measured it), OUT/model_<step>.bin (llm.c's format) + OUT/state_<step>.bin (AdamW m, v, data position)
every --checkpoint-every steps, at the end, and on Ctrl-C / SIGTERM (the step under way finishes first).
The two newest checkpoints are kept.

From Python: ``main(["--model", "tiny", ...])`` returns the exit status; ``train(parse_args([...]))``
returns a summary dict; both take ``ops=`` (default ``llmc_kernels.ops``) to train with other kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from .. import learner_ops, pretrained
from ..model import ENGINES, Engine, checkpoint
from ..model.config import GPT2Config, num_params
from . import data
from .log import RunLog
from .setup import SetupError, choose_engine, fit_batch_size, learning_rate, refuse_big_model_on_cpu, resolve_precision

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # llm.c's AdamW constants
VAL_BATCHES = 5  # llm.c's val_num_batches
KEEP_CHECKPOINTS = 2
# options a resumed run takes from its checkpoint unless the command line gives them again
RESTORED = (
    "model",
    "batch_size",
    "seq_len",
    "steps",
    "lr",
    "weight_decay",
    "precision",
    "data",
    "checkpoint_every",
    "val_every",
    "sample_every",
    "seed",
    "warmup",
    "lr_schedule",
    "sample_length",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llmc train", description="Train GPT-2 with this package's kernels.")
    a = p.add_argument
    a(
        "--model",
        choices=("d12", "tiny"),
        help="d12: GPT-2 small, 124M (default on a GPU); tiny: 3.3M, for the cpu backend (default there)",
    )
    a("--batch-size", type=int, help="B (default 8 on a GPU, reduced to fit its free memory; 4 on the cpu)")
    a("--seq-len", type=int, help="T (default: the model's max_seq_len, 1024 for d12, 64 for tiny)")
    a("--steps", type=int, help="number of AdamW updates (default 100)")
    a("--lr", type=float, help="peak learning rate (default 3e-4 as llm.c; 1e-3 for tiny)")
    a("--weight-decay", type=float, help="AdamW's decoupled weight decay, on every parameter (default 0.0)")
    a(
        "--precision",
        choices=("fp32", "tf32"),
        help="matmul precision (default fp32; tf32 needs an A100/H100-class GPU and falls back to fp32 elsewhere)",
    )
    a("--backend", choices=("cpu", "cuda"), help="default: cuda when a GPU is usable, else cpu")
    a(
        "--engine",
        choices=("fast", "plain"),
        help="fast: fused kernels, flash attention, each step one CUDA graph "
        "(default wherever it can run the model); plain: the chapters' kernels, one op at a time. Checkpoints are "
        "the same: a run may resume on either",
    )
    a(
        "--init",
        default="scratch",
        help="scratch (GPT-2's random init, seeded), gpt2 (OpenAI's GPT-2 124M weights, "
        "llm.c's gpt2_124M.bin, downloaded once into the cache) or PATH to an llm.c checkpoint",
    )
    a(
        "--ops",
        help="a Python file of ops to train with instead of the package's (what `llmc collect` writes: "
        "your kernels); the run's start and log.json say which ops are yours",
    )
    a(
        "--data",
        help="a text file (tokenised with GPT-2's tokenizer, cached beside it), or a folder of llm.c "
        "*_train.bin/*_val.bin files (default: TinyShakespeare, downloaded once)",
    )
    a("--out", default="runs/train", help="folder for log.csv, loss.png, checkpoints (default runs/train)")
    a("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    a("--checkpoint-every", type=int, help="save a checkpoint every N steps (default 50; 0: only at the end)")
    a("--val-every", type=int, help="validation loss every N steps (default 20; 0: never)")
    a("--sample-every", type=int, help="print a sample every N steps (default 20; 0: never)")
    a("--sample-length", type=int, help="tokens per sample (default 64)")
    a("--seed", type=int, help="seed of the initialisation and the samples (default 1337)")
    a("--warmup", type=int, help="linear warmup over the first N steps (default 0)")
    a(
        "--lr-schedule",
        choices=("constant", "cosine"),
        help="after warmup (default constant; cosine decays to 10%% of --lr at the last step)",
    )
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# ------------------------------------------------------------------------------------------ checkpoints
def checkpoints(out: Path) -> list[tuple[int, Path, Path]]:
    """(step, model file, state file) for every complete checkpoint in ``out``, oldest first."""
    found = []
    for model_path in Path(out).glob("model_*.bin"):
        tag = model_path.stem[len("model_") :]
        state_path = model_path.with_name(f"state_{tag}.bin")
        if tag.isdigit() and state_path.exists():  # the state is written second: both, or not a checkpoint
            found.append((int(tag), model_path, state_path))
    return sorted(found)


def _save(model: Engine, out: Path, step: int, extra: dict) -> Path:
    model_path, state_path = out / f"model_{step:08d}.bin", out / f"state_{step:08d}.bin"
    model.save_checkpoint(model_path)
    model.save_state(state_path, step, extra)
    for _, old_model, old_state in checkpoints(out)[:-KEEP_CHECKPOINTS]:
        old_state.unlink(missing_ok=True)
        old_model.unlink(missing_ok=True)
    return model_path


# ------------------------------------------------------------------------------------------ interrupts
class _StopFlag:
    """Ctrl-C / SIGTERM ask the loop to finish its step, save and stop; a second Ctrl-C stops at once."""

    def __init__(self):
        self.signal = None

    def __call__(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        print(
            f"\n{self.signal}: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)",
            file=sys.stderr,
            flush=True,
        )


@contextlib.contextmanager
def _interrupts():
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return
    old = {s: signal.signal(s, flag) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ------------------------------------------------------------------------------------------ helpers
def _sync(xp) -> None:
    """Wait for the GPU, so step times are real (kernel launches are asynchronous)."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def _active_backend() -> str:
    from ..runtime import backend

    return backend()


def _resolve_options(args: argparse.Namespace, saved: dict, backend: str, init_cfg) -> dict:
    """Command line, then the resumed run's options, then the defaults."""
    o = {k: getattr(args, k) for k in RESTORED}
    for k in RESTORED:
        if o[k] is None and k in saved:
            o[k] = saved[k]
    if o["model"] is None and init_cfg is None:
        o["model"] = "d12" if backend == "cuda" else "tiny"
        if backend == "cpu":
            print("cpu backend: training --model tiny (GPT-2 small, d12, needs a GPU)")
    defaults = {
        "steps": 100,
        "weight_decay": 0.0,
        "precision": "fp32",
        "checkpoint_every": 50,
        "val_every": 20,
        "sample_every": 20,
        "sample_length": 64,
        "seed": 1337,
        "warmup": 0,
        "lr_schedule": "constant",
        "lr": 1e-3 if o["model"] == "tiny" else 3e-4,
    }
    for k, v in defaults.items():
        if o[k] is None:
            o[k] = v
    for k in ("steps", "batch_size", "seq_len", "sample_length"):
        if o[k] is not None and o[k] < 1:
            raise SetupError(f"--{k.replace('_', '-')} must be at least 1; got {o[k]}")
    for k in ("checkpoint_every", "val_every", "sample_every", "warmup"):
        if o[k] < 0:
            raise SetupError(f"--{k.replace('_', '-')} must be >= 0; got {o[k]}")
    if o["lr"] <= 0 or o["weight_decay"] < 0:
        raise SetupError(f"need --lr > 0 and --weight-decay >= 0; got {o['lr']}, {o['weight_decay']}")
    return o


def _set_precision(model: Engine, precision: str) -> None:
    try:
        from .. import ops as package_ops

        setter = package_ops.set_matmul_precision if model.ops_name == "llmc_kernels.ops" else None
    except (AttributeError, ImportError):
        setter = None
    if setter is not None:
        setter(precision)
    elif precision == "tf32":
        print(f"--precision tf32: {model.ops_name} has no set_matmul_precision; its matmuls run as they are")


def evaluate(model: Engine, loader: data.DataLoader, batches: int = VAL_BATCHES) -> float:
    """Mean loss over the first ``batches`` batches of ``loader`` (reset first: always the same tokens)."""
    loader.reset()
    n = max(1, min(batches, len(loader)))
    return sum(model.forward(*loader.next_batch()) for _ in range(n)) / n


def _sample_text(model: Engine, length: int, seed: int) -> str:
    tokens = model.generate([data.EOT], length, seed=seed)[1:]
    try:
        return data.gpt2_encoding().decode(tokens.tolist())
    except data.DataError:
        return " ".join(map(str, tokens.tolist()))


# ------------------------------------------------------------------------------------------ the run
def train(args: argparse.Namespace, *, ops=None, on_step=None) -> dict:
    """Run ``llmc train`` with parsed ``args``; ``on_step(step, model)`` is called after every step."""
    from tqdm.auto import tqdm

    if ops is None and getattr(args, "ops", None):
        ops = learner_ops.load(args.ops)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    found = checkpoints(out)
    if found and not args.resume:
        raise SetupError(
            f"{out} already holds a run (newest checkpoint: step {found[-1][0]}): pass --resume to "
            "continue it, or choose another --out"
        )
    if args.resume and not found:
        print(f"--resume: no checkpoint in {out}, starting from scratch")
    resume = found[-1] if (args.resume and found) else None
    saved_extra = checkpoint.read_state(resume[2])[3] if resume else {}
    backend = _active_backend()

    # the model's shape: from the checkpoint we resume or start from, else --model
    init_path = resume[1] if resume else pretrained.init_path(args.init)
    init_cfg = checkpoint.read_model_header(init_path) if init_path else None
    o = _resolve_options(args, saved_extra.get("options", {}), backend, init_cfg)
    cfg = init_cfg or GPT2Config.named(o["model"])
    name = o["model"] or f"checkpoint {init_path.name}"
    refuse_big_model_on_cpu(cfg, backend, name)
    T = o["seq_len"] or min(1024, cfg.max_seq_len)
    if T > cfg.max_seq_len:
        raise SetupError(f"--seq-len {T} exceeds the model's max_seq_len {cfg.max_seq_len}")
    B = o["batch_size"] or (8 if backend == "cuda" else 4)
    engine, why_not_fast = choose_engine(getattr(args, "engine", None), cfg, ops)
    Model = ENGINES[engine]  # noqa: N806
    estimate = Model.training_bytes
    if backend == "cuda":
        from .setup import gpu_free_bytes

        B, note = fit_batch_size(cfg, B, T, gpu_free_bytes(), explicit=o["batch_size"] is not None, estimate=estimate)
        if note:
            print(note)
    o["batch_size"], o["seq_len"] = B, T
    precision, note = resolve_precision(o["precision"], backend)
    if note:
        print(note)

    train_files, val_files = data.prepare(o["data"])
    if resume:
        model = Model.from_checkpoint(resume[1], ops=ops)
        start, _ = model.load_state(resume[2])
    elif init_path:
        model, start = Model.from_checkpoint(init_path, ops=ops), 0
    else:
        model, start = Model.from_config(cfg, o["seed"], ops=ops), 0
    _set_precision(model, precision)
    # an engine that checks the tokens on the host and copies them into its own device buffer (FastGPT2: no
    # device reads around its graph) takes NumPy batches
    batch_xp = np if model.batches_on_host else model.xp
    train_loader = data.DataLoader(train_files, B, T, xp=batch_xp)
    val_loader = data.DataLoader(val_files, B, T, xp=batch_xp)
    if resume:
        train_loader.set_state(saved_extra["train_loader"])
    steps = o["steps"]
    print(
        f"{name}: {num_params(cfg) / 1e6:.1f}M parameters, B={B}, T={T}, {backend} backend, {precision}, "
        f"~{estimate(cfg, B, T) / 1e9:.2f} GB; {train_loader.num_tokens:,} training tokens "
        f"({len(train_loader)} batches), steps {start + 1}..{steps} -> {out}"
    )
    print(
        model.describe()
        + ("" if why_not_fast in (None, "--engine plain") else f"; not the fast engine: {why_not_fast}")
    )
    if ops is not None:
        print(learner_ops.banner(ops))

    log = RunLog(out, keep_until=start)
    extra = {k: saved_extra[k] for k in ("initial_val_loss",) if k in saved_extra}
    # log.json only (the state file keeps what a resume needs; either engine may resume)
    about = {
        "engine": engine,
        "memory_estimate_bytes": estimate(cfg, B, T),
        "ops": learner_ops.describe(ops),
        "init": args.init if not resume else f"resumed from {resume[1].name}",
    }
    if start == 0 and o["val_every"]:
        extra["initial_val_loss"] = evaluate(model, val_loader)
        print(f"step 0: val loss {extra['initial_val_loss']:.4f}")
    summary = {
        "out": str(out),
        "batch_size": B,
        "seq_len": T,
        "precision": precision,
        "backend": backend,
        "engine": engine,
        "interrupted": None,
        "checkpoint": str(resume[1]) if resume else None,
    }
    saved_step = start
    bar = tqdm(total=steps, initial=start, desc="train", unit="step", dynamic_ncols=True)

    def save(step):
        nonlocal saved_step
        state = {"options": o, "train_loader": train_loader.state(), "precision": precision, **extra}
        summary["checkpoint"] = str(_save(model, out, step, state))
        saved_step = step
        log.write_json(o, {**extra, **about})
        log.plot(f"{name} on {', '.join(p.name for p in train_files)}", extra.get("initial_val_loss"))

    try:
        with _interrupts() as stop:
            for step in range(start + 1, steps + 1):
                lr = learning_rate(step, steps, o["lr"], o["warmup"], o["lr_schedule"])
                t0 = time.perf_counter()
                inputs, targets = train_loader.next_batch()
                # forward, zero_grad, backward, AdamW (the fast engine: one CUDA graph on a GPU)
                loss = model.step(inputs, targets, lr, BETA1, BETA2, EPS, o["weight_decay"], step)
                _sync(model.xp)
                dt = time.perf_counter() - t0
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"the loss is {loss} at step {step}: training diverged (try a "
                        f"lower --lr than {o['lr']}, or --warmup)"
                    )
                val = None
                if o["val_every"] and (step % o["val_every"] == 0 or step == steps):
                    val = evaluate(model, val_loader)
                log.add(step, loss, val, B * T / dt, 1000 * dt)
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{B * T / dt:,.0f}", refresh=False)
                bar.update(1)
                if val is not None:
                    bar.write(
                        f"step {step}/{steps}: train loss {loss:.4f}, val loss {val:.4f}, "
                        f"{B * T / dt:,.0f} tok/s, {1000 * dt:.1f} ms"
                    )
                if o["sample_every"] and (step % o["sample_every"] == 0 or step == steps):
                    text = _sample_text(model, o["sample_length"], o["seed"] + step)
                    log.sample(step, text)
                    bar.write(f"--- sample at step {step} ---\n{text}\n---")
                if (o["checkpoint_every"] and step % o["checkpoint_every"] == 0) or step == steps:
                    save(step)
                if on_step is not None:
                    on_step(step, model)
                if stop.signal:
                    if saved_step != step:
                        save(step)
                    summary["interrupted"] = stop.signal
                    bar.write(
                        f"stopped by {stop.signal} after step {step}: saved {summary['checkpoint']}; "
                        f"continue with --out {out} --resume"
                    )
                    break
    finally:
        bar.close()
        log.close()
    if model.graph_failure:  # slower, not wrong: say so (bench figures depend on it)
        print(f"note: the steps ran without a CUDA graph: {model.graph_failure}")
        about["graph_failure"] = summary["graph_failure"] = model.graph_failure
    log.write_json(o, {**extra, **about})
    summary.update(log.summary(), steps_done=log.rows[-1]["step"] if log.rows else start, options=o, **extra)
    if model.xp is not np:
        summary["gpu_pool_gb"] = model.xp.get_default_memory_pool().total_bytes() / 1e9
    return summary


def main(argv=None, *, ops=None) -> int:
    """The ``llmc train`` command; returns the exit status (0 done, 130 interrupted, 2 bad setup)."""
    args = parse_args(argv)
    from ..runtime import BackendUnavailable, use_backend

    try:
        with use_backend(args.backend):
            summary = train(args, ops=ops)
    except (
        SetupError,
        data.DataError,
        checkpoint.CheckpointError,
        BackendUnavailable,
        FloatingPointError,
        FileNotFoundError,
        learner_ops.LearnerOpsError,
    ) as e:
        print(f"llmc train: error: {e}", file=sys.stderr)
        return 2
    s = summary
    if s.get("steps"):
        print(
            f"done: {s['steps_done']} steps, train loss {s['first_loss']:.4f} -> {s['last_loss']:.4f}"
            + (f", val loss {s['last_val_loss']:.4f}" if s.get("last_val_loss") is not None else "")
            + f", {s['mean_tokens_per_s']:,.0f} tok/s; log {s['out']}/log.csv, checkpoint {s['checkpoint']}"
        )
    return 130 if s["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
