"""Decisions ``llmc train`` makes about the machine: model size vs backend, the engine, TF32, a batch size that
fits, the learning-rate schedule. Pure functions where possible, so the tests can exercise each branch."""

from __future__ import annotations

import math

from ..model.config import GPT2Config, num_params, training_bytes

CPU_MAX_PARAMS = 50_000_000  # GPT-2 small (124M) would take minutes per step on the CPU backend
GPU_HEADROOM = 0.9  # keep 10% of the free memory (allocator fragmentation, cuBLAS workspace)
GPU_RESERVE_BYTES = 512 * 2**20  # and half a GiB for the CUDA context, cuBLAS handles, kernels


class SetupError(ValueError):
    """A combination of options this machine cannot run; the message says what to do instead."""


def refuse_big_model_on_cpu(cfg: GPT2Config, backend: str, name: str) -> None:
    if backend == "cpu" and num_params(cfg) > CPU_MAX_PARAMS:
        raise SetupError(
            f"--model {name} ({num_params(cfg) / 1e6:.0f}M parameters) is too big for the cpu backend, "
            "which runs each CUDA thread one after another: a single step would take many minutes. "
            "Use --model tiny on the cpu backend, or run on a GPU (--backend cuda)."
        )


ENGINES = ("fast", "plain")


def choose_engine(requested: str | None, cfg: GPT2Config, ops=None) -> tuple[str, str | None]:
    """(engine, why the fast engine is not used or None). ``fast`` is model.fast.FastGPT2 (fused kernels,
    flash attention, the step as one CUDA graph), ``plain`` is model.plain.GPT2 (the SPEC ops one at a time: the
    kernels the chapters build). ``requested`` None picks fast where it can run: the package's own ops (a
    learner's ops have no fused kernels) and a model flash attention holds; an explicit ``fast`` that cannot
    run is a SetupError."""
    if requested not in (None,) + ENGINES:
        raise SetupError(f"--engine must be fast or plain; got {requested!r}")
    if requested == "plain":
        return "plain", "--engine plain"
    from .. import ops as package_ops
    from ..model.fast import fast_path_problem

    if ops is not None and ops is not package_ops:
        label = getattr(ops, "__name__", type(ops).__name__)
        problem = f"it runs only the package's own fused kernels, and this run trains with {label}"
    else:
        problem = fast_path_problem(cfg, package_ops)
    if problem is None:
        return "fast", None
    if requested == "fast":
        raise SetupError(f"--engine fast cannot train this model: {problem}. Use --engine plain.")
    return "plain", problem


def engine_bytes(engine: str, cfg: GPT2Config, B: int, T: int) -> int:
    """Device memory of a training step with ``engine`` (what the batch-size fit compares with free memory)."""
    from ..model import ENGINES

    return ENGINES[engine].training_bytes(cfg, B, T)


def gpu_compute_capability() -> tuple[int, int, str]:
    """(major, minor, name) of the current CUDA device."""
    import cupy

    dev = cupy.cuda.Device()
    cc = str(dev.compute_capability)  # e.g. "75" (T4), "80" (A100), "90" (H100)
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    return int(cc[:-1]), int(cc[-1]), name


def resolve_precision(requested: str, backend: str, capability=None) -> tuple[str, str | None]:
    """(precision to use, message or None). TF32 needs tensor cores of compute capability 8.0+ (A100, H100;
    not a T4, 7.5); elsewhere we fall back to fp32 and say so. ``capability`` is (major, minor, name). With
    the sm_75 path forced (``LLMC_FORCE_SM75=1``, ops/arch.py) every GPU counts as one without TF32."""
    from ..ops.arch import FORCE_ENV, forced

    if requested not in ("fp32", "tf32"):
        raise SetupError(f"--precision must be fp32 or tf32; got {requested!r}")
    if requested == "fp32":
        return "fp32", None
    if backend == "cpu":
        return "fp32", (
            "--precision tf32: the cpu backend has no TF32 (a GPU tensor-core format); falling back to fp32"
        )
    if forced():
        return "fp32", (
            f"--precision tf32: the sm_75 path is forced ({FORCE_ENV}=1: SIMT flash attention and fp32 "
            "products, as on a T4, which has no TF32); falling back to fp32"
        )
    major, minor, name = capability if capability is not None else gpu_compute_capability()
    if major < 8:
        return "fp32", (
            f"--precision tf32: {name} (compute capability {major}.{minor}) has no TF32, which needs "
            "compute capability 8.0 or newer (A100, H100, RTX 30xx...); falling back to fp32"
        )
    return "tf32", None


def gpu_free_bytes() -> int:
    import cupy

    cupy.get_default_memory_pool().free_all_blocks()
    free, _total = cupy.cuda.runtime.memGetInfo()
    return int(free)


def fit_batch_size(
    cfg: GPT2Config, B: int, T: int, free_bytes: int, explicit: bool, estimate=training_bytes
) -> tuple[int, str | None]:
    """The largest batch size <= B (halving) whose training memory ``estimate(cfg, B, T)`` (default: the plain
    model's, model.config.training_bytes) fits ``free_bytes``; with ``explicit`` (the user chose B) keep B and
    only warn. Returns (B, message or None)."""
    budget = free_bytes * GPU_HEADROOM - GPU_RESERVE_BYTES
    need = lambda b: estimate(cfg, b, T)  # noqa: E731
    gb = lambda b: need(b) / 1e9  # noqa: E731
    if need(B) <= budget:
        return B, None
    if explicit:
        return B, (
            f"warning: --batch-size {B} at --seq-len {T} needs about {gb(B):.1f} GB and the GPU has "
            f"{free_bytes / 1e9:.1f} GB free; it may run out of memory"
        )
    b = B
    while b > 1 and need(b) > budget:
        b //= 2
    if need(b) > budget:
        raise SetupError(
            f"even --batch-size 1 at --seq-len {T} needs about {gb(1):.1f} GB and the GPU has "
            f"{free_bytes / 1e9:.1f} GB free: use a shorter --seq-len or a smaller model"
        )
    return b, (
        f"batch size {B} at T={T} needs about {gb(B):.1f} GB but the GPU has {free_bytes / 1e9:.1f} GB "
        f"free: using --batch-size {b} ({gb(b):.1f} GB)"
    )


def learning_rate(step: int, steps: int, lr: float, warmup: int, schedule: str, min_frac: float = 0.1) -> float:
    """The learning rate of update ``step`` (1-based) of ``steps``, as llm.c's train_gpt2.cu: linear warmup
    over the first ``warmup`` updates (lr * step / warmup), then constant, or a cosine from lr towards
    ``min_frac * lr``: lr_min + (lr - lr_min) * (1 + cos(pi * decay)) / 2, decay = (step-1-warmup)/(steps-warmup)."""
    if schedule not in ("constant", "cosine"):
        raise SetupError(f"--lr-schedule must be constant or cosine; got {schedule!r}")
    s = step - 1  # llm.c counts steps from 0
    if s < warmup:
        return lr * (s + 1) / warmup
    if schedule == "constant":
        return lr
    decay = min(1.0, (s - warmup) / max(1, steps - warmup))
    lr_min = min_frac * lr
    return lr_min + 0.5 * (1.0 + math.cos(math.pi * decay)) * (lr - lr_min)
