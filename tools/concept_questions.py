#!/usr/bin/env python3
"""Print every chapter's concept questions and answers as one Markdown document, for instructors.

    python tools/concept_questions.py > concept_questions.md        # from solutions/
    python tools/concept_questions.py ~/course-private/solutions     # from a private copy

They live in the solution notebooks, in the cells marked `metadata.llmc.role = "instructor"`, which
tools/make_student.py leaves out of the learners' copies (and so out of the book).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from make_student import is_instructor_only  # tools/, this script's folder, is on sys.path

ROOT = Path(__file__).resolve().parent.parent


def document(folder: Path) -> str:
    parts = ["# Concept questions, with answers (instructors only)"]
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in (c for c in nb.cells if is_instructor_only(c)):
            body = cell.source.split("\n", 1)[1] if cell.source.startswith("## ") else cell.source
            parts.append(f"## {path.stem}\n{body.strip()}")
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(document(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "solutions"), end="")
