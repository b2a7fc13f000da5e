"""Building submissions and running `llmc grade` for the grading tests (tests/test_grade_*.py)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
CHAPTERS = ROOT / "chapters"


def load(folder: Path, chapter: str) -> dict:
    return json.loads((folder / f"{chapter}.ipynb").read_text(encoding="utf-8"))


def solved(chapter: str) -> dict:
    return load(SOLUTIONS, chapter)


def student(chapter: str) -> dict:
    return load(CHAPTERS, chapter)


def cell(nb: dict, cell_id: str) -> dict:
    return next(c for c in nb["cells"] if c.get("id") == cell_id)


def source(nb: dict, cell_id: str) -> str:
    src = cell(nb, cell_id)["source"]
    return "".join(src) if isinstance(src, list) else src


def set_source(nb: dict, cell_id: str, text: str) -> dict:
    cell(nb, cell_id)["source"] = text
    return nb


def mutate(nb: dict, cell_id: str, old: str, new: str) -> dict:
    """Replace ``old`` (which must occur exactly once, so a changed solution is noticed) in one cell."""
    text = source(nb, cell_id)
    assert text.count(old) == 1, f"{cell_id}: expected {old!r} exactly once"
    return set_source(nb, cell_id, text.replace(old, new))


def exercise_ids(nb: dict) -> dict:
    """exercise name -> ids of its exercise cells."""
    out: dict = {}
    for c in nb["cells"]:
        meta = c.get("metadata", {}).get("llmc", {})
        if meta.get("role") == "exercise":
            out.setdefault(meta["exercise"], []).append(c["id"])
    return out


def write(folder: Path, name: str, nb) -> Path:
    path = folder / name
    path.write_text(nb if isinstance(nb, str) else json.dumps(nb, indent=1), encoding="utf-8")
    return path


def llmc_grade(
    *args, cwd: Path, timeout: float = 900, env: dict | None = None, pythonpath: Path = ROOT
) -> subprocess.CompletedProcess:
    env = dict(
        os.environ if env is None else env,
        LLMC_BACKEND=os.environ.get("LLMC_GRADE_TEST_BACKEND", "cpu"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(pythonpath), os.environ.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, "-m", "llmc_kernels", "grade", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_csv(path: Path) -> tuple[list[str], dict[str, dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    return header, {row[0]: dict(zip(header, row)) for row in rows[1:]}


def grade_notebooks(folder: Path, chapter: str, subs: dict, seed: int):
    """Write each submission of ``subs`` (name -> notebook) as ``<name>_<chapter>.ipynb`` into ``folder`` and grade
    them all with one ``llmc grade --csv --seed``: (CSV header, rows by file name, stdout)."""
    for name, nb in subs.items():
        write(folder, f"{name}_{chapter}.ipynb", nb)
    out = llmc_grade(*sorted(folder.glob("*.ipynb")), "--csv", folder / "grades.csv", "--seed", seed, cwd=folder)
    assert out.returncode == 0, out.stdout + out.stderr
    header, rows = read_csv(folder / "grades.csv")
    return header, rows, out.stdout


def section(stdout: str, name: str) -> str:
    """One submission's table in llmc grade's stdout."""
    start = stdout.index(f"== {name}:")
    end = stdout.find("\n== ", start + 1)
    return stdout[start:] if end < 0 else stdout[start:end]


def namespaces_reason() -> str | None:
    """None when this machine gives learner processes namespaces (as llmc grade's probe finds), else why not."""
    code = (
        "from llmc_kernels.grade.sandbox import Sandbox, Limits\n"
        "s = Sandbox(backend='cpu', limits=Limits(30.0))\n"
        "print('OK' if s.isolation.namespaces else s.isolation.describe())\ns.close()\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    text = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
    return None if text == "OK" else f"no namespaces for learner processes here: {text}"
