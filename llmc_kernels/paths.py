"""Where the package keeps what it builds and downloads (never inside the checkout).

- ``cache_dir()``: compiled CPU-backend kernels and other build products. ``LLMC_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/llmc_kernels``, else ``~/.cache/llmc_kernels``.
- ``data_dir()``: data sets (TinyShakespeare and its token files). ``LLMC_DATA_DIR``, else
  ``cache_dir()/data``.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("LLMC_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "llmc_kernels")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    root = os.environ.get("LLMC_DATA_DIR")
    path = Path(root) if root else cache_dir() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path
