"""OpenAI's trained GPT-2 124M as an llm.c checkpoint, for ``llmc train --init gpt2`` (fine-tuning).

The weights are downloaded once into ``paths.cache_dir()/pretrained/gpt2_124M.bin`` and read from there
afterwards. Two sources, tried in order:

1. llm.c's own ``gpt2_124M.bin`` (its starter pack on Hugging Face): already in llm.c's float32 format;
2. OpenAI's weights as Hugging Face publishes them (``model.safetensors`` of ``openai-community/gpt2``),
   converted here: their linear layers are stored ``[in, out]`` (``Conv1D``) and llm.c's ``[out, in]``, and
   the token embedding is padded from V = 50,257 to Vp = 50,304 rows of zeros.

Offline, both fail and :class:`PretrainedUnavailable` says where to put the file by hand. Nothing here runs
at import, and the tests never download (they point the cache at a file they write).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from . import paths
from .model import checkpoint
from .model.config import GPT2Config, checkpoint_bytes, param_shapes

LLMC_URL = "https://huggingface.co/datasets/karpathy/llmc-starter-pack/resolve/main/gpt2_124M.bin"
HF_URL = "https://huggingface.co/openai-community/gpt2/resolve/main/model.safetensors"
FILE_NAME = "gpt2_124M.bin"
TIMEOUT_S = 30


class PretrainedUnavailable(FileNotFoundError):
    """GPT-2's weights are not in the cache and could not be downloaded; the message says what to do."""


def cached_path() -> Path:
    return paths.cache_dir() / "pretrained" / FILE_NAME


def init_path(init: str) -> Path | None:
    """``llmc train --init``: None for ``scratch``, the cached (or downloaded) GPT-2 for ``gpt2``, else a path."""
    if init == "scratch":
        return None
    if init == "gpt2":
        return gpt2_124m()
    return Path(init).expanduser()


def gpt2_124m() -> Path:
    """The path of GPT-2 124M in llm.c's format, downloading it the first time."""
    path = cached_path()
    if path.is_file():
        checkpoint.read_model_header(path)  # a damaged file is an error that names it, not a crash later
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url, fetch in ((LLMC_URL, _fetch_llmc), (HF_URL, _fetch_hf)):
        try:
            fetch(url, path)
            return path
        except (OSError, ValueError) as err:  # URLError, timeouts and HTTP errors are OSErrors
            failures.append(f"{url}: {getattr(err, 'reason', None) or err}")
    raise PretrainedUnavailable(
        "--init gpt2 needs OpenAI's GPT-2 124M weights, downloaded once into the cache, and the download failed "
        "(no internet here?):\n  "
        + "\n  ".join(failures)
        + f"\nOn a machine with internet, fetch llm.c's file ({checkpoint_bytes(GPT2Config.d12()):,} bytes):\n"
        f"  curl -L -o {FILE_NAME} {LLMC_URL}\nand copy it to {path} (then --init gpt2 finds it), "
        f"or pass its path: --init PATH/{FILE_NAME}"
    )


def _download(url: str, dest: Path) -> None:
    """``url`` into ``dest`` through a temporary file (an interrupted download never looks complete)."""
    from tqdm.auto import tqdm

    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}") as bar:
                while chunk := response.read(1 << 20):
                    f.write(chunk)
                    bar.update(len(chunk))
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_llmc(url: str, path: Path) -> None:
    _download(url, path)
    try:
        checkpoint.read_model_header(path)
    except (checkpoint.CheckpointError, FileNotFoundError):
        path.unlink(missing_ok=True)
        raise


def _fetch_hf(url: str, path: Path) -> None:
    source = path.with_name("model.safetensors")
    _download(url, source)
    try:
        convert_hf(source, path)
    finally:
        source.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ Hugging Face
def read_safetensors(path) -> dict[str, np.ndarray]:
    """The float32 tensors of a .safetensors file: an 8-byte little-endian header length, a JSON header
    {name: {dtype, shape, data_offsets}}, then the raw data. (NumPy only: no safetensors package needed.)"""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise ValueError(f"{path}: tensor {name} is {info['dtype']}; the conversion reads float32 (F32) only")
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"])
    return tensors


# llm.c tensor -> (Hugging Face name with {l} for the layer, transpose the Conv1D [in, out] weight)
_HF_NAMES = {
    "wte": ("wte.weight", False),
    "wpe": ("wpe.weight", False),
    "ln1w": ("h.{l}.ln_1.weight", False),
    "ln1b": ("h.{l}.ln_1.bias", False),
    "qkvw": ("h.{l}.attn.c_attn.weight", True),
    "qkvb": ("h.{l}.attn.c_attn.bias", False),
    "attprojw": ("h.{l}.attn.c_proj.weight", True),
    "attprojb": ("h.{l}.attn.c_proj.bias", False),
    "ln2w": ("h.{l}.ln_2.weight", False),
    "ln2b": ("h.{l}.ln_2.bias", False),
    "fcw": ("h.{l}.mlp.c_fc.weight", True),
    "fcb": ("h.{l}.mlp.c_fc.bias", False),
    "fcprojw": ("h.{l}.mlp.c_proj.weight", True),
    "fcprojb": ("h.{l}.mlp.c_proj.bias", False),
    "lnfw": ("ln_f.weight", False),
    "lnfb": ("ln_f.bias", False),
}


def convert_hf(source, dest, config: GPT2Config | None = None) -> GPT2Config:
    """Write Hugging Face GPT-2 weights (``source``, .safetensors) as an llm.c checkpoint ``dest``. The shapes
    come from the tensors (so any GPT-2 size converts); ``config`` defaults to what they say, with the
    vocabulary padded to a multiple of 128 as llm.c does."""
    hf = {name.removeprefix("transformer."): t for name, t in read_safetensors(source).items()}
    if config is None:
        V, C = hf["wte.weight"].shape
        L = 1 + max(int(name.split(".")[1]) for name in hf if name.startswith("h."))
        NH = C // 64  # every GPT-2 size has heads 64 channels wide
        config = GPT2Config(
            max_seq_len=hf["wpe.weight"].shape[0],
            vocab_size=V,
            padded_vocab_size=-(-V // 128) * 128,
            num_layers=L,
            num_heads=NH,
            channels=C,
        )
    parts = []
    for name, shape in param_shapes(config).items():
        key, transpose = _HF_NAMES[name]
        if "{l}" in key:
            t = np.stack(
                [hf[key.format(l=l)].T if transpose else hf[key.format(l=l)] for l in range(config.num_layers)]
            )
        else:
            t = hf[key]
        if name == "wte":  # rows V..Vp-1: the padding no token reads
            t = np.concatenate([t, np.zeros((config.padded_vocab_size - t.shape[0], t.shape[1]), np.float32)])
        if t.shape != tuple(shape):
            raise ValueError(f"{source}: {key} gives {name} the shape {t.shape}, llm.c needs {tuple(shape)}")
        parts.append(np.ascontiguousarray(t, dtype=np.float32).reshape(-1))
    checkpoint.write_model(dest, config, np.concatenate(parts))
    return config
