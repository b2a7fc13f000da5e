"""Training data as llm.c has it: TinyShakespeare, GPT-2 tokens, llm.c's token files, a batch loader.

- ``tinyshakespeare_path()``: the text in ``paths.data_dir()``, downloaded from its canonical URL and
  checked (size and sha256) when absent.
- ``tokenize_text(text)``: as llm.c's dev/data/tinyshakespeare.py: GPT-2's tiktoken encoding, with an
  <|endoftext|> token before each "\\n\\n"-separated section (338,028 tokens for TinyShakespeare).
- ``write_tokens`` / ``read_tokens``: llm.c's token file, int32[256] header [20240520, 1, ntok, 0...] and
  then ntok uint16 tokens.
- ``prepare(data)``: (train files, val files) for ``--data``: a text file (tokenised once, cached beside it
  as ``<stem>_train.bin``/``<stem>_val.bin``, or under the package cache when that folder is read-only; the
  first 32,768 tokens for validation), a folder of llm.c
  ``*_train.bin``/``*_val.bin`` files, or None for TinyShakespeare.
- ``DataLoader(files, B, T)``: (inputs, targets) int32 [B,T] batches, sequential with wrap-around.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from ..paths import data_dir

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_NAME = "tinyshakespeare.txt"
TINYSHAKESPEARE_BYTES = 1_115_394
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
VAL_TOKENS = 32_768  # llm.c: "the first 32,768 tokens as the validation split (~10%)"
TOKENS_MAGIC, TOKENS_VERSION = 20240520, 1
EOT = 50256  # GPT-2's <|endoftext|>


class DataError(RuntimeError):
    """Data that is missing, corrupt or unusable, with a message saying what to do."""


# ---------------------------------------------------------------------------------------------- the text
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _how_to_get(dest: Path) -> str:
    return (
        f"Download it yourself from {TINYSHAKESPEARE_URL} and save it as {dest} (the data folder is "
        f"LLMC_DATA_DIR, else ~/.cache/llmc_kernels/data), or pass the file with --data PATH."
    )


def verify_tinyshakespeare(path) -> Path:
    """Raise DataError unless ``path`` is TinyShakespeare (1,115,394 bytes with the pinned sha256)."""
    path = Path(path)
    size = path.stat().st_size
    digest = _sha256(path) if size == TINYSHAKESPEARE_BYTES else None
    if digest != TINYSHAKESPEARE_SHA256:
        found = f"{size:,} bytes" + (f", sha256 {digest}" if digest else "")
        raise DataError(
            f"{path} is not TinyShakespeare: {found}; expected {TINYSHAKESPEARE_BYTES:,} bytes with "
            f"sha256 {TINYSHAKESPEARE_SHA256}. Delete it and run again to download it, or " + _how_to_get(path)
        )
    return path


def _urlopen(url: str, timeout: float):  # a seam for the tests (no network in CI)
    return urllib.request.urlopen(url, timeout=timeout)


def download_tinyshakespeare(dest: Path, url: str = TINYSHAKESPEARE_URL, timeout: float = 60) -> Path:
    """Fetch ``url`` into ``dest`` (through a temporary file), then verify it."""
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    try:
        with _urlopen(url, timeout) as response, open(tmp, "wb") as f:
            for block in iter(lambda: response.read(1 << 16), b""):
                f.write(block)
        verify_tinyshakespeare(tmp)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise DataError(f"Could not download TinyShakespeare from {url} ({e}). " + _how_to_get(dest)) from e
    except DataError as e:
        raise DataError(f"The download from {url} is not TinyShakespeare: {e}") from e
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def tinyshakespeare_path(download: bool = True) -> Path:
    """The verified TinyShakespeare text in the data folder, downloaded first if absent."""
    dest = data_dir() / TINYSHAKESPEARE_NAME
    if dest.exists():
        return verify_tinyshakespeare(dest)
    if not download:
        raise DataError(f"TinyShakespeare is not at {dest}. " + _how_to_get(dest))
    print(f"downloading TinyShakespeare from {TINYSHAKESPEARE_URL} to {dest}")
    return download_tinyshakespeare(dest)


# ---------------------------------------------------------------------------------------------- tokens
def gpt2_encoding():
    """tiktoken's GPT-2 encoding (cached under TIKTOKEN_CACHE_DIR; the first use downloads it)."""
    import tiktoken

    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # tiktoken raises requests/OS errors when offline without a cache
        raise DataError(
            f"tiktoken could not load GPT-2's vocabulary ({e}). It downloads it once into "
            "TIKTOKEN_CACHE_DIR; run once with network access or point TIKTOKEN_CACHE_DIR at a "
            "folder that holds it."
        ) from e


def tokenize_text(text: str) -> np.ndarray:
    """GPT-2 tokens of ``text`` as llm.c tokenises TinyShakespeare: each "\\n\\n"-separated section (each
    speaker's turn) is its own document, so <|endoftext|> precedes the first and follows every "\\n\\n"."""
    enc = gpt2_encoding()
    marked = "<|endoftext|>" + text.replace("\n\n", "\n\n<|endoftext|>")
    tokens = np.array(enc.encode(marked, allowed_special={"<|endoftext|>"}), dtype=np.int64)
    assert tokens.max(initial=0) < 2**16, "GPT-2 token ids fit in uint16"
    return tokens.astype(np.uint16)


def write_tokens(path, tokens) -> Path:
    """llm.c's token file: int32[256] header [20240520, 1, ntok, 0...], then ntok uint16 tokens."""
    tokens = np.asarray(tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= 2**16):
        raise ValueError("token ids must fit in uint16")
    header = np.zeros(256, dtype=np.int32)
    header[:3] = [TOKENS_MAGIC, TOKENS_VERSION, tokens.size]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        header.tofile(f)
        tokens.astype(np.uint16).tofile(f)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return path


def read_tokens(path) -> np.ndarray:
    """The uint16 tokens of an llm.c token file (memory-mapped), after checking its header and size."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no token file at {path}")
    header = np.fromfile(path, dtype=np.int32, count=256)
    if header.size < 256 or header[0] != TOKENS_MAGIC:
        raise DataError(
            f"{path} is not an llm.c token file (magic {header[0] if header.size else 'missing'}, "
            f"expected {TOKENS_MAGIC}); make it with llm.c's dev/data scripts or pass a text file"
        )
    if header[1] != TOKENS_VERSION:
        raise DataError(f"{path}: token file version {header[1]}, expected {TOKENS_VERSION} (uint16 GPT-2 tokens)")
    ntok = int(header[2])
    want = 256 * 4 + 2 * ntok
    if path.stat().st_size != want:
        raise DataError(
            f"{path}: {path.stat().st_size} bytes but its header promises {ntok} tokens "
            f"({want} bytes): truncated or corrupt, delete it to rebuild it"
        )
    return np.memmap(path, dtype=np.uint16, mode="r", offset=256 * 4, shape=(ntok,))


def _cache_folder(text_path: Path) -> Path:
    """Beside the text when that folder is writable (by its permission bits too: root may write anywhere,
    but a read-only shared copy should stay untouched), else a folder of the package cache per text path."""
    folder = text_path.parent
    if os.access(folder, os.W_OK) and folder.stat().st_mode & 0o200:
        return folder
    from ..paths import cache_dir

    key = hashlib.sha256(str(text_path.resolve()).encode()).hexdigest()[:12]
    fallback = cache_dir() / "tokens" / key
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def tokenize_file(text_path) -> tuple[Path, Path]:
    """(train, val) token files for a text file, built once and cached beside it (rebuilt when the text is
    newer than the cache): the first 32,768 tokens are the validation split, the rest training."""
    text_path = Path(text_path)
    folder = _cache_folder(text_path)
    stem = "tiny_shakespeare" if text_path.name == TINYSHAKESPEARE_NAME else text_path.stem
    train, val = folder / f"{stem}_train.bin", folder / f"{stem}_val.bin"
    mtime = text_path.stat().st_mtime
    fresh = all(p.exists() and p.stat().st_mtime >= mtime for p in (train, val))
    if fresh:
        try:
            read_tokens(train), read_tokens(val)
            return train, val
        except DataError:
            pass  # a corrupt cache: rebuild it
    tokens = tokenize_text(text_path.read_text(encoding="utf-8"))
    if tokens.size < 2 * VAL_TOKENS:
        raise DataError(
            f"{text_path} has {tokens.size} tokens; need at least {2 * VAL_TOKENS} "
            f"({VAL_TOKENS} for validation and as many for training)"
        )
    write_tokens(val, tokens[:VAL_TOKENS])
    write_tokens(train, tokens[VAL_TOKENS:])
    return train, val


def prepare(data=None) -> tuple[list[Path], list[Path]]:
    """(train files, val files) for ``--data``: None (TinyShakespeare), a text file, or a folder of llm.c
    token files named ``*_train.bin`` and ``*_val.bin`` (several shards are read in name order)."""
    if data is None:
        train, val = tokenize_file(tinyshakespeare_path())
        return [train], [val]
    path = Path(data).expanduser()
    if path.is_dir():
        train, val = sorted(path.glob("*_train*.bin")), sorted(path.glob("*_val*.bin"))
        if not train or not val:
            raise DataError(
                f"{path} needs llm.c token files named *_train.bin and *_val.bin (found "
                f"{len(train)} and {len(val)}); or pass a text file with --data"
            )
        return train, val
    if not path.is_file():
        raise DataError(
            f"--data {path}: no such file or folder. Pass a UTF-8 text file, a folder of llm.c "
            f"*_train.bin/*_val.bin files, or leave --data out for TinyShakespeare."
        )
    if path.suffix == ".bin":
        raise DataError(f"--data {path}: pass the folder holding the *_train.bin and *_val.bin files")
    if path.name == TINYSHAKESPEARE_NAME and path.stat().st_size == TINYSHAKESPEARE_BYTES:
        verify_tinyshakespeare(path)
    train, val = tokenize_file(path)
    return [train], [val]


# ---------------------------------------------------------------------------------------------- batches
class DataLoader:
    """(inputs, targets) int32 [B,T] batches from llm.c token files, as llm.c's dataloader reads them:
    each batch is the next B*T+1 tokens (targets are the inputs shifted by one), the position then
    advances by B*T; a shard without B*T+1 tokens left moves on to the next shard, and after the last
    shard back to the first. Deterministic: ``state()``/``set_state()`` resume a run exactly.

    Batches are arrays of ``xp`` (NumPy for the cpu backend, CuPy for cuda; default the active backend)."""

    def __init__(self, files, B: int, T: int, xp=None):
        if isinstance(files, (str, os.PathLike)):
            files = [files]
        self.files = [Path(f) for f in files]
        if not self.files:
            raise DataError("DataLoader needs at least one token file")
        self.B, self.T = int(B), int(T)
        self.shards = [read_tokens(f) for f in self.files]
        need = self.B * self.T + 1
        small = [f"{f.name} ({s.size} tokens)" for f, s in zip(self.files, self.shards) if s.size < need]
        if small:
            raise DataError(
                f"B*T+1 = {need} tokens do not fit in {', '.join(small)}: use a smaller --batch-size or --seq-len"
            )
        if xp is None:
            from ..runtime import xp as active_xp

            xp = active_xp()
        self.xp = xp
        self.num_tokens = sum(s.size for s in self.shards)
        self.reset()

    def __len__(self) -> int:
        """Batches in one pass over every shard."""
        return sum((s.size - 1) // (self.B * self.T) for s in self.shards)

    def reset(self) -> None:
        self.shard, self.position = 0, 0

    def state(self) -> dict:
        return {"shard": self.shard, "position": self.position}

    def set_state(self, state: dict) -> None:
        shard, position = int(state["shard"]), int(state["position"])
        if not 0 <= shard < len(self.shards) or not 0 <= position < self.shards[shard].size:
            raise DataError(f"data position {state} does not fit the token files {self.files}")
        self.shard, self.position = shard, position

    def next_batch(self):
        """The next (inputs, targets), int32 [B,T] arrays of the loader's backend."""
        n = self.B * self.T
        if self.position + n + 1 > self.shards[self.shard].size:
            self.shard, self.position = (self.shard + 1) % len(self.shards), 0
        chunk = np.asarray(self.shards[self.shard][self.position : self.position + n + 1], dtype=np.int32)
        self.position += n
        inputs, targets = chunk[:-1].reshape(self.B, self.T), chunk[1:].reshape(self.B, self.T)
        return self.xp.asarray(inputs), self.xp.asarray(targets)

    def __iter__(self):
        while True:
            yield self.next_batch()
