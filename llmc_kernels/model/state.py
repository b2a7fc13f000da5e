"""What both engines train: GPT-2's parameters, their gradients and AdamW's moments, as llm.c keeps them.

One float32 buffer each (``params_memory``, ``grads_memory``, ``m``, ``v``), and ``params[name]`` /
``grads[name]`` are views into it in checkpoint order (config.param_shapes), so a checkpoint is one write
of ``params_memory`` and AdamW is one launch over every parameter. The moments are allocated at the first
update, as llm.c does. An engine (plain.GPT2, fast.FastGPT2) holds a :class:`ParameterState`; two engines
may hold the same one, so a run can switch engines between steps.
"""

from __future__ import annotations

import math

import numpy as np

from . import checkpoint
from .config import GPT2Config, num_params, param_shapes

__all__ = ["ParameterState", "init_params", "views", "host"]


def host(a) -> np.ndarray:
    """A NumPy copy/view of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def views(memory, shapes: dict[str, tuple[int, ...]], align: int = 1) -> dict:
    """Name -> C-contiguous view into the flat ``memory``, tensors back to back in ``shapes`` order, each
    starting at a multiple of ``align`` elements (the fast engine's 256-byte alignment)."""
    out, offset = {}, 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        out[name] = memory[offset : offset + n].reshape(shape)
        offset += -(-n // align) * align
    return out


def aligned_numel(shapes: dict, align: int = 1) -> int:
    """Elements ``views(memory, shapes, align)`` needs."""
    return sum(-(-math.prod(s) // align) * align for s in shapes.values())


def init_params(config: GPT2Config, seed: int = 0) -> np.ndarray:
    """GPT-2's initialisation: weights ~ N(0, 0.02), the two residual projections (attprojw, fcprojw)
    ~ N(0, 0.02/sqrt(2L)) so the residual stream's variance does not grow with depth, biases 0,
    layernorm weights 1. The padded vocabulary rows of wte are 0 (no token ever reads them).
    Deterministic: the same (config, seed) gives the same bytes on every backend."""
    rng = np.random.Generator(np.random.PCG64(seed))
    std, L = 0.02, config.num_layers
    parts = []
    for name, shape in param_shapes(config).items():
        if name in ("ln1w", "ln2w", "lnfw"):
            t = np.ones(shape, np.float32)
        elif name.endswith("b"):  # every bias and layernorm bias
            t = np.zeros(shape, np.float32)
        else:
            s = std / math.sqrt(2 * L) if name in ("attprojw", "fcprojw") else std
            t = rng.standard_normal(shape, dtype=np.float32) * np.float32(s)
            if name == "wte":
                t[config.vocab_size :] = 0
        parts.append(t.reshape(-1))
    return np.concatenate(parts)


class ParameterState:
    """Parameters, gradients and AdamW moments of one GPT-2, on the arrays of ``xp`` (numpy or cupy)."""

    def __init__(self, config: GPT2Config, params: np.ndarray | None = None, xp=np):
        self.config, self.xp = config, xp
        self.num_parameters = num_params(config)
        self.params_memory = xp.zeros(self.num_parameters, dtype=xp.float32)
        if params is not None:
            params = np.asarray(params, dtype=np.float32).reshape(-1)
            if params.size != self.num_parameters:
                raise ValueError(f"{params.size} parameters given, {config} has {self.num_parameters}")
            self.params_memory[...] = xp.asarray(params)
        self.params = views(self.params_memory, param_shapes(config))
        self.grads_memory = xp.zeros(self.num_parameters, dtype=xp.float32)
        self.grads = views(self.grads_memory, param_shapes(config))
        self.m = self.v = None

    def zero_grad(self) -> None:
        """Zero the gradients (every backward op accumulates into them)."""
        self.grads_memory.fill(0)

    def moments(self) -> tuple:
        """AdamW's (m, v), allocated (zero) at the first call."""
        if self.m is None:
            self.m = self.xp.zeros(self.num_parameters, dtype=self.xp.float32)
            self.v = self.xp.zeros(self.num_parameters, dtype=self.xp.float32)
        return self.m, self.v

    # ------------------------------------------------------------------ files
    def save_checkpoint(self, path) -> None:
        """The parameters in llm.c's format (byte-compatible with llm.c's gpt2_124M.bin)."""
        checkpoint.write_model(path, self.config, host(self.params_memory))

    def save_state(self, path, step: int, extra: dict | None = None) -> None:
        """AdamW's m, v and ``step`` (the t of the last update), plus the trainer's ``extra`` dict."""
        m = None if self.m is None else host(self.m)
        v = None if self.v is None else host(self.v)
        checkpoint.write_state(path, step, m, v, extra)

    def load_state(self, path) -> tuple[int, dict]:
        """Restore m and v saved by ``save_state``; returns (step, extra)."""
        step, m, v, extra = checkpoint.read_state(path)
        if m is None:
            self.m = self.v = None
        elif m.size != self.num_parameters:
            raise checkpoint.CheckpointError(
                f"{path}: optimizer state for {m.size} parameters, the model has {self.num_parameters}"
            )
        else:
            self.m, self.v = self.xp.asarray(m), self.xp.asarray(v)
        return step, extra
