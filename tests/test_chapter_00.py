"""Chapter 00 (set-up and a first kernel): its exercise matches the SPEC, and the errors it shows in prose
are the errors the runtime and the checks really give."""

from _chapter_cells import assert_exercises_follow_the_contract, load, run

CHAPTER = "00_first_kernel"


def _llmc_cells(role):
    return [c for c in load(CHAPTER)["cells"] if c.get("metadata", {}).get("llmc", {}).get("role") == role]


def test_exercises_and_checks_pair_up_with_spec_names():
    assert_exercises_follow_the_contract(CHAPTER, {"vector_add": 'check.forward("vector_add", vector_add)'})
    checks = {c["metadata"]["llmc"]["exercise"]: "".join(c["source"]) for c in _llmc_cells("check")}
    assert checks["vector_add"].splitlines() == [
        "# NBVAL_CHECK_OUTPUT",
        'result = check.forward("vector_add", vector_add)',
    ]


def test_the_whoami_table_shows_the_index_formula():
    ns, printed = run(CHAPTER, ["imports", "whoami"])
    rows = {line.split()[0]: [int(v) for v in line.split()[1:]] for line in printed.splitlines()[1:]}
    assert rows["blockIdx.x"] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert rows["threadIdx.x"] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert rows["i"] == list(range(10))


def test_a_python_float_is_refused_with_the_fix():
    _, printed = run(CHAPTER, ["imports", "scale", "scale-error"])
    assert "KernelArgumentError" in printed and "np.float32(2.5)" in printed and "alpha" in printed


def test_a_missing_bounds_check_is_named():
    _, printed = run(CHAPTER, ["imports", "scale", "scale-error", "oob-demo"])
    assert printed.splitlines()[-1].startswith("KernelOutOfBounds")
    assert "inp" in printed and "10" in printed and "blockIdx=(2,0,0)" in printed


def test_too_few_blocks_fails_the_check_with_the_grid_hint():
    _, printed = run(CHAPTER, ["imports", "ex-vector_add", "failure-demo"])
    assert "FAIL vector_add" in printed
    assert "never written" in printed and "too few threads" in printed
    assert "(check.forward raised CheckFailed)" in printed


def test_the_solution_passes():
    _, printed = run(CHAPTER, ["imports", "ex-vector_add", "check-vector_add"])
    assert printed.splitlines()[1:] == ["PASS vector_add"]
