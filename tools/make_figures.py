#!/usr/bin/env python3
"""Draw the book's explanatory pictures into figures/ and show them in the chapters' prose.

    python tools/make_figures.py            # rewrite figures/*.svg, figures/manifest.json and the figure cells
    python tools/make_figures.py --check    # exit 1 listing what is stale, missing or unknown; writes nothing

The pictures (thread maps, collision maps, reduction trees, rooflines...) are drawn by the functions of
`llmc_kernels.figures` (one home for the drawing code: this script imports it, the notebooks do not copy it).
They are the same on every run, so they are committed as files and shown in the prose, where a reader sees
them before running anything: on the book's pages, in Jupyter and on Colab. Plots of the learner's own
results stay outputs of the notebooks' cells.

- `figures/<name>.svg`: one file per picture, drawn with fixed settings (`RC`: fonts, `svg.hashsalt`, text as
  paths) and no date in the metadata, so the same code and the same matplotlib give the same bytes.
- `figures/manifest.json`: the matplotlib version that drew them, and for each picture the SHA-256 of its
  file and of its drawing function's source.
- A figure cell of a solution notebook is a Markdown cell with `metadata.llmc = {"role": "figure",
  "figure": "<name>"}`; this script writes its text (the image and a line saying how to redraw it), so the
  author only places the cell. `tools/make_student.py` then copies it into chapters/ as it is.

Where the image points. The notebooks link to the file on GitHub, `https://raw.githubusercontent.com/<owner>/
<repo>/<branch>/figures/<name>.svg`, built from `_config.yml`'s `repository.url` and `repository.branch` (the
place they live, as for the set-up cell). A relative path (`../figures/x.svg`) would not resolve on Colab,
which opens one notebook without the repository around it, nor in `jupyter lab chapters/` (the README's
command), whose server cannot serve a file above its root; embedding the SVG in every notebook would double
the pictures in git and bloat the notebooks. The book must work offline, so its build does not use the
address: `tools/book_offline.py`, a Sphinx extension named in `_config.yml`, maps these addresses back to
the local `figures/` files, which Sphinx copies into the built book (a missing file fails the strict build).

`--check` (run by tests/test_figures.py, so CI catches staleness) reports: a picture without its file, a file
without its picture, a file whose bytes differ from what the code draws now (compared byte for byte when the
installed matplotlib is the manifest's version; with another version, whose SVG output differs in details,
the drawing function's source digest is compared instead and a note says so), a figure cell whose text is not
what this script writes, a picture that no figure cell of its chapter shows, and an image address in a
notebook (solutions/ or chapters/) that names no picture.

Exit status: 0 done / up to date, 1 out of date (--check).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import json
import re
import sys
from pathlib import Path

import matplotlib
import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from colab_setup_cell import repository  # noqa: E402

from llmc_kernels import figures  # noqa: E402

FIGURES_DIR = "figures"
MANIFEST = "manifest.json"
FIGURE_ROLE = "figure"

# Fixed settings, so the bytes depend only on the code and matplotlib: the bundled DejaVu fonts (text drawn
# as paths, so no viewer substitutes a font), a fixed salt for the SVG element ids.
RC = {
    "svg.hashsalt": "llmc-figures",
    "svg.fonttype": "path",
    "svg.image_inline": True,
    "font.family": ["DejaVu Sans"],
    "font.sans-serif": ["DejaVu Sans"],
    "font.monospace": ["DejaVu Sans Mono"],
    "mathtext.fontset": "dejavusans",
    "axes.unicode_minus": True,
    "path.simplify": True,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "savefig.facecolor": "white",
    "savefig.transparent": False,
}


def svg_bytes(picture: figures.Picture) -> bytes:
    """The picture's SVG file, drawn under `RC` with no date (stable bytes)."""
    with matplotlib.rc_context(RC):
        fig = picture.draw()
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def code_digest(picture: figures.Picture) -> str:
    return hashlib.sha256(inspect.getsource(picture.draw).encode()).hexdigest()


def raw_base(config: Path) -> str:
    """`https://raw.githubusercontent.com/<owner>/<repo>/<branch>/` from `_config.yml`'s repository."""
    url, branch = repository(config)
    m = re.match(r"https://github\.com/([^/]+)/([^/]+?)(\.git)?/?$", url)
    if not m:
        raise ValueError(f"{config}: repository.url {url!r} is not https://github.com/<owner>/<repo>")
    return f"https://raw.githubusercontent.com/{m.group(1)}/{m.group(2)}/{branch}/"


def figure_url(name: str, config: Path) -> str:
    return f"{raw_base(config)}{FIGURES_DIR}/{name}.svg"


def cell_source(picture: figures.Picture, config: Path) -> str:
    """The text of a figure cell: the image, and how to redraw it."""
    return (
        f"![{picture.alt}]({figure_url(picture.name, config)})\n\n"
        f"*The picture is drawn by `figures.{picture.name}()` (`from llmc_kernels import figures`): call it in "
        "a cell to redraw it, or read its code to change it.*"
    )


# an image address of this repository's figures, on any branch (so a wrong branch is reported, not missed)
_ANY_FIGURE_URL = re.compile(r"https://raw\.githubusercontent\.com/[^/\s]+/[^/\s]+/[^/\s]+/figures/[^)\s\"']+")


def _figure_cells(nb) -> list:
    return [c for c in nb.cells if c.get("metadata", {}).get("llmc", {}).get("role") == FIGURE_ROLE]


def plan(root: Path = ROOT) -> tuple[dict[Path, bytes], list[str], list[str]]:
    """(every file to write -> its bytes, the problems a --check reports, notes)."""
    config = root / "_config.yml"
    out = root / FIGURES_DIR
    writes: dict[Path, bytes] = {}
    problems: list[str] = []
    notes: list[str] = []
    names = [p.name for p in figures.PICTURES]
    if len(set(names)) != len(names):
        problems.append("llmc_kernels.figures.PICTURES names a picture twice")

    manifest_path = out / MANIFEST
    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = {}
    same_matplotlib = old.get("matplotlib") == matplotlib.__version__
    if old and not same_matplotlib:
        notes.append(
            f"figures/ was drawn with matplotlib {old.get('matplotlib')}, this is {matplotlib.__version__}: the "
            "files are compared with the drawing code's digest, not byte for byte"
        )
    manifest = {"matplotlib": matplotlib.__version__, "pictures": {}}
    for picture in figures.PICTURES:
        path = out / f"{picture.name}.svg"
        data = svg_bytes(picture)
        writes[path] = data
        manifest["pictures"][picture.name] = {
            "chapter": picture.chapter,
            "sha256": hashlib.sha256(data).hexdigest(),
            "code": code_digest(picture),
        }
        rel = path.relative_to(root)
        if not path.exists():
            problems.append(f"{rel}: missing (the picture {picture.name} has no file)")
            continue
        committed = path.read_bytes()
        if same_matplotlib:
            if committed != data:
                problems.append(f"{rel}: stale (the code draws something else now)")
        else:
            entry = old.get("pictures", {}).get(picture.name, {})
            if entry.get("code") != code_digest(picture):
                problems.append(f"{rel}: stale (figures.{picture.name} changed since the file was drawn)")
            elif entry.get("sha256") != hashlib.sha256(committed).hexdigest():
                problems.append(f"{rel}: edited by hand (its bytes are not the ones the manifest records)")
    for path in sorted(out.glob("*")) if out.is_dir() else []:
        if path.name != MANIFEST and path not in writes:
            problems.append(f"{path.relative_to(root)}: no picture of llmc_kernels.figures draws it")
    manifest_text = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    writes[manifest_path] = manifest_text
    if not manifest_path.exists():
        problems.append(f"{manifest_path.relative_to(root)}: missing")
    elif same_matplotlib and manifest_path.read_bytes() != manifest_text:
        problems.append(f"{manifest_path.relative_to(root)}: stale")

    # the figure cells of solutions/, and every figure address in solutions/ and chapters/
    known = {figure_url(name, config) for name in names}
    shown: dict[str, list[str]] = {}
    for path in sorted((root / "solutions").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        nb = nbformat.reads(text, as_version=4)
        changed = False
        for cell in _figure_cells(nb):
            name = cell.metadata["llmc"].get("figure")
            where = f"{path.relative_to(root)} (cell {cell.get('id')})"
            if name not in names:
                problems.append(f"{where}: a figure cell for {name!r}, which llmc_kernels.figures does not draw")
                continue
            shown.setdefault(name, []).append(path.stem)
            want = cell_source(figures.picture(name), config)
            if cell.cell_type != "markdown" or cell.source != want:
                problems.append(f"{where}: the figure cell of {name} is out of date")
                cell.cell_type, cell.source = "markdown", want
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
                changed = True
        if changed:
            new = nbformat.writes(nb)
            writes[path] = (new if new.endswith("\n") else new + "\n").encode()
    for picture in figures.PICTURES:
        if picture.chapter not in shown.get(picture.name, []):
            problems.append(
                f"solutions/{picture.chapter}.ipynb: no figure cell shows {picture.name} (a Markdown cell with "
                f'metadata.llmc = {{"role": "figure", "figure": "{picture.name}"}})'
            )
    for folder in ("solutions", "chapters"):
        for path in sorted((root / folder).glob("*.ipynb")):
            for url in sorted(set(_ANY_FIGURE_URL.findall(path.read_text(encoding="utf-8")))):
                if url not in known:
                    problems.append(f"{path.relative_to(root)}: {url} is not the address of a picture")
    return writes, problems, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report stale or missing figures, write nothing")
    args = parser.parse_args(argv)
    writes, problems, notes = plan(ROOT)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.check:
        if problems:
            print("figures/ or the figure cells are out of date (run python tools/make_figures.py):")
            for problem in problems:
                print(f"  {problem}")
            return 1
        print(f"{len(figures.PICTURES)} figures up to date")
        return 0
    (ROOT / FIGURES_DIR).mkdir(exist_ok=True)
    wrote = 0
    for path, data in writes.items():
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
            print(f"wrote {path.relative_to(ROOT)}")
            wrote += 1
    for path in sorted((ROOT / FIGURES_DIR).glob("*.svg")):
        if path not in writes:
            path.unlink()
            print(f"deleted {path.relative_to(ROOT)}")
    print(f"{len(figures.PICTURES)} figures, {wrote} files written; now run python tools/make_student.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
