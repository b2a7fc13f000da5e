"""The ``llmc`` command: ``llmc train``, ``llmc collect``, ``llmc grade``, ``llmc doctor``
(also ``python -m llmc_kernels``).

Each sub-command lives in its own module with a ``main(argv) -> int``; it is imported only when chosen, so
``llmc doctor`` works even where the trainer's or grader's dependencies are missing.
"""

from __future__ import annotations

import importlib
import os
import sys

# name -> (module, one-line description)
COMMANDS = {
    "train": ("llmc_kernels.train", "train GPT-2 (d12 or tiny) with the course's kernels, or yours (--ops)"),
    "collect": (
        "llmc_kernels.collect",
        "gather your exercise kernels from your notebooks into an ops module for train",
    ),
    "grade": ("llmc_kernels.grade", "grade submitted chapter notebooks into a CSV of points per exercise"),
    "doctor": ("llmc_kernels.doctor", "show what this machine can run (GPU, CuPy, compilers) and how to fix it"),
}


def usage() -> str:
    from . import __version__

    lines = [f"usage: llmc <command> [options]   (llmc_kernels {__version__})", "", "commands:"]
    lines += [f"  {name:<8}{desc}" for name, (_, desc) in COMMANDS.items()]
    lines += ["", "`llmc <command> --help` shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from . import __version__

        print(f"llmc_kernels {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"llmc: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    code = module.main(rest)
    return int(code or 0)


def entry() -> None:
    """``python -m llmc_kernels``: exit with the command's status; quiet on Ctrl-C and on a closed pipe."""
    try:
        code = main()
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `llmc doctor | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    entry()
