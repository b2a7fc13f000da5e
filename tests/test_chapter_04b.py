"""Chapter 04b (where the time goes): what the notebook's prose relies on, beyond nbval and the student-copy tests.

- the exercise follows the contract (`transpose` is an opspec function) and is an optimisation exercise: its
  check cell calls `check.performance("transpose", transpose)`, 3 points of which 2 for performance;
- the solution passes; the given slow kernel is right but fails on performance only (`PerformanceFailed`),
  and the FAIL lines name each target it misses (and only those); each half of the fix alone still misses the
  other target; a wrong transpose fails on correctness, its counters not judged;
- the targets are measured at the aligned sizes the prose names, correctness on the op's awkward sizes;
- the numbers the prose quotes (sectors per request, wavefronts, occupancy) are what the cells print;
- the pictures in the prose (`figures.coalescing`, `figures.bank_conflicts`) give the counts `profile` counts;
- the GPU-only cells say why they skip on the CPU backend;
- `llmc grade` gives the solution every point, an untouched student copy none and the slow kernel the
  correctness point only (verdict `not optimised`).
"""

from __future__ import annotations

import numpy as np
import pytest
from _chapter_cells import assert_exercises_follow_the_contract, mutate, run, source
from _chapter_cells import load as load_chapter

from llmc_kernels import CheckFailed, check
from llmc_kernels.check.performance import TARGETS, PerformanceFailed

CHAPTER = "04b_where_the_time_goes"
LOADS = "global load sectors per request"
STORES = "global store sectors per request"
BANKS_LD = "shared-memory load wavefronts (bank conflicts)"
BANKS_ST = "shared-memory store wavefronts (bank conflicts)"


def test_exercises_follow_the_contract():
    assert_exercises_follow_the_contract(CHAPTER, {"transpose": 'check.performance("transpose", transpose)'})
    nb = load_chapter(CHAPTER)
    assert source(nb, "check-transpose").splitlines() == [
        "# NBVAL_CHECK_OUTPUT",
        'result = check.performance("transpose", transpose)',
    ]
    meta = {c["id"]: c["metadata"]["llmc"] for c in nb["cells"] if c.get("id") in ("ex-transpose", "check-transpose")}
    for m in meta.values():
        assert (m["kind"], m["points"], m["performance_points"]) == ("performance", 3, 2)
    assert meta["ex-transpose"]["implements"] == "transpose"


def test_the_targets_are_measured_at_aligned_sizes_and_correctness_at_awkward_ones():
    from llmc_kernels import opspec

    table = TARGETS["transpose"]
    assert table.sizes == {"T": 200, "C": 136}  # multiples of 8, not of 32: the ideal is reachable
    assert all(v % 8 == 0 and v % 32 for v in table.sizes.values())
    assert {t.metric: t.limit for t in table.targets} == {
        "load_sectors": 1.1,
        "store_sectors": 1.1,
        "shared_load_conflicts": 1.0,
        "shared_store_conflicts": 1.0,
    }
    assert table.baseline == "transpose"  # the GPU time is compared with llmc_kernels.ops.transpose
    assert any(dict(c.sizes)["C"] % 8 for c in opspec.OPS["transpose"].cases)  # check.forward's awkward sizes


def test_the_solution_passes():
    ns, printed = run(CHAPTER, ["imports", "ex-transpose", "check-transpose"])
    lines = printed.splitlines()[1:]
    assert lines[:3] == [
        "PASS transpose",
        "PASS transpose performance",
        "  memory counters (cpu backend, T=200, C=136):",
    ]
    assert all(line.startswith("    ok   ") for line in lines[3:]) and len(lines) == 7, printed
    assert ns["result"].passed and ns["result"].correctness


def _performance_failure(capsys, fn) -> tuple[PerformanceFailed, str]:
    with pytest.raises(PerformanceFailed) as info:
        check.performance("transpose", fn)
    return info.value, capsys.readouterr().out


def test_the_slow_kernel_is_right_but_fails_on_performance_only(capsys):
    ns, printed = run(CHAPTER, ["imports", "slow-transpose"])
    assert "PASS transpose" in printed  # correct ...
    assert "28.6 (3.6)" in printed and "28.6 (1.0)" in printed  # ... with the counters the prose reads
    exc, out = _performance_failure(capsys, ns["transpose_slow"])
    assert exc.correct is True
    lines = out.splitlines()
    assert lines[0] == "PASS transpose", out  # the correctness check passed
    assert lines[1] == "FAIL transpose performance: your kernel is correct, but not fast yet (3 of 4 targets missed)"
    assert f"MISS {LOADS}: 8.00x ideal (target <= 1.10x ideal)" in out
    assert f"MISS {BANKS_LD}: 28.57x ideal" in out and f"MISS {BANKS_ST}: 28.57x ideal" in out
    assert f"ok   {STORES}: 1.00x ideal" in out  # its stores run along rows of out already
    hints = out.split("what the targets expect:")[1]
    assert LOADS in hints and BANKS_LD in hints and STORES not in hints
    assert {t.metric for t in exc.targets if not t.ok} == {
        "load_sectors",
        "shared_load_conflicts",
        "shared_store_conflicts",
    }


@pytest.mark.parametrize(
    "old,new,missed,kept",
    [
        # padding only: the loads still run down columns of inp
        (None, None, {"load_sectors"}, BANKS_LD),
        # coalescing only: a column of an unpadded tile is one bank
        (
            "__shared__ float tile[TILE][TILE + 1];",
            "__shared__ float tile[TILE][TILE];",
            {"shared_load_conflicts"},
            LOADS,
        ),
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
    exc, out = _performance_failure(capsys, fn)
    assert {t.metric for t in exc.targets if not t.ok} == missed
    assert f"ok   {kept}" in out and f"ok   {STORES}" in out


def test_a_wrong_transpose_fails_on_correctness_and_is_not_judged_on_its_counters(capsys):
    cell = mutate(source(load_chapter(CHAPTER), "ex-transpose"), "tile[threadIdx.x][j];", "tile[j][threadIdx.x];")
    ns, _ = run(CHAPTER, ["imports", ("ex-transpose", cell)])
    with pytest.raises(CheckFailed) as info:
        check.performance("transpose", ns["transpose"])
    assert not isinstance(info.value, PerformanceFailed)
    out = capsys.readouterr().out
    assert out.startswith("FAIL transpose: ") and "performance" not in out


def test_grading_plans_the_performance_check_at_the_targets_sizes():
    from llmc_kernels.grade.cases import cases_for, plan_of

    plan = plan_of(source(load_chapter(CHAPTER), "check-transpose"))
    assert (plan.kind, plan.function, plan.op, plan.direction, plan.performance) == (
        "op",
        "transpose",
        "transpose",
        "forward",
        "transpose",
    )
    assert plan_of('check.forward("transpose", transpose)').performance == ""
    cases = cases_for(plan, 3)
    assert cases.performance.sizes == cases.performance_replay.sizes == {"T": 200, "C": 136}
    assert any(c.sizes["T"] % 8 or c.sizes["C"] % 8 for c in cases.graded)  # correctness still on awkward sizes


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


STRIDED_SRC = r"""
extern "C" __global__ void strided_load(float* out, const float* inp, int stride) {
    out[threadIdx.x] = inp[threadIdx.x * stride];     // one warp: lane l reads float l * stride
}
"""


def test_the_pictures_say_what_the_counters_count():
    """The chapter's pictures (llmc_kernels.figures, shown as figures/*.svg in the prose) state sector and
    wavefront counts in their titles: they are what llmc_kernels.profile counts for the same accesses."""
    from llmc_kernels import figures, profile
    from llmc_kernels.runtime import RawKernel, use_backend

    nb = load_chapter(CHAPTER)
    shown = [
        c["metadata"]["llmc"]["figure"] for c in nb["cells"] if c["metadata"].get("llmc", {}).get("role") == "figure"
    ]
    assert shown == ["coalescing", "bank_conflicts"]
    ids = [c.get("id") for c in nb["cells"]]
    assert ids.index("coalescing-intro") < ids.index("figure-coalescing") < ids.index("coalescing-counters")
    assert ids.index("banks-intro") < ids.index("figure-bank-conflicts") < ids.index("banks-counters-intro")

    titles = [ax.get_title() for ax in figures.coalescing().axes]
    kern = RawKernel(STRIDED_SRC, "strided_load")
    with use_backend("cpu"):
        for title, stride in zip(titles, (1, 2, 8)):
            inp = np.arange(32 * stride, dtype=np.float32)
            out = np.zeros(32, dtype=np.float32)
            k = profile(kern, (1,), (32,), (out, inp, np.int32(stride))).kernels[0]
            assert np.array_equal(out, inp[::stride])
            assert k.global_load_requests == 1
            assert f"stride {stride}" in title and f"\n{k.global_load_sectors} sectors moved" in title, title

    # lane l reading tile[l][5]: bank (l * width + 5) % 32; the banks-counters cell counts the wavefronts
    titles = [ax.get_title() for ax in figures.bank_conflicts().axes]
    assert titles[0].endswith("1 bank(s): 32-way conflict, 32 wavefronts")
    assert titles[1].endswith("32 bank(s): no conflict, 1 wavefront")
    _, printed = run(CHAPTER, ["imports", "banks-counters"])
    assert "tile[32][32]: shared stores  1.0 wavefronts/request, shared loads 32.0" in printed
    assert "tile[32][33]: shared stores  1.0 wavefronts/request, shared loads  1.0" in printed
    assert len({(16 * lane + 3) % 32 for lane in range(32)}) == 2  # concept question 2 (width 48)


@pytest.mark.slow
def test_grading_solved_full_untouched_nothing_slow_correctness_only(tmp_path):
    from _grade_helpers import llmc_grade, read_csv, section, set_source, solved, student, write

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
    header, rows = read_csv(tmp_path / "grades.csv")
    assert "transpose:correctness" in header and "transpose:performance" in header and "transpose" not in header
    got = {
        name: (row["transpose:correctness"], row["transpose:performance"], row["total"], row["max"])
        for name, row in rows.items()
    }
    assert got == {
        "solved_04b_where_the_time_goes.ipynb": ("1", "2", "3", "3"),
        "untouched_04b_where_the_time_goes.ipynb": ("0", "0", "0", "3"),
        "slow_04b_where_the_time_goes.ipynb": ("1", "0", "1", "3"),
    }, proc.stdout
    assert "not optimised" in section(proc.stdout, "slow_04b_where_the_time_goes.ipynb")
    feedback = (tmp_path / "slow_04b_where_the_time_goes.feedback.md").read_text(encoding="utf-8")
    assert "not optimised" in feedback
    assert f"MISS {LOADS}" in feedback and f"MISS {BANKS_LD}" in feedback and f"ok   {STORES}" in feedback
