"""The repository's packaging, README, CI script and book configuration agree with each other."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]

PLATFORMS = {  # marker environments of the platforms the course supports
    "linux-x86_64": {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64"},
    "linux-arm64": {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": "aarch64"},
    "macos-arm64": {"platform_system": "Darwin", "sys_platform": "darwin", "platform_machine": "arm64"},
    "macos-x86_64": {"platform_system": "Darwin", "sys_platform": "darwin", "platform_machine": "x86_64"},
    "windows": {"platform_system": "Windows", "sys_platform": "win32", "platform_machine": "AMD64"},
}


def requirements(extra: str | None = None) -> list[Requirement]:
    return [Requirement(r) for r in (PROJECT["dependencies"] if extra is None else EXTRAS[extra])]


def expand(extra: str) -> list[Requirement]:
    """The requirements of an extra, following `llmc-kernels[...]` self-references."""
    result = []
    for req in requirements(extra):
        if req.name == PROJECT["name"]:
            for inner in sorted(req.extras):
                result += expand(inner)
        else:
            result.append(req)
    return result


def installed_on(req: Requirement, platform: str) -> bool:
    if req.marker is None:
        return True
    env = {"python_version": "3.12", "python_full_version": "3.12.0", "extra": "", **PLATFORMS[platform]}
    return req.marker.evaluate(env)


def project_files() -> list[Path]:
    """Files of the project: tracked or new, not ignored by git (a plain walk where git is unavailable)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode()
        return [ROOT / name for name in out.split("\0") if name and (ROOT / name).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", "_build", "build", ".venv", "venv", "__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


# --- pyproject.toml ---------------------------------------------------------------------------------------


def test_build_backend_and_python_versions():
    assert PYPROJECT["build-system"]["build-backend"] == "setuptools.build_meta"
    supported = SpecifierSet(PROJECT["requires-python"])
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert supported.contains(version), f"requires-python excludes {version}"
    assert not supported.contains("3.9")


def test_runtime_dependencies_are_pinned_to_ranges():
    names = {req.name for req in requirements()}
    assert names == {"numpy", "tiktoken", "matplotlib", "tqdm"}
    for extra in EXTRAS:
        for req in requirements(extra):
            if req.name in ("setuptools", PROJECT["name"]):
                continue
            assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), f"{req} has no upper bound"
    for req in requirements():
        assert any(s.operator == ">=" for s in req.specifier) and any(s.operator == "<" for s in req.specifier), req


def test_cupy_extras_name_one_wheel_each():
    for extra, wheel in (("cuda12", "cupy-cuda12x"), ("cuda13", "cupy-cuda13x")):
        reqs = requirements(extra)
        assert [r.name for r in reqs] == [wheel]
        assert installed_on(reqs[0], "linux-x86_64") and not installed_on(reqs[0], "macos-arm64")
    # no other extra pulls in a CuPy wheel (two CuPy wheels in one environment break each other)
    for extra in ("book", "test", "dev"):
        assert not [r for r in expand(extra) if r.name.startswith("cupy")], extra


def test_no_extra_pulls_in_pytorch():
    for extra in EXTRAS:
        assert "torch" not in {r.name for r in expand(extra)}, extra
    assert "torch" not in {r.name for r in requirements()}


def test_book_and_test_extras():
    book = {r.name: r for r in requirements("book")}
    assert set(book) == {"jupyter-book", "jupyterlab"}
    assert book["jupyter-book"].specifier.contains("1.0.4") and not book["jupyter-book"].specifier.contains("2.0.0")
    assert not book["jupyter-book"].specifier.contains("1.0.3")
    test = {r.name: r for r in requirements("test")}
    assert {"pytest", "nbval", "nbformat", "nbclient", "ipykernel", "cuda-bindings", "nvidia-cuda-nvrtc-cu12"} <= set(
        test
    )
    assert test["cuda-bindings"].specifier.contains("12.9.0") and not test["cuda-bindings"].specifier.contains("13.0.0")
    dev = {r.name for r in expand("dev")}
    assert dev == {r.name for r in expand("book")} | {r.name for r in expand("test")}


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_nvrtc_wheels_only_where_they_exist(platform):
    """`.[dev]` installs everywhere: NVIDIA ships these wheels for Linux x86-64/arm64 and Windows only."""
    wanted = not platform.startswith("macos")
    for name in ("cuda-bindings", "nvidia-cuda-nvrtc-cu12", "nvidia-cuda-runtime-cu12", "nvidia-cuda-cccl-cu12"):
        (req,) = [r for r in requirements("test") if r.name == name]
        assert req.marker is not None and installed_on(req, platform) == wanted, (name, platform)


def test_console_script():
    assert PROJECT["scripts"] == {"llmc": "llmc_kernels.cli:main"}


def test_pytest_runs_unit_tests_and_solution_notebooks_only():
    ini = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert ini["testpaths"] == ["tests", "solutions"]
    assert "--nbval-lax" in ini["addopts"]
    assert "chapters" in ini["norecursedirs"]  # learners' copies stop at their first exercise
    markers = {m.split(":")[0] for m in ini["markers"]}
    assert {"gpu", "slow"} <= markers


def test_code_imports_cupy_never_a_wheel_name():
    for path in (ROOT / "llmc_kernels").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(import|from)\s+cupy_cuda", text), path


def _data_files() -> set[str]:
    """Every file the package needs besides Python: kernels, headers, the CPU backend's C++ sources."""
    package = ROOT / "llmc_kernels"
    return {
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc", ".so", ".dylib", ".dll") and "__pycache__" not in p.parts
    }


def test_package_data_patterns_cover_every_data_file():
    package = ROOT / "llmc_kernels"
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["llmc_kernels"]
    shipped = {p.relative_to(package).as_posix() for pattern in patterns for p in package.glob(pattern)}
    missing = _data_files() - shipped
    assert not missing, f"package-data misses {sorted(missing)}"
    assert any(p.startswith("kernels/") for p in patterns) and any(p.startswith("runtime/cpu/") for p in patterns)


def test_wheel_contents(tmp_path):
    """Build the wheel from a copy of the sources (so nothing is written into the checkout) and look in."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip("needs setuptools>=77 (the test extra installs it)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "llmc_kernels", src / "llmc_kernels", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("llmc_kernels-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in _data_files():
        assert f"llmc_kernels/{data}" in names, f"the wheel lacks llmc_kernels/{data}"
    assert "llmc_kernels/__init__.py" in names
    assert not [n for n in names if n.split("/")[0] in ("tests", "solutions", "chapters", "tools", "book")]
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert re.search(r"^llmc\s*=\s*llmc_kernels\.cli:main$", entry_points, re.M)
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "Requires-Python: >=3.10" in metadata
    assert re.search(r"^Provides-Extra: cuda12$", metadata, re.M)


# --- environment.yml ------------------------------------------------------------------------------------


def _environment() -> tuple[list[str], list[str]]:
    """(conda specs, pip specs) of environment.yml, read line by line (its structure is flat)."""
    conda, pip, section = [], [], None
    for raw in (ROOT / "environment.yml").read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            section = line.split(":", 1)[0]
            continue
        item = re.match(r"^(\s*)- (.*)$", line)
        if section != "dependencies" or not item:
            continue
        indent, value = len(item.group(1)), item.group(2).strip()
        if value == "pip:":
            continue
        (pip if indent > 2 else conda).append(value)
    return conda, pip


def test_environment_yml_names_the_same_packages_as_pyproject():
    conda, pip = _environment()
    declared = {r.name: r for r in requirements()}
    for extra in EXTRAS:
        declared.update({r.name: r for r in requirements(extra) if r.name != PROJECT["name"]})
    not_python = {"python", "pip", "cxx-compiler"}
    conda_reqs = {
        Requirement(spec).name: Requirement(spec) for spec in conda if Requirement(spec).name not in not_python
    }
    pip_reqs = {Requirement(spec).name: Requirement(spec) for spec in pip if not spec.startswith("-e")}
    for name, req in {**conda_reqs, **pip_reqs}.items():
        assert name in declared, f"environment.yml installs {name}, which pyproject.toml does not name"
        assert req.specifier == declared[name].specifier, f"{name}: {req.specifier} vs {declared[name].specifier}"
    # the runtime dependencies come from conda; the GPU's CuPy is the cuda12 extra's; the rest via .[dev]
    assert {r.name for r in requirements()} <= set(conda_reqs)
    assert [n for n in pip_reqs if n.startswith("cupy")] == ["cupy-cuda12x"]
    assert "-e .[dev]" in pip
    python = Requirement(next(s for s in conda if s.startswith("python")))
    assert all(python.specifier.contains(v) for v in ("3.10", "3.13"))


# --- README.md and .ci/run ------------------------------------------------------------------------------


def readme_quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", section.group(1), re.S)
    assert block, "the Quick start has no code block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quick_start_is_two_commands():
    install, tests = readme_quick_start()
    parts = [p.strip() for p in install.split("&&")]
    assert parts == ['pip install -e ".[dev]"', "jupyter-book build ."]
    assert shlex.split(tests)[0] == "pytest"


def test_readme_has_the_sections_a_reader_needs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for needle in (
        "llmc train",
        "llmc grade",
        "llmc doctor",
        "cuda12",
        "cuda13",
        "nvidia-smi",
        "jupyter lab",
        "Colab",
        "llm.c",
        "Andrej Karpathy",
        "LICENSE",
    ):
        assert needle in text, needle
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def _ci_lines() -> list[str]:
    return [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]


def test_ci_runs_exactly_the_readme_commands():
    path = ROOT / ".ci" / "run"
    assert path.stat().st_mode & stat.S_IXUSR, ".ci/run is not executable"
    lines = _ci_lines()
    assert lines[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in lines
    install, tests = readme_quick_start()
    pip_install, build = [p.strip() for p in install.split("&&")]
    assert lines.count(tests) == 1, f".ci/run does not run the README's test command {tests!r} as a line"
    assert pip_install in lines
    assert f"{build} -W -n --keep-going" in lines
    torch = lines.index("pip install torch==2.13.0")
    assert torch < lines.index(pip_install) < lines.index(tests) < lines.index(f"{build} -W -n --keep-going")
    # lint right after the install (ruff comes with the test extra), before the long test run
    lint = [lines.index("ruff check ."), lines.index("ruff format --check .")]
    assert lines.index(pip_install) < lint[0] < lint[1] < lines.index(tests)
    assert [
        line for line in lines[lines.index(pip_install) + 1 : lint[0]] if line and not line.startswith("step ")
    ] == []
    text = "\n".join(lines)
    assert "python3 -m venv" in text
    assert re.search(r"^export LLMC_BACKEND=cpu$", text, re.M)
    assert re.search(r"LLMC_DATA_DIR=.*shared/data", text) and re.search(r"TIKTOKEN_CACHE_DIR=.*shared/tiktoken", text)
    assert re.search(r"^export LLMC_CACHE_DIR=\"\$work/", text, re.M)


# --- the book ------------------------------------------------------------------------------------------


def toc_files() -> list[str]:
    text = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    return re.findall(r"^\s*(?:root|-\s*file)\s*:\s*(\S+)\s*$", text, re.M)


def test_toc_lists_every_book_page_and_every_chapter_in_order():
    listed = toc_files()
    assert listed[0] == "book/intro", "the book opens with book/intro"
    assert len(listed) == len(set(listed)), "a page is listed twice"
    pages = sorted(f"book/{p.stem}" for p in (ROOT / "book").glob("*.md"))
    chapters = sorted(f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("*.ipynb"))
    assert sorted(p for p in listed if p.startswith("book/")) == pages
    assert [p for p in listed if p.startswith("chapters/")] == chapters
    for entry in listed:
        assert entry.split("/")[0] in ("book", "chapters"), entry
        assert (ROOT / f"{entry}.md").exists() or (ROOT / f"{entry}.ipynb").exists(), entry
    position = {entry: i for i, entry in enumerate(listed)}
    chapter_positions = [position[c] for c in chapters] or [position["book/further_reading"] - 0.5]
    for before in ("book/setup", "book/conventions"):
        assert position[before] < min(chapter_positions), f"{before} comes before the chapters"
    for after in ("book/further_reading", "book/instructors"):
        assert position[after] > max(chapter_positions), f"{after} comes after the chapters"


def test_config_has_repository_and_colab_button():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["title"] == "GPT-2 from the kernels up"
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", config["repository"]["url"])
    assert config["repository"]["branch"] == "main"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["only_build_toc_files"] is True
    assert "solutions" in config["exclude_patterns"]


def test_repository_url_lives_in_one_place():
    """_config.yml holds the address; notebooks carry it only in their generated set-up and figure cells."""
    yaml = pytest.importorskip("yaml")
    url = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["repository"]["url"]
    owner_repo = url.split("github.com/", 1)[1]
    here = Path(__file__).resolve()
    for path in project_files():
        if path.name == "_config.yml" and path.parent == ROOT or path.suffix == ".ipynb" or path == here:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        assert owner_repo not in text, f"{path.relative_to(ROOT)} names the repository; read _config.yml instead"


def test_nothing_outside_tests_and_ci_names_shared():
    offenders = []
    for path in project_files():
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", ".ci"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(r"\.\.[/\\]shared\b", text):
            offenders.append(str(rel))
    assert not offenders, f"these name ../shared (users have no such folder): {offenders}"


# --- tests/conftest.py: the gpu marker ------------------------------------------------------------------


def _run_gpu_marked_test(tmp_path: Path, fake_cupy: str | None) -> subprocess.CompletedProcess:
    """pytest on one gpu-marked test with our conftest, and optionally a fake `cupy` on the path."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs a GPU\n")
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_it.py").write_text(
        textwrap.dedent("""
        import sys
        import pytest

        def test_cupy_not_imported_by_plain_tests():
            assert ("cupy" in sys.modules) == bool(int(__import__("os").environ["EXPECT_CUPY"]))

        @pytest.mark.gpu
        def test_on_gpu():
            import cupy
            assert cupy.cuda.runtime.getDeviceCount() > 0
    """)
    )
    env = dict(os.environ)
    paths = [str(ROOT)]
    if fake_cupy is not None:
        fake = tmp_path / "fake" / "cupy"
        (fake / "cuda").mkdir(parents=True)
        (fake / "__init__.py").write_text("from . import cuda\n")
        (fake / "cuda" / "__init__.py").write_text("from . import runtime\n")
        (fake / "cuda" / "runtime.py").write_text(fake_cupy)
        paths.insert(0, str(tmp_path / "fake"))
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    env["EXPECT_CUPY"] = "0"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-q", "-p", "no:nbval", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )


def test_gpu_tests_skip_without_a_device(tmp_path):
    result = _run_gpu_marked_test(tmp_path, "def getDeviceCount():\n    return 0\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout and "CuPy sees no device" in result.stdout


def test_gpu_tests_skip_when_cupy_cannot_reach_the_driver(tmp_path):
    failing = "def getDeviceCount():\n    raise RuntimeError('cudaErrorInsufficientDriver')\n"
    result = _run_gpu_marked_test(tmp_path, failing)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and "cudaErrorInsufficientDriver" in result.stdout


def test_gpu_tests_run_where_a_device_is_usable(tmp_path):
    result = _run_gpu_marked_test(tmp_path, "def getDeviceCount():\n    return 1\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_gpu_check_does_not_import_missing_cupy(tmp_path):
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    result = _run_gpu_marked_test(tmp_path, None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout and "CuPy is not installed" in result.stdout
