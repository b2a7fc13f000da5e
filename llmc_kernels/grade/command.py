"""``llmc grade``: grade learners' chapter notebooks, with verdicts no submission can influence.

    llmc grade submissions/*.ipynb [--csv FILE] [--format csv|gradescope] [--chapter NAME] [--solutions DIR]
               [--backend cpu|cuda] [--timeout S] [--jobs N] [--seed S] [--feedback-dir DIR] [--memory GB]

Every submitted cell is untrusted code. For each submission the grader finds the chapter (``--chapter``, else
the notebook's metadata, else its file name; a notebook that claims another chapter is flagged), takes only the
learner's exercise cells (:mod:`.notebook`) and grades each exercise on its own (:mod:`.exercise`):
a fenced-in learner process (:mod:`.sandbox`, :mod:`.box`) runs the course's set-up cells and the
learner's cells and calls the learner's function on secret cases (:mod:`.secret`); the grader compares
the arrays it returns with its own float64 reference (:mod:`.judge`) and replays its recorded kernel
launches on fresh inputs (:mod:`.trace`), so the outputs must come from the learner's own kernels. An
optimisation exercise's performance points need the memory counters of its replayed launches on the targets,
and on ``--backend cuda`` also their time at the op's GPU sizes, replayed on the GPU against the package's
kernel (:mod:`.gputime`).

The package is verified before and after each submission (:mod:`.package`). Results -- a table on
stdout, a CSV (``submission``, points per exercise, ``total``, ``max``, ``note``) or Gradescope's
``results.json``, and a Markdown feedback file per submission -- are written once, after every learner process
is gone. Exit status: 0 when every submission could be graded (whatever its score); 1 when grading itself failed
for some (a canonical notebook missing, a course cell failing, an overloaded machine) or a submission changed
the package; 2 when grading could not start.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import report
from .judge import ExerciseResult
from .notebook import (
    Chapter,
    Exercise,
    GradingSetupError,
    NotCourseNotebook,
    chapter_claims,
    identify,
    load_canonical,
    mismatch,
    read_notebook,
    review_flags,
    student_sources,
)

DEFAULT_TIMEOUT = 300.0
DEFAULT_MEMORY_GB = 8.0


@dataclass
class Submission:
    path: Path
    label: str  # the file name (with parent folders where names repeat)
    chapter: Chapter | None = None
    error: str | None = None  # not graded: why
    setup_error: bool = False  # ... because of the grading set-up (exit status 1)
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # flags for the CSV's note column (a notebook of another chapter)
    picked: dict = field(default_factory=dict)  # exercise -> grade_notebook.Picked
    results: list = field(default_factory=list)  # list[ExerciseResult], chapter order

    @property
    def total(self) -> float:
        return sum(r.earned for r in self.results)

    @property
    def max(self) -> float:
        return self.chapter.points if self.chapter else 0.0


class PackageChanged(Exception):
    """A submission wrote into the package the grader runs from."""


# ------------------------------------------------------------------------------------------- set-up
def find_solutions(given: str | None) -> Path:
    """The folder of canonical notebooks: --solutions, else the checkout's solutions/ beside this package,
    else ./solutions."""
    if given:
        path = Path(given).expanduser()
        if not path.is_dir():
            raise GradingSetupError(f"--solutions {given}: no such folder")
        return path
    checkout = Path(__file__).resolve().parents[2] / "solutions"
    for candidate in (checkout, Path.cwd() / "solutions"):
        if candidate.is_dir() and any(candidate.glob("*.ipynb")):
            return candidate
    raise GradingSetupError(
        "no canonical notebooks: pass --solutions DIR, the folder of the course's executed solution notebooks "
        "(solutions/ in the course repository, or your private copy of it). An installed llmc_kernels does not "
        "ship them, so that learners never get the answers with the package."
    )


def resolve_backend(name: str | None) -> str:
    from .. import runtime

    name = name or os.environ.get("LLMC_BACKEND", "").strip().lower() or None
    if name is None:
        return "cuda" if runtime.gpu_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise GradingSetupError(f"backend must be cpu or cuda, got {name!r}")
    if name == "cuda" and not runtime.gpu_available():
        raise GradingSetupError(
            f"--backend cuda: no usable GPU here ({runtime.gpu_status()[1]}); "
            "grade with --backend cpu, or run `llmc doctor`"
        )
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


def prepare(
    sub: Submission, chapters: dict[str, Chapter], broken: dict[str, str] | None = None, pinned: str | None = None
) -> None:
    """Read and identify one submission, flag a notebook of another chapter, and pick its exercise cells."""
    try:
        nb = read_notebook(sub.path)
        if pinned is not None:
            chapter, how = chapters[pinned], "--chapter"
            version = (
                nb.get("metadata", {}).get("llmc", {}).get("version")
                if isinstance(nb.get("metadata", {}).get("llmc"), dict)
                else None
            )
        else:
            found = identify(nb, sub.path.name, chapters, broken)
            chapter, how, version = found.chapter, found.how, found.version
    except FileNotFoundError:
        sub.error = "no such file"
        return
    except (OSError, NotCourseNotebook) as err:
        sub.error = str(err)
        return
    except GradingSetupError as err:
        sub.error, sub.setup_error = str(err), True
        return
    sub.chapter = chapter
    sub.notes += mismatch(chapter_claims(nb, sub.path.name, chapters), chapter.name, pinned is not None)
    if how == "file name":
        sub.warnings.append(f"chapter {chapter.name} found by its file name (no notebook metadata llmc)")
    if version is not None and str(version) != chapter.version:
        sub.warnings.append(
            f"version mismatch: the submission is version {version} of {chapter.name}, the "
            f"canonical notebook version {chapter.version}; graded with the canonical checks"
        )
    if not chapter.exercises:
        sub.warnings.append(f"chapter {chapter.name} has no exercise cells (a guided run): nothing to grade")
    for ex in chapter.exercises:
        sub.picked[ex.name] = student_sources(nb, ex)


# ------------------------------------------------------------------------------------------- running
@dataclass
class Task:
    chapter: Chapter
    exercise: Exercise
    sources: tuple
    subs: list = field(default_factory=list)  # labels sharing this exact code (graded once)


def _missing(ex) -> ExerciseResult:
    return ExerciseResult(
        ex.name,
        ex.points,
        0.0,
        "missing",
        f"no cell for {ex.name} in the submission (its exercise cell was deleted or renamed)",
        kind=ex.kind,
        performance_points=ex.performance_points,
    )


class PackageGuard:
    """The package's digest before grading, checked after each task; remembers which tasks ran meanwhile."""

    def __init__(self):
        from .package import digest

        self.digest = digest
        self.before = digest()
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.since: set[str] = set()  # tasks that ran since the last clean digest
        self.changed: tuple[list, list] | None = None

    def started(self, who: str) -> None:
        with self.lock:
            self.running.add(who)
            self.since.add(who)

    def finished(self, who: str) -> None:
        from .package import changes

        with self.lock:
            self.running.discard(who)
            if self.changed is None:
                diff = changes(self.before, self.digest())
                if diff:
                    self.changed = (sorted(self.since), diff)
                else:
                    self.since = set(self.running)


def grade(
    subs: list[Submission], *, sandbox, seed: int, jobs: int, limits, progress=None, guard: PackageGuard | None = None
) -> None:
    """Grade every prepared submission in place (PackageChanged if one of them wrote into the package)."""
    from .exercise import grade_exercise

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
        if guard is not None and guard.changed is not None:
            return None  # grading has stopped
        task = tasks[key]
        who = ", ".join(task.subs)
        if guard is not None:
            guard.started(who)
        try:
            result = grade_exercise(
                task.chapter,
                task.exercise,
                list(task.sources),
                sandbox=sandbox,
                seed=seed,
                limits=limits,
                name=f"{number:03d}-{task.exercise.name}",
            )
        finally:
            if guard is not None:
                guard.finished(who)
        with lock:
            done[key] = result
            if progress:
                more = f" and {len(task.subs) - 1} more" if len(task.subs) > 1 else ""
                progress(
                    f"[{len(done)}/{len(tasks)}] {task.chapter.name} {task.exercise.name} "
                    f"({task.subs[0]}{more}): {result.verdict} in {result.seconds:.1f} s"
                )
        return result

    if tasks:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(one, enumerate(tasks)))
    if guard is not None and guard.changed is not None:
        raise PackageChanged(*guard.changed)
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
            result.notes += [
                f"review: the exercise cell {flag}" for src in picked.sources for flag in review_flags(src)
            ]
            sub.results.append(result)


# ------------------------------------------------------------------------------------------- command line
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llmc grade",
        description="Grade learners' chapter notebooks, one exercise at a time in fenced-in processes on secret "
        "inputs, into a table, a CSV of points (or Gradescope's results.json) and a feedback file per "
        "submission.",
    )
    p.add_argument("submissions", nargs="+", metavar="SUBMISSION.ipynb", help="learners' notebooks")
    p.add_argument(
        "--csv", metavar="FILE", help="write one row per submission: submission, points per exercise, total, max, note"
    )
    p.add_argument(
        "--format",
        choices=("csv", "gradescope"),
        default="csv",
        help="csv (default), or gradescope: also write Gradescope's results.json (see --results)",
    )
    p.add_argument(
        "--results",
        metavar="FILE",
        help="where --format gradescope writes results.json (default: "
        "results.json in the CSV's folder, else in --feedback-dir, else in the current folder)",
    )
    p.add_argument(
        "--chapter",
        metavar="NAME",
        help="the chapter every submission must be (e.g. 05_gelu): each "
        "is graded as that chapter, and one that claims another is flagged in the note column",
    )
    p.add_argument(
        "--solutions",
        metavar="DIR",
        help="the canonical (executed) solution notebooks; default: "
        "solutions/ of the checkout this package runs from, else ./solutions",
    )
    p.add_argument(
        "--backend",
        choices=("cpu", "cuda"),
        help="where the kernels run (default: LLMC_BACKEND, else cuda when a GPU is usable, else cpu); an "
        "optimisation exercise's performance points need its memory counters on the targets, and on cuda also "
        "its time, replayed on the GPU, within the op's ratio to the package's kernel on that GPU",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"time limit per exercise, in seconds (default {DEFAULT_TIMEOUT:g}); a kernel launch on "
        "the cpu backend may take a quarter of it (at most 60 s)",
    )
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="grade N exercises at once (default 1)")
    p.add_argument(
        "--seed",
        type=int,
        metavar="S",
        help="reproduce a grading run: the seed of its secret cases, "
        "printed in its report and feedback (default: a fresh secret seed per run)",
    )
    p.add_argument(
        "--memory",
        type=float,
        default=DEFAULT_MEMORY_GB,
        metavar="GB",
        help=f"address space per learner process on the cpu backend (default {DEFAULT_MEMORY_GB:g})",
    )
    p.add_argument(
        "--feedback-dir",
        metavar="DIR",
        help="where SUBMISSION.feedback.md files go (default: the CSV's folder, else the current folder)",
    )
    return p


def _harden_grader() -> None:
    """Before any learner code runs: this process's memory closed to other processes of the user, orphans of
    learner processes re-parented here (to be killed), and no bytecode read from or written to the package
    while it is being verified."""
    from .sandbox import become_subreaper, make_nondumpable

    make_nondumpable()
    become_subreaper()
    sys.dont_write_bytecode = True
    sys.pycache_prefix = tempfile.mkdtemp(prefix="llmc-grade-pycache-")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    err = sys.stderr
    if args.timeout <= 0 or args.jobs < 1 or args.memory <= 0:
        print("llmc grade: --timeout and --memory must be positive and --jobs at least 1", file=err)
        return 2
    _harden_grader()
    from . import secret as grade_secret
    from .sandbox import Limits, Sandbox

    try:
        solutions = find_solutions(args.solutions)
        chapters, broken = load_canonical(solutions)
        backend = resolve_backend(args.backend)
        if args.chapter is not None and args.chapter not in chapters:
            why = broken.get(args.chapter, f"not among the canonical notebooks ({', '.join(chapters)})")
            raise GradingSetupError(f"--chapter {args.chapter}: {why}")
    except GradingSetupError as e:
        print(f"llmc grade: {e}", file=err)
        return 2
    seed = args.seed if args.seed is not None else grade_secret.new_seed()
    paths = [Path(p) for p in args.submissions]
    subs = [Submission(path, label) for path, label in zip(paths, labels(paths))]
    for sub in subs:
        prepare(sub, chapters, broken, args.chapter)
    for name, reason in broken.items():
        print(f"llmc grade: warning: chapter {name} cannot be graded: {reason}", file=err)
    limits = Limits(args.timeout, int(args.memory * (1 << 30)))
    sandbox = Sandbox(backend=backend, limits=limits, hide=[solutions], reap_orphans=True)
    guard = PackageGuard()
    print(
        f"llmc grade: {len(subs)} submission(s), canonical notebooks from {solutions}, {backend} backend, "
        f"{report.fmt(args.timeout)} s per exercise (kernel launches {report.fmt(limits.launch)} s), seed {seed}, "
        f"{args.jobs} job(s); sandbox: {sandbox.isolation.describe()}",
        file=err,
    )
    try:
        grade(
            subs,
            sandbox=sandbox,
            seed=seed,
            jobs=args.jobs,
            limits=limits,
            guard=guard,
            progress=lambda line: print(line, file=err, flush=True),
        )
    except PackageChanged as e:
        culprits, diff = e.args
        sandbox.close()
        print(
            f"llmc grade: STOPPED: the package llmc_kernels ({_package_dir()}) "
            f"changed while grading {', '.join(culprits)}: {'; '.join(diff[:10])}. That submission wrote into "
            "the package the grader runs from: reinstall it (or `git checkout` the checkout) before grading "
            "again, and read that submission by hand. Nothing was written.",
            file=err,
        )
        return 1
    sandbox.close()  # every learner process is gone before anything is written
    for sub in subs:
        print(report.table(sub))
    if args.csv:
        report.write_atomic(Path(args.csv), report.csv_text(subs))
        print(f"wrote {args.csv}", file=err)
    folder = Path(args.feedback_dir) if args.feedback_dir else (Path(args.csv).parent if args.csv else Path.cwd())
    if args.format == "gradescope":
        results = Path(args.results) if args.results else folder / "results.json"
        report.write_atomic(results, report.gradescope(subs, backend=backend, seed=seed))
        print(f"wrote {results}", file=err)
    for sub in subs:
        report.write_atomic(
            folder / report.feedback_name(sub.label),
            report.feedback(sub, backend=backend, timeout=args.timeout, seed=seed),
        )
    print(f"wrote {len(subs)} feedback file(s) to {folder}", file=err)
    failed = [s.label for s in subs if s.setup_error or any(r.grader_error for r in s.results)]
    if failed:
        print(
            f"llmc grade: grading itself failed for {', '.join(failed)} (see above); fix the set-up and "
            "grade them again",
            file=err,
        )
        return 1
    return 0


def _package_dir() -> str:
    return str(Path(__file__).resolve().parents[1])
