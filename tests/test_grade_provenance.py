"""Provenance and secrecy, the pieces on their own: secret cases, launch traces replayed on fresh inputs, and
the package's kernels recognised by their token streams (tests/test_grade_threats.py tries them end to end).

Each "cheat" here passes the learner-facing check's comparison (its outputs are right for the inputs it was
called with) and must fail the replay; each honest variant must pass it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from llmc_kernels.check.cases import default_specs
from llmc_kernels.check.compare import compare
from llmc_kernels.grade import fingerprint as gf
from llmc_kernels.grade import secret as grade_secret
from llmc_kernels.grade import wire
from llmc_kernels.grade.cases import Plan, cases_for
from llmc_kernels.grade.trace import TraceError, Tracer, replay
from llmc_kernels.runtime import RawKernel

ROOT = Path(__file__).resolve().parent.parent
GELU = Plan("op", "gelu_forward", "gelu", "forward")

GELU_SRC = r"""
extern "C" __global__ void gelu_k(float* out, const float* inp, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
    }
}
extern "C" __global__ void copy_k(float* out, const float* src, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) out[i] = src[i];
}
extern "C" __global__ void scale_k(float* out, float a, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) out[i] *= a;
}
"""
gelu_k, copy_k, scale_k = (RawKernel(GELU_SRC, n, "cpu") for n in ("gelu_k", "copy_k", "scale_k"))


def _grid(N):
    return ((N + 127) // 128,), (128,)


def numpy_gelu(x):
    x = x.astype(np.float64)
    return (0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))).astype(np.float32)


def honest(out, inp, N):
    gelu_k(*_grid(N), (out, inp, np.int32(N)))


def honest_with_fill(out, inp, N):  # host fills of constants are replayed as they were
    out.fill(0)
    scratch = np.zeros(N, np.float32)
    gelu_k(*_grid(N), (scratch, inp, np.int32(N)))
    copy_k(*_grid(N), (out, scratch, np.int32(N)))


def host_answer(out, inp, N):  # NumPy on the host, and a kernel launched for show
    scale_k(*_grid(N), (out, np.float32(1), np.int32(N)))
    out[:] = numpy_gelu(inp)


def smuggled(out, inp, N):  # the answer computed on the host, passed in through a scratch buffer
    answer = numpy_gelu(inp)
    copy_k(*_grid(N), (out, answer, np.int32(N)))


def fixed_up(out, inp, N):  # a kernel computes half, host code finishes the job
    gelu_k(*_grid(N), (out, inp, np.int32(N)))
    out *= np.float32(2.0)
    out /= np.float32(2.0)
    out[:3] = numpy_gelu(inp[:3])


def scalar_from_inputs(out, inp, N):  # a kernel, but fed with a value the host computed from the inputs
    gelu_k(*_grid(N), (out, inp, np.int32(N)))
    scale_k(*_grid(N), (out, np.float32(1.0 + 0.0 * float(inp[0])), np.int32(N)))


def _trace_and_replay(fn, seed=5):
    cases = cases_for(GELU, seed)
    trace_case, fresh = cases.provenance, cases.replay
    made = {k: v.copy() for k, v in trace_case.arrays.items()}
    args = [made[d["array"]] if "array" in d else d["int"] for d in trace_case.args]
    tracer = Tracer(made)
    from llmc_kernels.grade import worker as grade_worker

    grade_worker.install_launch_hook()
    grade_worker._TRACER = tracer
    try:
        fn(*args)
    finally:
        grade_worker._TRACER = None
    # the call itself was right (what the check sees) ...
    called = all(compare(t, made[k], trace_case.tol).ok for k, t in trace_case.checked)
    meta, blobs = tracer.finish()
    meta, arrays = wire.decode(wire.encode(meta, {f"trace.{k}": v for k, v in blobs.items()})[8:])
    grader = {k: v.copy() for k, v in fresh.arrays.items()}
    replay(meta, {k[6:]: v for k, v in arrays.items()}, grader)
    replayed = all(compare(t, grader[k], fresh.tol).ok for k, t in fresh.checked)
    return called, replayed, meta


@pytest.fixture(scope="module", autouse=True)
def _restore_rawkernel():
    from llmc_kernels import runtime

    original = runtime.RawKernel.__call__
    yield
    runtime.RawKernel.__call__ = original


@pytest.mark.parametrize(
    "fn, replays",
    [(honest, True), (honest_with_fill, True), (host_answer, False), (smuggled, False), (fixed_up, False)],
)
def test_replay_on_fresh_inputs_tells_kernels_from_host_code(fn, replays):
    called, replayed, meta = _trace_and_replay(fn)
    assert called, "the call itself must be right, or this test proves nothing"
    assert replayed is replays, meta["events"]


def test_a_scalar_the_host_derived_from_the_inputs_replays_as_recorded():
    called, replayed, meta = _trace_and_replay(scalar_from_inputs)
    scalars = [a for e in meta["events"] if "launch" in e for a in e["launch"]["args"] if a and "scalar" in a]
    assert {"scalar": "float32", "value": 1.0} in scalars and called and replayed


def test_the_trace_records_launches_buffers_and_host_writes():
    _, _, meta = _trace_and_replay(smuggled)
    (launch,) = [e["launch"] for e in meta["events"] if "launch" in e]
    assert launch["name"] == "copy_k" and "copy_k" in launch["code"] and launch["grid"] == [14]
    out, src, n = launch["args"]
    assert meta["buffers"][out["buf"]] == {"grader": "out"} and "scratch" in meta["buffers"][src["buf"]]
    assert n == {"scalar": "int32", "value": 1709}
    sets = [meta["buffers"][e["set"]] for e in meta["events"] if "set" in e]
    assert sets[0] == meta["buffers"][src["buf"]]  # the scratch buffer's contents at first use


def test_a_malformed_trace_is_refused():
    fresh = cases_for(GELU, 5).replay
    for meta in (
        {"buffers": [{"grader": "nope"}], "events": []},
        {"buffers": [{"grader": "out"}], "events": [{"op": "anything", "args": []}]},
        {"buffers": [{"grader": "out"}], "events": [{"set": 0, "blob": "missing"}]},
        {
            "buffers": [{"grader": "out"}],
            "events": [
                {
                    "launch": {
                        "code": GELU_SRC,
                        "name": "gelu_k",
                        "grid": [1],
                        "block": [1],
                        "args": [
                            {"buf": 0, "offset": 10**9, "dtype": "<f4", "shape": [1], "strides": [4]},
                            None,
                            {"int": 1},
                        ],
                    }
                }
            ],
        },
        {
            "buffers": [{"grader": "out"}],
            "events": [
                {
                    "launch": {
                        "code": GELU_SRC,
                        "name": "gelu_k",
                        "grid": [1],
                        "block": [1],
                        "args": [
                            {"buf": 0, "offset": 0, "dtype": "|O", "shape": [1], "strides": [8]},
                            None,
                            {"int": 1},
                        ],
                    }
                }
            ],
        },
    ):
        grader = {k: v.copy() for k, v in fresh.arrays.items()}
        with pytest.raises((TraceError, TypeError)):
            replay(meta, {}, grader)


# ------------------------------------------------------------------------------------------ secret cases
def test_every_run_draws_new_secret_cases():
    seeds = {grade_secret.new_seed() for _ in range(20)}
    assert len(seeds) == 20 and all(0 <= s < 2**63 for s in seeds)
    a, b = cases_for(GELU, 1), cases_for(GELU, 2)
    assert [c.label for c in a.graded] != [c.label for c in b.graded]
    again = cases_for(GELU, 1)  # --seed reproduces a run
    assert all(np.array_equal(x.arrays["inp"], y.arrays["inp"]) for x, y in zip(a.graded, again.graded))
    assert not np.array_equal(a.provenance.arrays["inp"], a.replay.arrays["inp"])
    assert a.provenance.label == a.replay.label


@pytest.mark.parametrize(
    "op, direction",
    [
        (op, d)
        for op in grade_secret.SECRET_CASES
        for d in ("forward", "backward")
        if not (d == "backward" and op in ("softmax", "adamw", "vector_add", "transpose"))
    ],
)
def test_secret_sizes_are_awkward_and_not_the_checks_defaults(op, direction):
    defaults = {s.sizes for s in default_specs(op, direction)}
    for seed in range(5):
        specs = grade_secret.secret_specs(op, direction, seed)
        assert [s.kind for s in specs] == [s.kind for s in default_specs(op, direction)]
        first = dict(specs[0].sizes)
        assert all(v % 32 for k, v in first.items() if v > 4 and k not in ("NH", "maxT")), first
        assert not {s.sizes for s in specs if dict(s.sizes) != {k: 1 for k in first}} <= defaults


# ------------------------------------------------------------------------------------------ fingerprints
def _solution_kernels():
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            for m in re.finditer(r'r"""(.*?)"""|r\'\'\'(.*?)\'\'\'', src, re.S):
                yield path.name, m.group(1) or m.group(2)


def test_the_package_kernels_are_recognised_in_any_dress():
    for path in sorted(gf.KERNELS_DIR.glob("*.cu")):
        code = path.read_text()
        for name in gf.kernel_functions(code):
            assert gf.package_match(code, name), (path.name, name)
    src = (gf.KERNELS_DIR / "gelu.cu").read_text()
    piece = src[src.index("#define GELU_SCALING") : src.index('extern "C" __global__ void gelu_forward_vec4')]
    piece = re.sub(r"//.*", "", piece)  # comments gone, helpers and variables renamed
    for old, new in (("gelu_sigmoid", "sig"), ("GELU_CUBE", "K3"), ("gelu_grad", "gg"), ("pq", "q")):
        piece = re.sub(rf"\b{old}\b", new, piece)
    piece = re.sub(r"(?<!\.)\bx\b", "v", piece).replace("\n", "\n\n  ")
    assert gf.package_match(piece, "gelu_forward_kernel") == "gelu.cu: gelu_forward_kernel"


def test_no_solution_kernel_is_taken_for_the_packages():
    seen = 0
    for name, code in _solution_kernels():
        for kernel in gf.kernel_functions(code):
            seen += 1
            assert gf.package_match(code, kernel) is None, (name, kernel)
    assert seen > 20


def test_short_kernels_are_exempt_unless_read_from_a_package_file():
    src = (gf.KERNELS_DIR / "residual.cu").read_text()
    body = src[
        src.index('extern "C" __global__ void residual_forward_kernel') : src.index(
            'extern "C" __global__ void residual_forward_vec4_kernel'
        )
    ]
    assert len(gf.kernel_functions(body)["residual_forward_kernel"]) < gf.MIN_TOKENS
    assert gf.package_match(body, "residual_forward_kernel") is None  # what anyone would write
    assert gf.package_match(src, "residual_forward_kernel") == "residual.cu (the whole file)"


# ------------------------------------------------------------------------------------------ the wire
def test_frames_carry_plain_arrays_only():
    meta, arrays = wire.decode(wire.encode({"a": 1}, {"x": np.arange(3)})[8:])
    assert meta == {"a": 1} and arrays["x"].tolist() == [0, 1, 2]
    import io

    buf = io.BytesIO()
    np.savez(buf, __meta__=np.frombuffer(b"{}", np.uint8), evil=np.array([object()], dtype=object))
    with pytest.raises(wire.BadFrame):
        wire.decode(buf.getvalue())
    with pytest.raises(wire.BadFrame, match="over the limit"):
        list(wire.read(io.BytesIO((10**12).to_bytes(8, "little"))))
    with pytest.raises(wire.BadFrame):
        wire.decode(b"not an archive")
