"""The fence around learner processes, piece by piece: every descendant killed (a daemon too), the scrubbed
environment, namespaces that hide the solutions and cannot be undone from inside, and the package digest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _grade_helpers import ROOT, namespaces_reason

from llmc_kernels.grade import package as grade_package
from llmc_kernels.grade.sandbox import Limits, Sandbox

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))

DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()                          # its own session and process group: killpg of the parent misses it
    if os.fork() == 0:
        open(sys.argv[1] + ".pid", "w").write(str(os.getpid()))
        while True:
            with open(sys.argv[1], "a") as f:
                f.write(".")
            time.sleep(0.05)
    os._exit(0)
os.wait()
"""


def _beating(path: Path, wait: float = 0.5) -> bool:
    before = path.stat().st_size if path.exists() else 0
    time.sleep(wait)
    return (path.stat().st_size if path.exists() else 0) != before


@pytest.mark.parametrize("subreaper", [True, False])
def test_a_daemon_that_forked_twice_is_found_only_by_a_subreaper(tmp_path, subreaper):
    """The grader is a child subreaper: the daemon's orphan becomes its child and dies with the rest. Without
    it, the orphan goes to init and keeps running -- what the defense prevents."""
    beat = tmp_path / "beat"
    script = textwrap.dedent(f"""
        import subprocess, sys, time
        from llmc_kernels.grade.sandbox import become_subreaper, kill_tree
        if {subreaper}:
            become_subreaper()
        subprocess.run([sys.executable, "-c", {DAEMON!r}, {str(beat)!r}])     # returns once the parent is gone
        time.sleep(0.5)
        kill_tree(__import__("os").getpid(), include_root=False)
    """)
    subprocess.run([sys.executable, "-c", script], env=ENV, timeout=60, check=True)
    try:
        assert _beating(beat) is not subreaper
    finally:
        try:  # the daemon this test started, by its process id
            os.kill(int((tmp_path / "beat.pid").read_text()), 9)
        except (OSError, ValueError):
            pass


def test_learner_processes_get_a_scrubbed_environment(tmp_path, monkeypatch):
    secret_solutions = tmp_path / "private"
    secret_solutions.mkdir()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do not leak")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(secret_solutions)]))
    sandbox = Sandbox(backend="cpu", limits=Limits(30.0), hide=[secret_solutions], namespaces=False)
    try:
        folder = sandbox.folder("probe")
        env = sandbox.environment(folder)
        assert "AWS_SECRET_ACCESS_KEY" not in env
        assert not any(str(secret_solutions) in v for v in env.values())
        assert env["HOME"].startswith(str(folder)) and env["LLMC_CACHE_DIR"].startswith(str(folder))
        assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONPYCACHEPREFIX"].startswith(str(folder))
        assert (folder / "cache" / "cpu").is_dir()  # a private copy of the runtime library
        assert oct(sandbox.root.stat().st_mode & 0o777) == "0o700"
    finally:
        sandbox.close()
    assert not sandbox.root.exists()


NS_PROBE = """
import ctypes, json, os, sys
import llmc_kernels.grade.box as box
cfg = box._read_config()
found = box.enter_namespaces(cfg)
libc = ctypes.CDLL(None, use_errno=True)
hidden = cfg["hide"][0]
out = {"found": found, "pid": os.getpid(), "listing": os.listdir(hidden),
       "umount": libc.umount2(hidden.encode(), 2), "processes": len([p for p in os.listdir("/proc") if p.isdigit()]),
       "keep": os.path.isdir(cfg["keep"])}
print(json.dumps(out))
"""


def test_namespaces_hide_the_solutions_for_good(tmp_path):
    reason = namespaces_reason()
    if reason:
        pytest.skip(reason)
    hidden = tmp_path / "private"
    hidden.mkdir()
    (hidden / "05_gelu.ipynb").write_text("the answers")
    keep = tmp_path / "grading" / "box"
    (keep / "work").mkdir(parents=True)
    config = json.dumps({"hide": [str(hidden), str(tmp_path / "grading")], "keep": str(keep)}).encode()
    proc = subprocess.run(
        [sys.executable, "-c", NS_PROBE],
        input=len(config).to_bytes(8, "little") + config,
        capture_output=True,
        env=ENV,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout.decode().splitlines()[-1])
    assert out["listing"] == [] and out["keep"]  # hidden, and its own folder still there
    assert out["umount"] != 0  # root in its namespace, yet cannot unmount
    assert out["pid"] == 1 and out["processes"] <= 2  # a /proc of its own: the grader out of sight
    assert (hidden / "05_gelu.ipynb").read_text() == "the answers"


def test_the_package_digest_sees_every_change(tmp_path):
    pkg = tmp_path / "llmc_kernels"
    (pkg / "__pycache__").mkdir(parents=True)
    (pkg / "check.py").write_text("x = 1\n")
    before = grade_package.digest(pkg)
    (pkg / "check.py").write_text("x = 2\n")
    (pkg / "__pycache__" / "check.cpython-311.pyc").write_bytes(b"planted")
    assert grade_package.changes(before, grade_package.digest(pkg)) == [
        "changed check.py",
        "added __pycache__/check.cpython-311.pyc",
    ]
    assert grade_package.digest() == grade_package.digest()  # the real package is stable while unchanged
