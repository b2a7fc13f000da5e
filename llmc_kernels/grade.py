"""``llmc grade``: grade learners' chapter notebooks against the course's own checks, one exercise at a time.

    llmc grade submissions/*.ipynb --csv grades.csv [--solutions DIR] [--backend cpu|cuda] [--timeout S]
               [--jobs N] [--seed S] [--feedback-dir DIR] [--keep-notebooks DIR]

A learner's notebook is never trusted: its saved outputs and its check cells are ignored. For each submission
the grader finds the chapter (notebook metadata ``llmc.chapter``, else the file name), takes only the learner's
exercise cells (:mod:`.grade_notebook`) and, for each exercise separately, runs the canonical notebook cut down
to that exercise: its set-up cells, the learner's cells in place of the solution cells, and the canonical check
cells with their saved ``PASS`` lines, under ``pytest --nbval-lax`` in fresh processes (:mod:`.grade_run`), one
notebook kernel per exercise. A check cell earns its points when it runs without an exception and prints exactly the
course's ``PASS`` line. A crash, deadlock, out-of-bounds access or hang costs that exercise only.

Output: a table per submission on stdout, a CSV (``submission``, one column per exercise with the points
earned, ``total``, ``max``) and a Markdown feedback file per submission. A notebook that is not from this
course gets an error row (empty points). Exit status: 0 when every submission could be graded (whatever its
score), 1 when some could not because of the grading set-up (a canonical notebook missing, a course cell
failing, nbval failing), 2 when grading could not start (bad arguments, no canonical notebooks, no nbval).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import importlib.util
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .grade_judge import ExerciseResult, judge
from .grade_notebook import (Chapter, Exercise, GradingSetupError, NotCourseNotebook, graded_notebook, identify,
                             load_canonical, read_notebook, review_flags, student_sources)
from .grade_run import Limits, run

DEFAULT_TIMEOUT = 300.0


@dataclass
class Submission:
    path: Path
    label: str                                   # the file name (with parent folders where names repeat)
    chapter: Chapter | None = None
    error: str | None = None                     # not graded: why
    setup_error: bool = False                    # ... because of the grading set-up (exit status 1)
    warnings: list = field(default_factory=list)
    picked: dict = field(default_factory=dict)   # exercise -> grade_notebook.Picked
    results: list = field(default_factory=list)  # list[ExerciseResult], chapter order

    @property
    def total(self) -> float:
        return sum(r.earned for r in self.results)

    @property
    def max(self) -> float:
        return self.chapter.points if self.chapter else 0.0


# ------------------------------------------------------------------------------------------- set-up
def find_solutions(given: str | None) -> Path:
    """The folder of canonical notebooks: --solutions, else the checkout's solutions/ beside this package,
    else ./solutions."""
    if given:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise GradingSetupError(f"--solutions {given}: no such folder")
        return path
    checkout = Path(__file__).resolve().parent.parent / "solutions"
    for candidate in (checkout, Path.cwd() / "solutions"):
        if candidate.is_dir() and any(candidate.glob("*.ipynb")):
            return candidate
    raise GradingSetupError(
        "no canonical notebooks: pass --solutions DIR, the folder of the course's executed solution notebooks "
        "(solutions/ in the course repository, or your private copy of it). An installed llmc_kernels does not "
        "ship them, so that learners never get the answers with the package.")


def check_tools() -> None:
    missing = [name for name in ("pytest", "nbval", "nbformat", "ipykernel", "jupyter_client")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise GradingSetupError(f"grading runs notebooks with nbval; missing here: {', '.join(missing)}. "
                                "Install them with: pip install 'llmc-kernels[test]'")


def resolve_backend(name: str | None) -> str:
    from . import runtime
    name = name or os.environ.get("LLMC_BACKEND", "").strip().lower() or None
    if name is None:
        return "cuda" if runtime.gpu_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise GradingSetupError(f"backend must be cpu or cuda, got {name!r}")
    if name == "cuda" and not runtime.gpu_available():
        raise GradingSetupError(f"--backend cuda: no usable GPU here ({runtime.gpu_status()[1]}); "
                                "grade with --backend cpu, or run `llmc doctor`")
    return name


def labels(paths: list[Path]) -> list[str]:
    """File names, made unique with as many parent folders as it takes (alice/05_gelu.ipynb)."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    depth = [1] * len(paths)
    while True:
        names = ["/".join(pp[-d:]) for pp, d in zip(parts, depth)]
        clashes = {n for n in names if names.count(n) > 1}
        grow = [i for i, n in enumerate(names) if n in clashes and depth[i] < len(parts[i])]
        if not grow:
            return names
        for i in grow:
            depth[i] += 1


def prepare(sub: Submission, chapters: dict[str, Chapter], broken: dict[str, str] | None = None) -> None:
    """Read and identify one submission, and pick its exercise cells (errors go into ``sub``)."""
    try:
        nb = read_notebook(sub.path)
        found = identify(nb, sub.path.name, chapters, broken)
    except FileNotFoundError:
        sub.error = "no such file"
        return
    except (OSError, NotCourseNotebook) as err:
        sub.error = str(err)
        return
    except GradingSetupError as err:
        sub.error, sub.setup_error = str(err), True
        return
    sub.chapter = found.chapter
    if found.how != "metadata":
        sub.warnings.append(f"chapter {found.chapter.name} found by its {found.how} (no notebook metadata llmc)")
    if found.version is not None and found.version != found.chapter.version:
        sub.warnings.append(f"version mismatch: the submission is version {found.version} of {found.chapter.name}, "
                            f"the canonical notebook version {found.chapter.version}; graded with the canonical "
                            "checks")
    if not found.chapter.exercises:
        sub.warnings.append(f"chapter {found.chapter.name} has no exercise cells (a guided run): nothing to grade")
    for ex in found.chapter.exercises:
        sub.picked[ex.name] = student_sources(nb, ex)


# ------------------------------------------------------------------------------------------- running
@dataclass
class Task:
    chapter: Chapter
    exercise: Exercise
    sources: tuple
    subs: list = field(default_factory=list)    # labels sharing this exact code (graded once)


def _missing(ex) -> ExerciseResult:
    return ExerciseResult(ex.name, ex.points, 0.0, "missing",
                          f"no cell for {ex.name} in the submission (its exercise cell was deleted or renamed)")


def grade(subs: list[Submission], *, backend: str, timeout: float, seed: int | None, jobs: int,
          keep: Path | None = None, progress=None) -> None:
    """Grade every prepared submission in place."""
    tasks: dict[tuple, Task] = {}
    for sub in subs:
        if sub.chapter is None:
            continue
        for ex in sub.chapter.exercises:
            picked = sub.picked[ex.name]
            if not picked.sources:
                continue
            key = (sub.chapter.name, ex.name, tuple(picked.sources))
            tasks.setdefault(key, Task(sub.chapter, ex, key[2])).subs.append(sub.label)
    done: dict[tuple, ExerciseResult] = {}
    lock = threading.Lock()

    def one(number_key):
        number, key = number_key
        task = tasks[key]
        chapter, ex = task.chapter, task.exercise
        kept = keep / f"{chapter.name}.{ex.name}.{number}.ipynb" if keep is not None else None
        outcome = run(lambda pid: graded_notebook(chapter, ex, list(task.sources), pid_file=pid, seed=seed),
                      backend=backend, timeout=timeout, keep=kept)
        result = judge(ex, outcome, timeout)
        with lock:
            done[key] = result
            if progress:
                who = task.subs[0] + (f" and {len(task.subs) - 1} more" if len(task.subs) > 1 else "")
                progress(f"[{len(done)}/{len(tasks)}] {chapter.name} {ex.name} ({who}): "
                         f"{result.verdict} in {result.seconds:.1f} s")
        return result

    if tasks:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(one, enumerate(tasks)))
    for sub in subs:
        if sub.chapter is None:
            continue
        for ex in sub.chapter.exercises:
            picked = sub.picked[ex.name]
            if not picked.sources:
                sub.results.append(_missing(ex))
                continue
            shared = done[(sub.chapter.name, ex.name, tuple(picked.sources))]
            result = dataclasses.replace(shared, notes=list(shared.notes))
            if picked.note:
                result.notes.append(picked.note)
            result.notes += [f"review: the exercise cell {flag}" for src in picked.sources for flag in review_flags(src)]
            sub.results.append(result)


# ------------------------------------------------------------------------------------------- reports
def fmt(points: float) -> str:
    return str(int(points)) if float(points).is_integer() else f"{points:.3g}"


def table(sub: Submission) -> str:
    if sub.chapter is None:
        return f"== {sub.label}: ERROR: {sub.error}\n"
    head = (f"== {sub.label}: chapter {sub.chapter.name}, {fmt(sub.total)}/{fmt(sub.max)} points")
    rows = [("exercise", "points", "verdict", "reason")]
    rows += [(r.name, f"{fmt(r.earned)}/{fmt(r.points)}", r.verdict, r.reason) for r in sub.results]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [head]
    if sub.results:
        lines += ["   " + "  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3] for row in rows]
    lines += [f"   warning: {w}" for w in sub.warnings]
    lines += [f"   {r.name}: {note}" for r in sub.results for note in r.notes]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def write_csv(path: Path, subs: list[Submission]) -> None:
    """One row per submission: its label, the points of each exercise (columns in chapter order, empty where the
    submission's chapter has no such exercise), total and max; an ungraded submission's row is empty."""
    chapters = dict(sorted((s.chapter.name, s.chapter) for s in subs if s.chapter))
    columns = list(dict.fromkeys(ex.name for chapter in chapters.values() for ex in chapter.exercises))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", *columns, "total", "max"])
        for sub in subs:
            earned = {r.name: fmt(r.earned) for r in sub.results}
            totals = [fmt(sub.total), fmt(sub.max)] if sub.chapter else ["", ""]
            writer.writerow([sub.label, *[earned.get(c, "") for c in columns], *totals])


def feedback_name(label: str) -> str:
    stem = label[:-len(".ipynb")] if label.endswith(".ipynb") else label
    return stem.replace("/", "__").replace("\\", "__") + ".feedback.md"


def feedback(sub: Submission, *, backend: str, timeout: float, seed: int | None) -> str:
    """The Markdown feedback file for one submission: score, warnings, and each exercise's verdict with the
    check's own explanation."""
    lines = [f"# Feedback on {sub.label}", ""]
    if sub.chapter is None:
        lines += ["This file could not be graded:", "", f"> {sub.error}", ""]
        if not sub.setup_error:
            lines += ["Submit the chapter notebook of the course (the `.ipynb` file from `chapters/`, with your "
                      "code in its exercise cells).", ""]
        return "\n".join(lines)
    seed_text = f"check seed {seed}" if seed is not None else "the checks' default seed"
    lines += [f"Chapter **{sub.chapter.name}** (version {sub.chapter.version}), graded by `llmc grade` "
              f"(llmc_kernels {__version__}) on the {backend} backend, {seed_text}, time limit {fmt(timeout)} s "
              "per exercise.", "", f"**Score: {fmt(sub.total)} / {fmt(sub.max)}**", ""]
    lines += [f"- Warning: {w}" for w in sub.warnings] + ([""] if sub.warnings else [])
    if not sub.results:
        return "\n".join(lines)
    lines += ["| exercise | points | verdict |", "|---|---|---|"]
    lines += [f"| `{r.name}` | {fmt(r.earned)} / {fmt(r.points)} | {r.verdict} |" for r in sub.results]
    lines += ["", "Each exercise was run on its own: your cells for that exercise, then the course's check cells "
              "(your notebook's saved outputs and check cells are not used).", ""]
    for r in sub.results:
        lines += [f"## {r.name}: {r.verdict} ({fmt(r.earned)} / {fmt(r.points)})", ""]
        lines += [r.reason, ""] if r.reason else []
        if r.details and r.verdict != "pass" and " ".join(r.details.split()) not in r.reason:
            lines += ["~~~text", r.details.rstrip(), "~~~", ""]
        lines += [f"- Note: {note}" for note in r.notes] + ([""] if r.notes else [])
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmc grade",
        description="Grade learners' chapter notebooks with the course's own check cells (nbval), one exercise "
                    "at a time, into a table, a CSV of points and a feedback file per submission.")
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION.ipynb", help="learners' notebooks")
    p.add_argument("--csv", metavar="FILE", help="write one row per submission: submission, points per "
                   "exercise, total, max")
    p.add_argument("--solutions", metavar="DIR", help="the canonical (executed) solution notebooks; default: "
                   "solutions/ of the checkout this package runs from, else ./solutions")
    p.add_argument("--backend", choices=("cpu", "cuda"), help="where the kernels run (default: LLMC_BACKEND, "
                   "else cuda when a GPU is usable, else cpu)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"time limit per exercise, in seconds (default {DEFAULT_TIMEOUT:g}); a kernel launch on "
                        "the cpu backend may take a quarter of it (at most 60 s)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="grade N exercise runs at once (default 1)")
    p.add_argument("--seed", type=int, metavar="S", help="seed of the checks' random cases (without it: their "
                   "fixed default seed, so grades are reproducible either way)")
    p.add_argument("--feedback-dir", metavar="DIR", help="where SUBMISSION.feedback.md files go (default: the "
                   "CSV's folder, else the current folder)")
    p.add_argument("--keep-notebooks", metavar="DIR", help="also save the notebooks that were run (debugging)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    err = sys.stderr
    if args.timeout <= 0 or args.jobs < 1:
        print("llmc grade: --timeout must be positive and --jobs at least 1", file=err)
        return 2
    try:
        check_tools()
        solutions = find_solutions(args.solutions)
        chapters, broken = load_canonical(solutions)
        backend = resolve_backend(args.backend)
    except GradingSetupError as e:
        print(f"llmc grade: {e}", file=err)
        return 2
    paths = [Path(p) for p in args.submissions]
    subs = [Submission(path, label) for path, label in zip(paths, labels(paths))]
    for sub in subs:
        prepare(sub, chapters, broken)
    for name, reason in broken.items():
        print(f"llmc grade: warning: chapter {name} cannot be graded: {reason}", file=err)
    limits = Limits(args.timeout)
    print(f"llmc grade: {len(subs)} submission(s), canonical notebooks from {solutions}, {backend} backend, "
          f"{fmt(args.timeout)} s per exercise (kernel launches {fmt(limits.launch)} s), "
          f"seed {args.seed if args.seed is not None else 'default'}, {args.jobs} job(s)", file=err)
    keep = Path(args.keep_notebooks) if args.keep_notebooks else None
    grade(subs, backend=backend, timeout=args.timeout, seed=args.seed, jobs=args.jobs, keep=keep,
          progress=lambda line: print(line, file=err, flush=True))
    for sub in subs:
        print(table(sub))
    if args.csv:
        write_csv(Path(args.csv), subs)
        print(f"wrote {args.csv}", file=err)
    folder = Path(args.feedback_dir) if args.feedback_dir else (Path(args.csv).parent if args.csv else Path.cwd())
    folder.mkdir(parents=True, exist_ok=True)
    for sub in subs:
        (folder / feedback_name(sub.label)).write_text(
            feedback(sub, backend=backend, timeout=args.timeout, seed=args.seed), encoding="utf-8")
    print(f"wrote {len(subs)} feedback file(s) to {folder}", file=err)
    failed = [s.label for s in subs if s.setup_error or any(r.grader_error for r in s.results)]
    if failed:
        print(f"llmc grade: grading itself failed for {', '.join(failed)} (see above); fix the set-up and "
              "grade them again", file=err)
        return 1
    return 0
