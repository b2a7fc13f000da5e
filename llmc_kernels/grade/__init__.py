"""``llmc grade``: the grader (:mod:`.command`) and the processes it fences learner code into.

    llmc grade submissions/*.ipynb --csv grades.csv       # see command.py and book/instructors.md

- command: the command line, submissions, the run over exercises, reports (CSV, Gradescope, feedback);
- notebook: canonical notebooks, submissions and their cells; cases, secret: the secret cases of a run;
- exercise: one exercise, end to end; judge: the verdict from the arrays; blocks: chapter 09's block checks;
- sandbox, box: the fenced learner processes (namespaces, limits, subreaper); worker: the learner's process;
- trace, replay: launch traces and their replay on fresh inputs; fingerprint: the package's own kernels;
- gputime: an optimisation exercise's GPU time target (recorded at the GPU sizes, replayed and timed on the GPU);
- package: the package's digest; wire: the arrays between processes; report: tables, CSV, feedback.

Light on purpose: every learner process starts as ``python -m llmc_kernels.grade.box``, which imports this
package before anything fences it in, so nothing is imported here; ``llmc_kernels.grade.X`` for the grader's
own names reaches into :mod:`.command` on first use.
"""


def main(argv=None) -> int:
    from .command import main as run

    return run(argv)


def __getattr__(name):
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a module of this package
        return importlib.import_module(f"{__name__}.{name}")
    command = importlib.import_module(f"{__name__}.command")
    try:
        return getattr(command, name)
    except AttributeError:
        raise AttributeError(f"module 'llmc_kernels.grade' has no attribute {name!r}") from None
