"""Chapter 04b (where the time goes): what the notebook's prose relies on, beyond nbval and the student-copy tests.

- the exercise follows the contract (`transpose` is an opspec function) and its check cell calls both
  `check.forward` and `check.memory`;
- the solution passes both; the given slow kernel is right but misses the memory targets, and the FAIL line
  names each target it misses (and only those); each half of the fix alone still fails the other target;
- the numbers the prose quotes (sectors per request, wavefronts, occupancy) are what the cells print;
- the GPU-only cells say why they skip on the CPU backend;
- `llmc grade` gives the solution every point, an untouched student copy none and the slow kernel none
  (verdict `slow`).
"""

from __future__ import annotations

import numpy as np
import pytest
from _chapter_cells import assert_exercises_follow_the_contract, mutate, run, source
from _chapter_cells import load as load_chapter

from llmc_kernels import CheckFailed, check
from llmc_kernels.check.targets import TARGETS, judge

CHAPTER = "04b_where_the_time_goes"
LOADS = "global loads: at most 1.1x the ideal sectors"
STORES = "global stores: at most 1.1x the ideal sectors"
BANKS = "shared memory: no bank conflicts"


def test_exercises_follow_the_contract():
    assert_exercises_follow_the_contract(CHAPTER, {"transpose": 'check.forward("transpose", transpose)'})
    text = source(load_chapter(CHAPTER), "check-transpose")
    assert text.splitlines() == [
        "# NBVAL_CHECK_OUTPUT",
        'result = check.forward("transpose", transpose)',
        'result = check.memory("transpose", transpose)',
    ]


def test_the_solution_passes_both_checks():
    _, printed = run(CHAPTER, ["imports", "ex-transpose", "check-transpose"])
    assert printed.splitlines()[1:] == ["PASS transpose", "PASS transpose_memory"]


def _memory_failure(capsys, fn) -> str:
    with pytest.raises(CheckFailed):
        check.memory("transpose", fn)
    return capsys.readouterr().out


def test_the_slow_kernel_is_right_but_misses_the_targets(capsys):
    ns, printed = run(CHAPTER, ["imports", "slow-transpose"])
    assert "PASS transpose" in printed  # correct ...
    assert "28.6 (3.6)" in printed and "28.6 (1.0)" in printed  # ... with the counters the prose reads
    out = _memory_failure(capsys, ns["transpose_slow"])
    first = out.splitlines()[0]
    assert first == "FAIL transpose_memory: memory targets missed at T=200, C=136:", out
    assert f"{LOADS}: measured 27200 sectors, 8.00x the ideal 3400" in out
    assert f"{BANKS}: measured 54400 wavefronts" in out
    assert STORES not in out  # its stores run along rows of out already
    assert "hint: read inp along its rows" in out


@pytest.mark.parametrize(
    "old,new,missed,kept",
    [
        # padding only: the loads still run down columns of inp
        (None, None, LOADS, BANKS),
        # coalescing only: a column of an unpadded tile is one bank
        ("__shared__ float tile[TILE][TILE + 1];", "__shared__ float tile[TILE][TILE];", BANKS, LOADS),
    ],
    ids=["padding-only", "coalescing-only"],
)
def test_half_a_fix_misses_the_other_target(capsys, old, new, missed, kept):
    if old is None:
        cell = mutate(
            source(load_chapter(CHAPTER), "slow-transpose"),
            "__shared__ float tile[TILE][TILE];",
            "__shared__ float tile[TILE][TILE + 1];",
        )
        ns, _ = run(CHAPTER, ["imports", ("slow-transpose", cell)])
        fn = ns["transpose_slow"]
    else:
        cell = mutate(source(load_chapter(CHAPTER), "ex-transpose"), old, new)
        ns, _ = run(CHAPTER, ["imports", ("ex-transpose", cell)])
        fn = ns["transpose"]
    out = _memory_failure(capsys, fn)
    assert missed in out and kept not in out and STORES not in out


def test_a_wrong_transpose_is_not_judged_on_its_counters(capsys):
    cell = mutate(source(load_chapter(CHAPTER), "ex-transpose"), "tile[threadIdx.x][j];", "tile[j][threadIdx.x];")
    ns, _ = run(CHAPTER, ["imports", ("ex-transpose", cell)])
    out = _memory_failure(capsys, ns["transpose"])
    assert out.startswith("FAIL transpose_memory: transpose gives wrong results, so its counters were not judged")


def test_judge_reads_totals_and_says_when_nothing_was_launched():
    ideal = dict(
        global_load_sectors=100,
        global_load_ideal=100,
        global_load_requests=25,
        global_store_sectors=111,
        global_store_ideal=100,
        global_store_requests=25,
        shared_load_wavefronts=10,
        shared_load_ideal=10,
        shared_store_wavefronts=10,
        shared_store_ideal=10,
    )
    assert judge("transpose", [ideal]) == [
        f"{STORES}: measured 111 sectors, 1.11x the ideal 100; 4.44 sectors per request (ideal 4.00)"
    ]
    assert judge("transpose", [dict(ideal, global_store_sectors=110)]) == []
    assert "no kernel was launched" in judge("transpose", [])[0]
    assert TARGETS["transpose"].sizes == {"T": 200, "C": 136}


def test_the_prose_numbers_are_what_the_cells_print():
    ns, printed = run(
        CHAPTER, ["imports", "counters-two-copies", "row-col-sums", "banks-counters", "occupancy-formula"]
    )
    assert "32.0 (4.0)     12%" in printed and "4.0 (4.0)    100%" in printed
    assert "copy_chunked: 2048 load requests, 65536 sectors, 524288 bytes asked for" in printed
    assert "sectors/request 32.00 (ideal 4.00)" in printed and "sectors/request  3.40 (ideal 3.40)" in printed
    assert "tile[32][32]: shared stores  1.0 wavefronts/request, shared loads 32.0" in printed
    assert "tile[32][33]: shared stores  1.0 wavefronts/request, shared loads  1.0" in printed
    occupancy = ns["occupancy"]
    assert occupancy("H100 (cc 9.0)", 256, 64, 0) == (4, 0.5, "registers")
    assert occupancy("H100 (cc 9.0)", 256, 128, 0)[:2] == (2, 0.25)
    assert occupancy("T4 (cc 7.5)", 128, 32, 48 * 1024) == (1, 0.125, "shared memory")
    assert occupancy("H100 (cc 9.0)", 256, 255, 0)[:2] == (1, 0.125)  # concept question 3
    # the how-fast reading: 32 x 8 threads and the padded tile fill an SM up to 32 (H100) / 64 (T4) registers
    assert occupancy("H100 (cc 9.0)", 256, 32, 4224)[1] == 1.0 and occupancy("H100 (cc 9.0)", 256, 33, 4224)[1] < 1
    assert occupancy("T4 (cc 7.5)", 256, 64, 4224)[1] == 1.0


def test_gpu_only_cells_skip_on_the_cpu_backend():
    _, printed = run(CHAPTER, ["imports", "occupancy-gpu", "launch-overhead"])
    assert "On the CPU backend there is no register count" in printed
    assert "Timing skipped on the CPU backend" in printed


def test_the_bank_picture_and_the_formula_agree():
    # lane l reading tile[l][c]: bank (l * width + c) % 32, as the figure draws it
    for width, banks in ((32, 1), (33, 32)):
        assert len({(lane * width + 5) % 32 for lane in range(32)}) == banks
    assert len({(16 * lane + 3) % 32 for lane in range(32)}) == 2  # concept question 2 (width 48)
    assert np.array_equal(np.arange(4).reshape(2, 2).T, [[0, 2], [1, 3]])


@pytest.mark.slow
def test_grading_solved_full_untouched_nothing_slow_nothing(tmp_path):
    from _grade_helpers import llmc_grade, read_csv, set_source, solved, student, write

    slow = solved(CHAPTER)
    given = source(load_chapter(CHAPTER), "slow-transpose")
    kernel_only = given.split("from llmc_kernels.profiling import op_arguments")[0]
    set_source(
        slow, "ex-transpose", kernel_only + "\n\ndef transpose(out, inp, T, C):\n    transpose_slow(out, inp, T, C)\n"
    )
    subs = [
        write(tmp_path, "solved_04b_where_the_time_goes.ipynb", solved(CHAPTER)),
        write(tmp_path, "untouched_04b_where_the_time_goes.ipynb", student(CHAPTER)),
        write(tmp_path, "slow_04b_where_the_time_goes.ipynb", slow),
    ]
    proc = llmc_grade(*subs, "--csv", tmp_path / "grades.csv", "--seed", 7, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, rows = read_csv(tmp_path / "grades.csv")
    totals = {name: (row["total"], row["max"]) for name, row in rows.items()}
    assert totals == {
        "solved_04b_where_the_time_goes.ipynb": ("3", "3"),
        "untouched_04b_where_the_time_goes.ipynb": ("0", "3"),
        "slow_04b_where_the_time_goes.ipynb": ("0", "3"),
    }, proc.stdout
    feedback = (tmp_path / "slow_04b_where_the_time_goes.feedback.md").read_text(encoding="utf-8")
    assert "slow" in feedback and LOADS in feedback and BANKS in feedback


def test_grading_plans_the_memory_check_at_secret_aligned_sizes():
    from llmc_kernels.grade import secret
    from llmc_kernels.grade.cases import cases_for, plan_of

    plan = plan_of(source(load_chapter(CHAPTER), "check-transpose"))
    assert (plan.kind, plan.function, plan.op, plan.direction, plan.memory) == (
        "op",
        "transpose",
        "transpose",
        "forward",
        True,
    )
    assert plan_of('check.forward("transpose", transpose)').memory is False
    for seed in range(20):
        sizes = secret.memory_spec("transpose", seed).size_dict
        assert all(v % 8 == 0 and v % 32 and 100 <= v <= 240 for v in sizes.values()), sizes
    cases = cases_for(plan, 3)
    assert cases.provenance.sizes == cases.replay.sizes == secret.memory_spec("transpose", 3).size_dict
    assert any(c.sizes["T"] % 8 for c in cases.graded)  # correctness still on awkward sizes
