"""The race conformance kernels on a GPU (issue 14): the racy kernels run there (what a GPU shows is printed:
`pytest -m gpu -s tests/test_races_gpu.py`), and only what is robust is asserted: lost updates only ever
lose, a plain reset among atomics never counts more than the atomics, and the race-free kernels give the same
results as on the CPU backend, whose detector finds them clean. bench/races_gpu.py prints the full table."""

from __future__ import annotations

import numpy as np
import pytest
from race_kernels import CLEAN, RACY

from llmc_kernels.runtime import RawKernel, launch_options, use_backend

pytestmark = pytest.mark.gpu


def on_gpu(case, runs=20):
    import cupy as cp

    kernel = RawKernel(case.code, case.kernel, backend="cuda")
    out = []
    for _ in range(runs):
        args = [cp.asarray(a) if isinstance(a, np.ndarray) else a for a in case.args()]
        kernel(case.grid, case.block, tuple(args))
        cp.cuda.get_current_stream().synchronize()
        out.append([cp.asnumpy(a) if isinstance(a, cp.ndarray) else a for a in args])
    return out


@pytest.mark.parametrize("case", RACY, ids=lambda c: c.id)
def test_racy_kernel_on_the_gpu(case):
    runs = on_gpu(case)
    if case.expect is not None:
        want = case.expect(case.args())
        right = sum(all(np.allclose(r[i], v, rtol=1e-5, atol=1e-5) for i, v in want.items()) for r in runs)
        print(
            f"\n{case.id}: race-free result in {right}/{len(runs)} runs on the GPU "
            f"(the CPU backend reports {case.kind} at lines {case.lines})"
        )
    if case.id == "global_plus_equals":
        want = case.expect(case.args())[0]
        for r in runs:
            assert (r[0] <= want).all() and r[0].sum() > 0  # lost updates only lose
    if case.id == "atomic_and_plain_store":
        for r in runs:
            assert 0 < r[0][0] <= 128


@pytest.mark.parametrize("case", CLEAN, ids=lambda c: c.id)
def test_race_free_kernel_matches_the_cpu_backend(case):
    (gpu,) = on_gpu(case, runs=1)
    with use_backend("cpu"), launch_options(races=True):
        cpu = case.args()
        RawKernel(case.code, case.kernel)(case.grid, case.block, tuple(cpu))
    for g, c in zip(gpu, cpu):
        if isinstance(c, np.ndarray):
            np.testing.assert_allclose(g, c, rtol=1e-5, atol=1e-5)
