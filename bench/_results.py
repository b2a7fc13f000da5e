"""What every GPU benchmark records beside its table: the device, the date, the commit, and a named section
of bench/RESULTS.md that a re-run replaces (other sections are kept)."""

from __future__ import annotations

import datetime
import os
import subprocess

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def git_commit() -> str:
    """LLMC_COMMIT when set (a tree copied to a GPU machine may carry a stale .git), else the checkout's
    short commit, else "unknown"."""
    if os.environ.get("LLMC_COMMIT"):
        return os.environ["LLMC_COMMIT"]
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(cp) -> str:
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    return props["name"].decode() if isinstance(props["name"], bytes) else props["name"]


def provenance(cp, torch=None) -> str:
    """'Device: ...; date ...; commit ...; CuPy ...; PyTorch ...'"""
    return (
        f"Device: {device_name(cp)}; date {datetime.date.today().isoformat()}; commit {git_commit()}; "
        f"CuPy {cp.__version__}; PyTorch {torch.__version__ if torch else 'absent'}."
    )


def write_section(path: str, key: str, title: str, header: str, table: list[str]) -> None:
    """Replace (or append) the section between <!-- key:start --> and <!-- key:end --> of ``path``."""
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    section = f"{start}\n## {title}\n\n{header}\n\n" + "\n".join(table) + f"\n{end}"
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)
