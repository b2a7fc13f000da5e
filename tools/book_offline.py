"""A Sphinx extension (named in `_config.yml` under `sphinx.local_extensions`) that keeps the built book offline.

The chapters show their pictures by the address of the file on GitHub (`https://raw.githubusercontent.com/
<owner>/<repo>/<branch>/figures/<name>.svg`, written by tools/make_figures.py, which says why: it resolves on
Colab and in Jupyter, where a relative path does not). A book opened without internet must show them too, so
before Sphinx collects a page's images, every such address is replaced by the local file `figures/<name>.svg`,
which Sphinx then copies into the book's `_images/` (a missing file is a warning, so the strict build fails).

Math is offline through `_config.yml` alone: `mathjax_path` names the copy of MathJax in `vendor/mathjax/`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from docutils import nodes

_FIGURE_URL = re.compile(r"^https://raw\.githubusercontent\.com/([^/]+)/([^/]+)/([^/]+)/figures/([\w.-]+\.svg)$")


def local_figure(uri: str, owner_repo: tuple[str, str] | None = None) -> str | None:
    """The source-relative path (`/figures/<file>`) of a figure address of this repository, else None."""
    m = _FIGURE_URL.match(uri)
    if not m or (owner_repo is not None and (m.group(1), m.group(2)) != owner_repo):
        return None
    return f"/figures/{m.group(4)}"


def _repository(srcdir: str) -> tuple[str, str] | None:
    if str(Path(__file__).resolve().parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # local_extensions does it; a test may not
    try:
        from colab_setup_cell import repository

        url, _ = repository(Path(srcdir) / "_config.yml")
    except (ImportError, OSError, ValueError):
        return None
    m = re.match(r"https://github\.com/([^/]+)/([^/]+?)(\.git)?/?$", url)
    return (m.group(1), m.group(2)) if m else None


def _localize(app, doctree) -> None:
    owner_repo = _repository(app.srcdir)
    for image in doctree.findall(nodes.image):
        local = local_figure(image.get("uri", ""), owner_repo)
        if local is not None:
            image["uri"] = local
            if "candidates" in image:
                del image["candidates"]


def setup(app):
    # before the image collector (priority 500) records the page's images and their candidates
    app.connect("doctree-read", _localize, priority=400)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
