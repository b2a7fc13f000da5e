"""Shared by tests/test_model_*, test_data_*, test_train_*: the offline data (``LLMC_DATA_DIR``,
``TIKTOKEN_CACHE_DIR``), the ops under test, comparing two runs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


def _folder(variable: str) -> Path | None:
    """The folder an environment variable names (tests/conftest.py points unset ones at ../shared)."""
    value = os.environ.get(variable, "").strip()
    return Path(value) if value else None


def need_shared_text() -> Path:
    """The offline TinyShakespeare: ``$LLMC_DATA_DIR/tinyshakespeare.txt``."""
    folder = _folder("LLMC_DATA_DIR")
    text = None if folder is None else folder / "tinyshakespeare.txt"
    if text is None or not text.exists():
        pytest.skip(
            f"no offline TinyShakespeare: set LLMC_DATA_DIR to a folder holding tinyshakespeare.txt (now {folder})"
        )
    return text


def use_shared_tiktoken(monkeypatch) -> None:
    """GPT-2's vocabulary offline: the tiktoken cache that TIKTOKEN_CACHE_DIR names."""
    folder = _folder("TIKTOKEN_CACHE_DIR")
    if folder is None or not folder.is_dir():
        pytest.skip(f"no offline GPT-2 vocabulary: set TIKTOKEN_CACHE_DIR to a tiktoken cache (now {folder})")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))


def data_dir_with_text(tmp_path, monkeypatch) -> Path:
    """LLMC_DATA_DIR = a fresh folder holding (a link to) the offline TinyShakespeare, so token caches are
    written there and never into the (possibly read-only) shared copy."""
    text = need_shared_text()
    use_shared_tiktoken(monkeypatch)
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "tinyshakespeare.txt").symlink_to(text)
    monkeypatch.setenv("LLMC_DATA_DIR", str(folder))
    return folder


def ops_under_test():
    """The namespace the model and trainer tests run: the package's kernels, the model's default
    (on the active backend: the CPU backend in CI, CUDA where a GPU is usable)."""
    import llmc_kernels.ops as ops

    return ops


def host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


# ---------------------------------------------------------------------------------------------------------
# Comparing two training runs that did the same arithmetic in a different order (a resumed run, the fast and
# the plain engine, a CUDA graph and eager launches; on a GPU, atomics: SPEC says bitwise equality is
# impossible). Their gradients differ by float32 rounding, and AdamW treats the two kinds of entry apart:
# - an ordinary entry's step lr * m_hat / (sqrt(v_hat) + eps) changes by ~lr * (relative gradient change),
#   far below atol = 1e-6 for relative changes ~1e-6;
# - an entry whose gradient is itself at rounding level is a coin flip: AdamW divides by the gradient's own
#   RMS, so the step is up to ~lr whatever the gradient's size. The key biases are always such entries (their
#   gradient is exactly 0: softmax ignores the constant q . b_k that a key bias adds to every score of a
#   row), and a few others are by chance (weights fed by GELU units that are off for the whole batch).
# So: the key biases are held only to AdamW's bound; elsewhere at most NOISE_FRACTION of each tensor may miss
# the tight tolerance (seen: up to 1.2e-4 of a tensor on the tiny model), and none may pass the bound.
NOISE_FRACTION = 1e-3


def adamw_bound(lr_sum: float) -> float:
    """The most two AdamW runs can move one parameter apart: each step moves it by lr * |m_hat| / sqrt(v_hat)
    (<= 1.05 * lr for t <= 10 at beta1 = 0.9, beta2 = 0.999, by Cauchy-Schwarz on the moments' weights) plus
    the weight decay's lr * wd * p (the same in both runs), in opposite directions at worst."""
    return 2.1 * lr_sum


def key_bias_mask(cfg) -> np.ndarray:
    """True at the key biases (qkvb[l, C:2C]) of the flat parameter buffer, in checkpoint order."""
    from llmc_kernels.model.config import num_params, param_shapes

    mask = np.zeros(num_params(cfg), dtype=bool)
    offset = 0
    for name, shape in param_shapes(cfg).items():
        n = int(np.prod(shape))
        if name == "qkvb":
            C = cfg.channels
            mask[offset : offset + n].reshape(shape)[:, C : 2 * C] = True
        offset += n
    return mask


def assert_runs_close(
    what: str,
    got,
    want,
    cfg,
    rtol: float,
    atol: float,
    bound: float | None = None,
    atol_of_max: bool = False,
    noise_fraction: float | None = None,
) -> None:
    """``got``/``want``: flat buffers in checkpoint order (parameters, or AdamW's m or v) of two runs (see above).
    Per tensor, at most NOISE_FRACTION of the entries other than the key biases may miss rtol/atol (with
    ``atol_of_max``, atol times the tensor's largest |want|: for moments, which are sums with cancellation);
    with ``bound``, no entry may differ by more. ``noise_fraction`` overrides NOISE_FRACTION (TF32 runs)."""
    from llmc_kernels.model.config import param_shapes

    got, want = host(got).astype(np.float64).reshape(-1), host(want).astype(np.float64).reshape(-1)
    assert got.shape == want.shape, f"{what}: {got.shape} vs {want.shape}"
    assert np.isfinite(got).all(), f"{what}: not finite"
    err = np.abs(got - want)
    if bound is not None:
        worst = int(err.argmax())
        assert err[worst] <= bound, f"{what}: entry {worst} differs by {err[worst]:.3g} > AdamW's bound {bound:.3g}"
    keys = key_bias_mask(cfg)
    offset = 0
    for name, shape in param_shapes(cfg).items():
        sl = slice(offset, offset + int(np.prod(shape)))
        offset = sl.stop
        tol = atol * (float(np.abs(want[sl]).max()) if atol_of_max else 1.0) + rtol * np.abs(want[sl])
        bad = (err[sl] > tol) & ~keys[sl]
        allowed = int((NOISE_FRACTION if noise_fraction is None else noise_fraction) * int((~keys[sl]).sum()))
        if bad.sum() > allowed:
            i = int(np.argmax(np.where(bad, err[sl] / np.maximum(tol, 1e-45), -1.0)))
            raise AssertionError(
                f"{what} {name}: {int(bad.sum())} of {sl.stop - sl.start} entries miss rtol {rtol}, "
                f"atol {atol}{' x max' if atol_of_max else ''} (at most {allowed} may); worst "
                f"[{i}]: {got[sl][i]!r} vs {want[sl][i]!r}"
            )
