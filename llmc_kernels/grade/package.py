"""The package ``llmc grade`` trusts, verified: a digest of every file under ``llmc_kernels/``.

A learner's process runs with the grader's user, so it could write into the installed package (the checker,
the references, a planted ``__pycache__/*.pyc``) and change every later verdict of this run and of later runs.
The grader takes a digest before grading and again after each submission's processes are gone; a difference
stops grading with an error that names the submission and the files. (The grader itself writes nothing there
while grading: it imports with ``sys.pycache_prefix`` pointing elsewhere, and so do its learner processes.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def digest(root: Path = PACKAGE) -> dict[str, str]:
    """relative path -> sha256 of its contents (and of a link's target), for every file under ``root``."""
    found = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            try:
                if os.path.islink(path):
                    found[rel] = "link:" + os.readlink(path)
                    continue
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                found[rel] = h.hexdigest()
            except OSError as e:
                found[rel] = f"unreadable: {e.strerror}"
    return found


def changes(before: dict, after: dict) -> list[str]:
    """'changed check.py', 'added ops/x.py', 'removed ...' between two digests."""
    out = [f"changed {p}" for p in sorted(before) if p in after and before[p] != after[p]]
    out += [f"added {p}" for p in sorted(set(after) - set(before))]
    out += [f"removed {p}" for p in sorted(set(before) - set(after))]
    return out
