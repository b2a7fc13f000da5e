"""chapters/ is generated from solutions/ by tools/make_student.py: up to date, free of answers, and each
learner's notebook runs up to its first exercise and stops there with NotImplementedError.

The generator itself is tested on a small notebook built here, so these tests mean something before (and
beside) the course's own chapters.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
CHAPTERS = ROOT / "chapters"

_spec = importlib.util.spec_from_file_location("make_student", ROOT / "tools" / "make_student.py")
make_student = importlib.util.module_from_spec(_spec)
sys.modules["make_student"] = make_student
_spec.loader.exec_module(make_student)
from colab_setup_cell import SETUP_CELL_ID, repository, setup_source  # noqa: E402  (tools/, via make_student)

CELL_TIMEOUT = 600


# --- running notebooks ---------------------------------------------------------------------------------


def execute(nb, cwd: Path, monkeypatch) -> tuple[int, str, str] | None:
    """Run `nb` in a fresh kernel of this Python on the CPU backend, in `cwd`.

    Returns None when every cell ran, else (index of the failing cell, exception name, its message).
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return KernelSpec(
                argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                display_name="this Python",
                language="python",
            )

    monkeypatch.setenv("LLMC_BACKEND", "cpu")
    # the package of this checkout, installed or not (CI installs it, editable, from this same folder)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = copy.deepcopy(nb)
    km = KernelManager(kernel_spec_manager=ThisPython(), kernel_name="python3")
    client = NotebookClient(
        nb, km=km, timeout=CELL_TIMEOUT, allow_errors=False, resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute()
    except CellExecutionError as err:
        index = next(
            i
            for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.outputs)
        )
        return index, err.ename, err.evalue
    finally:  # the kernel is ours (we made its manager): stop it
        if client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return None


def roles(nb, role: str) -> list[int]:
    return [i for i, cell in enumerate(nb.cells) if cell.get("metadata", {}).get("llmc", {}).get("role") == role]


def assert_stops_at_first_exercise(nb, where: str, cwd: Path, monkeypatch) -> None:
    exercises = roles(nb, "exercise")
    assert exercises, f"{where} has no exercise cell"
    failure = execute(nb, cwd, monkeypatch)
    assert failure is not None, f"{where} ran to the end: its exercises raise nothing"
    index, ename, evalue = failure
    name = nb.cells[exercises[0]].metadata["llmc"]["exercise"]
    assert ename == "NotImplementedError", f"{where}: cell {index} failed with {ename}: {evalue}"
    assert evalue.startswith(f"{name}:"), f"{where}: cell {index} raised NotImplementedError({evalue!r})"
    end = exercises[1] if len(exercises) > 1 else len(nb.cells)
    assert exercises[0] <= index < end, (
        f"{where}: stopped at cell {index}, not at the first exercise (cell {exercises[0]}) or its check"
    )


# --- the course's notebooks ----------------------------------------------------------------------------


def chapter_names() -> list[str]:
    return sorted(p.name for p in SOLUTIONS.glob("*.ipynb"))


def test_chapters_are_up_to_date(capsys):
    status = make_student.main(["--check"])
    out = capsys.readouterr()
    assert status == 0, f"run: python tools/make_student.py\n{out.out}{out.err}"


def test_every_solution_has_a_chapter_and_back():
    assert chapter_names() == sorted(p.name for p in CHAPTERS.glob("*.ipynb"))


def region_only_lines(solution_source: str) -> set[str]:
    """Lines that the solution has only inside BEGIN/END SOLUTION regions (hints excepted)."""
    inside, outside, in_region = set(), set(), False
    for line in solution_source.split("\n"):
        stripped = line.strip()
        if re.match(r"(//|#|<!--)\s*BEGIN SOLUTION", stripped):
            in_region = True
        elif re.match(r"(//|#|<!--)\s*END SOLUTION", stripped):
            in_region = False
        elif stripped:
            (inside if in_region else outside).add(stripped)
    hints = {line.strip() for line in make_student._hint_lines(solution_source.split("\n"), "//")}
    hints |= {line.strip() for line in make_student._hint_lines(solution_source.split("\n"), "#")}
    return inside - outside - hints


@pytest.mark.parametrize("name", chapter_names())
def test_no_solution_text_survives(name):
    solution = nbformat.read(SOLUTIONS / name, as_version=4)
    chapter = nbformat.read(CHAPTERS / name, as_version=4)
    text = json.dumps(chapter)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    by_id = {cell.id: cell for cell in chapter.cells}
    kept = [c for c in solution.cells if not make_student.is_instructor_only(c)]  # concept answers: never
    assert [c.id for c in kept] == [c.id for c in chapter.cells]
    for cell in kept:
        student_lines = {line.strip() for line in by_id[cell.id].source.split("\n")}
        leaked = region_only_lines(cell.source) & student_lines
        assert not leaked, f"{name}, cell {cell.id}: solution lines survive: {sorted(leaked)}"
        if cell.cell_type == "code":
            assert by_id[cell.id].outputs == [] and by_id[cell.id].execution_count is None


@pytest.mark.slow  # runs each chapter's notebook
@pytest.mark.parametrize("name", chapter_names())
def test_chapter_runs_until_its_first_exercise(name, tmp_path, monkeypatch):
    chapter = nbformat.read(CHAPTERS / name, as_version=4)
    if not roles(chapter, "exercise"):
        solution = nbformat.read(SOLUTIONS / name, as_version=4)
        kept = [c for c in solution.cells if not make_student.is_instructor_only(c)]  # concept answers: never
        assert [c.source for c in chapter.cells] == [c.source for c in kept]
        pytest.skip("no exercise: the chapter is its solution without outputs, which nbval runs")
    assert_stops_at_first_exercise(chapter, f"chapters/{name}", tmp_path, monkeypatch)


# --- the generator, on a notebook built here ------------------------------------------------------------

VECTOR_ADD = '''\
import numpy as np

VECTOR_ADD = r"""
extern "C" __global__ void vector_add(float* out, const float* a, const float* b, int N) {
    // BEGIN SOLUTION: add one pair of elements per thread
    // HINT: the global index of a thread is blockIdx.x * blockDim.x + threadIdx.x
    // and the last block may have threads past the end of the arrays.
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) out[i] = a[i] + b[i];
    // END SOLUTION
}
"""

def vector_add(out, a, b, N):
    # BEGIN SOLUTION
    # END SOLUTION
    out[:N] = a[:N] + b[:N]  # stands in for the launch, so this test needs no runtime
'''

SCALE = """\
def scale(x, s):
    if s != 1.0:
        # BEGIN SOLUTION: multiply x by s in place
        # HINT: NumPy's in-place operators write into the array you were given
        x *= s
        # END SOLUTION
"""


def exercise_cell(source: str, name: str, role: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata = {"llmc": {"role": role, "exercise": name, "points": 1}, "tags": [role]}
    return cell


def synthetic_solution():
    nb = nbformat.v4.new_notebook()
    nb.metadata["llmc"] = {"chapter": "98_synthetic", "version": "1"}
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    check_add = (
        "# NBVAL_CHECK_OUTPUT\na = np.arange(5, dtype=np.float32)\nout = np.full(5, np.nan, np.float32)\n"
        "vector_add(out, a, a, 5)\nprint('PASS vector_add' if (out == 2 * a).all() else 'FAIL')"
    )
    check_scale = (
        "# NBVAL_CHECK_OUTPUT\nx = np.ones(3)\nscale(x, 2.0)\nprint('PASS scale' if (x == 2).all() else 'FAIL')"
    )
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A synthetic chapter\n\nAdding vectors, one thread per element."),
        nbformat.v4.new_code_cell("print('before the exercises')"),
        exercise_cell(VECTOR_ADD, "vector_add", "exercise"),
        exercise_cell(check_add, "vector_add", "check"),
        nbformat.v4.new_markdown_cell(
            "Why the guard?\n\n<!-- BEGIN SOLUTION -->\n"
            "Because the grid is rounded up to whole blocks.\n<!-- END SOLUTION -->"
        ),
        exercise_cell(SCALE, "scale", "exercise"),
        exercise_cell(check_scale, "scale", "check"),
    ]
    for cell in nb.cells[1:]:  # outputs, as an executed solution has
        if cell.cell_type == "code":
            cell.execution_count = 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="old output\n")]
    return nb


@pytest.fixture
def project(tmp_path):
    """A miniature project: solutions/ with the synthetic notebook, the real _config.yml, a _toc.yml."""
    (tmp_path / "solutions").mkdir()
    (tmp_path / "chapters").mkdir()
    nbformat.write(synthetic_solution(), tmp_path / "solutions" / "98_synthetic.ipynb")
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    (tmp_path / "_toc.yml").write_text((ROOT / "_toc.yml").read_text())
    return tmp_path


def run(project: Path, *extra: str) -> int:
    return make_student.main(
        [
            *extra,
            "--solutions",
            str(project / "solutions"),
            "--chapters",
            str(project / "chapters"),
            "--config",
            str(project / "_config.yml"),
            "--toc",
            str(project / "_toc.yml"),
        ]
    )


def generated(project: Path):
    assert run(project) == 0
    solution = nbformat.read(project / "solutions" / "98_synthetic.ipynb", as_version=4)
    chapter = nbformat.read(project / "chapters" / "98_synthetic.ipynb", as_version=4)
    return solution, chapter


def test_generator_replaces_regions(project):
    solution, chapter = generated(project)
    exercise = chapter.cells[3].source  # the set-up cell comes first
    assert "    // TODO: add one pair of elements per thread" in exercise
    assert "    // HINT: the global index of a thread is blockIdx.x * blockDim.x + threadIdx.x" in exercise
    assert "    // and the last block may have threads past the end of the arrays." in exercise
    assert "out[i] = a[i] + b[i]" not in exercise and "int i =" not in exercise
    assert (
        '    raise NotImplementedError("vector_add: remove this line once you have written the kernel above")'
        in exercise.split("\n")
    )
    scale = chapter.cells[6].source.split("\n")
    assert "        # TODO: multiply x by s in place" in scale
    assert "        # HINT: NumPy's in-place operators write into the array you were given" in scale
    assert '        raise NotImplementedError("scale: replace this line with your code")' in scale
    assert "x *= s" not in chapter.cells[6].source
    assert "*Your answer here.*" in chapter.cells[5].source and "rounded up" not in chapter.cells[5].source
    assert "SOLUTION" not in json.dumps(chapter)


def test_generator_keeps_ids_and_metadata_and_strips_outputs(project):
    solution, chapter = generated(project)
    assert [c.id for c in chapter.cells] == [c.id for c in solution.cells]
    assert [c.metadata for c in chapter.cells] == [c.metadata for c in solution.cells]
    assert chapter.metadata["llmc"] == {"chapter": "98_synthetic", "version": "1"}
    for cell in chapter.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert any(c.get("outputs") for c in solution.cells), "the solution keeps its outputs"
    nbformat.validate(chapter)


def test_setup_cell_comes_first_in_solution_and_chapter(project):
    solution, chapter = generated(project)
    expected = setup_source(*repository(ROOT / "_config.yml"))
    for nb in (solution, chapter):
        first = nb.cells[0]
        assert first.id == SETUP_CELL_ID and first.cell_type == "code" and first.source == expected
        assert first.metadata["llmc"]["role"] == "setup"
        assert sum(make_student._is_setup(c) for c in nb.cells) == 1
    url, branch = repository(ROOT / "_config.yml")
    assert f"git+{url}@{branch}" in expected
    compile(expected, "setup", "exec")


def test_setup_cell_follows_the_configured_repository(project):
    config = project / "_config.yml"
    config.write_text(re.sub(r"(?m)^(\s+url:).*$", r"\1 https://github.com/someone/fork", config.read_text()))
    _, chapter = generated(project)
    assert "git+https://github.com/someone/fork@main" in chapter.cells[0].source


def test_toc_lists_generated_chapters(project):
    generated(project)
    toc = (project / "_toc.yml").read_text()
    assert "  - caption: Chapters\n    chapters:\n      - file: chapters/98_synthetic\n" in toc
    before, after = toc.split(make_student.TOC_BEGIN)
    assert "book/setup" in before and "book/instructors" in after


def test_check_detects_everything_out_of_date(project, capsys):
    assert run(project, "--check") == 1  # nothing generated yet
    generated(project)
    assert run(project, "--check") == 0
    capsys.readouterr()
    assert run(project) == 0 and "wrote" not in capsys.readouterr().out  # idempotent
    chapter_path = project / "chapters" / "98_synthetic.ipynb"
    pristine = chapter_path.read_text()

    chapter_path.write_text(pristine.replace("TODO: add one pair", "TODO: add a pair"))
    assert run(project, "--check") == 1
    assert run(project) == 0 and chapter_path.read_text() == pristine

    solution_path = project / "solutions" / "98_synthetic.ipynb"
    solution = nbformat.read(solution_path, as_version=4)
    solution.cells[0].source += "\n# edited by hand"
    nbformat.write(solution, solution_path)
    assert run(project, "--check") == 1
    assert run(project) == 0 and run(project, "--check") == 0

    (project / "chapters" / "99_orphan.ipynb").write_text(pristine)
    assert run(project, "--check") == 1
    assert run(project) == 0 and not (project / "chapters" / "99_orphan.ipynb").exists()

    toc = project / "_toc.yml"
    toc.write_text(toc.read_text().replace("      - file: chapters/98_synthetic\n", ""))
    assert run(project, "--check") == 1
    capsys.readouterr()


def test_student_copy_stops_at_its_first_exercise(project, tmp_path, monkeypatch):
    solution, chapter = generated(project)
    assert_stops_at_first_exercise(chapter, "the synthetic chapter", tmp_path, monkeypatch)
    assert execute(solution, tmp_path, monkeypatch) is None, "the solution runs to the end"


def test_student_kernel_string_still_compiles(project):
    """NVRTC (as on a GPU, with no GPU needed) compiles the kernel with its body replaced by a TODO."""
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="needs cuda-bindings (the test extra)")
    _, chapter = generated(project)
    namespace: dict = {}
    exec(chapter.cells[3].source, namespace)
    source = namespace["VECTOR_ADD"].encode()

    def compile_ok(code: bytes) -> bool:
        try:
            err, prog = nvrtc.nvrtcCreateProgram(code, b"vector_add.cu", 0, [], [])
        except RuntimeError as missing:  # the NVRTC library itself is absent
            pytest.skip(f"NVRTC is not available: {missing}")
        assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
        (result,) = nvrtc.nvrtcCompileProgram(prog, 1, [b"-arch=compute_75"])
        nvrtc.nvrtcDestroyProgram(prog)
        return result == nvrtc.nvrtcResult.NVRTC_SUCCESS

    assert compile_ok(source)
    assert not compile_ok(source.replace(b"int N) {", b"int N) { int x = ;"))  # the test can fail


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda nb: nb.cells[5].__setitem__("source", nb.cells[5].source.replace("        # END SOLUTION\n", "")),
            "never closed",
        ),
        (
            lambda nb: nb.cells[2].__setitem__(
                "source", nb.cells[2].source.replace("    if (i < N)", "    // BEGIN SOLUTION\n    if (i < N)")
            ),
            "do not nest",
        ),
        (lambda nb: nb.cells[1].__setitem__("source", "x = 1\n# END SOLUTION"), "no matching BEGIN"),
        (
            lambda nb: nb.cells[5].__setitem__(
                "source", nb.cells[5].source.replace("        # END SOLUTION", "        // END SOLUTION")
            ),
            "does not match",
        ),
        (lambda nb: nb.cells[1].__setitem__("source", "# BEGIN SOLUTION\nx = 1\n# END SOLUTION"), None),
        (lambda nb: nb.cells[5].__setitem__("source", "# BEGIN SOLUTION\nx = 1\n# END SOLUTION"), "when the cell runs"),
        (
            lambda nb: nb.cells[5].__setitem__(
                "source", "def f():\n    # BEGIN SOLUTION\n    return (1 +\n    # END SOLUTION\n        2)"
            ),
            "not valid Python",
        ),
        (lambda nb: nb.cells[3].metadata["llmc"].pop("points"), "points"),
        (lambda nb: nb.cells[3].metadata.__setitem__("tags", []), "needs the tag 'check'"),
        (lambda nb: nb.metadata["llmc"].pop("version"), "llmc.version"),
    ],
    ids=[
        "unclosed",
        "nested",
        "stray-end",
        "mismatched",
        "ok-outside-exercises",
        "raise-at-cell-level",
        "broken-python",
        "no-points",
        "no-tag",
        "no-version",
    ],
)
def test_generator_refuses_broken_solutions(project, capsys, change, message):
    path = project / "solutions" / "98_synthetic.ipynb"
    nb = nbformat.read(path, as_version=4)
    change(nb)
    nbformat.write(nb, path)
    status = run(project)
    err = capsys.readouterr().err
    if message is None:  # a plain code cell may raise at cell level
        assert status == 0, err
        return
    assert status == 2 and message in err, err
    assert "98_synthetic.ipynb" in err
    assert not (project / "chapters" / "98_synthetic.ipynb").exists(), "nothing is written on error"
