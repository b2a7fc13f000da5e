"""``llmc doctor``: what this machine can run, and how to fix what it cannot.

Prints the versions that matter (Python, NumPy, CuPy), the GPU, the C++ compiler (cpu backend) and NVRTC
(compile-only checks), the active backend, then launches one tiny kernel on every backend that could work.
Exit code 0 when at least one backend runs the kernel.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time

import numpy as np

_VADD = r"""
extern "C" __global__ void doctor_vadd(float* out, const float* a, const float* b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}
"""


def _row(label: str, value: str) -> None:
    print(f"  {label:<14}{value}")


def _run(cmd: list[str], timeout: float = 10) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def cxx_compiler() -> tuple[str | None, str]:
    """The C++ compiler the cpu backend would use (``$CXX``, else g++, clang++, c++) and its version line."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++", "c++"]
    for name in candidates:
        path = shutil.which(name.split()[0])
        if path:
            out = _run([path, "--version"]) or ""
            return path, (out.splitlines() or ["(version unknown)"])[0]
    return None, ""


def driver_cuda_major() -> int | None:
    """The CUDA major version the NVIDIA driver supports, from nvidia-smi (works without CuPy)."""
    out = _run(["nvidia-smi"]) if shutil.which("nvidia-smi") else None
    m = re.search(r"CUDA Version:\s*(\d+)\.", out or "")
    return int(m.group(1)) if m else None


def _cupy_wheel(major: int | None) -> str:
    if major is None:
        return "cupy-cuda12x (CUDA 12 drivers) or cupy-cuda13x (CUDA 13 drivers)"
    return "cupy-cuda13x" if major >= 13 else "cupy-cuda12x"


def _describe_gpu(cupy) -> str:
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    free, total = cupy.cuda.Device(0).mem_info
    drv, run = rt.driverGetVersion(), rt.runtimeGetVersion()
    return (
        f"{name}, compute capability {props['major']}.{props['minor']}, "
        f"{total / 2**30:.1f} GiB ({free / 2**30:.1f} GiB free); driver CUDA {drv // 1000}.{drv % 1000 // 10}, "
        f"CuPy's CUDA runtime {run // 1000}.{run % 1000 // 10}"
    )


def _try_backend(name: str) -> tuple[bool, str]:
    """Compile and launch the vector add on backend ``name``; (ok, what happened)."""
    from .runtime import RawKernel, launch_options
    from .runtime.source import SourceOrigin, locate_in_file

    n = 1000
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    start = time.perf_counter()
    try:
        origin = SourceOrigin("llmc_kernels/doctor.py", locate_in_file(_VADD, __file__) or 1)
        kernel = RawKernel(_VADD, "doctor_vadd", backend=name, origin=origin)
        if name == "cuda":
            import cupy

            da, db = cupy.asarray(a), cupy.asarray(b)
            out = cupy.full(n, np.nan, dtype=np.float32)
            with launch_options(check=True):
                kernel(((n + 255) // 256,), (256,), (out, da, db, np.int32(n)))
            got = cupy.asnumpy(out)
        else:
            out = np.full(n, np.nan, dtype=np.float32)
            kernel(((n + 255) // 256,), (256,), (out, a, b, np.int32(n)))
            got = out
    except Exception as e:  # report any failure, whatever raised it: that is the point of a doctor
        return False, f"{type(e).__name__}: {e}"
    if not np.array_equal(got, a + b):
        return False, "the kernel ran but computed wrong values"
    return True, f"OK (vector add of {n} floats, {time.perf_counter() - start:.2f} s including compile)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmc doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-run", action="store_true", help="only report what is installed; launch nothing")
    opts = parser.parse_args(argv)

    from . import __version__
    from .runtime import backend, gpu_status, nvrtc

    print(f"llmc_kernels {__version__} doctor")
    _row("Python", f"{platform.python_version()} ({platform.system()} {platform.machine()})")
    _row("NumPy", np.__version__)
    try:
        import cupy

        cupy_version = cupy.__version__
    except Exception as e:  # not installed, or installed but broken
        cupy = None
        missing = isinstance(e, ImportError) and getattr(e, "name", None) == "cupy"
        cupy_version = "not installed" if missing else f"broken ({type(e).__name__}: {e})"
    _row("CuPy", cupy_version)

    fixes = []
    gpu_ok, gpu_reason = gpu_status()
    major = driver_cuda_major()
    if gpu_ok:
        try:
            _row("GPU", _describe_gpu(cupy))
        except Exception as e:
            _row("GPU", f"usable, but its properties could not be read ({e})")
    elif platform.system() == "Darwin":
        _row("GPU", "none on macOS (NVIDIA CUDA does not run there): the cpu backend runs every kernel")
    else:
        seen = f"an NVIDIA driver for CUDA {major} is installed but " if major else ""
        _row("GPU", f"no GPU usable ({seen}{gpu_reason})")
        if "microsoft" in platform.release().lower() and not major:
            fixes.append(
                "WSL2: the GPU comes from the Windows NVIDIA driver (install it on Windows, not in "
                "Linux); nvidia-smi in WSL then shows it"
            )
        if major and cupy is None:
            fixes.append(f"GPU: pip install {_cupy_wheel(major)} (one CuPy wheel only; uninstall any other)")
        elif major and cupy is not None:
            fixes.append(
                f"GPU: the installed CuPy does not work with this driver; install {_cupy_wheel(major)} "
                "instead of the current wheel (pip uninstall the other cupy-* first)"
            )

    cxx, cxx_version = cxx_compiler()
    _row("C++ compiler", f"{cxx_version} ({cxx})" if cxx else "none found")
    if not cxx:
        fixes.append(
            "cpu backend: install a C++ compiler (Debian/Ubuntu: sudo apt install g++; macOS: xcode-select --install)"
        )
    if nvrtc.available():
        major_minor = ".".join(map(str, nvrtc.version()))
        _row("NVRTC", f"{major_minor} (via {nvrtc.binding()})")
    else:
        _row("NVRTC", "not found (compile-only GPU checks are skipped)")
        fixes.append('NVRTC: pip install -e ".[test]" (or pip install "cuda-bindings<13" nvidia-cuda-nvrtc-cu12)')

    try:
        active = backend()
        source = f"LLMC_BACKEND={os.environ['LLMC_BACKEND']}" if os.environ.get("LLMC_BACKEND") else "automatic"
        _row("backend", f"{active} ({source})")
    except (ValueError, RuntimeError) as e:
        _row("backend", f"error: {e}")
        fixes.append("backend: set LLMC_BACKEND to cpu or cuda, or unset it")

    working = []
    if opts.no_run:
        print("  (--no-run: no kernel launched)")
    else:
        for name, possible in (("cpu", True), ("cuda", gpu_ok)):
            if not possible:
                _row(f"{name} backend", "skipped (no usable GPU)")
                continue
            ok, what = _try_backend(name)
            _row(f"{name} backend", what)
            if ok:
                working.append(name)
            elif name == "cpu" and cxx:
                fixes.append(f"cpu backend: the C++ compiler ({cxx}) is present; the error above says what failed")
            else:
                fixes.append(f"cuda backend: check that the CuPy wheel matches the driver ({_cupy_wheel(major)})")
    for fix in fixes:
        print(f"  fix: {fix}")
    if opts.no_run:
        return 0
    print(
        "OK: " + ", ".join(working) + " backend" + ("s" if len(working) > 1 else "") + " working"
        if working
        else "FAILED: no backend can run a kernel here"
    )
    return 0 if working else 1


if __name__ == "__main__":
    sys.exit(main())
