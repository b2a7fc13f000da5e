"""`llmc grade` on an optimisation exercise (``metadata.llmc.kind = "performance"``), end to end on the CPU backend.

Chapter 02's `layernorm_forward_warp` is judged twice: for correctness as any exercise (secret cases, the
learner's process, provenance), then for performance from the memory counters of its launches, recorded at the
targets' sizes and replayed on fresh inputs in the grader's replay process (no learner Python runs there, and
nothing the learner's process says about its own counters is read). The CSV has two columns for it. A solved
notebook earns both; a correct naive kernel pasted in as the optimised one earns the correctness points only; a
fast kernel with a wrong result earns nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _grade_helpers import grade_notebooks, mutate, section, set_source, solved, source

pytestmark = pytest.mark.slow

CHAPTER = "02_layernorm"
EXERCISE = "layernorm_forward_warp"
CELL = "ex-layernorm_forward_warp"

NAIVE = r'''NAIVE_SRC = r"""
extern "C" __global__ void layernorm_rows(float* out, float* mean, float* rstd, const float* inp,
                                          const float* weight, const float* bias, int N, int C) {
    int row = blockIdx.x * blockDim.x + threadIdx.x;    // one thread per row: uncoalesced
    if (row >= N) return;
    const float* x = inp + (size_t)row * C;
    float m = 0.0f, v = 0.0f;
    for (int i = 0; i < C; i++) m += x[i];
    m /= C;
    for (int i = 0; i < C; i++) { float d = x[i] - m; v += d * d; }
    float s = 1.0f / sqrtf(v / C + 1e-5f);
    for (int i = 0; i < C; i++) out[(size_t)row * C + i] = (x[i] - m) * s * weight[i] + bias[i];
    mean[row] = m;
    rstd[row] = s;
}
"""
layernorm_rows = RawKernel(NAIVE_SRC, "layernorm_rows")


def layernorm_forward_warp(out, mean, rstd, inp, weight, bias, B, T, C):
    N = B * T
    layernorm_rows(((N + 127) // 128,), (128,), (out, mean, rstd, inp, weight, bias, np.int32(N), np.int32(C)))
'''


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("perf")
    subs = {
        "solved": solved(CHAPTER),
        "naive": set_source(solved(CHAPTER), CELL, NAIVE),
        "wrong_fast": mutate(
            solved(CHAPTER), CELL, "float m = warp_sum(sum) / C;", "float m = warp_sum(sum) / (C + 1);"
        ),
    }
    return (*grade_notebooks(folder, CHAPTER, subs, 7), folder)


def test_the_naive_source_is_correct_but_not_the_solution():
    assert "layernorm_forward_warp_kernel" in source(solved(CHAPTER), CELL)


def test_csv_has_a_correctness_and_a_performance_column(graded):
    header, rows, _, _ = graded
    assert f"{EXERCISE}:correctness" in header and f"{EXERCISE}:performance" in header
    assert EXERCISE not in header
    assert header.index(f"{EXERCISE}:performance") == header.index(f"{EXERCISE}:correctness") + 1


def test_solved_earns_both(graded):
    _, rows, stdout, _ = graded
    row = rows[f"solved_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("1", "2")
    assert row["total"] == row["max"]


def test_naive_kernel_earns_correctness_only(graded):
    _, rows, stdout, folder = graded
    row = rows[f"naive_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("1", "0")
    assert row["layernorm_forward"] == "3"  # the other exercises are untouched
    table = section(stdout, f"naive_{CHAPTER}.ipynb")
    assert "not optimised" in table and "global load sectors per request" in table
    feedback = (folder / f"naive_{CHAPTER}.feedback.md").read_text(encoding="utf-8")
    assert "MISS global load sectors per request" in feedback and "ok   unique bytes touched" in feedback


def test_wrong_fast_kernel_earns_nothing(graded):
    _, rows, stdout, _ = graded
    row = rows[f"wrong_fast_{CHAPTER}.ipynb"]
    assert (row[f"{EXERCISE}:correctness"], row[f"{EXERCISE}:performance"]) == ("0", "0")
    assert "wrong" in section(stdout, f"wrong_fast_{CHAPTER}.ipynb")
