"""Run one graded notebook under nbval in its own processes, with time limits, for ``llmc grade``.

Each run is ``python -m pytest --nbval-lax`` in a fresh temporary folder: nbval starts a notebook kernel of this
Python, runs every cell (any exception fails its cell; check cells must print exactly the course's saved
``PASS`` line) and :mod:`.grade_plugin` writes one JSON line per cell. Three time limits, from the inside out:

1. the CPU backend's limit per kernel launch (``LLMC_CPU_TIMEOUT``): a kernel that hangs raises
   ``KernelTimeout``, which the check reports like any other kernel error;
2. the exercise's own wall-clock limit (``--timeout``), counted from the moment the learner's first cell
   starts: past it (a launch function stuck in Python, a GPU kernel that never returns), pytest and the
   notebook kernel are killed;
3. nbval's limit per cell, as a backstop only (set above the two others).

Starting the kernel and the course's set-up cells are the grader's time, not the learner's: they have their own
limit (:attr:`Limits.setup`), and running past it is a grading error (an overloaded machine), not a hang.

A notebook kernel that dies (a crash in the learner's code, ``os._exit``) is noticed within seconds; nbval
alone would wait for its cell limit.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RESULTS_ENV = "LLMC_GRADE_RESULTS"       # where grade_plugin writes its JSON lines
CRASH_GRACE = 8.0        # seconds pytest gets to finish on its own after the notebook kernel has died
POLL = 0.2


@dataclass
class Limits:
    """Time limits derived from the per-exercise ``--timeout``."""
    total: float                        # the learner's cells and the checks, from the first learner cell on

    @property
    def setup(self) -> float:           # kernel start-up and the course's set-up cells
        return max(120.0, self.total)

    @property
    def cell(self) -> float:            # nbval's own per-cell limit: only a backstop behind the two above
        return self.setup + self.total

    @property
    def launch(self) -> float:          # the CPU backend's per-launch limit
        return max(0.5, min(60.0, 0.25 * self.total))


@dataclass
class RunResult:
    records: list = field(default_factory=list)     # the plugin's JSON lines
    timed_out: bool = False                         # killed at the exercise's time limit
    setup_timed_out: bool = False                   # killed before the learner's code started
    kernel_died: bool = False                       # the notebook kernel died before pytest finished
    returncode: int | None = None
    log: str = ""                                   # pytest's console output (tail)
    kernel_pid: int | None = None                   # the notebook kernel's process (killed if still alive)
    seconds: float = 0.0


def _package_parent() -> str | None:
    """The folder to put on PYTHONPATH so the notebook kernel imports this same llmc_kernels (a checkout);
    None for an installed package, which the kernel (this Python) finds by itself."""
    parent = Path(__file__).resolve().parent.parent
    if parent.name in ("site-packages", "dist-packages"):
        return None
    return str(parent)


def environment(backend: str, limits: Limits, results: Path, workdir: Path) -> dict:
    """The environment of pytest and of the notebook kernel it starts (nbval passes it on, PYTHONPATH
    included, so the kernel imports what this process imports)."""
    env = dict(os.environ)
    for key in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_CURRENT_TEST", "JPY_PARENT_PID"):
        env.pop(key, None)
    env.update({
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",     # only nbval and ours: no plugin reorders or skips cells
        "LLMC_BACKEND": backend,
        "LLMC_CPU_TIMEOUT": f"{limits.launch:g}",
        RESULTS_ENV: str(results),
        "IPYTHONDIR": str(workdir / "ipython"),    # no profile or start-up scripts of the machine's user
        "JUPYTER_RUNTIME_DIR": str(workdir),       # the kernel's connection file goes away with the run
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    })
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    # the run's working folder is a temporary one: relative paths must not change meaning there
    for key in ("PYTHONPATH", "LLMC_CACHE_DIR", "LLMC_DATA_DIR", "TIKTOKEN_CACHE_DIR"):
        if env.get(key):
            env[key] = os.pathsep.join(os.path.abspath(p) for p in env[key].split(os.pathsep) if p)
    parent = _package_parent()
    if parent:
        env["PYTHONPATH"] = os.pathsep.join([parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:                                             # a zombie child of pytest counts as dead
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _kill(pid: int, wait: float = 5.0) -> None:
    """Kill ``pid`` and its process group (pytest runs in its own session; so does the kernel it starts), and
    wait until it is gone, so that the next exercise finds its memory (and its GPU) free."""
    for kill in ((os.killpg,) if hasattr(os, "killpg") else ()) + (os.kill,):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _kernel_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _armed(results: Path) -> bool:
    """Whether the course's set-up is done: the grader's ``arm`` cell, just before the learner's cells, ran."""
    try:
        text = results.read_text(encoding="utf-8")
    except OSError:
        return False
    return '"kind": "arm"' in text


def run(nb_factory, *, backend: str, timeout: float, keep: Path | None = None) -> RunResult:
    """Run the notebook that ``nb_factory(pid_file)`` returns; see the module docstring."""
    import nbformat             # with nbval (llmc grade checks that it is installed)
    limits = Limits(float(timeout))
    with tempfile.TemporaryDirectory(prefix="llmc-grade-") as tmp:
        work = Path(tmp)
        pid_file = work / "kernel.pid"
        results = work / "results.jsonl"
        nb = nb_factory(str(pid_file))
        nb_path = work / "graded.ipynb"
        nbformat.write(nb, str(nb_path))
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(keep))
        (work / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        cmd = [sys.executable, "-m", "pytest", str(nb_path), "-c", str(work / "pytest.ini"), "--rootdir", str(work),
               "-p", "no:cacheprovider", "-p", "nbval.plugin", "-p", "llmc_kernels.grade_plugin",
               "--nbval-lax", "--nbval-current-env", f"--nbval-cell-timeout={limits.cell:g}",
               f"--nbval-kernel-startup-timeout={limits.setup:g}", "-q", "--color=no", "-W", "ignore",
               "-o", "console_output_style=classic"]
        log_path = work / "pytest.log"
        result = RunResult()
        started = time.monotonic()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=environment(backend, limits, results, work),
                                    start_new_session=hasattr(os, "setsid"))
            kernel, died_at, learner_started = None, None, None
            try:
                while proc.poll() is None:
                    now = time.monotonic()
                    if learner_started is None and _armed(results):
                        learner_started = now
                    if learner_started is None and now - started > limits.setup:
                        result.setup_timed_out = True
                        break
                    if learner_started is not None and now - learner_started > limits.total and died_at is None:
                        result.timed_out = True
                        break
                    if kernel is None:
                        kernel = _kernel_pid(pid_file)
                    elif died_at is None and not _alive(kernel):
                        died_at = now
                    if died_at is not None and now - died_at > CRASH_GRACE:
                        result.kernel_died = True
                        break
                    time.sleep(POLL)
            finally:
                if proc.poll() is None:
                    _kill(proc.pid)
                    proc.wait()
                kernel = kernel or _kernel_pid(pid_file)
                if kernel is not None and _alive(kernel):
                    _kill(kernel)
                result.kernel_pid = kernel
        result.seconds = time.monotonic() - started
        result.returncode = proc.returncode
        result.log = log_path.read_text(encoding="utf-8", errors="replace")[-6000:]
        if results.exists():
            for line in results.read_text(encoding="utf-8").splitlines():
                try:
                    result.records.append(json.loads(line))
                except json.JSONDecodeError:     # the last line of a killed run may be cut short
                    pass
    return result
