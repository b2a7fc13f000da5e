"""llm.c's file formats for a model and, beside it, the optimizer state that makes a run resumable.

Model file (llm.c ``gpt2_124M.bin``, SPEC "Model and training"):
    int32[256] header  [20240326, 3, maxT, V, L, NH, C, Vp, 0, ...]
    float32 parameters in ``config.param_shapes`` order (wte, wpe, ln1w, ..., lnfb)

State sidecar (our own layout, llm.c's ``state_*.bin`` magic 20240527):
    int32[256] header  [20240527, 1, 0, 0, then int64 words: step, num_params, json_bytes]
    float32 m[num_params], float32 v[num_params]     (AdamW moments; absent when step == 0)
    UTF-8 JSON (``json_bytes`` long): the trainer's own state (data position, rng, options)

Every write goes to a temporary file first and is renamed into place, so an interrupted save never
leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .config import HEADER_BYTES, GPT2Config, checkpoint_bytes, num_params

MODEL_MAGIC, MODEL_VERSION = 20240326, 3
STATE_MAGIC, STATE_VERSION = 20240527, 1


class CheckpointError(ValueError):
    """A model or state file that is not what llm.c (or this package) writes."""


def _atomic_write(path: Path, chunks) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                if isinstance(chunk, np.ndarray):
                    np.ascontiguousarray(chunk).tofile(f)
                else:
                    f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def model_header(cfg: GPT2Config) -> np.ndarray:
    h = np.zeros(256, dtype=np.int32)
    h[:8] = [
        MODEL_MAGIC,
        MODEL_VERSION,
        cfg.max_seq_len,
        cfg.vocab_size,
        cfg.num_layers,
        cfg.num_heads,
        cfg.channels,
        cfg.padded_vocab_size,
    ]
    return h


def write_model(path, cfg: GPT2Config, params: np.ndarray) -> None:
    """Write the header and the flat float32 parameter buffer (a host NumPy array)."""
    if params.dtype != np.float32 or params.size != num_params(cfg):
        raise CheckpointError(f"expected {num_params(cfg)} float32 parameters, got {params.size} {params.dtype}")
    _atomic_write(path, [model_header(cfg), params])


def read_model_header(path) -> GPT2Config:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model checkpoint at {path}")
    h = np.fromfile(path, dtype=np.int32, count=256)
    if h.size < 256 or h[0] != MODEL_MAGIC:
        raise CheckpointError(
            f"{path} is not an llm.c GPT-2 checkpoint (magic {h[0] if h.size else 'missing'}, expected {MODEL_MAGIC})"
        )
    if h[1] != MODEL_VERSION:
        hint = " (version 5 is llm.c's bf16 file: use the fp32 gpt2_124M.bin)" if h[1] == 5 else ""
        raise CheckpointError(f"{path}: checkpoint version {h[1]}, expected {MODEL_VERSION} (float32){hint}")
    maxT, V, L, NH, C, Vp = (int(x) for x in h[2:8])
    cfg = GPT2Config(max_seq_len=maxT, vocab_size=V, padded_vocab_size=Vp, num_layers=L, num_heads=NH, channels=C)
    if path.stat().st_size != checkpoint_bytes(cfg):
        raise CheckpointError(
            f"{path}: {path.stat().st_size} bytes, but its header ({cfg}) needs "
            f"{checkpoint_bytes(cfg)} (truncated or not a float32 checkpoint)"
        )
    return cfg


def read_model(path) -> tuple[GPT2Config, np.ndarray]:
    """(config, flat float32 parameters) from an llm.c model file."""
    cfg = read_model_header(path)
    params = np.fromfile(path, dtype=np.float32, offset=HEADER_BYTES)
    return cfg, params


def write_state(path, step: int, m: np.ndarray | None, v: np.ndarray | None, extra: dict | None = None) -> None:
    """The optimizer state after ``step`` updates (m, v on the host) and the trainer's ``extra`` dict."""
    blob = json.dumps(extra or {}, sort_keys=True).encode()
    n = 0 if m is None else m.size
    if (m is None) != (v is None) or (
        m is not None and (m.dtype != np.float32 or v.dtype != np.float32 or v.size != n)
    ):
        raise CheckpointError("m and v must both be float32 arrays of one size, or both None")
    h = np.zeros(256, dtype=np.int32)
    h[:2] = [STATE_MAGIC, STATE_VERSION]
    h[4:10].view(np.int64)[:] = [step, n, len(blob)]
    chunks = [h] + ([m, v] if m is not None else []) + [blob]
    _atomic_write(path, chunks)


def read_state(path) -> tuple[int, np.ndarray | None, np.ndarray | None, dict]:
    """(step, m, v, extra) as written by ``write_state``; m and v are None when no update was made."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no optimizer state at {path}")
    h = np.fromfile(path, dtype=np.int32, count=256)
    if h.size < 256 or h[0] != STATE_MAGIC or h[1] != STATE_VERSION:
        raise CheckpointError(f"{path} is not an optimizer state file (magic/version {h[:2].tolist()})")
    step, n, nblob = (int(x) for x in h[4:10].view(np.int64))
    if path.stat().st_size != HEADER_BYTES + 8 * n + nblob:
        raise CheckpointError(f"{path}: size {path.stat().st_size} does not match its header (truncated?)")
    m = v = None
    if n:
        mv = np.fromfile(path, dtype=np.float32, count=2 * n, offset=HEADER_BYTES)
        m, v = mv[:n].copy(), mv[n:].copy()
    with open(path, "rb") as f:
        f.seek(HEADER_BYTES + 8 * n)
        extra = json.loads(f.read(nblob).decode() or "{}")
    return step, m, v, extra
