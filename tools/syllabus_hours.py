#!/usr/bin/env python3
"""Estimated hours per chapter, from the solution notebooks' size and their exercises' points.

    python tools/syllabus_hours.py            # a Markdown table for book/instructors.md

A learner's time on a chapter is estimated as
    reading     the Markdown words at 50 words a minute (technical prose with derivations, read closely),
    running     3 minutes per code cell that is not an exercise or check (run it, read its output, vary it),
    exercises   45 minutes per point (points are weighted by difficulty; the time includes debugging with
                the check's messages; an optimisation exercise that follows a chapter's correctness
                exercises, 02's, 03's, 04's and 07's, is stretch work assigned apart and not counted, while 04b's
                transpose, its chapter's only exercise, is), and
    set-up      30 minutes for chapter 00 (installing the package, or opening Colab).
These are estimates, not measurements: calibrate them with your own class (ask for time logs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WORDS_PER_MINUTE = 50
MINUTES_PER_CODE_CELL = 3
MINUTES_PER_POINT = 45
SETUP_MINUTES = {"00_first_kernel": 30}


def chapter_hours(path: Path) -> dict:
    nb = nbformat.read(path, as_version=4)
    chapter = nb.metadata["llmc"]["chapter"]
    words = cells = 0
    points = {"": 0, "performance": 0}  # correctness exercises, optimisation exercises
    for cell in nb.cells:
        info = cell.metadata.get("llmc", {})
        role = info.get("role")
        if role in ("setup", "instructor"):
            continue
        if cell.cell_type == "markdown":
            words += len(cell.source.split())
        elif role == "check":
            points["performance" if info.get("kind") == "performance" else ""] += info.get("points", 1)
        elif role != "exercise":
            cells += 1
    # stretch work where the chapter has correctness exercises; the exercise of a chapter about performance
    points = points[""] or points["performance"]
    minutes = (
        words / WORDS_PER_MINUTE
        + MINUTES_PER_CODE_CELL * cells
        + MINUTES_PER_POINT * points
        + SETUP_MINUTES.get(chapter, 0)
    )
    return {"chapter": chapter, "words": words, "cells": cells, "points": points, "hours": minutes / 60}


def table(folder: Path = ROOT / "solutions") -> str:
    rows = [chapter_hours(p) for p in sorted(folder.glob("*.ipynb"))]
    lines = ["| chapter | words | code cells | points | estimated hours |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['chapter'].replace('_', ' ', 1).replace('_', ' ')} | {r['words']:,} | {r['cells']} | "
        f"{r['points']:g} | {r['hours']:.1f} |"
        for r in rows
    ]
    lines.append(
        f"| all | {sum(r['words'] for r in rows):,} | {sum(r['cells'] for r in rows)} | "
        f"{sum(r['points'] for r in rows):g} | {sum(r['hours'] for r in rows):.0f} |"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "solutions"))
