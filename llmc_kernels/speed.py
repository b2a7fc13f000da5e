"""How fast is it? GPU timing shared by the chapters' speed sections and the scripts under ``bench/``.

Kernel launches are asynchronous, so we time on the device with CUDA events, after a warm-up (compile,
module load, cuBLAS handles), as the median of many repeats, with the L2 cache flushed between repeats so
an input that fits in L2 is not measured at cache speed. Figures are put next to the ceilings measured in
the same process: a large device-to-device copy (bytes read + written per second) and a large SGEMM.

On the CPU backend nothing is timed: the CPU backend runs one CUDA thread after another and its speed says
nothing about a GPU.
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass, field

CPU_SKIP_MESSAGE = (
    "Timing skipped: this chapter runs on the CPU backend, which executes CUDA threads one "
    "after another; its speed says nothing about a GPU. Open the chapter on a GPU (Colab: "
    "Runtime > Change runtime type > T4 GPU) to time your kernel."
)


def _cupy():
    import cupy

    return cupy


@functools.cache
def _flush_buffer():
    cp = _cupy()
    l2 = cp.cuda.Device().attributes.get("L2CacheSize", 50 * 2**20)
    return cp.empty(max(2 * l2, 64 * 2**20) // 4, dtype=cp.float32)


def _capture_cupy(fn):
    """One call of ``fn()`` captured as a CUDA graph on a private CuPy stream, or None when it cannot be
    captured (the call synchronises with the host, e.g. to validate token ids)."""
    cp = _cupy()
    stream = cp.cuda.Stream(non_blocking=True)
    try:
        with stream:
            fn()  # warm-up on this stream: compile, allocate
            stream.synchronize()
            stream.begin_capture()
            try:
                fn()
            finally:
                graph = stream.end_capture()
        graph.upload(stream)
        return lambda: graph.launch(stream), stream
    except Exception:  # noqa: BLE001 - any failure means "not capturable"
        cp.cuda.Device().synchronize()
        return None


def _capture_torch(fn):
    """The same with PyTorch's graph API (for the PyTorch side of a comparison), or None."""
    try:
        import torch

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        stream = _cupy().cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)
        return graph.replay, stream
    except Exception:  # noqa: BLE001
        _cupy().cuda.Device().synchronize()
        return None


def time_gpu(fn, repeat: int = 20, warmup: int = 3, flush_l2: bool = True, graph: str | None = None):
    """Milliseconds of each of ``repeat`` calls of ``fn()``, timed with CUDA events.

    With ``graph="cupy"`` or ``"torch"`` the call is first captured into a CUDA graph and the replays are
    timed, so Python's launch and validation overhead (several microseconds per launch) stays out of a
    kernel's time; if the call cannot be captured it is timed directly. ``time_gpu.last_graphed`` says which.
    """
    cp = _cupy()
    captured = {"cupy": _capture_cupy, "torch": _capture_torch}[graph](fn) if graph else None
    run, stream = captured if captured else (fn, cp.cuda.get_current_stream())
    time_gpu.last_graphed = captured is not None
    for _ in range(warmup):
        run()
    cp.cuda.Device().synchronize()
    times = []
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    for _ in range(repeat):
        if flush_l2:
            _flush_buffer().fill(0)
            cp.cuda.Device().synchronize()
        start.record(stream)
        run()
        stop.record(stream)
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return times


time_gpu.last_graphed = False


@functools.cache
def copy_bandwidth_gbs(nbytes: int = 1 << 30) -> float:
    """Device-to-device copy rate in GB/s, counting bytes read plus bytes written (the usual roofline)."""
    cp = _cupy()
    a = cp.ones(nbytes // 4, dtype=cp.float32)
    b = cp.empty_like(a)
    ms = statistics.median(time_gpu(lambda: b.__setitem__(Ellipsis, a), repeat=10, flush_l2=False))
    return 2 * nbytes / (ms * 1e-3) / 1e9


@functools.cache
def sgemm_tflops(tf32: bool = False, m: int = 8192, n: int = 3072, k: int = 768) -> float:
    """cuBLAS SGEMM rate in TFLOP/s for an (m x k) @ (k x n) product, fp32 or TF32."""
    cp = _cupy()
    from . import ops  # the package's own switch for cuBLAS's compute type

    a = cp.random.standard_normal((m, k), dtype=cp.float32)
    b = cp.random.standard_normal((k, n), dtype=cp.float32)
    c = cp.empty((m, n), dtype=cp.float32)
    before = ops.matmul_precision()
    ops.set_matmul_precision("tf32" if tf32 else "fp32")
    try:
        ms = statistics.median(time_gpu(lambda: cp.matmul(a, b, out=c), repeat=10, flush_l2=False))
    finally:
        ops.set_matmul_precision(before)
    return 2 * m * n * k / (ms * 1e-3) / 1e12


@dataclass
class Timing:
    name: str
    ms: float
    gbs: float | None = None
    tflops: float | None = None


@dataclass
class SpeedTable:
    rows: list[Timing] = field(default_factory=list)
    copy_gbs: float | None = None
    sgemm_tflops: float | None = None

    def __str__(self) -> str:
        head = f"{'kernel':<28} {'median ms':>10} {'GB/s':>8} {'% copy':>7} {'TFLOP/s':>8} {'% SGEMM':>8}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            gbs = f"{r.gbs:8.0f}" if r.gbs is not None else f"{'':>8}"
            pc = f"{100 * r.gbs / self.copy_gbs:6.0f}%" if r.gbs is not None and self.copy_gbs else f"{'':>7}"
            tf = f"{r.tflops:8.2f}" if r.tflops is not None else f"{'':>8}"
            ps = (
                f"{100 * r.tflops / self.sgemm_tflops:7.0f}%"
                if r.tflops is not None and self.sgemm_tflops
                else f"{'':>8}"
            )
            lines.append(f"{r.name:<28} {r.ms:10.3f} {gbs} {pc} {tf} {ps}")
        ceil = []
        if self.copy_gbs:
            ceil.append(f"copy {self.copy_gbs:.0f} GB/s")
        if self.sgemm_tflops:
            ceil.append(f"SGEMM fp32 {self.sgemm_tflops:.1f} TFLOP/s")
        if ceil:
            lines.append("ceilings measured now: " + ", ".join(ceil))
        return "\n".join(lines)


def torch_call(fn):
    """Mark a candidate of :func:`how_fast` that runs PyTorch ops: it is captured with PyTorch's graph API and
    timed on PyTorch's stream. (A CuPy capture would not see PyTorch's kernels, which go to PyTorch's own
    stream: it would time an empty graph.)"""
    fn.graph = "torch"
    return fn


def how_fast(
    candidates: dict, *, bytes_moved: float | None = None, flops: float | None = None, repeat: int = 20
) -> SpeedTable | None:
    """Time each ``name -> fn()`` of ``candidates`` on the GPU and print a table against the ceilings.

    ``bytes_moved`` (bytes read + written by one call) gives GB/s and the fraction of copy bandwidth;
    ``flops`` gives TFLOP/s and the fraction of SGEMM. A candidate that calls PyTorch must be wrapped in
    :func:`torch_call`. On the CPU backend prints why it skips and returns None.
    """
    from .runtime import backend

    if backend() != "cuda":
        print(CPU_SKIP_MESSAGE)
        return None
    table = SpeedTable(
        copy_gbs=copy_bandwidth_gbs() if bytes_moved else None, sgemm_tflops=sgemm_tflops() if flops else None
    )
    for name, fn in candidates.items():
        ms = statistics.median(time_gpu(fn, repeat=repeat, graph=getattr(fn, "graph", "cupy")))
        table.rows.append(
            Timing(
                name,
                ms,
                bytes_moved / (ms * 1e-3) / 1e9 if bytes_moved else None,
                flops / (ms * 1e-3) / 1e12 if flops else None,
            )
        )
    print(table)
    return table
