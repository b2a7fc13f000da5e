"""The corpus: CUDA kernels written the ways CUDA code in the wild is written (tests/corpus/*.cu).

Cooperative groups as llm.c's dev/cuda kernels use them, templates instantiated through extern "C"
wrappers, macros, structs and device functions, __restrict__, float4/int2 casts, dynamic shared memory of
several types, __ldg and cache hints, fast-math intrinsics, warp shuffles with masks, printf, and names a
token-level translator could mistake for types. tests/corpus/manifest.toml lists each case (file, kernel,
recipe, sizes, block, tolerances); a recipe below makes the inputs, the launch and the float64 NumPy
reference. Each case runs on the CPU backend under two thread orders, on the cuda backend when a GPU is
there (marked gpu), and every file must compile with NVRTC where it is installed, so the corpus is real CUDA.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from llmc_kernels.errors import KernelCompileError
from llmc_kernels.runtime import RawKernel, launch_options, nvrtc
from llmc_kernels.runtime.source import file_origin

if sys.version_info >= (3, 11):
    import tomllib
else:
    tomllib = pytest.importorskip("tomli")

CORPUS = Path(__file__).resolve().with_name("corpus")
CASES = tomllib.loads((CORPUS / "manifest.toml").read_text())["case"]
IDS = [f"{c['file'][:-3]}:{c['kernel']}" for c in CASES]


@dataclass
class Launch:
    args: list  # NumPy arrays and scalars, in the kernel's order
    grid: tuple
    expect: dict  # argument position -> expected array, or a function(got) that asserts
    shared_mem: int = 0
    stdout: set | None = None  # the printf lines, as a set (threads print in no defined order)


RECIPES: dict[str, Callable] = {}


def recipe(fn):
    RECIPES[fn.__name__] = fn
    return fn


def blocks(n: int, block: int) -> int:
    return (n + block - 1) // block


def f32(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


# ------------------------------------------------------------------------------------------- recipes
@recipe
def layernorm(rng, s, block):
    N, C = s["N"], s["C"]
    inp, w, b = f32(rng, N, C, lo=-2, hi=2), f32(rng, C), f32(rng, C)
    x = inp.astype(np.float64)
    m = x.mean(1)
    r = 1.0 / np.sqrt(x.var(1) + 1e-5)
    out = (x - m[:, None]) * r[:, None] * w + b
    args = [
        np.zeros((N, C), np.float32),
        np.zeros(N, np.float32),
        np.zeros(N, np.float32),
        inp,
        w,
        b,
        np.int32(N),
        np.int32(C),
    ]
    return Launch(args, (blocks(N, block // 32),), {0: out, 1: m, 2: r})


@recipe
def softmax(rng, s, block):
    N, C = s["N"], s["C"]
    inp = f32(rng, N, C, lo=-6, hi=6)
    e = np.exp(inp.astype(np.float64) - inp.max(1, keepdims=True))
    return Launch([np.zeros((N, C), np.float32), inp, np.int32(N), np.int32(C)], (N,), {0: e / e.sum(1, keepdims=True)})


@recipe
def tiles(rng, s, block):
    n = s["n"]
    grid = blocks(n, block)
    v = np.zeros(grid * block, np.int64)
    v[:n] = rng.integers(-5, 40, size=n)
    v[8:16] = np.arange(1, 9)  # one segment with every value positive
    seg = v.reshape(-1, 8)
    rank = np.arange(v.size) % 8
    base = np.arange(v.size) - rank
    lane = np.arange(v.size) % block % 32
    seg_out = np.zeros((seg.shape[0], 6), np.int64)
    seg_out[:, 0], seg_out[:, 1], seg_out[:, 2] = seg.sum(1), seg.max(1), seg.min(1)
    seg_out[:, 3] = ((seg & 1) << np.arange(8)).sum(1)
    seg_out[:, 4], seg_out[:, 5] = (seg < 0).any(1), (seg > 0).all(1)
    seg_out[blocks(n, 8) :] = 0  # segments whose leader is past n are not written
    inclusive = np.cumsum(seg, 1).reshape(-1)
    elem = np.stack(
        [
            inclusive,
            inclusive - v,
            v[base + (rank + 1) % 8],
            np.where(rank < 7, v[np.minimum(np.arange(v.size) + 1, v.size - 1)], v)
            + 1000 * np.where(rank >= 2, v[np.maximum(np.arange(v.size) - 2, 0)], v),
            v[base + (rank ^ 7)],
            (lane // 16) * 1000 + 200 + lane % 16,
        ],
        1,
    )
    args = [np.zeros(seg.shape[0] * 6, np.int32), np.zeros(n * 6, np.int32), v[:n].astype(np.int32), np.int32(n)]
    return Launch(args, (grid,), {0: seg_out.reshape(-1), 1: elem[:n].reshape(-1)})


@recipe
def compact(rng, s, block):
    n = s["n"]
    x = rng.integers(-20, 20, n).astype(np.int32)
    positive = np.sort(x[x > 0])
    sums = np.where(x > 0, x, 0)
    sums = np.repeat(np.add.reduceat(sums, np.arange(0, n, 32)), 32)[:n]  # per warp of 32 threads

    def check_out(got):
        assert (np.sort(got[: positive.size]) == positive).all() and (got[positive.size :] == -1).all()

    return Launch(
        [np.full(n, -1, np.int32), np.zeros(1, np.int32), np.zeros(n, np.int32), x, np.int32(n)],
        (blocks(n, block),),
        {0: check_out, 1: np.array([positive.size]), 2: np.where(x > 0, sums, 0)},
    )


@recipe
def axpy_f32(rng, s, block):
    n = s["n"]
    y, x, a = f32(rng, n), f32(rng, n), np.float32(1.5)
    return Launch([y, x, a, np.int32(n)], (blocks(n, block),), {0: 1.5 * x.astype(np.float64) + y})


@recipe
def axpy_f64(rng, s, block):
    n = s["n"]
    y, x = rng.standard_normal(n), rng.standard_normal(n)
    return Launch([y, x, np.float64(-0.25), np.int32(n)], (blocks(n, block),), {0: -0.25 * x + y})


@recipe
def dot_f32(rng, s, block):
    n = s["n"]
    x, y = f32(rng, n), f32(rng, n)
    want = np.array([(x.astype(np.float64) * y.astype(np.float64)).sum()])
    return Launch([np.zeros(1, np.float64), x, y, np.int32(n)], (7,), {0: want})


@recipe
def poly3(rng, s, block):
    n = s["n"]
    x = f32(rng, n, lo=-3, hi=3).astype(np.float64)
    return Launch(
        [np.zeros(n, np.float32), x.astype(np.float32), np.int32(n)], (blocks(n, block),), {0: 1 - 2 * x + 0.5 * x * x}
    )


@recipe
def permute(rng, s, block):
    B, T, C = s["B"], s["T"], s["C"]
    inp = f32(rng, B, T, C)
    return Launch(
        [np.zeros((B, C, T), np.float32), inp, np.int32(B), np.int32(T), np.int32(C)],
        (2,),
        {0: 2 * inp.transpose(0, 2, 1)},
    )


@recipe
def sumsq4(rng, s, block):
    n4 = s["n4"]
    x = f32(rng, n4, 4)
    want = np.append((x.astype(np.float64) ** 2).sum(1), (n4 + 31) // 32)
    return Launch([np.zeros(n4 + 1, np.float32), x.reshape(-1), np.int32(n4)], (blocks(n4, block),), {0: want})


@recipe
def particles(rng, s, block):
    n = s["n"]
    p = f32(rng, n, 8, lo=-2, hi=2)
    dt, damping = 0.01, 0.99
    vel = p[:, 3:6].astype(np.float64) * damping + np.array([0.0, -9.8, 0.0]) * dt
    pos = p[:, 0:3] + vel * dt
    energy = 0.5 * (vel**2).sum(1)

    def check(got):
        np.testing.assert_allclose(got[:, 0:3], pos, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got[:, 3:6], vel, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got[:, 6], energy, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(got[:, 7].view(np.int32), np.arange(n))  # the int member, as stored

    return Launch([p, np.int32(n), np.float32(dt), np.float32(damping)], (blocks(n, block),), {0: check})


@recipe
def scale_shift4(rng, s, block):
    n = s["n"]
    x = f32(rng, n)
    return Launch(
        [np.zeros(n, np.float32), x, np.float32(2.0), np.float32(-0.5), np.int32(n)],
        (blocks(max(n // 4, n % 4), block),),
        {0: 2.0 * x.astype(np.float64) - 0.5},
    )


@recipe
def gather_pairs(rng, s, block):
    n, R, C = s["n"], s["R"], s["C"]
    table, pairs = f32(rng, R, C), f32(rng, n, 2)
    rc = np.stack([rng.integers(0, R, n), rng.integers(0, C, n)], 1).astype(np.int32)
    want = table[rc[:, 0], rc[:, 1]].astype(np.float64) + (pairs[:, 0].astype(np.float64) - pairs[:, 1])
    return Launch([np.zeros(n, np.float32), table, rc, pairs, np.int32(n), np.int32(C)], (blocks(n, block),), {0: want})


@recipe
def stats(rng, s, block):
    n, nbins = s["n"], s["nbins"]
    grid = blocks(n, block)
    x = f32(rng, n, lo=0, hi=1)
    padded = np.zeros(grid * block, np.float64)
    padded[:n] = x
    sums = padded.reshape(grid, block).sum(1)
    means = (sums / block).astype(np.float32)  # the kernel divides by blockDim.x, tail block too
    centered = x - np.repeat(means, block)[:n]
    bins = np.clip((x * np.float32(nbins)).astype(np.int64), 0, nbins - 1)
    args = [
        np.zeros(grid, np.float64),
        np.zeros(n, np.float32),
        np.zeros(nbins, np.int32),
        x,
        np.int32(n),
        np.int32(nbins),
    ]
    return Launch(
        args,
        (grid,),
        {0: sums, 1: centered, 2: np.bincount(bins, minlength=nbins)},
        shared_mem=block * (8 + 4) + nbins * 4,
    )


@recipe
def fast_math(rng, s, block):
    n = s["n"]
    x = f32(rng, n, lo=-2, hi=2)
    v = x.astype(np.float64)
    gelu = 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))
    want = np.stack(
        [
            gelu,
            np.exp(v),
            v / (1 + abs(v)),
            1 / np.sqrt(1 + v * v),
            1 / (2.5 + v),
            v * v - 1,
            np.log(1 + v * v) + np.log1p(abs(v)),
            np.clip(v, 0, 1) + np.sin(v) * np.cos(v) + np.sqrt(abs(v)) + np.copysign(1, v),
        ],
        1,
    )
    return Launch([np.zeros((n, 8), np.float32), x, np.int32(n)], (blocks(n, block),), {0: want})


@recipe
def warp_ops(rng, s, block):
    n = s["n"]
    grid = blocks(n, block)
    v = np.zeros(grid * block, np.float32)
    v[:n] = f32(rng, n)
    v[:32] = np.abs(v[:32])  # a warp with every value positive
    w = v.astype(np.float64).reshape(-1, 32)
    pos = (w > 0) @ (1 << np.arange(32, dtype=np.uint64)).astype(np.float64)
    pos = pos.astype(np.uint64)
    low = np.array([int(p) & -int(p) for p in pos], np.uint64)
    warp_out = np.stack(
        [
            w.sum(1),
            w[:, 0],
            [int(p).bit_count() for p in pos],
            pos & 0xFF,
            (w > 0.9).any(1),
            (abs(w) < 0.99).all(1),
            [int(x).bit_length() for x in low],
            [32 - int(p).bit_length() for p in pos],
        ],
        1,
    )
    halves = w.reshape(-1, 2, 16).sum(2)
    lane_out = np.stack([np.repeat(halves.reshape(-1), 16), np.cumsum(w.reshape(-1, 8), 1).reshape(-1)], 1)
    return Launch(
        [np.zeros(grid * block // 32 * 8, np.float32), np.zeros(2 * n, np.float32), v[:n].copy(), np.int32(n)],
        (grid,),
        {0: warp_out.reshape(-1), 1: lane_out[:n].reshape(-1)},
    )


@recipe
def report(rng, s, block):
    n = s["n"]
    values = rng.integers(0, 1000, n).astype(np.int32)
    lines = {
        f"thread {i % block} block {i // block}: value {values[i]}, half {values[i] * 0.5:.2f}, "
        f"{'odd' if values[i] % 2 else 'even'}"
        for i in range(0, n, 37)
    }
    return Launch([values, np.int32(n)], (blocks(n, block),), {}, stdout=lines)


@recipe
def names(rng, s, block):
    B, T, C = s["B"], s["T"], s["C"]
    x = f32(rng, B, T, C)
    return Launch(
        [np.zeros((B, T, C), np.float32), x, np.int32(B), np.int32(T), np.int32(C)],
        (blocks(B * T * C, block),),
        {0: 12 * x.astype(np.float64) + 1.5},
    )


# ------------------------------------------------------------------------------------------- running
def _source(case) -> tuple[str, object]:
    path = CORPUS / case["file"]
    return path.read_text(), file_origin(str(path))


def _run(case, backend: str, schedule: str = "forward", capfd=None):
    code, origin = _source(case)
    rng = np.random.default_rng(18)
    launch = RECIPES[case["recipe"]](rng, case["sizes"], case["block"])
    args = launch.args
    if backend == "cuda":
        import cupy

        args = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    kernel = RawKernel(code, case["kernel"], backend=backend, origin=origin)
    try:
        kernel.compile()
    except KernelCompileError as e:
        if backend != "cuda" or "cooperative_groups.h" not in str(e):
            raise
        # CuPy looks for CUDA's headers in a toolkit (CUDA_PATH, /usr/local/cuda); NVIDIA's wheels have them too
        options = tuple(f"-I{d}" for d in nvrtc.header_dirs())
        if not options:
            pytest.skip(
                "no CUDA headers for <cooperative_groups.h> here (install the CUDA toolkit and set "
                "CUDA_PATH, or NVIDIA's nvidia-cuda-runtime and nvidia-cuda-cccl wheels)"
            )
        kernel = RawKernel(code, case["kernel"], backend=backend, origin=origin, options=options)
        kernel.compile()
    with launch_options(schedule=schedule):
        kernel(launch.grid, (case["block"],), tuple(args), shared_mem=launch.shared_mem)
    if backend == "cuda":
        import ctypes

        import cupy

        cupy.cuda.Device().synchronize()  # the device's printf reaches the C library's stdout here
        ctypes.CDLL(None).fflush(None)
    for i, want in launch.expect.items():
        got = args[i].get() if backend == "cuda" else args[i]
        if callable(want):
            want(got)
        else:
            np.testing.assert_allclose(
                got.reshape(np.shape(want)),
                want,
                rtol=case["rtol"],
                atol=case["atol"],
                err_msg=f"{case['file']}:{case['kernel']}, argument {i}",
            )
    if launch.stdout is not None:
        lines = capfd.readouterr().out.strip().splitlines()
        assert len(lines) == len(launch.stdout) and set(lines) == launch.stdout, lines


def test_manifest_covers_the_folder_and_every_recipe_exists():
    files = {p.name for p in CORPUS.glob("*.cu")}
    assert files == {c["file"] for c in CASES}, "every corpus file has a case in manifest.toml, and back"
    assert {c["recipe"] for c in CASES} <= set(RECIPES)
    assert len(set(IDS)) == len(IDS)
    for c in CASES:
        assert c["block"] % 32 == 0 and c["features"]


@pytest.mark.parametrize("schedule", ["forward", "reverse"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_corpus_on_the_cpu_backend(case, schedule, capfd):
    _run(case, "cpu", schedule, capfd)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_corpus_on_the_cuda_backend(case, capfd):
    pytest.importorskip("cupy")
    _run(case, "cuda", capfd=capfd)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_corpus_is_valid_cuda_for_nvrtc(case):
    if not nvrtc.available():
        pytest.skip(f"NVRTC is not installed: {nvrtc.unavailable_reason()}")
    code, origin = _source(case)
    if "<cooperative_groups" in code and not nvrtc.header_dirs():
        pytest.skip(
            "NVRTC needs CUDA's <cooperative_groups.h>: pip install nvidia-cuda-runtime-cu12 "
            "nvidia-cuda-cccl-cu12 (the test extra does), or install the CUDA toolkit"
        )
    assert nvrtc.check_compile(code, case["kernel"], origin=origin) == []
