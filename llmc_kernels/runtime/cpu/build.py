"""Compile translated kernels, and the runtime library, with the system C++ compiler; cache by content hash.

Libraries live in ``paths.cache_dir()/cpu`` named by the SHA-256 of everything that affects them (source,
headers, flags, compiler version), so a kernel compiles once per machine, and a notebook re-run or a new
process loads it in milliseconds. Writes go to a temporary name first and are renamed into place, so two
processes compiling the same kernel never see a half-written file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ... import paths
from ...errors import KernelCompileError

HERE = Path(__file__).resolve().parent
INCLUDE = HERE / "include"
RT_DIR = HERE / "rt"

# NVRTC options that mean nothing to the CPU backend (the architecture, GPU code generation, debug info)
_IGNORED_OPTIONS = re.compile(
    r"^(-arch|--gpu-architecture|-lineinfo|--generate-line-info|--use_fast_math|"
    r"-use_fast_math|--fmad|-fmad|-std|--std|-G|--device-debug|-default-device|"
    r"--extra-device-vectorization|--ftz|--prec-div|--prec-sqrt|-ftz|-prec-div|"
    r"-prec-sqrt|--restrict|-restrict|-dopt|--dopt|-rdc|--relocatable-device-code)"
)


class CompilerMissing(KernelCompileError):
    """No C++ compiler: the cpu backend cannot compile anything here."""


@functools.cache
def compiler() -> tuple[str, str, bool]:
    """``(path, version line, is_gcc)`` of the C++ compiler: ``$LLMC_CXX``, ``$CXX``, else g++, c++, clang++.

    GCC is preferred: with it, division by zero and local-array overruns are reported with their line.
    """
    for name in (os.environ.get("LLMC_CXX"), os.environ.get("CXX"), "g++", "c++", "clang++"):
        path = shutil.which(name.strip()) if name and name.strip() else None
        if not path:
            continue
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        first = out.strip().splitlines()[0] if out.strip() else path
        return path, first, "clang" not in out.lower()
    raise CompilerMissing(
        "the cpu backend needs a C++ compiler and found none: install g++ (Debian/Ubuntu: "
        "sudo apt install g++; macOS: xcode-select --install), or set LLMC_CXX (or CXX)"
    )


def _headers_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(INCLUDE.glob("*.h")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def kernel_flags() -> list[str]:
    _, _, gcc = compiler()
    flags = [
        "-std=c++17",
        "-O2",
        "-fPIC",
        "-shared",
        f"-I{INCLUDE}",
        "-fvisibility=hidden",
        "-fno-exceptions",
        "-fno-rtti",
        "-fno-threadsafe-statics",
        "-fno-strict-aliasing",
        "-fno-math-errno",
        # GPU-like arithmetic: no FMA contraction (the GPU contracts; results differ by ulps either way);
        # signed overflow wraps as on the GPU (C++ calls it undefined, and g++ would then "optimise" an
        # overflowing index instead of letting the bounds check see it)
        "-ffp-contract=off",
        "-fwrapv",
        # an accidental endless loop must stay endless so the time limit reports it (C++ lets the
        # compiler assume loops terminate and delete them)
        "-fno-finite-loops",
        # a big frame touches each page on the way down, so it hits the fiber's guard page
        "-fstack-clash-protection",
        "-Wall",
        "-Wno-unknown-pragmas",
        "-Wno-unused-function",
    ]
    if gcc:
        flags += ["-fdiagnostics-plain-output", "-fmax-errors=10"]
    else:
        flags += ["-fno-color-diagnostics", "-fno-caret-diagnostics", "-ferror-limit=10"]
    if gcc and platform.system() == "Linux":
        # Division by zero and local-array indexing report the learner's line through our own UBSan handlers
        # (cuda_cpu.h); -nodefaultlibs keeps the sanitizer's runtime library out of the Python process.
        flags += ["-fsanitize=integer-divide-by-zero,bounds", "-nodefaultlibs"]
    return flags


def _link_libs() -> list[str]:
    _, _, gcc = compiler()
    return ["-lm", "-lc", "-lgcc"] if gcc and platform.system() == "Linux" else ["-lm"]


def split_options(options) -> tuple[list[str], list[str]]:
    """RawKernel options -> (compiler flags we pass on: -D/-U/-I, notes about options we ignore)."""
    passed, notes = [], []
    items = list(options)
    i = 0
    while i < len(items):
        opt = str(items[i])
        if opt in ("-D", "-U", "-I", "--define-macro", "--undefine-macro", "--include-path") and i + 1 < len(items):
            flag = {"--define-macro": "-D", "--undefine-macro": "-U", "--include-path": "-I"}.get(opt, opt)
            passed.append(flag + str(items[i + 1]))
            i += 2
            continue
        for prefix, flag in (
            ("--define-macro=", "-D"),
            ("--undefine-macro=", "-U"),
            ("--include-path=", "-I"),
            ("-D", "-D"),
            ("-U", "-U"),
            ("-I", "-I"),
        ):
            if opt.startswith(prefix) and len(opt) > len(prefix):
                passed.append(flag + opt[len(prefix) :])
                break
        else:
            if _IGNORED_OPTIONS.match(opt):
                notes.append(f"option {opt!r} has no effect on the cpu backend")
            else:
                raise KernelCompileError(
                    f"compile option {opt!r} is not supported by the cpu backend (it "
                    "understands -D, -U and -I; GPU code-generation options are ignored)"
                )
        i += 1
    return passed, notes


def _cache_root() -> Path:
    root = paths.cache_dir() / "cpu"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run(cmd: list[str], cwd: str) -> tuple[int, str]:
    env = dict(os.environ, LC_ALL="C", LANG="C")  # plain ASCII quotes in the log
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    return proc.returncode, (proc.stdout + proc.stderr)


@functools.cache
def precompiled_header() -> Path | None:
    """A folder holding cuda_cpu.h.gch (GCC only), built once per machine: it halves a small kernel's compile
    time (the header pulls in <math.h>, ~20k lines). GCC checks that the flags match and otherwise falls back
    to the header itself, so a stale or unusable one costs nothing but the check."""
    cxx, version, gcc = compiler()
    if not gcc or os.environ.get("LLMC_CPU_NO_PCH"):
        return None
    flags = [f for f in kernel_flags() if f not in ("-shared", "-nodefaultlibs")]
    key = hashlib.sha256("\0".join([_headers_digest(), version, " ".join(flags)]).encode()).hexdigest()
    folder = _cache_root() / f"pch-{key[:40]}"
    gch = folder / "cuda_cpu.h.gch"
    if gch.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llmc-cpu-pch-") as tmp:
        out = Path(tmp) / "cuda_cpu.h.gch"
        rc, _ = _run([cxx, *flags, "-x", "c++-header", str(INCLUDE / "cuda_cpu.h"), "-o", str(out)], tmp)
        if rc != 0:
            return None
        _install(out, gch)
    return folder


def build_kernel(cpp: str, extra_flags: list[str]) -> tuple[Path | None, str, bool]:
    """Compile translated source ``cpp``: ``(library path or None on failure, compiler log, was cached)``."""
    cxx, version, _ = compiler()
    flags = kernel_flags() + list(extra_flags)
    key = hashlib.sha256("\0".join([cpp, _headers_digest(), version, " ".join(flags)]).encode()).hexdigest()
    root = _cache_root()
    lib, log_path = root / f"k-{key[:40]}.so", root / f"k-{key[:40]}.log"
    if lib.exists() and log_path.exists():
        return lib, log_path.read_text(), True
    with tempfile.TemporaryDirectory(prefix="llmc-cpu-") as tmp:
        src = Path(tmp) / "kernel.cpp"
        src.write_text(cpp)
        out = Path(tmp) / "kernel.so"
        pch = precompiled_header()
        search = [f"-I{pch}"] if pch else []  # before -I<include>: GCC looks for the .gch first
        rc, log = _run([cxx, *search, *flags, str(src), "-o", str(out), *_link_libs()], tmp)
        if rc != 0:
            return None, log, False
        _install(out, lib)
    _write_atomic(log_path, log)
    return lib, log, False


def _install(built: Path, final: Path) -> None:
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.copyfile(built, tmp)
    os.replace(tmp, final)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@functools.cache
def runtime_library() -> Path:
    """The runtime library (rt/*.cpp), compiled on first use and cached like kernels."""
    cxx, version, _ = compiler()
    sources = sorted(RT_DIR.glob("*.cpp"))
    h = hashlib.sha256(version.encode())
    for p in sorted(RT_DIR.glob("*")) + [INCLUDE / "llmc_abi.h"]:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    flags = [
        "-std=c++17",
        "-O2",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
        "-fno-exceptions",
        "-fno-rtti",
        "-U_FORTIFY_SOURCE",
        "-D_FORTIFY_SOURCE=0",
    ]  # fortify's longjmp check rejects our stack switches
    h.update(" ".join(flags).encode())
    lib = _cache_root() / f"rt-{h.hexdigest()[:40]}.so"
    if lib.exists():
        return lib
    with tempfile.TemporaryDirectory(prefix="llmc-cpu-rt-") as tmp:
        out = Path(tmp) / "rt.so"
        rc, log = _run([cxx, *flags, *map(str, sources), "-o", str(out), "-lpthread"], tmp)
        if rc != 0:
            raise RuntimeError(f"the cpu backend's runtime library failed to compile with {version}:\n{log[-3000:]}")
        _install(out, lib)
    return lib


_TYPE_NAMES = [
    # shared_array<shared_array<float, (33)>, (32)> is float[32][33]: an outer size goes before inner ones
    (re.compile(r"llmc::shared_array<([^<>\[\]]*?)((?:\[[^\]]*\])*), \(([^()]*)\)>"), r"\1[\3]\2"),
    (re.compile(r"llmc::ptr<([^<>]*?)\s*>"), r"\1*"),
]


def readable_log(log: str) -> str:
    """The compiler's words with our types spelled as the learner wrote them (llmc::ptr<float> -> float*)."""
    for _ in range(4):  # nested types unwrap from the inside out
        for pattern, repl in _TYPE_NAMES:
            log = pattern.sub(repl, log)
    return log.replace("llmc::", "")
