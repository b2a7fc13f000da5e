"""The CPU backend's memory counters (llmc_kernels.profile) against Nsight Compute on a real GPU.

    python bench/memory_model.py                 # the model's counters for every case (CPU backend, no GPU)
    python bench/memory_model.py --gpu           # on a GPU machine: the same launches under ncu, compared
    python bench/memory_model.py --gpu --timing  # no counters readable: rank the strided copies by time

Cases: strided copies at strides 1..32, a float4 copy, transposes (naive; through shared memory without and
with padding), shared-memory strides 1..32 and a broadcast, the package's kernels (ops) and every chapter's
solution kernels (solutions/01-08) at small, awkward sizes. With ``--gpu`` every case is launched once on the
cuda backend inside ``ncu --csv --metrics ...`` (a child process of this script); the same cases run here on
the GPU too, with every RawKernel launch recorded (grid, block, arguments as they were), and replayed on the
CPU backend under llmc_kernels.profile, so the model sees exactly the launches ncu measured (the ops pick
other launch configurations on the CPU backend). ncu's figures are matched to the model's launch by launch.
Requests and sectors must match exactly for converged code, shared wavefronts exactly. Where
ncu cannot read the counters (some virtual machines), ``--timing`` validates instead: the strided-copy
sweep's modelled sectors must rank the measured times (Spearman >= 0.95). Results go into bench/RESULTS.md
with the device, the date and the commit.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import RESULTS, git_commit, provenance, write_section  # noqa: E402

from llmc_kernels.runtime import RawKernel  # noqa: E402

# Nsight Compute's metric for each counter of llmc_kernels.profile (a request: one warp-level instruction)
METRICS = {
    "global_load_requests": "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
    "global_load_sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "global_store_requests": "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum",
    "global_store_sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
    "shared_load_requests": "smsp__inst_executed_op_shared_ld.sum",
    "shared_load_wavefronts": "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
    "shared_store_requests": "smsp__inst_executed_op_shared_st.sum",
    "shared_store_wavefronts": "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum",
    "atomics": (
        "l1tex__t_requests_pipe_lsu_mem_global_op_atom.sum",
        "l1tex__t_requests_pipe_lsu_mem_global_op_red.sum",
    ),
}
COMPARED = list(METRICS)

PATTERNS = r"""
extern "C" __global__ void strided_copy(float* out, const float* inp, int n, int stride) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = inp[(long long)i * stride];
}

extern "C" __global__ void float4_copy(float4* out, const float4* inp, int n4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) out[i] = inp[i];
}

// out[c][r] = inp[r][c]: reads coalesced, writes `rows` floats apart
extern "C" __global__ void transpose_naive(float* out, const float* inp, int rows, int cols) {
    int c = blockIdx.x * 32 + threadIdx.x, r = blockIdx.y * 32 + threadIdx.y;
    if (r < rows && c < cols) out[(long long)c * rows + r] = inp[(long long)r * cols + c];
}

// through a 32x32 tile of shared memory: both global sides coalesced, the tile read down a column
extern "C" __global__ void transpose_tiled(float* out, const float* inp, int rows, int cols) {
    __shared__ float tile[32][32];
    int c = blockIdx.x * 32 + threadIdx.x, r = blockIdx.y * 32 + threadIdx.y;
    if (r < rows && c < cols) tile[threadIdx.y][threadIdx.x] = inp[(long long)r * cols + c];
    __syncthreads();
    int oc = blockIdx.y * 32 + threadIdx.x, or_ = blockIdx.x * 32 + threadIdx.y;
    if (or_ < cols && oc < rows) out[(long long)or_ * rows + oc] = tile[threadIdx.x][threadIdx.y];
}

// the same with one float of padding per row: a column of the tile falls in 32 different banks
extern "C" __global__ void transpose_padded(float* out, const float* inp, int rows, int cols) {
    __shared__ float tile[32][33];
    int c = blockIdx.x * 32 + threadIdx.x, r = blockIdx.y * 32 + threadIdx.y;
    if (r < rows && c < cols) tile[threadIdx.y][threadIdx.x] = inp[(long long)r * cols + c];
    __syncthreads();
    int oc = blockIdx.y * 32 + threadIdx.x, or_ = blockIdx.x * 32 + threadIdx.y;
    if (or_ < cols && oc < rows) out[(long long)or_ * rows + oc] = tile[threadIdx.x][threadIdx.y];
}

// shared memory read at a stride of `stride` words (stride 0: every lane reads word 0, a broadcast)
extern "C" __global__ void shared_stride(float* out, const float* inp, int stride) {
    __shared__ float buf[1024];
    int t = threadIdx.x;
    for (int i = t; i < 1024; i += blockDim.x) buf[i] = inp[i];
    __syncthreads();
    out[blockIdx.x * blockDim.x + t] = buf[(t * stride) & 1023];
}
"""

_kernels: dict = {}


def _k(name):
    if name not in _kernels:
        _kernels[name] = RawKernel(PATTERNS, name)
    return _kernels[name]


def cases(xp):
    """[(label, fn)] where fn() launches on arrays of ``xp`` (numpy: the CPU backend; cupy: the GPU)."""
    rng = np.random.default_rng(0)
    found = []
    n = 64 * 256
    src = xp.asarray(rng.standard_normal(n * 32, dtype=np.float32))
    dst = xp.empty(n, dtype=xp.float32)
    for s in range(1, 33):
        found.append(
            (
                f"strided copy, stride {s}",
                lambda s=s: _k("strided_copy")((n // 256,), (256,), (dst, src, i32(n), i32(s))),
            )
        )
    found.append(("float4 copy", lambda: _k("float4_copy")((n // 4 // 256,), (256,), (dst, src, i32(n // 4)))))
    rows, cols = 96, 128
    a = xp.asarray(rng.standard_normal((rows, cols), dtype=np.float32))
    at = xp.empty((cols, rows), dtype=xp.float32)
    for name in ("transpose_naive", "transpose_tiled", "transpose_padded"):
        found.append(
            (
                name.replace("_", " "),
                lambda name=name: _k(name)((cols // 32, rows // 32), (32, 32), (at, a, i32(rows), i32(cols))),
            )
        )
    buf_in = xp.asarray(rng.standard_normal(1024, dtype=np.float32))
    sh_out = xp.empty(4 * 256, dtype=xp.float32)
    for s in [0] + list(range(1, 33)):
        label = "shared broadcast" if s == 0 else f"shared stride {s}"
        found.append((label, lambda s=s: _k("shared_stride")((4,), (256,), (sh_out, buf_in, i32(s)))))
    from llmc_kernels import ops

    found += op_cases(xp, ops, "ops")
    for chapter, namespace in solution_namespaces():
        found += op_cases(xp, namespace, chapter)
    return found


i32 = np.int32


def op_cases(xp, ns, prefix: str):
    """The ops of namespace ``ns`` (the package's ops, or a chapter's solutions) at small, awkward sizes."""
    rng = np.random.default_rng(1)
    B, T, C, NH, V, Vp = 2, 37, 96, 4, 250, 256
    f = lambda *shape: xp.asarray(rng.standard_normal(shape, dtype=np.float32))  # noqa: E731
    inp, w, b, dout = f(B, T, C), f(C), f(C), f(B, T, C)
    out, dinp, dw, db = f(B, T, C), f(B, T, C), f(C), f(C)
    mean, rstd = f(B, T), xp.abs(f(B, T)) + 1
    qkv, att, preatt, atty = f(B, T, 3 * C), f(B, NH, T, T), f(B, NH, T, T), f(B, T, C)
    logits, probs, losses = f(B, T, Vp), f(B, T, Vp), f(B, T)
    tok = xp.asarray(rng.integers(0, V, (B, T), dtype=np.int32))
    wte, wpe, dwte, dwpe = f(V, C), f(T, C), f(V, C), f(T, C)
    mw, mb = f(3 * C, C), f(3 * C)
    matmul = getattr(ns, "matmul_forward_kernel", None) or getattr(ns, "matmul_forward", None)
    calls = {
        "encoder_forward": lambda fn: fn(out, tok, wte, wpe, B, T, C),
        "encoder_backward": lambda fn: fn(dwte, dwpe, dout, tok, B, T, C),
        "layernorm_forward": lambda fn: fn(out, mean, rstd, inp, w, b, B, T, C),
        "layernorm_backward": lambda fn: fn(dinp, dw, db, dout, inp, w, mean, rstd, B, T, C),
        "gelu_forward": lambda fn: fn(out, inp, B * T * C),
        "gelu_backward": lambda fn: fn(dinp, inp, dout, B * T * C),
        "residual_forward": lambda fn: fn(out, inp, dout, B * T * C),
        "attention_forward": lambda fn: fn(atty, preatt, att, qkv, B, T, C, NH),
        "softmax_forward": lambda fn: fn(probs, logits, B, T, V, Vp),
        "crossentropy_forward": lambda fn: fn(losses, probs, tok, B, T, Vp),
    }
    present = {name: getattr(ns, name) for name in calls if callable(getattr(ns, name, None))}
    found = [(f"{prefix}.{name}", lambda fn=fn, call=calls[name]: call(fn)) for name, fn in present.items()]
    if matmul is not None:
        found.append((f"{prefix}.{matmul.__name__}", lambda: matmul(qkv, inp, mw, mb, B, T, C, 3 * C)))
    return found


def solution_namespaces():
    """(chapter, namespace of its solved exercise functions) for chapters 01-08, from solutions/."""
    import json
    import types

    found = []
    for path in sorted(os.listdir(os.path.join(ROOT, "solutions"))):
        if not path[:2].isdigit() or not "01" <= path[:2] <= "08":
            continue
        nb = json.load(open(os.path.join(ROOT, "solutions", path)))
        ns = types.SimpleNamespace()
        scope: dict = {}
        for cell in nb["cells"]:
            meta = cell.get("metadata", {}).get("llmc", {})
            source = "".join(cell.get("source", []))
            if cell.get("id") == "imports" or meta.get("role") == "exercise":
                exec(compile(source, f"{path}:{cell.get('id')}", "exec"), scope)
                if meta.get("role") == "exercise":
                    setattr(ns, meta["exercise"], scope[meta["exercise"]])
        found.append((path[:-6], ns))
    return found


# -------------------------------------------------------------------------------------- the same launches
def recorded(xp) -> list:
    """Run every case on ``xp``'s backend and record its RawKernel launches with their arguments as they
    were at launch time (NumPy copies): [(label, [(kernel, grid, block, args, shared_mem)])]."""
    from llmc_kernels.runtime import RawKernel

    original = RawKernel.__call__
    log: list = []

    def spy(self, grid, block, args, shared_mem=0, stream=None):
        host = [
            xp.asnumpy(a).copy()
            if hasattr(a, "__cuda_array_interface__")
            else (a.copy() if isinstance(a, np.ndarray) else a)
            for a in args
        ]
        log.append((self, grid, block, host, shared_mem))
        return original(self, grid, block, args, shared_mem, stream)

    out = []
    RawKernel.__call__ = spy
    try:
        for label, fn in cases(xp):
            log.clear()
            fn()
            out.append((label, list(log)))
    finally:
        RawKernel.__call__ = original
    return out


def model_rows(xp=np):
    """[(label, [KernelCounters])]: the launches that ``xp``'s backend makes, replayed on the CPU backend with
    the same grids, blocks and arguments under llmc_kernels.profile."""
    from llmc_kernels import profile

    rows = []
    for label, launches in recorded(xp):

        def replay(launches=launches):
            for k, grid, block, args, smem in launches:
                k(grid, block, args, smem)

        rows.append((label, profile(replay).kernels))
    return rows


# ----------------------------------------------------------------------------------------------- ncu
def launch_all():
    """Child of ncu: every case once on the GPU, in order."""
    import cupy as cp

    found = cases(cp)
    for _, fn in found:  # compile and warm up outside the profiled range
        fn()
    cp.cuda.Device().synchronize()
    cp.cuda.profiler.start()
    for _, fn in found:
        fn()
    cp.cuda.Device().synchronize()
    cp.cuda.profiler.stop()


def ncu_rows(ncu: str) -> tuple[list[dict] | None, str]:
    """One dict per kernel launch (name + metric values) as ncu measured them; (None, why) if it cannot."""
    metrics = []
    for m in METRICS.values():
        metrics += list(m) if isinstance(m, tuple) else [m]
    cmd = [
        ncu,
        "--csv",
        "--clock-control",
        "none",
        "--profile-from-start",
        "off",
        "--metrics",
        ",".join(metrics),
        sys.executable,
        os.path.abspath(__file__),
        "--launch",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    text = proc.stdout
    start = text.find('"ID"')
    if proc.returncode != 0 or start < 0:
        return None, (proc.stderr or proc.stdout)[-2000:]
    by_launch: dict = {}
    for row in csv.DictReader(io.StringIO(text[start:])):
        launch = by_launch.setdefault(row["ID"], {"name": row["Kernel Name"].split("(")[0].strip()})
        value = row["Metric Value"].replace(",", "")
        launch[row["Metric Name"]] = float(value) if value not in ("", "n/a") else 0.0
    launches = [by_launch[k] for k in sorted(by_launch, key=int)]
    out = []
    for launch in launches:
        row = {"name": launch["name"]}
        for key, metric in METRICS.items():
            names = metric if isinstance(metric, tuple) else (metric,)
            row[key] = int(round(sum(launch.get(m, 0.0) for m in names)))
        out.append(row)
    return out, ""


def compare(model, measured):
    """Match the model's launches to ncu's in order (ncu also lists cuBLAS's and CuPy's own kernels, which
    the model does not replay); [(label, kernel, field, model, ncu)] and the number of mismatches."""
    flat = [(label, k) for label, ks in model for k in ks]
    names = {k.name for _, k in flat}
    ours = [r for r in measured if r["name"] in names]
    rows, bad = [], 0
    for (label, k), m in zip(flat, ours):
        for f in COMPARED:
            a, b = getattr(k, f), m[f]
            rows.append((label, k.name, f, a, b))
            bad += a != b
    if len(ours) != len(flat):
        bad += 1
    return rows, bad


def timing_check():
    """Without counters: time the strided copies and rank them against the modelled sectors."""
    import cupy as cp

    from llmc_kernels.speed import time_gpu

    model = {label: ks for label, ks in model_rows(cp) if label.startswith("strided")}
    sectors, times = [], []
    for label, fn in cases(cp):
        if label in model:
            sectors.append(sum(k.global_load_sectors for k in model[label]))
            times.append(float(np.median(time_gpu(fn, graph="cupy"))))
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    rho = float(np.corrcoef(rank(sectors), rank(times))[0, 1])
    return sectors, times, rho


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpu", action="store_true", help="compare with Nsight Compute on this machine's GPU")
    p.add_argument("--timing", action="store_true", help="with --gpu: validate by timing instead of counters")
    p.add_argument("--launch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--results", default=RESULTS)
    args = p.parse_args()
    if args.launch:
        return launch_all()
    if not args.gpu:
        model = model_rows()
        for label, ks in model:
            for k in ks:
                print(label, k.as_dict())
        return 0
    import cupy as cp

    model = model_rows(cp)
    if args.timing:
        sectors, times, rho = timing_check()
        table = ["| stride | modelled sectors | time (us) |", "|---|---|---|"]
        table += [f"| {i + 1} | {s} | {t * 1e3:.2f} |" for i, (s, t) in enumerate(zip(sectors, times))]
        header = f"{provenance(cp)} Spearman rank correlation of sectors and time: {rho:.3f} (target >= 0.95)."
        print(header + "\n" + "\n".join(table))
        write_section(
            args.results, "memory-model-timing", "Memory model against timing (strided copies)", header, table
        )
        return 0 if rho >= 0.95 else 1
    ncu = shutil.which("ncu") or next((p for p in ("/usr/local/cuda/bin/ncu",) if os.path.exists(p)), None)
    if ncu is None:
        print("ncu not found: run with --timing instead")
        return 2
    measured, why = ncu_rows(ncu)
    if measured is None:
        print(f"ncu could not read the counters:\n{why}\nrun with --timing instead")
        return 2
    rows, bad = compare(model, measured)
    table = ["| case | kernel | counter | model (CPU) | ncu (GPU) |", "|---|---|---|---|---|"]
    table += [
        f"| {label} | {name} | {f} | {a} | {b}{'' if a == b else ' **differs**'} |"
        for label, name, f, a, b in rows
        if a or b
    ]
    summary = (
        f"{provenance(cp)} {sum(1 for r in rows if r[3] == r[4])} of {len(rows)} counters equal "
        f"({bad} differ); ncu {ncu}; commit {git_commit()}."
    )
    print(summary)
    print("\n".join(table))
    write_section(args.results, "memory-model", "Memory model against Nsight Compute", summary, table)
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
