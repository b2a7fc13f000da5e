"""The built book works without internet: math by the bundled MathJax (vendor/mathjax/), the chapters'
pictures from figures/ (tools/book_offline.py maps their GitHub addresses to the local files)."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nodes = pytest.importorskip("docutils.nodes")  # the book's tools (pip install -e .[book]); absent on the GPU machine
new_document = pytest.importorskip("docutils.utils").new_document

ROOT = Path(__file__).resolve().parent.parent
MATHJAX = ROOT / "vendor" / "mathjax"

_spec = importlib.util.spec_from_file_location("book_offline", ROOT / "tools" / "book_offline.py")
book_offline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_offline)

CDN = re.compile(r"(cdn\.jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com)/[^\"']*mathjax", re.I)


def sphinx_config() -> dict:
    """The Sphinx configuration Jupyter Book derives from _config.yml (what `jupyter-book build` passes on)."""
    jb_config = pytest.importorskip("jupyter_book.config")
    config, *_ = jb_config.get_final_config(
        user_yaml=ROOT / "_config.yml", sourcedir=ROOT, cli_config={"latex_individualpages": False}
    )
    return config


def test_mathjax_path_names_the_bundled_copy():
    config = sphinx_config()
    path = config["mathjax_path"]
    assert "://" not in path and not path.startswith("/"), f"mathjax_path {path!r} is not a local file"
    found = [ROOT / static / path for static in config["html_static_path"] if (ROOT / static / path).is_file()]
    assert found == [MATHJAX / "tex-svg-full.js"], config["html_static_path"]
    # Jupyter Book loads every .js file of a top-level _static/ on every page: MathJax would load twice
    assert not any(str(s).rstrip("/") == "_static" for s in config["html_static_path"])
    assert "book_offline" in config["extensions"]


def test_the_bundled_mathjax_is_the_one_its_readme_names_with_its_licence():
    readme = (MATHJAX / "README.md").read_text(encoding="utf-8")
    digest = re.search(r"sha256 ([0-9a-f]{64})  tex-svg-full\.js", readme).group(1)
    data = (MATHJAX / "tex-svg-full.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest
    assert b'VERSION="3.' in data
    assert "Apache License" in (MATHJAX / "LICENSE").read_text(encoding="utf-8")
    assert "Apache" in readme


def test_figure_addresses_are_mapped_to_the_local_files():
    doc = new_document("page")
    owner, repo = book_offline._repository(str(ROOT))  # from _config.yml
    url = f"https://raw.githubusercontent.com/{owner}/{repo}/main/figures/roofline.svg"
    doc += nodes.image(uri=url, candidates={"?": url})
    doc += nodes.image(uri="https://example.org/figures/x.svg")

    class App:
        srcdir = str(ROOT)

    book_offline._localize(App(), doc)
    uris = [n["uri"] for n in doc.findall(nodes.image)]
    assert uris == ["/figures/roofline.svg", "https://example.org/figures/x.svg"]
    assert book_offline.local_figure(url, ("someone", "else")) is None


@pytest.mark.slow
def test_the_built_book_loads_nothing_for_math_or_pictures_from_the_internet(tmp_path):
    """Build the book (strictly, as .ci/run does) into a temporary folder and read its pages."""
    beside = Path(sys.executable).with_name("jupyter-book")  # this environment's, else the PATH's
    command = str(beside) if beside.exists() else shutil.which("jupyter-book")
    if command is None:
        pytest.skip("jupyter-book is not installed (the book extra)")
    done = subprocess.run(
        [command, "build", str(ROOT), "--path-output", str(tmp_path), "-W", "-n"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    assert (html / "_static" / "mathjax" / "tex-svg-full.js").is_file()
    pages = sorted(html.rglob("*.html"))
    with_math = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not CDN.search(text), f"{page.name} loads MathJax from a CDN"
        assert "raw.githubusercontent.com" not in text, f"{page.name} links a picture on GitHub"
        scripts = re.findall(r'<script[^>]*src="([^"]*tex-svg-full\.js[^"]*)"', text)
        assert len(scripts) <= 1, f"{page.name} loads MathJax {len(scripts)} times"
        with_math += bool(scripts)
        for src in re.findall(r'<img[^>]*src="([^"]+)"', text):
            if "://" not in src:
                assert (page.parent / src).resolve().is_file(), f"{page.name}: {src} is missing"
    assert with_math >= 10, "MathJax is on no chapter page: is mathjax_path still used?"
    roofline = (html / "chapters" / "03_matmul.html").read_text(encoding="utf-8")
    assert 'src="../_images/roofline.svg"' in roofline
