"""`llmc doctor` and the `llmc` command line."""

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from llmc_kernels import cli, doctor, runtime
from llmc_kernels.runtime import nvrtc

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_doctor(capsys, *argv):
    code = doctor.main(list(argv))
    return code, capsys.readouterr().out


def test_doctor_reports_every_item(capsys):
    code, out = run_doctor(capsys)
    for label in ("Python", "NumPy", "CuPy", "GPU", "C++ compiler", "NVRTC", "backend", "cpu backend", "cuda backend"):
        assert f"\n  {label} " in out, (label, out)
    # exit code 0 exactly when a backend ran the kernel
    works = [line for line in out.splitlines() if "backend   OK" in line or "backend  OK" in line]
    assert (code == 0) == bool(works), out
    assert ("\nOK: " in out) == (code == 0) and ("FAILED: no backend" in out) == (code == 1)


def test_doctor_exit_code_follows_the_backends(capsys, monkeypatch):
    monkeypatch.setattr(doctor, "_try_backend", lambda name: (name == "cpu", "OK" if name == "cpu" else "boom"))
    code, out = run_doctor(capsys)
    assert code == 0 and "OK: cpu backend working" in out
    monkeypatch.setattr(doctor, "_try_backend", lambda name: (False, f"{name} broke"))
    code, out = run_doctor(capsys)
    assert code == 1 and "cpu broke" in out and "FAILED" in out


def test_doctor_no_run_launches_nothing(capsys, monkeypatch):
    monkeypatch.setattr(doctor, "_try_backend", lambda name: pytest.fail("launched a kernel"))
    code, out = run_doctor(capsys, "--no-run")
    assert code == 0 and "no kernel launched" in out


def test_doctor_suggests_fixes(capsys, monkeypatch):
    monkeypatch.setattr(doctor, "cxx_compiler", lambda: (None, ""))
    monkeypatch.setattr(nvrtc, "available", lambda: False)
    monkeypatch.setattr(runtime, "gpu_status", lambda: (False, "CuPy is not installed"))
    monkeypatch.setattr(doctor, "driver_cuda_major", lambda: 12)
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    monkeypatch.setattr(doctor, "_try_backend", lambda name: (False, "no compiler"))
    code, out = run_doctor(capsys)
    assert code == 1
    assert "C++ compiler  none found" in out
    assert "sudo apt install g++" in out and "xcode-select --install" in out
    assert 'pip install -e ".[test]"' in out
    assert "an NVIDIA driver for CUDA 12 is installed" in out and "pip install cupy-cuda12x" in out


def test_cupy_wheel_for_the_driver():
    assert doctor._cupy_wheel(12) == "cupy-cuda12x"
    assert doctor._cupy_wheel(13) == "cupy-cuda13x"
    assert "cupy-cuda12x" in doctor._cupy_wheel(None) and "cupy-cuda13x" in doctor._cupy_wheel(None)


def test_doctor_reports_a_bad_llmc_backend(capsys, monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "tpu")
    monkeypatch.setattr(doctor, "_try_backend", lambda name: (True, "OK"))
    code, out = run_doctor(capsys)
    assert "backend       error: LLMC_BACKEND must be 'cuda' or 'cpu'" in out and "set LLMC_BACKEND" in out


# ------------------------------------------------------------------------------------------ command line


def test_help_lists_the_three_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("train", "grade", "doctor"):
        line = next(l for l in out.splitlines() if l.strip().startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 20, line  # with a one-line description


def test_no_command_and_unknown_command(capsys):
    assert cli.main([]) == 2
    assert cli.main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "grade", "doctor"])
def test_commands_dispatch_to_their_module(monkeypatch, command):
    seen = []
    fake = types.ModuleType(f"llmc_kernels.{command}")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, f"llmc_kernels.{command}", fake)
    assert cli.main([command, "--flag", "x"]) == 3
    assert seen == [["--flag", "x"]]


def test_python_dash_m(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "llmc_kernels", "--help"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0 and "doctor" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "llmc_kernels", "doctor", "--no-run"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0 and "NumPy" in done.stdout, done.stderr
