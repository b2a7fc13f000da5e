"""The CPU backend's race detector (issue 14): racy kernels are reported with the right kind, buffer and lines
under every thread order; race-free kernels (the patterns a detector must not flag, the package's kernels as
ops launches them, the mutation suite's correct kernels) are clean; checks fail with KernelRace; the option
turns it off. The kernels live in tests/race_kernels.py (the GPU tests and bench/races_gpu.py use them too).
"""

from __future__ import annotations

import numpy as np
import pytest
from race_kernels import CLEAN, RACY

from llmc_kernels import check, ops
from llmc_kernels.check.cases import build, default_specs
from llmc_kernels.errors import CheckFailed, KernelError, KernelRace
from llmc_kernels.opspec import OPS
from llmc_kernels.runtime import RawKernel, launch_options, use_backend

SCHEDULES = ("forward", "reverse", "shuffle")


@pytest.fixture(autouse=True)
def cpu_backend():
    with use_backend("cpu"):
        yield


def run(case, schedule="forward", races=True):
    kernel = RawKernel(case.code, case.kernel)
    args = case.args()
    with launch_options(schedule=schedule, races=races):
        kernel(case.grid, case.block, tuple(args))
    return args


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("case", RACY, ids=lambda c: c.id)
def test_racy_kernel_is_reported_under_every_thread_order(case, schedule):
    with pytest.raises(KernelRace) as info:
        run(case, schedule)
    e = info.value
    assert isinstance(e, KernelError)
    assert (e.kind, e.lines, e.buffer) == (case.kind, case.lines, case.buffer), str(e)
    assert e.kernel == case.kernel and e.pairs >= 1
    assert case.hint in e.hint and case.hint in str(e)
    text = str(e)
    assert case.kind in text and f"line {case.lines[0]}" in text
    for a in e.accesses:  # both threads, with block, thread, warp and lane
        assert len(a.block) == 3 and len(a.thread) == 3 and a.lane == a.thread[0] % 32
    if case.kind != "uninitialised-read":
        assert (
            len(e.accesses) == 2
            and e.accesses[0].thread != e.accesses[1].thread
            or e.accesses[0].block != e.accesses[1].block
        )


def test_report_names_both_threads_lines_and_the_count():
    case = next(c for c in RACY if c.id == "global_plus_equals")
    with pytest.raises(KernelRace) as info:
        run(case)
    e = info.value
    text = str(e)
    assert "write-write race on argument 0 'float* dwte'" in text
    assert text.count("dwte[ix * C + c] += dout[i];") == 2  # both learner lines, quoted
    assert "racing pairs found" in text and e.pairs == 144  # deterministic: the same on every run
    assert "use atomicAdd(&dwte[...], value) on line 7" in e.hint
    assert e.accesses[0].op == e.accesses[1].op == "update"


def test_the_pair_count_is_the_same_under_every_order():
    counts = set()
    for s in SCHEDULES:
        with pytest.raises(KernelRace) as info:
            run(next(c for c in RACY if c.id == "cross_block_read_after_write"), s)
        counts.add(info.value.pairs)
    assert counts == {63}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("case", CLEAN, ids=lambda c: c.id)
def test_race_free_kernel_is_clean(case, schedule):
    kernel = RawKernel(case.code, case.kernel)
    impl = kernel._impl("cpu")
    warnings = impl.launch(
        case.grid + (1,) * (3 - len(case.grid)),
        case.block + (1,) * (3 - len(case.block)),
        case.args(),
        0,
        schedule,
        20.0,
        races=True,
    )
    assert bool(warnings) == case.warning, warnings
    if case.warning:
        assert "same value" in warnings[0] and "not a failure" in warnings[0]


def test_detector_is_off_outside_checks_and_when_turned_off():
    case = next(c for c in RACY if c.id == "global_plus_equals")
    run(case, races=False)  # the option turns it off
    kernel = RawKernel(case.code, case.kernel)
    kernel(case.grid, case.block, tuple(case.args()))  # default outside a check: off (speed)


def test_env_turns_it_on_everywhere(monkeypatch):
    monkeypatch.setenv("LLMC_CPU_RACES", "1")
    case = next(c for c in RACY if c.id == "global_plus_equals")
    with pytest.raises(KernelRace):
        RawKernel(case.code, case.kernel)(case.grid, case.block, tuple(case.args()))


ENCODER_RACY = r"""
extern "C" __global__ void encoder_backward_kernel(float* dwte, float* dwpe, const float* dout, const int* inp,
                                                   int B, int T, int C) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * T * C) return;
    int bt = idx / C, c = idx % C, t = bt % T;
    int ix = inp[bt];
    dwte[ix * C + c] += dout[idx];
    atomicAdd(&dwpe[t * C + c], dout[idx]);
}
"""


def encoder_backward(code):
    kernel = RawKernel(code, "encoder_backward_kernel")

    def encoder_backward(dwte, dwpe, dout, inp, B, T, C):
        n = B * T * C
        kernel(((n + 127) // 128,), (128,), (dwte, dwpe, dout, inp, np.int32(B), np.int32(T), np.int32(C)))

    return encoder_backward


def test_check_fails_with_kernel_race_and_the_session_survives(capsys):
    with pytest.raises(CheckFailed) as info:
        check.backward("encoder", encoder_backward(ENCODER_RACY))
    assert isinstance(info.value.__cause__, KernelRace)
    msg = str(info.value)
    assert "KernelRace" in msg and "write-write race" in msg and "atomicAdd" in msg and "a race" in msg
    fixed = ENCODER_RACY.replace("dwte[ix * C + c] += dout[idx];", "atomicAdd(&dwte[ix * C + c], dout[idx]);")
    assert repr(check.backward("encoder", encoder_backward(fixed))) == "PASS encoder_backward"
    with launch_options(races=False):  # speed runs: off, and the racy kernel passes as before
        assert check.backward("encoder", encoder_backward(ENCODER_RACY))


def test_same_value_race_is_a_warning_on_the_check_result(capsys):
    code = r"""
extern "C" __global__ void vadd(float* out, const float* a, const float* b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
    if (i < n && i > 0) out[i - 1] = a[i - 1] + b[i - 1];
}
"""
    kernel = RawKernel(code, "vadd")

    def vector_add(out, a, b, n):
        kernel(((n + 63) // 64,), (64,), (out, a, b, np.int32(n)))

    result = check.forward("vector_add", vector_add)
    assert capsys.readouterr().out == "PASS vector_add\n"
    assert result.race_warnings and "same value" in result.race_warnings[0]
    assert "race warnings" in str(result.report())


def _op_cases():
    for op, spec in OPS.items():
        for direction, fn in (("forward", spec.forward), ("backward", spec.backward)):
            if fn is not None and hasattr(ops, fn.name):
                yield op, direction, fn.name


@pytest.mark.parametrize("op,direction,fname", list(_op_cases()), ids=lambda x: str(x))
def test_package_kernels_as_ops_launches_them_are_clean(op, direction, fname):
    for spec in default_specs(op, direction)[:2]:
        case = build(fname, spec, 0)
        args = [
            None if not hasattr(v, "arg") else (None if v.initial is None else v.initial.copy()) for v in case.values
        ]
        args = [a if hasattr(v, "arg") else v for a, v in zip(args, case.values)]
        for schedule in ("forward", "reverse"):
            with launch_options(races=True, schedule=schedule):
                getattr(ops, fname)(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])


def test_package_kernels_in_a_training_step_are_clean():
    from llmc_kernels.model import GPT2
    from llmc_kernels.model.config import GPT2Config

    cfg = GPT2Config(max_seq_len=16, vocab_size=50, padded_vocab_size=64, num_layers=1, num_heads=2, channels=16)
    model = GPT2.from_config(cfg, seed=0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, (2, 8)).astype(np.int32)
    with launch_options(races=True):
        model.forward(x, np.roll(x, -1, axis=1))
        model.zero_grad()
        model.backward()
        model.update(1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
    with launch_options(races=True):  # the package's own tiled matmul kernels too
        a, w = rng.standard_normal((2, 5, 12)).astype(np.float32), rng.standard_normal((7, 12)).astype(np.float32)
        out = np.zeros((2, 5, 7), np.float32)
        ops.matmul_forward_kernel(out, a, w, np.zeros(7, np.float32), 2, 5, 12, 7)
        dinp, dw, db = np.zeros_like(a), np.zeros_like(w), np.zeros(7, np.float32)
        ops.matmul_backward_kernel(dinp, dw, db, out, a, w, 2, 5, 12, 7)


def test_an_endless_loop_under_the_detector_ends_with_a_clear_error_not_out_of_memory():
    # the detector records every access of an epoch; a loop that never ends must not fill the machine's memory
    from llmc_kernels.errors import KernelTrap

    spin = RawKernel(
        'extern "C" __global__ void spin(float* o) { int i = 0; while (o[0] >= 0) { o[i & 7] += 1; i++; } }',
        "spin",
        backend="cpu",
    )
    with pytest.raises(KernelTrap, match="a loop that never ends"):
        with launch_options(races=True, timeout=120):
            spin((1,), (1,), (np.zeros(8, np.float32),))
