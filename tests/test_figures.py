"""The book's explanatory pictures (figures/, drawn by llmc_kernels.figures through tools/make_figures.py): up
to date, shown in the prose of their chapter, and drawn the same way every time."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent

_spec = importlib.util.spec_from_file_location("make_figures", ROOT / "tools" / "make_figures.py")
make_figures = importlib.util.module_from_spec(_spec)
sys.modules["make_figures"] = make_figures
_spec.loader.exec_module(make_figures)

from llmc_kernels import figures  # noqa: E402


def test_figures_are_up_to_date():
    """What CI runs to catch staleness: `python tools/make_figures.py --check` finds nothing to do."""
    _, problems, _ = make_figures.plan(ROOT)
    assert not problems, "run python tools/make_figures.py, then tools/make_student.py:\n" + "\n".join(problems)


def test_the_check_reports_a_stale_a_missing_and_an_unknown_file(tmp_path, monkeypatch):
    """`--check` on a copy of the repository's figures with one file edited, one deleted and one added."""
    for name in ("_config.yml",):
        (tmp_path / name).write_text((ROOT / name).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "figures").mkdir()
    for path in (ROOT / "figures").iterdir():
        (tmp_path / "figures" / path.name).write_bytes(path.read_bytes())
    (tmp_path / "solutions").mkdir()
    (tmp_path / "chapters").mkdir()
    (tmp_path / "figures" / "roofline.svg").write_bytes(b"<svg/>")
    (tmp_path / "figures" / "thread_map.svg").unlink()
    (tmp_path / "figures" / "old_picture.svg").write_bytes(b"<svg/>")
    _, problems, _ = make_figures.plan(tmp_path)
    text = "\n".join(problems)
    assert "figures/roofline.svg: stale" in text or "figures/roofline.svg: edited by hand" in text
    assert "figures/thread_map.svg: missing" in text
    assert "figures/old_picture.svg: no picture" in text
    assert "no figure cell shows thread_map" in text  # no solutions/ in the copy


def test_an_svg_is_the_same_bytes_every_time():
    picture = figures.picture("reduction_tree")
    first = make_figures.svg_bytes(picture)
    assert first == make_figures.svg_bytes(picture)
    assert b"<dc:date>" not in first and first.startswith(b"<?xml")


def test_every_picture_is_shown_once_in_its_chapter_and_its_student_copy():
    for picture in figures.PICTURES:
        for folder in ("solutions", "chapters"):
            nb = nbformat.read(ROOT / folder / f"{picture.chapter}.ipynb", as_version=4)
            cells = [c for c in nb.cells if c.get("metadata", {}).get("llmc", {}).get("figure") == picture.name]
            assert len(cells) == 1, f"{folder}/{picture.chapter}: {len(cells)} figure cells for {picture.name}"
            (cell,) = cells
            assert cell.cell_type == "markdown"
            url = make_figures.figure_url(picture.name, ROOT / "_config.yml")
            assert f"]({url})" in cell.source
            assert url.startswith("https://raw.githubusercontent.com/") and url.endswith(f"/figures/{picture.name}.svg")


def test_notebooks_no_longer_draw_the_explanatory_pictures():
    """Each picture is drawn once, by llmc_kernels.figures: no solution cell draws one again (the plots that
    stay as outputs are of the learner's own results or of numbers the learner can change)."""
    drawers = {p.draw.__name__ for p in figures.PICTURES}
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                called = set(re.findall(r"figures\.(\w+)\(", cell.source)) & drawers
                assert not called, f"{path.name} cell {cell.get('id')} redraws {called}"
                assert "Rectangle(" not in cell.source, f"{path.name} cell {cell.get('id')} draws a diagram"


@pytest.mark.parametrize("name", [p.name for p in figures.PICTURES])
def test_each_picture_draws_without_pyplot(name):
    fig = figures.picture(name).draw()
    assert fig.axes and "matplotlib.pyplot" not in figures.__dict__
