"""check.forward / check.backward as chapters and graders call them: the PASS line, the result object and its
report, determinism, what fn receives, honesty, and argument errors. The functions checked are float32 NumPy
stand-ins (tests/mutants/numpy_ops.py): the check judges results, so a pure NumPy function is allowed."""

from __future__ import annotations

import numpy as np
import pytest
from mutants import numpy_ops as n

from llmc_kernels import check, opspec
from llmc_kernels import reference as ref
from llmc_kernels.check import result as check_result
from llmc_kernels.check.cases import POISON_BITS
from llmc_kernels.errors import CheckFailed

ALL = [(op, "forward", f) for op, f in n.FORWARD.items()] + [(op, "backward", f) for op, f in n.BACKWARD.items()]


@pytest.fixture(autouse=True)
def cpu_backend(monkeypatch):
    monkeypatch.setenv("LLMC_BACKEND", "cpu")


def run(direction, op, fn, **kw):
    return getattr(check, direction)(op, fn, **kw)


@pytest.mark.parametrize("op,direction,fn", ALL, ids=[f"{o}-{d}" for o, d, _ in ALL])
def test_right_function_passes_with_exactly_one_line(capsys, op, direction, fn):
    result = run(direction, op, fn)
    name = check.function_name(op, direction)
    assert capsys.readouterr().out == f"PASS {name}\n"
    assert repr(result) == str(result) == f"PASS {name}"
    assert result and result.passed


def test_function_names():
    assert check.function_name("crossentropy", "backward") == "crossentropy_softmax_backward"
    assert check.function_name("adamw", "forward") == "adamw_update"
    assert check.function_name("vector_add", "forward") == "vector_add"
    assert check.function_name("layernorm", "backward") == "layernorm_backward"


@pytest.mark.parametrize(
    "op,needle",
    [
        ("adamw", "adamw has only an update (adamw_update)"),
        ("softmax", "fused into the cross-entropy backward"),
        ("vector_add", "vector_add has no backward"),
    ],
)
def test_backward_of_an_op_without_one_is_a_clear_error(op, needle):
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        check.backward(op, lambda *a: None)


def test_unknown_op_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown op 'layer_norm'.*layernorm"):
        check.forward("layer_norm", n.layernorm_forward)


def test_bad_arguments():
    with pytest.raises(TypeError, match="fn must be your function gelu_forward"):
        check.forward("gelu", "gelu_forward")
    with pytest.raises(ValueError, match="unknown: D"):
        check.forward("gelu", n.gelu_forward, sizes={"D": 3})
    with pytest.raises(ValueError, match="C % NH == 0"):
        check.forward("attention", n.attention_forward, sizes={"B": 1, "T": 2, "C": 5, "NH": 2})
    with pytest.raises(TypeError, match="seed"):
        check.forward("gelu", n.gelu_forward, seed=1.5)


def test_report_holds_sizes_errors_tolerances_orders_timings_and_warnings(capsys):
    result = check.backward("matmul", n.matmul_backward)
    text = str(result.report())
    assert capsys.readouterr().out == "PASS matmul_backward\n"  # report() printed nothing by itself
    assert text.startswith("PASS matmul_backward: 5 cases on the cpu backend (thread orders forward, reverse), seed 0")
    assert "case 1: B=2, T=37, C=67, OC=45" in text
    assert "case 3: B=3, T=13, C=96, OC=130 (bias=None)" in text
    assert "(finite differences); expected from finite differences of the float64 reference forward" in text
    for tensor in ("dinp", "dweight", "dbias"):
        assert f"      {tensor}" in text
    assert "max abs err" in text and "max rel err" in text and "tolerance" in text
    assert "forward " in text and " ms" in text and "reverse " in text
    assert "compiler warnings: none" in text
    assert repr(result.report()) == text  # shows as text in a notebook


def test_report_lists_compiler_warnings_of_the_kernels_fn_uses(capsys):
    class RawKernel:  # duck-typed like runtime.RawKernel
        warnings = ['cell In[3], line 4: warning: variable "x" was declared but never referenced']

    kern = RawKernel()

    def gelu(out, inp, N):
        _ = kern.warnings  # fn uses the kernel object
        n.gelu_forward(out, inp, N)

    text = str(check.forward("gelu", gelu).report())
    assert "compiler warnings:\n      cell In[3], line 4: warning" in text


def test_same_seed_same_everything_other_seed_other_inputs(capsys):
    seen = []

    def recording(out, inp, N):
        seen.append(inp.copy())
        n.gelu_forward(out, inp, N)

    a = check.forward("gelu", recording).report()
    first = [x.copy() for x in seen]
    seen.clear()
    b = check.forward("gelu", recording, seed=None).report()
    assert all(np.array_equal(x, y) for x, y in zip(first, seen)) and len(first) == len(seen) == 8
    strip = lambda r: [line for line in str(r).splitlines() if " ms" not in line and "total" not in line]
    assert strip(a) == strip(b)
    seen.clear()
    check.forward("gelu", recording, seed=7)
    assert not np.array_equal(first[0], seen[0])
    assert capsys.readouterr().out == "PASS gelu_forward\n" * 3


def test_each_case_runs_under_two_thread_orders(capsys):
    from llmc_kernels import runtime

    orders = []

    def recording(out, inp, N):
        orders.append(runtime.current_launch_options().schedule)
        n.gelu_forward(out, inp, N)

    check.forward("gelu", recording)
    assert orders == ["forward", "reverse"] * 4


def test_what_fn_receives(capsys):
    calls = []

    def recording(out, preatt, att, inp, B, T, C, NH):
        calls.append(
            dict(
                types=[type(x) for x in (B, T, C, NH)],
                arrays=(out, preatt, att, inp),
                poisoned=[np.all(x.view(np.uint32) == POISON_BITS) for x in (out, preatt, att)],
            )
        )
        n.attention_forward(out, preatt, att, inp, B, T, C, NH)

    check.forward("attention", recording)
    for c in calls:
        assert c["types"] == [int] * 4
        assert all(type(a) is np.ndarray and a.dtype == np.float32 and a.flags.c_contiguous for a in c["arrays"])
        assert all(c["poisoned"])


def test_sizes_include_awkward_and_tiny_ones_and_large_magnitudes(capsys):
    shapes, largest = [], []

    def recording(probs, logits, B, T, V, Vp):
        shapes.append((B, T, V, Vp))
        largest.append(float(np.abs(logits[..., :V]).max()))
        n.softmax_forward(probs, logits, B, T, V, Vp)

    check.forward("softmax", recording)
    assert (1, 1, 1, 1) in shapes
    assert any(Vp > V for _, _, V, Vp in shapes)
    assert any(V % 32 and V > 256 for _, _, V, _ in shapes)
    assert max(largest) >= 300


def test_accumulators_arrive_prefilled_and_int_ids_are_int32(capsys):
    calls = []

    def recording(dwte, dwpe, dout, inp, B, T, C):
        calls.append((np.count_nonzero(dwte) == dwte.size, np.count_nonzero(dwpe) == dwpe.size, inp.dtype))
        n.encoder_backward(dwte, dwpe, dout, inp, B, T, C)

    check.backward("encoder", recording)
    assert all(c == (True, True, np.dtype(np.int32)) for c in calls)


def test_matmul_checked_with_and_without_bias(capsys):
    for direction, fn, slot in (("forward", n.matmul_forward, 3), ("backward", n.matmul_backward, 2)):
        kinds = []

        def recording(*args, fn=fn, slot=slot, kinds=kinds):
            kinds.append(args[slot] is None)
            fn(*args)

        run(direction, "matmul", recording)
        assert True in kinds and False in kinds


def test_adamw_hyperparameters(capsys):
    seen = []

    def recording(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t):
        seen.append(
            (
                t,
                weight_decay,
                np.count_nonzero(m) == m.size,
                bool(np.all(v >= 0) and np.any(v > 0)),
                [type(x) for x in (lr, beta1, beta2, eps, weight_decay)],
                type(t),
            )
        )
        n.adamw_update(params, grads, m, v, num_params, lr, beta1, beta2, eps, weight_decay, t)

    check.forward("adamw", recording)
    assert len({s[0] for s in seen}) >= 3 and min(s[0] for s in seen) == 1
    assert all(s[1] > 0 and s[2] and s[3] and s[4] == [float] * 5 and s[5] is int for s in seen)


def test_sizes_argument_runs_just_those_sizes(capsys):
    shapes = []

    def recording(out, mean, rstd, inp, weight, bias, B, T, C):
        shapes.append((B, T, C))
        n.layernorm_forward(out, mean, rstd, inp, weight, bias, B, T, C)

    result = check.forward("layernorm", recording, sizes=[{"B": 1, "T": 2, "C": 3}, {"C": 5}])
    assert shapes == [(1, 2, 3)] * 2 + [(2, 3, 5)] * 2  # missing sizes from opspec's example sizes
    assert len(result.cases) == 2


def test_calling_the_reference_is_refused_and_fails_the_check(capsys):
    def cheat(out, inp, N):
        ref.gelu_forward(out, inp, N)

    with pytest.raises(CheckFailed, match="refused a call to llmc_kernels.reference.gelu_forward"):
        check.forward("gelu", cheat)
    assert "launch it with RawKernel" in capsys.readouterr().out


def test_calling_the_package_ops_is_refused_and_fails_the_check(capsys):
    from llmc_kernels import ops

    def cheat(out, inp, N):
        ops.gelu_forward(out, inp, N)

    with pytest.raises(CheckFailed, match="refused a call to llmc_kernels.ops.gelu_forward"):
        check.forward("gelu", cheat)


def test_reference_works_again_after_a_check(capsys):
    check.forward("gelu", n.gelu_forward)
    out = np.zeros(3)
    ref.gelu_forward(out, np.ones(3), 3)
    assert out[0] == pytest.approx(0.841192)


def test_not_implemented_propagates(capsys):
    def todo(out, inp, N):
        raise NotImplementedError("remove the marked line")

    with pytest.raises(NotImplementedError, match="remove the marked line"):
        check.forward("gelu", todo)


def test_learners_own_python_errors_propagate(capsys):
    def typo(out, inp, N):
        return undefined_name  # noqa: F821

    with pytest.raises(NameError):
        check.forward("gelu", typo)


def test_failure_renders_short_in_ipython(capsys):
    with pytest.raises(CheckFailed) as info:
        check.forward("gelu", lambda out, inp, N: None)
    assert info.value._render_traceback_() == ["CheckFailed: gelu_forward did not pass (details above)"]


def test_result_is_not_echoed_twice_in_the_same_cell(capsys, monkeypatch):
    monkeypatch.setattr(check_result, "execution_count", lambda: 5)
    result = check.forward("gelu", n.gelu_forward)
    result._ipython_display_()  # the cell's value, same execution count: silent
    assert capsys.readouterr().out == "PASS gelu_forward\n"
    result._ipython_display_()  # displayed again later: shows the line
    assert capsys.readouterr().out == "PASS gelu_forward\n"


def test_every_op_function_has_a_tolerance_and_cases():
    from llmc_kernels.check.cases import DEFAULT_CASES, FD_CASES

    for spec in opspec.OPS.values():
        assert spec.op in DEFAULT_CASES
        for fn in spec.functions:
            assert fn.name in check.TOLERANCES
        assert (spec.backward is not None) == (spec.op in FD_CASES)


@pytest.fixture
def fake_gpu(monkeypatch):
    """The cuda path of the check without a GPU: backend() says cuda, and 'cupy' is NumPy underneath."""
    import sys
    import types

    from llmc_kernels import runtime

    stream = types.SimpleNamespace(synchronize=lambda: None)
    fake = types.SimpleNamespace(
        array=lambda a, copy=True: np.array(a, copy=True),
        asnumpy=np.asarray,
        cuda=types.SimpleNamespace(get_current_stream=lambda: stream),
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(runtime, "backend", lambda: runtime._override.get() or "cuda")
    return runtime


def test_on_a_gpu_a_cpu_preflight_comes_first(capsys, fake_gpu):
    seen = []

    def recording(out, inp, N):
        seen.append(
            (fake_gpu.backend(), fake_gpu.current_launch_options().schedule, fake_gpu.current_launch_options().check)
        )
        n.gelu_forward(out, inp, N)

    result = check.forward("gelu", recording)
    assert capsys.readouterr().out == "PASS gelu_forward\n"
    assert seen[:2] == [("cpu", "forward", False), ("cpu", "reverse", False)]  # the pre-flight
    assert seen[2:] == [("cuda", "forward", True)] * 4  # then each case once
    text = str(result.report())
    assert "on the cuda backend (launch_options(check=True))" in text
    assert "pre-flight: N=1000 on the cpu backend under thread orders forward, reverse: passed" in text


def test_a_fault_found_in_the_preflight_never_reaches_the_gpu(capsys, fake_gpu):
    from llmc_kernels.errors import KernelOutOfBounds

    calls = []

    def oob_on_cpu(out, inp, N):
        calls.append(fake_gpu.backend())
        if fake_gpu.backend() == "cpu":
            raise KernelOutOfBounds("out-of-bounds read: index 1000 of argument 1", kernel="k")
        n.gelu_forward(out, inp, N)

    with pytest.raises(CheckFailed) as info:
        check.forward("gelu", oob_on_cpu)
    assert calls == ["cpu"]
    assert "(case 1 of 4, pre-flight on the cpu backend, thread order 'forward')" in str(info.value)


def test_a_function_that_only_works_with_cupy_is_told_so_in_the_preflight(capsys, fake_gpu):
    def cupy_only(out, inp, N):
        if isinstance(out, np.ndarray) and fake_gpu.backend() == "cpu":
            raise TypeError("Unsupported type <class 'numpy.ndarray'>")

    with pytest.raises(CheckFailed, match="not cupy.RawKernel"):
        check.forward("gelu", cupy_only)


def test_a_gpu_sessions_xp_is_numpy_while_fn_runs_on_the_cpu_backend(monkeypatch, capsys):
    """On a GPU the notebook's ``xp`` is CuPy; the check's CPU pre-flight (and the performance check's counters)
    run the function on the cpu backend, where a scratch buffer from ``xp.empty_like`` must be NumPy, as the same
    notebook would make on a CPU. A stand-in CuPy module that refuses NumPy arrays shows which one was called."""
    import sys
    import types

    fake_cupy = types.ModuleType("cupy")
    fake_cupy.empty_like = lambda a: (_ for _ in ()).throw(TypeError("cupy.empty_like got a NumPy array"))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    ns = {"xp": fake_cupy, "n": n}
    exec(
        "def gelu_forward(out, inp, N):\n"
        "    scratch = xp.empty_like(inp)       # a scratch buffer, made with the session's xp\n"
        "    n.gelu_forward(scratch, inp, N)\n"
        "    out[...] = scratch\n",
        ns,
    )
    check.forward("gelu", ns["gelu_forward"])
    assert capsys.readouterr().out.startswith("PASS gelu_forward")
    assert ns["xp"] is fake_cupy  # the learner's name is CuPy again afterwards
