"""The grader's side of its learner processes: start them fenced in, and make sure every one of them is gone.

:class:`Sandbox` owns a private working folder (mode 0700) with one folder per learner process (its HOME,
working folder, temporary folder and a private compile cache seeded with the CPU backend's runtime library and
precompiled header, so that no submission can plant a compiled kernel another one loads). It starts
``python -m llmc_kernels.grade.box`` (:mod:`.box`) with a scrubbed environment -- no ``--solutions`` path,
no variables of the grader's user but the few that locate Python, the compiler and the course's data -- and
hands it its configuration and the request on stdin.

Killing: :func:`kill_tree` kills a process and every descendant found by walking ``/proc`` (not only a
process group: a daemon that forked twice and called ``setsid`` is still a descendant until its parent dies).
A daemon whose parent died first is re-parented to the grader, which is a child subreaper
(``PR_SET_CHILD_SUBREAPER``) in ``llmc grade``: :meth:`Sandbox.sweep` kills any child of the grader that the
grader did not start itself. Before the grader writes results, :meth:`Sandbox.close` kills them all.

:func:`probe` starts one box to find out what this machine allows (namespaces, a fresh ``/proc``), once per run.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import wire

PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE = 36, 4
KEEP_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "LD_LIBRARY_PATH",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_PATH",
    "CUDA_HOME",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "LLMC_CXX",
    "CXX",
    "LLMC_DATA_DIR",
    "TIKTOKEN_CACHE_DIR",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "SYSTEMROOT",
)
FILE_LIMIT = 512 << 20  # bytes a learner process may write into one file
PROC_MARGIN = 256  # processes a learner process may add to this user's count


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None).prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphans of learner processes become the grader's children (so it can find and kill them)."""
    return sys.platform.startswith("linux") and _prctl(PR_SET_CHILD_SUBREAPER, 1)


def make_nondumpable() -> None:
    """Processes of the same user can no longer read or write the grader's memory (ptrace, /proc/PID/mem)."""
    if sys.platform.startswith("linux"):
        _prctl(PR_SET_DUMPABLE, 0)


# ------------------------------------------------------------------------------------------ processes
def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            found[int(entry)] = int(stat.rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return found


def descendants(root: int) -> list[int]:
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(root: int, *, include_root: bool = True, rounds: int = 50) -> None:
    """SIGKILL ``root`` and every descendant, again until none is left (a fork racing the first pass is caught
    by the next)."""
    if not os.path.isdir("/proc"):
        if include_root:
            _kill(root)
        return
    for _ in range(rounds):
        victims = descendants(root) + ([root] if include_root and _alive(root) else [])
        victims = [p for p in victims if _alive(p)]
        if not victims:
            return
        for pid in victims:
            _kill(pid)
        time.sleep(0.01)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# ------------------------------------------------------------------------------------------ the sandbox
@dataclass
class Isolation:
    """What the probe found the machine allows."""

    namespaces: bool = False
    proc: bool = False
    network: str = ""
    error: str = ""

    def describe(self) -> str:
        if self.namespaces:
            return (
                "user, mount, network and PID namespaces"
                + ("" if self.proc else " (without a private /proc: other processes stay visible)")
                + "; no network"
            )
        return (
            f"no namespaces ({self.error or 'not available on this system'}): learner processes can open "
            "network connections and see other processes; grade in a container for that"
        )


@dataclass
class Limits:
    """Time and resource limits derived from ``--timeout`` (per exercise)."""

    total: float  # the learner's cells and calls, from the end of the course's set-up on
    memory: int | None = None  # bytes of address space per learner process (None: no limit)

    @property
    def setup(self) -> float:  # starting Python and the course's set-up cells
        return max(120.0, self.total)

    @property
    def launch(self) -> float:  # the CPU backend's limit per kernel launch
        return max(0.5, min(60.0, 0.25 * self.total))

    @property
    def cpu(self) -> int:  # CPU seconds of a learner process: a backstop behind the wall clock
        return int(2 * (self.setup + self.total)) + 30


@dataclass
class Box:
    """One running learner process."""

    proc: subprocess.Popen
    folder: Path
    frames: list = field(default_factory=list)  # (seconds since start, meta, arrays)
    log: bytearray = field(default_factory=bytearray)
    bad_frame: str = ""
    started: float = 0.0
    readers: list = field(default_factory=list)

    LOG_LIMIT = 200_000
    FRAMES_LIMIT = 1000  # frames, and bytes of arrays, a learner process may send in all
    BYTES_LIMIT = 1 << 30

    def read(self) -> None:
        def frames():
            total = 0
            try:
                for meta, arrays in wire.read(self.proc.stdout):
                    total += sum(a.nbytes for a in arrays.values())
                    if len(self.frames) >= self.FRAMES_LIMIT or total > self.BYTES_LIMIT:
                        self.bad_frame = "more frames or data than any exercise needs"
                        return
                    self.frames.append((time.monotonic() - self.started, meta, arrays))
            except wire.BadFrame as e:
                self.bad_frame = str(e)
            except (OSError, ValueError):
                pass

        def log():
            try:
                while True:
                    chunk = (
                        self.proc.stderr.read1(65536)
                        if hasattr(self.proc.stderr, "read1")
                        else self.proc.stderr.read(65536)
                    )
                    if not chunk:
                        return
                    self.log += chunk
                    if len(self.log) > 2 * self.LOG_LIMIT:
                        del self.log[: len(self.log) - self.LOG_LIMIT]
            except (OSError, ValueError):
                pass

        self.readers = [threading.Thread(target=frames, daemon=True), threading.Thread(target=log, daemon=True)]
        for t in self.readers:
            t.start()

    def text(self) -> str:
        return bytes(self.log[-self.LOG_LIMIT :]).decode("utf-8", errors="replace")


class Sandbox:
    def __init__(
        self, *, backend: str, limits: Limits, hide=(), namespaces: bool | None = None, reap_orphans: bool = False
    ):
        self.backend, self.limits = backend, limits
        self.root = Path(tempfile.mkdtemp(prefix="llmc-grade-"))
        os.chmod(self.root, 0o700)
        self.grader = os.getpid()
        self.reap_orphans = reap_orphans
        self.lock = threading.Lock()  # held while starting a process and while sweeping
        self.started: set[int] = set()
        self.count = 0
        self.hide = [str(Path(p).resolve()) for p in hide if p] + [str(self.root)]
        self._seed_cache()
        if namespaces is None and os.environ.get("LLMC_GRADE_NAMESPACES", "").strip() == "0":
            namespaces = False  # the instructor's choice (a set-up they break, e.g. a GPU driver)
        self.isolation = probe(self) if namespaces is not False else Isolation(error="turned off")

    # -- folders and environment
    def _seed_cache(self) -> None:
        """Build the CPU backend's runtime library and precompiled header once, in the grader's own folder; each
        learner process gets a copy (never a shared file it could change for the others)."""
        self.seed = self.root / "seed-cache"
        env = dict(
            os.environ,
            LLMC_CACHE_DIR=str(self.seed),
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONPYCACHEPREFIX=str(self.root / "pycache"),
        )
        code = "from llmc_kernels.runtime.cpu import build\nbuild.runtime_library(); build.precompiled_header()\n"
        subprocess.run([sys.executable, "-c", code], env=self._python_path(env), capture_output=True, timeout=600)

    def folder(self, name: str) -> Path:
        with self.lock:
            self.count += 1
            folder = self.root / f"{self.count:04d}-{name}"
        for sub in ("home", "work", "tmp"):
            (folder / sub).mkdir(parents=True)
        if (self.seed / "cpu").is_dir():
            shutil.copytree(self.seed / "cpu", folder / "cache" / "cpu")
        return folder

    @staticmethod
    def _python_path(env: dict) -> dict:
        parent = Path(__file__).resolve().parents[2]
        if parent.name not in ("site-packages", "dist-packages"):
            entries = [str(parent)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(os.path.abspath(p) for p in entries))
        return env

    def environment(self, folder: Path) -> dict:
        env = {k: os.environ[k] for k in KEEP_ENV if os.environ.get(k)}
        for key in ("LLMC_DATA_DIR", "TIKTOKEN_CACHE_DIR"):
            if key in env:
                env[key] = os.path.abspath(env[key])
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env = self._python_path(env)
        private = {
            "HOME": "home",
            "TMPDIR": "tmp",
            "LLMC_CACHE_DIR": "cache",
            "MPLCONFIGDIR": "home/.mpl",
            "IPYTHONDIR": "home/.ipython",
            "XDG_CACHE_HOME": "home/.cache",
            "XDG_CONFIG_HOME": "home/.config",
            "CUPY_CACHE_DIR": "home/.cupy",
            "PYTHONPYCACHEPREFIX": "home/.pycache",
        }
        env.update({k: str(folder / v) for k, v in private.items()})
        env.update(
            {
                "LLMC_BACKEND": self.backend,
                "LLMC_CPU_TIMEOUT": f"{self.limits.launch:g}",
                "MPLBACKEND": "Agg",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PYTHONNOUSERSITE": "1",
                "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1",
                "OPENBLAS_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            }
        )
        for key in [k for k, v in env.items() if any(h in v for h in self.hide[:-1])]:
            del env[key]  # nothing that names the instructor's solutions
        return env

    def _limits(self) -> dict:
        nproc = sum(1 for e in os.listdir("/proc") if e.isdigit()) + PROC_MARGIN if os.path.isdir("/proc") else None
        memory = self.limits.memory if self.backend == "cpu" else None
        return {"cpu": self.limits.cpu, "fsize": FILE_LIMIT, "as": memory, "nproc": nproc}

    # -- starting and stopping
    def _config(self, role: str, folder: Path, namespaces: bool, limits: dict) -> bytes:
        """The box's configuration, as it reads it first from stdin: 8 bytes of length, then JSON."""
        config = {
            "role": role,
            "grader": os.getpid(),
            "namespaces": namespaces,
            "cwd": str(folder / "work"),
            "keep": str(folder),
            "hide": self.hide,
            "limits": limits,
            "cuda": self.backend == "cuda",
        }
        head = json.dumps(config).encode()
        return len(head).to_bytes(8, "little") + head

    def _spawn(self, folder: Path) -> subprocess.Popen:
        """A box process (``python -m llmc_kernels.grade.box``) in its own session, remembered for ``close``."""
        with self.lock:
            proc = subprocess.Popen(
                [sys.executable, "-m", "llmc_kernels.grade.box"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=folder / "work",
                env=self.environment(folder),
                start_new_session=True,
            )
            self.started.add(proc.pid)
        return proc

    def start(self, role: str, folder: Path, request: bytes, *, namespaces: bool | None = None) -> Box:
        """Start a learner process (``role`` worker or replay) in ``folder`` and send it ``request``."""
        use_ns = self.isolation.namespaces if namespaces is None else namespaces
        head = self._config(role, folder, use_ns, self._limits())
        proc = self._spawn(folder)
        box = Box(proc, folder, started=time.monotonic())
        box.read()

        def send():
            try:
                proc.stdin.write(head)
                proc.stdin.write(request)
                proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass

        threading.Thread(target=send, daemon=True).start()
        return box

    def stop(self, box: Box) -> None:
        """Kill the box's process and everything it started, and wait for its output to end."""
        kill_tree(box.proc.pid)
        try:
            box.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.sweep()
        for t in box.readers:
            t.join(timeout=5)
        with self.lock:
            self.started.discard(box.proc.pid)

    def sweep(self) -> None:
        """Kill the grader's children it did not start: daemons of learner processes whose parents are gone."""
        if not self.reap_orphans or not os.path.isdir("/proc"):
            return
        with self.lock:
            parents = _parents()
            strays = [pid for pid, ppid in parents.items() if ppid == self.grader and pid not in self.started]
            for pid in strays:
                kill_tree(pid)
                _reap(pid)

    def close(self) -> None:
        """Kill every learner process and remove the working folder."""
        with self.lock:
            pids = list(self.started)
        for pid in pids:
            kill_tree(pid)
        if self.reap_orphans:
            kill_tree(self.grader, include_root=False)
            for pid, ppid in _parents().items():
                if ppid == self.grader:
                    _reap(pid)
        shutil.rmtree(self.root, ignore_errors=True)


def probe(sandbox: Sandbox) -> Isolation:
    """Start one box with namespaces asked for and read what it achieved."""
    if not sys.platform.startswith("linux"):
        return Isolation(error=f"{sys.platform} has no Linux namespaces")
    folder = sandbox.folder("probe")
    head = sandbox._config("probe", folder, True, {})
    proc = sandbox._spawn(folder)
    try:
        out, err = proc.communicate(head, timeout=60)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait()
        return Isolation(error="the probe did not answer")
    finally:
        with sandbox.lock:
            sandbox.started.discard(proc.pid)
    try:
        found = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Isolation(error=f"the probe failed: {err.decode(errors='replace')[-300:]}")
    if found.get("namespaces") and found.get("cuda_error"):
        return Isolation(error=f"CUDA does not work inside them ({found['cuda_error'][:200]})")
    return Isolation(
        bool(found.get("namespaces")), bool(found.get("proc")), found.get("network", ""), found.get("error", "")
    )
