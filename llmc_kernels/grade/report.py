"""What ``llmc grade`` writes: the terminal table, the CSV, the Markdown feedback files and Gradescope's
``results.json``. Every file is written once, after every learner process is gone, through a temporary file
renamed into place (so a file or link planted at that path is replaced, never written through)."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from .. import __version__


def fmt(points: float) -> str:
    return str(int(points)) if float(points).is_integer() else f"{points:.3g}"


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def table(sub) -> str:
    if sub.chapter is None:
        return f"== {sub.label}: ERROR: {sub.error}\n"
    head = f"== {sub.label}: chapter {sub.chapter.name}, {fmt(sub.total)}/{fmt(sub.max)} points"
    rows = [("exercise", "points", "verdict", "reason")]
    rows += [(r.name, f"{fmt(r.earned)}/{fmt(r.points)}", r.verdict, r.reason) for r in sub.results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [head]
    if sub.results:
        lines += ["   " + "  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    lines += [f"   NOTE: {n}" for n in sub.notes]
    lines += [f"   warning: {w}" for w in sub.warnings]
    lines += [f"   {r.name}: {note}" for r in sub.results for note in r.notes]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def columns_of(ex) -> list[str]:
    """The CSV columns of one exercise: its name, or for an optimisation exercise (``llmc.kind =
    "performance"``) two, ``<name>:correctness`` and ``<name>:performance``."""
    if ex.kind == "performance":
        return [f"{ex.name}:correctness", f"{ex.name}:performance"]
    return [ex.name]


def earned_by_column(r) -> dict:
    if r.kind == "performance":
        return {f"{r.name}:correctness": fmt(r.correctness_earned), f"{r.name}:performance": fmt(r.performance_earned)}
    return {r.name: fmt(r.earned)}


def csv_text(subs) -> str:
    """One row per submission: its label, the points of each exercise (columns in chapter order, empty where the
    submission's chapter has no such exercise; an optimisation exercise has a correctness and a performance
    column), total, max and a note (a flag for the instructor, e.g. a notebook of another chapter); an ungraded
    submission's points are empty."""
    chapters = dict(sorted((s.chapter.name, s.chapter) for s in subs if s.chapter))
    columns = list(
        dict.fromkeys(c for chapter in chapters.values() for ex in chapter.exercises for c in columns_of(ex))
    )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["submission", *columns, "total", "max", "note"])
    for sub in subs:
        earned = {k: v for r in sub.results for k, v in earned_by_column(r).items()}
        totals = [fmt(sub.total), fmt(sub.max)] if sub.chapter else ["", ""]
        note = "; ".join(sub.notes) if sub.chapter else (sub.error or "")
        writer.writerow([sub.label, *[earned.get(c, "") for c in columns], *totals, note])
    return buf.getvalue()


def feedback_name(label: str) -> str:
    stem = label[: -len(".ipynb")] if label.endswith(".ipynb") else label
    return stem.replace("/", "__").replace("\\", "__") + ".feedback.md"


def feedback(sub, *, backend: str, timeout: float, seed: int) -> str:
    """The Markdown feedback file for one submission: score, flags, and each exercise's verdict explained."""
    lines = [f"# Feedback on {sub.label}", ""]
    if sub.chapter is None:
        lines += ["This file could not be graded:", "", f"> {sub.error}", ""]
        if not sub.setup_error:
            lines += [
                "Submit the chapter notebook of the course (the `.ipynb` file from `chapters/`, with your "
                "code in its exercise cells).",
                "",
            ]
        return "\n".join(lines)
    lines += [
        f"Chapter **{sub.chapter.name}** (version {sub.chapter.version}), graded by `llmc grade` "
        f"(llmc_kernels {__version__}) on the {backend} backend, seed {seed}, time limit {fmt(timeout)} s "
        "per exercise.",
        "",
        f"**Score: {fmt(sub.total)} / {fmt(sub.max)}**",
        "",
    ]
    lines += [f"- **Note:** {n}" for n in sub.notes] + ([""] if sub.notes else [])
    lines += [f"- Warning: {w}" for w in sub.warnings] + ([""] if sub.warnings else [])
    if not sub.results:
        return "\n".join(lines)
    lines += ["| exercise | points | verdict |", "|---|---|---|"]
    lines += [f"| `{r.name}` | {fmt(r.earned)} / {fmt(r.points)} | {r.verdict} |" for r in sub.results]
    lines += [
        "",
        "Each exercise was run on its own, in a fresh process: the chapter's set-up cells and your cells "
        "for that exercise. Your function was called on inputs drawn for this grading (not the check's "
        "default ones), the grader compared what it left in the output arrays with its own float64 "
        "reference, and replayed your kernel launches on fresh inputs: the outputs must be written by kernels "
        "your code compiles and launches. Your notebook's saved outputs, printed lines and check cells are "
        "not used.",
        "",
    ]
    for r in sub.results:
        lines += [f"## {r.name}: {r.verdict} ({fmt(r.earned)} / {fmt(r.points)})", ""]
        if r.kind == "performance":
            lines += [
                f"An optimisation exercise: correctness {fmt(r.correctness_earned)} / {fmt(r.correctness_points)}, "
                f"performance {fmt(r.performance_earned)} / {fmt(r.performance_points)} (the memory counters of "
                "your launches, replayed by the grader"
                + (
                    ", and their time on the GPU, replayed at the op's GPU sizes, against the package's kernel "
                    "timed on the same GPU"
                    if backend == "cuda"
                    else ""
                )
                + "; judged only when the results are right).",
                "",
            ]
        lines += [r.reason, ""] if r.reason else []
        if r.details and r.verdict != "pass" and " ".join(r.details.split()) != r.reason:
            lines += ["~~~text", r.details.rstrip(), "~~~", ""]
        lines += [f"- Note: {note}" for note in r.notes] + ([""] if r.notes else [])
    return "\n".join(lines)


def gradescope(subs, *, backend: str, seed: int) -> str:
    """Gradescope's results.json: a test per exercise (name, score, max_score, output). With several
    submissions, test names start with the submission's label."""
    tests, score, outputs = [], 0.0, []
    prefix = len(subs) > 1
    for sub in subs:
        name = f"{sub.label}: " if prefix else ""
        if sub.chapter is None:
            outputs.append(f"{sub.label} could not be graded: {sub.error}")
            tests.append(
                {
                    "name": f"{name}notebook",
                    "score": 0,
                    "max_score": 0,
                    "status": "failed",
                    "output": f"This file could not be graded: {sub.error}",
                }
            )
            continue
        score += sub.total
        outputs += [f"{sub.label}: {n}" for n in sub.notes]
        for r in sub.results:
            text = r.reason if r.verdict != "pass" else "passed"
            if r.details and r.verdict != "pass" and " ".join(r.details.split()) != r.reason:
                text += "\n\n" + r.details.rstrip()
            if r.notes:
                text += "\n\n" + "\n".join(f"note: {n}" for n in r.notes)
            if r.kind == "performance":  # two tests: correctness, and performance (judged only when right)
                right = r.correctness_earned >= r.correctness_points
                parts = [
                    (":correctness", r.correctness_earned, r.correctness_points, right),
                    (":performance", r.performance_earned, r.performance_points, r.verdict == "pass"),
                ]
            else:
                parts = [("", r.earned, r.points, r.verdict == "pass")]
            for suffix, earned, points, passed in parts:
                tests.append(
                    {
                        "name": f"{name}{r.name}{suffix}",
                        "score": earned,
                        "max_score": points,
                        "status": "passed" if passed else "failed",
                        "output": "passed" if passed and r.verdict != "pass" else text,
                        "visibility": "visible",
                    }
                )
    head = f"graded by llmc grade (llmc_kernels {__version__}) on the {backend} backend, seed {seed}"
    return (
        json.dumps(
            {"score": score, "output": "\n".join([head] + outputs), "visibility": "visible", "tests": tests}, indent=1
        )
        + "\n"
    )
