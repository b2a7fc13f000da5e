"""The GPU time target of `llmc grade --backend cuda` (llmc_kernels/grade/gputime.py).

CPU tests (no GPU): the worker records the learner's function at the op's GPU sizes without running a kernel and
without the inputs (record-only trace); the replay-side measurement, run with NumPy and the cpu backend at small
sizes, verifies the outputs before and after timing and times the package's baseline; the grader's decisions
from the replay's answers (fake times: within and over the limit, wrong outputs, no GPU, malformed answers); the
feedback names the GPU, both times, the ratio and the limit; the cpu backend's grading is unchanged.

GPU tests (``@pytest.mark.gpu``, skipped without one): `llmc grade --backend cuda` end to end on chapter 04b's
`transpose` -- the solution earns every point; a kernel that meets every memory counter but runs on one block
(one multiprocessor) earns the correctness points only, with its time in the feedback; a kernel right at the
graded sizes that skips the work at the GPU sizes earns the correctness points only -- and the solved
optimisation exercises of chapters 02, 03, 04 and 07 earn their performance points.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _grade_helpers import exercise_ids, llmc_grade, mutate, read_csv, section, set_source, solved, source, write

from llmc_kernels.check.performance import TARGETS
from llmc_kernels.grade import exercise as gx
from llmc_kernels.grade import gputime, wire
from llmc_kernels.grade import worker as grade_worker
from llmc_kernels.grade.cases import Plan
from llmc_kernels.grade.judge import Verdict
from llmc_kernels.grade.sandbox import Limits
from llmc_kernels.grade.trace import RecordTracer, TraceError
from llmc_kernels.runtime import RawKernel

CHAPTER = "04b_where_the_time_goes"
CELL = "ex-transpose"
PLAN = Plan("op", "transpose", "transpose", "forward", "transpose")

ONE_BLOCK = r'''TRANSPOSE_SRC = r"""
#define TILE 32
// the tiled transpose, but ONE block walks over every tile: the same accesses (every memory counter at its
// target), on one multiprocessor
extern "C" __global__ void transpose_one_block(float* out, const float* inp, int T, int C) {
    __shared__ float tile[TILE][TILE + 1];
    int tiles_c = (C + TILE - 1) / TILE, tiles_t = (T + TILE - 1) / TILE;
    for (int k = blockIdx.x; k < tiles_c * tiles_t; k += gridDim.x) {
        int bx = k % tiles_c, by = k / tiles_c;
        int c = bx * TILE + threadIdx.x;
        for (int j = threadIdx.y; j < TILE; j += blockDim.y) {
            int t = by * TILE + j;
            if (t < T && c < C) tile[j][threadIdx.x] = inp[(size_t)t * C + c];
        }
        __syncthreads();
        int t = by * TILE + threadIdx.x;
        for (int j = threadIdx.y; j < TILE; j += blockDim.y) {
            int c_out = bx * TILE + j;
            if (c_out < C && t < T) out[(size_t)c_out * T + t] = tile[threadIdx.x][j];
        }
        __syncthreads();
    }
}
"""
transpose_one_block = RawKernel(TRANSPOSE_SRC, "transpose_one_block")


def transpose(out, inp, T, C):
    transpose_one_block((1,), (32, 8), (out, inp, np.int32(T), np.int32(C)))
'''

# right at every graded size (at most 160 x 90) and at the counters' 200 x 136; at the GPU sizes it writes nothing
SKIP_LARGE = (
    "__shared__ float tile[TILE][TILE + 1];",
    "__shared__ float tile[TILE][TILE + 1];\n    if (T * C > 1000000) return;",
)


def _solution_namespace(chapter: str = CHAPTER, cell: str = CELL, text: str | None = None) -> dict:
    ns = {"np": np, "xp": np, "RawKernel": RawKernel}
    exec(text if text is not None else source(solved(chapter), cell), ns)
    return ns


@pytest.fixture
def launch_hook():
    """The worker's launch hook, installed for the test and taken out afterwards."""
    from llmc_kernels import runtime

    original = runtime.RawKernel.__call__
    grade_worker.install_launch_hook()
    yield
    runtime.RawKernel.__call__ = original


@pytest.fixture
def small_gpu_sizes(monkeypatch):
    """The GPU sizes of transpose and of the fused classifier made small enough for the cpu backend."""
    for op, sizes in (
        ("transpose", {"T": 200, "C": 136}),
        ("fused_classifier", {"B": 3, "T": 7, "V": 999, "Vp": 1024}),
    ):
        monkeypatch.setitem(TARGETS, op, dataclasses.replace(TARGETS[op], gpu_sizes=sizes))


def record(fn, fname: str) -> tuple[dict, dict]:
    """What the worker sends for the GPU timing run of ``fn``: (meta, arrays), through the wire."""
    case = gputime.timing_case(fname)
    req = {"cases": [json.loads(json.dumps(gx._case_meta(case)))], "checked": fname, "launch_timeout": 10.0}
    run = {"index": 7, "case": 0, "backend": "cpu", "schedule": "forward", "trace": True, "record_only": True}
    meta, arrays = grade_worker.call(fn, req, {}, run, None)
    return wire.decode(wire.encode(meta, arrays)[8:])


def measure(meta, arrays, fname, times=(1.0, 1.0), name="Fake GPU 80GB"):
    """:func:`gputime.measure` on NumPy and the cpu backend; the timer runs each function twice and says ``times``."""
    runs = []

    def timer(pairs, repeats, warmup):
        for _ in range(2):
            for call, before in pairs:
                before()
                call()
        runs.append(repeats + warmup)
        return list(times)

    blobs = {k[6:]: v for k, v in arrays.items() if k.startswith("trace.")}
    out = gputime.measure(
        {"fname": fname, "seed": 1234}, meta["trace"], blobs, xp=np, backend="cpu", timer=timer, name=name
    )
    return out, runs


# ------------------------------------------------------------------------------------------ the worker's side
def test_the_timing_case_sends_no_arrays():
    case = gputime.timing_case("attention_forward")
    assert case.arrays == {} and case.sizes == {"B": 8, "T": 1024, "C": 768, "NH": 12}
    assert case.alloc["preatt"] == ((8, 12, 1024, 1024), np.dtype("float32"))
    assert case.alloc["inp"] == ((8, 1024, 2304), np.dtype("float32"))
    assert case.args[4:] == [{"int": 8}, {"int": 1024}, {"int": 768}, {"int": 12}]
    meta = gx._case_meta(case)
    assert json.loads(json.dumps(meta))["alloc"]["out"] == [[8, 1024, 768], "<f4"]


def test_runs_on_the_cpu_backend_are_unchanged_and_cuda_adds_one_record_only_run():
    cpu = gx.runs_for(PLAN, 5, "cpu")
    assert not any(r.get("record_only") or r["group"] == "gpu_time" for r in cpu)
    assert [r["group"] for r in cpu][-2:] == [None, "performance"]
    cuda = gx.runs_for(PLAN, 5, "cuda")
    timing = [r for r in cuda if r["group"] == "gpu_time"]
    assert len(timing) == 1 and timing[0]["record_only"] and timing[0]["backend"] == "cpu"
    assert timing[0]["case"] == 5 + 2  # after the provenance and the counters' cases
    assert not any(r["group"] == "gpu_time" for r in gx.runs_for(Plan("op", "f", "transpose", "forward"), 5, "cuda"))


def test_the_record_only_trace_at_gpu_sizes_runs_no_kernel_and_records_the_launches(launch_hook):
    """GPT-2's logits (1.6 GB) at B=8, T=1024: recorded in a moment, without running the kernel (the cpu backend
    would take many minutes) and without touching the buffers' memory."""
    ns = _solution_namespace("07_softmax_crossentropy", "ex-fused_classifier")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    meta, arrays = record(ns["fused_classifier"], "fused_classifier")
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 400 * 1024  # KiB: nowhere near 1.6 GB
    assert meta["ok"], meta["error"]
    assert not [k for k in arrays if k.startswith("out.")]  # nothing ran, nothing to send back
    trace = meta["trace"]
    assert [b["grader"] for b in trace["buffers"]] == ["logits", "losses", "dlosses", "targets"]
    (launch,) = [e["launch"] for e in trace["events"]]
    assert launch["name"] == "fused_classifier_kernel" and launch["grid"] == [8 * 1024] and launch["block"] == [256]
    assert launch["args"][0] == {"buf": 0, "offset": 0, "dtype": "<f4", "shape": [8, 1024, 50304],
                                 "strides": [1024 * 50304 * 4, 50304 * 4, 4]}  # fmt: skip
    assert launch["args"][4:] == [{"scalar": "int32", "value": 50257}, {"scalar": "int32", "value": 50304}]


def test_a_record_only_tracer_never_runs_a_launch_and_records_host_writes_compactly(monkeypatch):
    k = RawKernel('extern "C" __global__ void k(float* x, int n) { }', "k", "cpu")
    big = np.zeros(1 << 20, np.float32)
    tracer = RecordTracer({"x": big})

    def never():
        raise AssertionError("a record-only launch ran")

    big[:] = 0.0  # no change: nothing recorded
    tracer.launch(k, (1,), (32,), (big, np.int32(5)), 0, never)
    big[:4] = 1.0  # a host write: its bytes
    tracer.launch(k, (1,), (32,), (big, np.int32(5)), 0, never)
    big[:] = 0.0  # back to zeros: recorded as zeros, not as 4 MB of bytes
    scratch = np.zeros(1 << 20, np.float32)  # a zero scratch buffer: zeros too
    tracer.launch(k, (2,), (32,), (big, np.int32(5)), 0, never)
    tracer.launch(k, (2,), (32,), (scratch, np.int32(5)), 0, never)
    meta, blobs = tracer.finish()
    kinds = [next(iter(e)) if "set" not in e else ("zero" if e.get("zero") else "blob") for e in meta["events"]]
    assert kinds == ["launch", "blob", "launch", "zero", "launch", "zero", "launch"]
    assert list(blobs) == ["set0"] and tracer.skipped == 4
    monkeypatch.setattr("llmc_kernels.grade.trace.MAX_RECORDED_WRITES", 1 << 20)
    tracer = RecordTracer({"x": np.zeros(1 << 20, np.float32)})
    tracer.arrays[0][:] = 1.0
    with pytest.raises(TraceError, match="MiB of host writes"):
        tracer.launch(k, (1,), (32,), (tracer.arrays[0], np.int32(5)), 0, never)
    assert "host writes" in tracer.refused


# ------------------------------------------------------------------------------------------ the replay's side
def test_measure_verifies_then_times_the_launches_and_the_package_kernel(launch_hook, small_gpu_sizes):
    meta, arrays = record(_solution_namespace()["transpose"], "transpose")
    out, runs = measure(meta, arrays, "transpose", times=(0.30, 0.25))
    assert out["wrong"] == [] and out["device"] == "Fake GPU 80GB" and out["sizes"] == {"T": 200, "C": 136}
    assert (out["ms"], out["baseline"], out["baseline_ms"]) == (0.30, "transpose", 0.25)
    assert out["repeats"] == gputime.REPEATS and 3 <= out["warmup"] <= 6 and len(runs) == 1
    result, wrong = gputime.read_timing(out, "transpose")
    assert not wrong and result.ratio == pytest.approx(1.2) and result.ok


def test_measure_restores_the_buffers_before_each_run(launch_hook, small_gpu_sizes):
    """The fused classifier overwrites its input logits: each run starts from the inputs again, or the outputs of
    the last timed run, which are verified too, would be wrong."""
    ns = _solution_namespace("07_softmax_crossentropy", "ex-fused_classifier")
    meta, arrays = record(ns["fused_classifier"], "fused_classifier")
    out, _ = measure(meta, arrays, "fused_classifier")
    assert out["wrong"] == [] and out["baseline"] == "fused_classifier"


@pytest.mark.parametrize("fname, sizes", [("fused_classifier", {"B": 2, "T": 3, "V": 50, "Vp": 64}),
                                          ("layernorm_forward", {"B": 2, "T": 5, "C": 40})])  # fmt: skip
def test_the_comparison_on_the_device_agrees_with_compare(fname, sizes):
    """At the GPU sizes the outputs are compared where they lie (on the GPU); what passes there passes compare."""
    from llmc_kernels.check import TOLERANCES
    from llmc_kernels.check.cases import CaseSpec, build
    from llmc_kernels.check.compare import compare

    tol = TOLERANCES[fname]
    rng = np.random.default_rng(0)
    for t in build(fname, CaseSpec.of(sizes), 3).checked():
        right = t.expected.astype(np.float32)
        atol = tol[1] * gputime._scale(t)
        candidates = [right, t.initial.copy()]  # right; never written (poison) or left as it was
        for k in (0.3, 0.9, 1.5, 30.0):  # noise below and above the tolerance
            candidates.append((t.expected + k * atol * rng.standard_normal(t.expected.shape)).astype(np.float32))
        one_nan = right.copy()
        one_nan.flat[-1] = np.nan
        candidates.append(one_nan)
        verdicts = [gputime._within(t, got, tol, np, {}) for got in candidates]
        assert verdicts == [compare(t, got, tol).ok for got in candidates]
        assert verdicts[0] and not verdicts[1] and not verdicts[-1] and not verdicts[-2]


def test_a_kernel_that_skips_the_work_at_the_gpu_sizes_is_wrong_there(launch_hook, small_gpu_sizes):
    text = source(solved(CHAPTER), CELL).replace(SKIP_LARGE[0], SKIP_LARGE[1].replace("1000000", "20000"))
    meta, arrays = record(_solution_namespace(text=text)["transpose"], "transpose")
    out, runs = measure(meta, arrays, "transpose")
    assert runs == [] and "ms" not in out  # nothing timed
    assert len(out["wrong"]) == 1 and "never written" in out["wrong"][0]
    result, wrong = gputime.read_timing(out, "transpose")
    assert result is None and wrong == out["wrong"]


def test_measure_tells_the_learners_failures_from_the_graders(launch_hook, small_gpu_sizes, monkeypatch):
    meta, arrays = record(_solution_namespace()["transpose"], "transpose")
    broken = json.loads(json.dumps(meta["trace"]))
    broken["events"][0]["launch"]["code"] = 'extern "C" __global__ void transpose_tiled(float* out) { oops }'
    with pytest.raises(gputime.Failure) as e:
        measure({"trace": broken}, {}, "transpose")
    assert e.value.learner and type(e.value.error).__name__ == "KernelCompileError"
    broken = json.loads(json.dumps(meta["trace"]))
    broken["events"][0]["launch"]["args"][0]["offset"] = 1 << 40  # a buffer reference outside its buffer
    with pytest.raises(gputime.Failure) as e:
        measure({"trace": broken}, {}, "transpose")
    assert e.value.learner and "outside its buffer" in str(e.value)

    def broken_timer(pairs, repeats, warmup):
        raise RuntimeError("the CUDA events failed")

    with pytest.raises(gputime.Failure) as e:  # the grader's side: a grading error, never points
        gputime.measure({"fname": "transpose", "seed": 1}, meta["trace"], {}, xp=np, backend="cpu", name="x",
                        timer=broken_timer)  # fmt: skip
    assert not e.value.learner
    monkeypatch.setitem(sys.modules, "cupy", None)  # no GPU: CuPy cannot even be imported
    with pytest.raises(gputime.Failure) as e:
        gputime.measure({"fname": "transpose", "seed": 1}, meta["trace"], {}, backend="cpu", name="x")
    assert not e.value.learner


# ------------------------------------------------------------------------------------------ the grader's side
def _timed(ms=1.0, baseline_ms=1.0, **more):
    return {
        "event": "timed",
        "device": "NVIDIA H100 80GB HBM3",
        "sizes": {"T": 8192, "C": 768},
        "wrong": [],
        "ms": ms,
        "baseline": "transpose",
        "baseline_ms": baseline_ms,
        **more,
    }


def _targets(ok=True):
    from llmc_kernels.check.performance import TargetResult

    return [
        TargetResult("load_sectors", "global load sectors per request", "x ideal", 1.0, 1.1, False, "coalesced"),
        TargetResult(
            "store_sectors", "global store sectors per request", "x ideal", 1.0 if ok else 8.0, 1.1, False, "tiles"
        ),
    ]


@pytest.mark.parametrize(
    "ms, ok", [(0.030, True), (0.0375, True), (0.0376, False), (3.0, False)]
)  # the limit is 1.5x the package's 0.025 ms
def test_the_time_target_within_and_over_the_limit(ms, ok):
    result, wrong = gputime.read_timing(_timed(ms, 0.025), "transpose")
    assert not wrong and result.ok is ok and result.limit == 1.5
    verdict = gx.performance_verdict(_targets(), "T=200, C=136", result)
    if ok:
        assert verdict is None
        return
    assert verdict.verdict == "not optimised"
    for text in ("NVIDIA H100 80GB HBM3", f"{ms:.3f} ms", f"{ms / 0.025:.2f}x", "0.025 ms", "target <= 1.50x"):
        assert text in verdict.reason and text in verdict.details
    assert "T=8192, C=768" in verdict.details and "1 of 3 performance targets missed" in verdict.reason
    assert "MISS time on NVIDIA" in verdict.details and "ok   global load sectors" in verdict.details


def test_the_counters_still_count_on_a_gpu():
    result, _ = gputime.read_timing(_timed(0.02, 0.025), "transpose")
    verdict = gx.performance_verdict(_targets(ok=False), "T=200, C=136", result)
    assert verdict.verdict == "not optimised" and "1 of 3" in verdict.reason
    assert "ok   time on NVIDIA" in verdict.details and "MISS global store sectors" in verdict.details
    problem = Verdict("grading error", "no GPU", grader_error=True)
    verdict = gx.performance_verdict(_targets(ok=False), "T=200, C=136", None, problem)
    assert "1 of 2" in verdict.reason and "not judged: grading error: no GPU" in verdict.details
    # the cpu backend: the counters alone, the text as it always was
    verdict = gx.performance_verdict(_targets(ok=False), "T=200, C=136")
    assert verdict.reason.startswith("correct, but 1 of 2 performance targets missed: global store sectors")
    assert "time" not in verdict.details


@pytest.mark.parametrize(
    "meta",
    [
        {"event": "timed"},
        _timed(ms=float("nan")),
        _timed(ms=-1.0),
        _timed(baseline_ms=0.0),
        _timed(ms="1"),
        _timed(baseline="matmul_forward"),
        _timed(wrong="no"),
        {**_timed(), "device": None},
    ],
)
def test_a_malformed_timing_answer_is_refused(meta):
    with pytest.raises(gputime.Malformed):
        gputime.read_timing(meta, "transpose")


class FakeSandbox:
    """A sandbox whose replay process answers ``frames`` (and records the requests it was sent)."""

    backend = "cuda"

    def __init__(self, *frames, running_since=None):
        self.frames = list(frames)
        self.requests = []
        self.running_since = running_since  # seconds ago: a replay process still running (never exits)

    def folder(self, name):
        return Path("/nonexistent") / name

    def start(self, role, folder, request):
        self.requests.append((role, wire.decode(request[8:])))
        running = self.running_since is not None
        proc = SimpleNamespace(poll=lambda: None if running else 0, returncode=None if running else 0)
        frames = [(0.0, m, {}) for m in self.frames]
        started = time.monotonic() - (self.running_since or 0.0)
        return SimpleNamespace(frames=frames, proc=proc, started=started, bad_frame="", text=lambda: "")

    def stop(self, box):
        pass

    def sweep(self):
        pass


@pytest.fixture(scope="module")
def recorded():
    """The worker's box after the GPU timing run of chapter 04b's solution."""
    from llmc_kernels import runtime

    original = runtime.RawKernel.__call__
    grade_worker.install_launch_hook()
    try:
        meta, arrays = record(_solution_namespace()["transpose"], "transpose")
    finally:
        runtime.RawKernel.__call__ = original
    runs = gx.runs_for(PLAN, 5, "cuda")
    meta["run"] = next(r["index"] for r in runs if r["group"] == "gpu_time")
    return runs, SimpleNamespace(frames=[(0.0, meta, arrays)], bad_frame="", proc=SimpleNamespace(returncode=0))


def _grade_time(recorded, *frames, meta=None, running_since=None):
    runs, box = recorded
    if meta is not None:
        box = SimpleNamespace(
            frames=[(0.0, {**box.frames[0][1], **meta}, box.frames[0][2])], bad_frame="", proc=box.proc
        )
    sandbox = FakeSandbox(*frames, running_since=running_since)
    limits = Limits(60.0)
    return gx.grade_gpu_time(PLAN, runs, box, "exited", sandbox, limits, "t", seed=99), sandbox


def test_the_grader_sends_the_trace_and_a_secret_seed_and_reads_the_times(recorded):
    result, sandbox = _grade_time(recorded, _timed(0.05, 0.025))
    ((role, (request, arrays)),) = sandbox.requests
    assert role == "replay" and request["gpu_time"]["fname"] == "transpose"
    assert request["gpu_time"]["seed"] not in (99, 0) and not [k for k in arrays if k.startswith("c.")]
    assert request["trace"]["events"][0]["launch"]["name"] == "transpose_tiled"
    assert result.ratio == pytest.approx(2.0) and not result.ok
    assert result.summary().startswith("time on NVIDIA H100 80GB HBM3 at T=8192, C=768: 0.050 ms, 2.00x")


def test_no_gpu_for_the_replay_is_a_grading_error_never_points(recorded):
    err = {"ename": "CUDARuntimeError", "evalue": "cudaErrorNoDevice", "names": ["CUDARuntimeError"]}
    with pytest.raises(Verdict) as e:
        _grade_time(recorded, {"event": "timing_error", "error": err})
    assert e.value.verdict == "grading error" and e.value.grader_error and "could not be measured" in e.value.reason
    with pytest.raises(Verdict) as e:  # the replay process died without a word
        _grade_time(recorded)
    assert e.value.verdict == "crash"
    with pytest.raises(Verdict) as e:
        _grade_time(recorded, {"event": "timed", "wrong": []})
    assert e.value.verdict == "grading error"
    with pytest.raises(Verdict) as e:  # the float64 reference at the GPU sizes took longer than the set-up's limit
        _grade_time(recorded, running_since=1000.0)
    assert e.value.verdict == "grading error" and "not made within 120 s" in e.value.reason
    with pytest.raises(Verdict) as e:  # ... but once the inputs are ready, the learner's launches have the time limit
        _grade_time(recorded, {"event": "inputs_ready"}, running_since=1000.0)
    assert e.value.verdict == "hang"


def test_the_learners_failures_at_the_gpu_sizes(recorded):
    err = {"ename": "KernelCompileError", "evalue": "x", "names": ["KernelCompileError", "KernelError"]}
    with pytest.raises(Verdict) as e:
        _grade_time(recorded, {"event": "replay_error", "error": err})
    assert e.value.verdict == "compile error"
    wrong = {**_timed(), "wrong": ["out: 6,291,456 of 6,291,456 elements off\n    6,291,456 never written (still NaN)"]}
    with pytest.raises(Verdict) as e:
        _grade_time(recorded, wrong)
    assert e.value.verdict == "wrong" and "GPU timing sizes (T=8192, C=768)" in e.value.reason
    assert "no performance points" in e.value.reason and "never written" in e.value.details
    with pytest.raises(Verdict) as e:  # the function raised when called at the GPU sizes
        _grade_time(recorded, meta={"ok": False, "error": {"ename": "ValueError", "evalue": "too big"}})
    assert e.value.verdict == "error" and "GPU timing run" in e.value.reason
    trace = json.loads(json.dumps(recorded[1].frames[0][1]["trace"]))
    trace["events"][0]["launch"]["internal"] = True
    with pytest.raises(Verdict) as e:  # the package's kernel, launched only at the GPU sizes
        _grade_time(recorded, _timed(), meta={"trace": trace})
    assert e.value.verdict == "package kernel"


def test_grade_performance_needs_both_targets_on_a_gpu(monkeypatch, recorded):
    runs, box = recorded
    calls = []

    def counters(ok):
        return lambda *a, **k: (_targets(ok), "T=200, C=136")

    def timing(answer):
        def grade(*a, **k):
            calls.append(1)
            if isinstance(answer, Verdict):
                raise answer
            return gputime.read_timing(answer, "transpose")[0]

        return grade

    def grade(ok, answer, backend_runs=runs):
        monkeypatch.setattr(gx, "counter_results", counters(ok))
        monkeypatch.setattr(gx, "grade_gpu_time", timing(answer))
        return gx.grade_performance(PLAN, None, backend_runs, box, "exited", None, None, "t", seed=1)

    notes = grade(True, _timed(0.026, 0.025))
    assert notes == [f"GPU time target met: {gputime.read_timing(_timed(0.026, 0.025), 'transpose')[0].summary()}"]
    with pytest.raises(Verdict, match="1 of 3 performance targets missed: time on NVIDIA"):
        grade(True, _timed(0.5, 0.025))
    no_gpu = Verdict("grading error", "no GPU", grader_error=True)
    with pytest.raises(Verdict) as e:
        grade(True, no_gpu)
    assert e.value is no_gpu  # never silent full points
    with pytest.raises(Verdict) as e:
        grade(False, no_gpu)
    assert e.value.verdict == "not optimised" and "no GPU" in e.value.details
    calls.clear()
    assert grade(True, no_gpu, gx.runs_for(PLAN, 5, "cpu")) == [] and calls == []  # cpu: the counters alone


def test_the_feedback_and_csv_of_a_time_miss(tmp_path):
    from llmc_kernels.grade import report
    from llmc_kernels.grade.judge import ExerciseResult

    result, _ = gputime.read_timing(_timed(0.5, 0.025), "transpose")
    v = gx.performance_verdict(_targets(), "T=200, C=136", result)
    r = ExerciseResult("transpose", 3.0, 1.0, v.verdict, v.reason, v.details, kind="performance", performance_points=2)
    chapter = SimpleNamespace(
        name=CHAPTER, version="1", points=3.0, exercises=[SimpleNamespace(name="transpose", kind="performance")]
    )
    sub = SimpleNamespace(
        label="a.ipynb", chapter=chapter, results=[r], notes=[], warnings=[], total=1.0, max=3.0, error=None
    )
    header, row = [line.split(",") for line in report.csv_text([sub]).splitlines()]
    assert header == ["submission", "transpose:correctness", "transpose:performance", "total", "max", "note"]
    assert row == ["a.ipynb", "1", "0", "1", "3", ""]
    text = report.feedback(sub, backend="cuda", timeout=300, seed=1)
    assert "MISS time on NVIDIA H100 80GB HBM3 at T=8192, C=768: 0.500 ms, 20.00x the package's transpose" in text
    assert "their time on the GPU" in text
    assert "their time on the GPU" not in report.feedback(sub, backend="cpu", timeout=300, seed=1)


def test_without_a_gpu_in_the_replay_the_time_is_a_grading_error(monkeypatch, tmp_path):
    """The real processes: a fenced worker records chapter 04b's solution at the GPU sizes without running it, the
    grader checks the trace and starts a replay process for the time -- which finds no GPU here. The verdict is a
    grading error, never the performance points. (The runs are the cuda backend's timing run added to the cpu
    backend's, as no GPU is needed to record.)"""
    from conftest import gpu_unusable_reason

    from llmc_kernels.grade.notebook import load_canonical
    from llmc_kernels.grade.sandbox import Sandbox

    if gpu_unusable_reason() is None:
        pytest.skip("a GPU is usable here: the replay would time the kernel (the gpu tests below do)")
    runs_for = gx.runs_for

    def with_timing(plan, n_cases, backend):
        runs = runs_for(plan, n_cases, backend)
        return runs + [dict(r, index=len(runs)) for r in runs_for(plan, n_cases, "cuda") if r["group"] == "gpu_time"]

    monkeypatch.setattr(gx, "runs_for", with_timing)
    chapter = load_canonical(Path(__file__).resolve().parent.parent / "solutions")[0][CHAPTER]
    (exercise,) = chapter.exercises
    plan = gx.plan_of(gx._source(exercise.checks[0].cell))
    sandbox = Sandbox(backend="cpu", limits=Limits(120.0, 4 << 30))
    try:
        verdict, notes, perf = gx.grade_check(
            chapter, plan, [source(solved(CHAPTER), CELL)], sandbox=sandbox, seed=11, limits=sandbox.limits, name="t"
        )
    finally:
        sandbox.close()
    assert verdict is None, verdict.details  # right, and the counters met ...
    assert isinstance(perf, Verdict) and perf.verdict == "grading error" and perf.grader_error, notes
    assert "GPU time target could not be measured" in perf.reason and "cupy" in perf.reason.lower()


@pytest.mark.parametrize("which", ["one block", "skips at the GPU sizes"])
def test_the_gpu_tests_kernels_pass_every_check_on_the_cpu_backend(which, capsys):
    """The premise of the gpu tests below: both kernels are right and meet every memory counter, so only the GPU
    can tell them from the solution."""
    from llmc_kernels import check, runtime

    text = ONE_BLOCK if which == "one block" else source(solved(CHAPTER), CELL).replace(*SKIP_LARGE)
    with runtime.use_backend("cpu"):  # the counters alone, even where a GPU is usable
        result = check.performance("transpose", _solution_namespace(text=text)["transpose"])
    assert result.passed and not result.gpu


# ------------------------------------------------------------------------------------------ on a GPU
def _only(nb: dict, exercise: str) -> dict:
    """The solved notebook with the other exercises' cells taken out (they are then `missing`, and not run)."""
    drop = {i for name, ids in exercise_ids(nb).items() if name != exercise for i in ids}
    nb["cells"] = [c for c in nb["cells"] if c.get("id") not in drop]
    return nb


PERFORMANCE = {  # chapter -> its optimisation exercise
    "02_layernorm": "layernorm_forward_warp",
    "03_matmul": "matmul_forward_blocked",
    "04_attention": "attention_forward_flash",
    "07_softmax_crossentropy": "fused_classifier",
}


@pytest.fixture(scope="module")
def graded_on_gpu(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gputime")
    subs = [
        write(folder, f"solved_{CHAPTER}.ipynb", solved(CHAPTER)),
        write(folder, f"oneblock_{CHAPTER}.ipynb", set_source(solved(CHAPTER), CELL, ONE_BLOCK)),
        write(folder, f"skiplarge_{CHAPTER}.ipynb", mutate(solved(CHAPTER), CELL, *SKIP_LARGE)),
    ]
    subs += [write(folder, f"solved_{ch}.ipynb", _only(solved(ch), ex)) for ch, ex in PERFORMANCE.items()]
    start = time.monotonic()
    out = llmc_grade(
        *subs, "--backend", "cuda", "--csv", folder / "g.csv", "--seed", 3, "--jobs", len(subs), "--timeout", 240,
        cwd=folder, env=None, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    print(f"llmc grade --backend cuda: {time.monotonic() - start:.0f} s\n{out.stdout}")
    return read_csv(folder / "g.csv")[1], out.stdout, folder


@pytest.mark.gpu
def test_solved_exercises_earn_their_performance_points_on_a_gpu(graded_on_gpu):
    rows, stdout, folder = graded_on_gpu
    row = rows[f"solved_{CHAPTER}.ipynb"]
    assert (row["transpose:correctness"], row["transpose:performance"]) == ("1", "2"), stdout
    assert "GPU time target met: time on" in section(stdout, f"solved_{CHAPTER}.ipynb")
    for ch, ex in PERFORMANCE.items():
        row = rows[f"solved_{ch}.ipynb"]
        assert row[f"{ex}:performance"] == "2", section(stdout, f"solved_{ch}.ipynb")


@pytest.mark.gpu
def test_a_kernel_that_meets_the_counters_on_one_block_misses_the_time(graded_on_gpu):
    rows, stdout, folder = graded_on_gpu
    row = rows[f"oneblock_{CHAPTER}.ipynb"]
    assert (row["transpose:correctness"], row["transpose:performance"]) == ("1", "0"), stdout
    table = section(stdout, f"oneblock_{CHAPTER}.ipynb")
    assert "not optimised" in table and "1 of 5 performance targets missed: time on" in table
    feedback = (folder / f"oneblock_{CHAPTER}.feedback.md").read_text(encoding="utf-8")
    assert "MISS time on" in feedback and "the package's transpose" in feedback and "target <= 1.50x" in feedback
    assert "ok   global load sectors per request" in feedback


@pytest.mark.gpu
def test_a_kernel_that_skips_the_work_at_the_gpu_sizes_earns_no_performance_points(graded_on_gpu):
    rows, stdout, folder = graded_on_gpu
    row = rows[f"skiplarge_{CHAPTER}.ipynb"]
    assert (row["transpose:correctness"], row["transpose:performance"]) == ("1", "0"), stdout
    table = section(stdout, f"skiplarge_{CHAPTER}.ipynb")
    assert "wrong" in table and "GPU timing sizes (T=8192, C=768)" in table
