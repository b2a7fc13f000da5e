"""`llmc collect` gathers the learner's kernels into one ops module, and `llmc train --ops` trains with it.

Collected from solutions/ (the canonical answers), every op is the learner's and the tiny model trains with
them; a notebook with a broken exercise costs that op only (it falls back to the package's); a bad --ops file
is a clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from _model_helpers import data_dir_with_text

from llmc_kernels import collect, learner_ops, train
from llmc_kernels.collect_source import free_names, imports_for, indented

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


@pytest.fixture(scope="module")
def from_solutions(tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "my_ops.py"
    return collect.collect(SOLUTIONS, out)


def test_collect_from_the_solutions_gives_every_op(from_solutions):
    coll = from_solutions
    assert [r.function for r in coll.rows] == list(learner_ops.MODEL_OPS)
    assert all(r.check == "PASS" for r in coll.rows), coll.table()
    assert coll.learner_ops["matmul_forward"] == "03_matmul.ipynb"
    assert coll.learner_ops["adamw_update"] == "08_adamw.ipynb"
    table = coll.table()
    assert table.splitlines()[0].split() == ["op", "source", "check"]
    assert "encoder_backward                01_encoder.ipynb               PASS" in table


def test_flash_attention_never_stands_in_for_attention_forward(from_solutions):
    """Chapter 04's attention_forward_flash implements attention_forward but writes out only (never att, which
    the model's backward reads): collect does not even try it; the chapter's plain kernel is the op."""
    assert collect.substitutes("matmul_forward") and collect.substitutes("layernorm_forward")
    assert not collect.substitutes("attention_forward")
    found, _ = collect.candidates([ROOT / "solutions" / "04_attention.ipynb"])
    assert [c.exercise for c in found["attention_forward"]] == ["attention_forward"]
    assert not any(c.exercise == "attention_forward_flash" for cands in found.values() for c in cands)
    row = next(r for r in from_solutions.rows if r.function == "attention_forward")
    assert row.used.exercise == "attention_forward" and row.check == "PASS"
    # preferred optimisation exercises that do write every output are still used
    assert next(r for r in from_solutions.rows if r.function == "matmul_forward").used.exercise == (
        "matmul_forward_blocked"
    )


def test_the_collected_module_is_self_contained_and_says_whose_ops(from_solutions):
    text = from_solutions.out.read_text()
    assert "import numpy as np" in text and "from llmc_kernels.runtime import RawKernel" in text
    assert "from llmc_kernels.ops import" not in text, "all 16 ops are the learner's"
    assert "// BEGIN SOLUTION" in text, "the learner's cells are copied as they are"
    module = learner_ops.load(from_solutions.out)
    assert module.LEARNER_OPS == from_solutions.learner_ops and module.PACKAGE_OPS == {}
    described = learner_ops.describe(module)
    assert list(described["learner"]) == list(learner_ops.MODEL_OPS) and described["package"] == {}
    assert "16 of 16 are yours" in learner_ops.banner(module)


def test_train_tiny_with_the_collected_ops(from_solutions, tmp_path, monkeypatch, capsys):
    data_dir_with_text(tmp_path, monkeypatch)
    out = tmp_path / "run"
    rc = train.main(
        [
            "--backend",
            "cpu",
            "--model",
            "tiny",
            "--ops",
            str(from_solutions.out),
            "--steps",
            "4",
            "--batch-size",
            "1",
            "--seq-len",
            "16",
            "--lr",
            "3e-3",
            "--val-every",
            "4",
            "--sample-every",
            "0",
            "--out",
            str(out),
        ]
    )
    stdout = capsys.readouterr().out
    assert rc == 0, stdout
    assert "ops from my_ops.py: 16 of 16 are yours" in stdout
    assert "03_matmul.ipynb: matmul_forward, matmul_backward" in stdout, "the learner's tiled matmul, not BLAS"
    log = json.loads((out / "log.json").read_text())
    assert log["ops"]["namespace"] == "my_ops.py"
    assert log["ops"]["learner"]["layernorm_backward"] == "02_layernorm.ipynb" and log["ops"]["package"] == {}
    assert log["summary"]["last_val_loss"] < log["initial_val_loss"], "the loss falls"


def test_the_package_run_says_its_ops_are_the_packages(tmp_path):
    assert learner_ops.describe(None)["learner"] == {}
    from llmc_kernels import ops

    assert learner_ops.banner(ops).startswith("ops: the package's kernels")
    mixed = {name: getattr(ops, name) for name in learner_ops.MODEL_OPS}
    mixed["gelu_forward"] = lambda *args: None  # a hand-made namespace: one op of its own
    d = learner_ops.describe(mixed)
    assert d["learner"] == {"gelu_forward": "dict"} and len(d["package"]) == 15


# ------------------------------------------------------------------------------------------ failures
def _notebook_with(tmp_path, chapter: str, exercise: str, change) -> Path:
    nb = nbformat.read(ROOT / "solutions" / f"{chapter}.ipynb", as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("llmc", {})
        if meta.get("role") == "exercise" and meta.get("exercise") == exercise:
            cell.source = change(cell.source)
    path = tmp_path / f"{chapter}.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_failing_exercise_falls_back_for_that_op_only(tmp_path, capsys):
    wrong = _notebook_with(tmp_path, "05_gelu", "gelu_backward", lambda s: s.replace("0.5f", "0.4f"))
    out = tmp_path / "mixed_ops.py"
    rc = collect.main([str(wrong), "--out", str(out)])
    table = capsys.readouterr().out
    assert rc == 0
    rows = {line.split()[0]: line for line in table.splitlines()[2:] if line.strip()}
    assert rows["gelu_forward"].split()[1:] == ["05_gelu.ipynb", "PASS"]
    assert rows["gelu_backward"].split()[1:3] == ["package", "FAIL"] and "(05_gelu.ipynb)" in rows["gelu_backward"]
    assert "missing: no notebook given has it" in rows["adamw_update"]
    module = learner_ops.load(out)
    assert module.LEARNER_OPS == {"gelu_forward": "05_gelu.ipynb"}
    assert module.PACKAGE_OPS["gelu_backward"].startswith("FAIL (05_gelu.ipynb): wrong results")
    from llmc_kernels import ops

    assert module.gelu_backward is ops.gelu_backward and module.gelu_forward is not ops.gelu_forward


def test_a_crash_or_a_hang_costs_one_op(tmp_path):
    crash = _notebook_with(tmp_path, "06_residual", "residual_forward", lambda s: "import os\nos._exit(3)\n" + s)
    (tmp_path / "hang").mkdir()
    hang = _notebook_with(tmp_path / "hang", "01_encoder", "encoder_backward", lambda s: "while True:\n    pass\n" + s)
    coll = collect.collect([crash, hang], tmp_path / "ops.py", timeout=20)
    rows = {r.function: r for r in coll.rows}
    assert rows["residual_forward"].check.startswith("crash (06_residual.ipynb)")
    assert rows["encoder_backward"].check.startswith("hang (01_encoder.ipynb)")
    assert rows["residual_backward"].used and rows["encoder_forward"].used


def test_student_copies_collect_as_not_done(tmp_path):
    coll = collect.collect([ROOT / "chapters" / "06_residual.ipynb"], tmp_path / "ops.py", use_package=["gelu"])
    rows = {r.function: r for r in coll.rows}
    assert rows["residual_forward"].check == "not done (06_residual.ipynb)"
    assert rows["gelu_forward"].check == "not checked: --use-package"
    assert coll.learner_ops == {}


def test_use_package_names_an_op_or_a_function():
    assert collect.expand_ops(["matmul", "gelu_backward"]) == ["matmul_forward", "matmul_backward", "gelu_backward"]
    with pytest.raises(ValueError, match="not an op of the model"):
        collect.expand_ops(["vector_add"])


# ------------------------------------------------------------------------------------------ --ops errors
@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "no such file; write one with `llmc collect"),
        ("import numpy as np\nx = (\n", "importing it failed, line 2: SyntaxError"),
        ("raise RuntimeError('boom')\n", "importing it failed, line 1: RuntimeError: boom"),
        ("def gelu_forward(*a):\n    pass\n", "lacks encoder_forward, encoder_backward"),
    ],
)
def test_a_bad_ops_module_is_a_clear_error(tmp_path, capsys, content, expected):
    path = tmp_path / "bad_ops.py"
    if content is not None:
        path.write_text(content)
    rc = train.main(["--backend", "cpu", "--ops", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"llmc train: error: --ops {path}") and expected in err, err


# ------------------------------------------------------------------------------------------ the wrapping
def test_wrapping_indents_code_but_never_a_kernel_string():
    cell = (
        'SRC = r"""\n#define TILE 16\nextern "C" __global__ void k() {}\n"""\n%time x = 1\ndef f():\n    return SRC\n'
    )
    body = indented(cell)
    assert '#define TILE 16\nextern "C" __global__ void k() {}\n"""' in body, "string lines keep their text"
    assert '    SRC = r"""' in body and "    def f():\n        return SRC" in body
    assert "    pass  # an IPython magic was here: time x = 1" in body
    namespace = {}
    exec("def wrapper():\n" + body + "\n    return f\n", namespace)
    assert namespace["wrapper"]()().startswith("\n#define TILE 16\n")


def test_names_from_the_chapter_set_up_are_imported():
    cell = "def launch(out):\n    k = RawKernel(SRC, 'k')\n    return math.sqrt(TILE) + helper(out)\n"
    needed = free_names([cell])
    assert needed == {"RawKernel", "SRC", "math", "TILE", "helper"}
    found, left = imports_for(needed - collect.HEADER_NAMES, ["import math, os\nfrom x import helper as helper\n"])
    assert found == ["import math", "from x import helper as helper"] and left == {"SRC", "TILE"}
