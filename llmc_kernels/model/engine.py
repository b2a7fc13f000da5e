"""The interface both engines offer (plain.GPT2 and fast.FastGPT2), over a :class:`~.state.ParameterState`.

    loss = model.step(inputs, targets, lr, beta1, beta2, eps, weight_decay, t)    # one training step
    loss = model.forward(inputs, targets); model.zero_grad(); model.backward(); model.update(lr, ..., t)
    model.generate(tokens, max_new_tokens); model.save_checkpoint(path); model.params["wte"]

An engine owns how the numbers are computed (which kernels, which buffers, a CUDA graph or not); the
parameters, gradients and AdamW moments belong to its ``state``, which it may share with another engine
(``FastGPT2.on(plain.state)``: the same parameters, trained by the other engine). ``llmc train`` talks to
this interface only, so it never asks which engine it runs.
"""

from __future__ import annotations

import numpy as np

from . import checkpoint
from .config import GPT2Config
from .state import ParameterState, host, init_params


def check_tokens(arr, what: str, cfg: GPT2Config) -> tuple[int, int]:
    """(B, T) of a 2-D int32 array of token ids in [0, V) with T <= maxT; a ValueError saying what was
    expected otherwise (reads a device array's min and max: a host sync)."""
    if getattr(arr, "ndim", None) != 2:
        raise ValueError(
            f"{what} must be a 2-D int32 array [B, T]; got {type(arr).__name__} "
            f"with shape {getattr(arr, 'shape', None)}"
        )
    if getattr(arr, "dtype", None) != np.int32:
        raise ValueError(f"{what} must be int32 (llm.c's token type); got {arr.dtype}")
    B, T = (int(s) for s in arr.shape)
    if B < 1 or not 1 <= T <= cfg.max_seq_len:
        raise ValueError(f"{what} has shape {arr.shape}: need B >= 1 and 1 <= T <= maxT={cfg.max_seq_len}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= cfg.vocab_size:
        raise ValueError(f"{what} holds token ids in [{lo}, {hi}]; the vocabulary is [0, {cfg.vocab_size})")
    return B, T


def check_pair(inputs, targets, cfg: GPT2Config) -> tuple[int, int]:
    """check_tokens for inputs and (when given) targets of the same shape; returns (B, T)."""
    B, T = check_tokens(inputs, "inputs", cfg)
    if targets is not None:
        check_tokens(targets, "targets", cfg)
        if targets.shape != inputs.shape:
            raise ValueError(f"targets {targets.shape} and inputs {inputs.shape} differ in shape")
    return B, T


def _delegate(name: str) -> property:
    """``engine.<name>`` is ``engine.state.<name>`` (read and write)."""
    return property(
        lambda self: getattr(self.state, name),
        lambda self, value: setattr(self.state, name, value),
        doc=f"state.{name}",
    )


class Engine:
    """What a GPT-2 engine does; subclasses implement ``forward``, ``backward``, give ``update`` their
    ``_adamw_update`` op and say their ``name``. ``acts["logits"]`` after ``forward(inputs)`` (no targets) is
    what ``generate`` samples from."""

    name = "engine"
    ops_name: str  # the ops namespace's name, for messages and `--precision`: each engine sets it
    state: ParameterState

    # ------------------------------------------------------------------ construction
    def __init__(self, state: ParameterState):
        self.state = state

    @classmethod
    def from_config(cls, config: GPT2Config, seed: int = 0, **options):
        """GPT-2's initialisation (``state.init_params``): the same bytes for the same seed, either engine."""
        return cls(config, init_params(config, seed), **options)

    @classmethod
    def from_checkpoint(cls, path, **options):
        """A model from an llm.c float32 checkpoint (e.g. llm.c's gpt2_124M.bin)."""
        config, params = checkpoint.read_model(path)
        return cls(config, params, **options)

    @classmethod
    def on(cls, state: ParameterState, **options):
        """This engine over an existing state (shared, not copied): ``FastGPT2.on(model.state)``."""
        return cls(state.config, state=state, **options)

    # ------------------------------------------------------------------ the state, by its llm.c names
    config = _delegate("config")
    xp = _delegate("xp")
    num_parameters = _delegate("num_parameters")
    params = _delegate("params")
    grads = _delegate("grads")
    params_memory = _delegate("params_memory")  # settable: `model.grads_memory -= x` works in place
    grads_memory = _delegate("grads_memory")
    m = _delegate("m")
    v = _delegate("v")

    def save_checkpoint(self, path) -> None:
        self.state.save_checkpoint(path)

    def save_state(self, path, step: int, extra: dict | None = None) -> None:
        self.state.save_state(path, step, extra)

    def load_state(self, path) -> tuple[int, dict]:
        return self.state.load_state(path)

    # ------------------------------------------------------------------ training
    def forward(self, inputs, targets=None):
        raise NotImplementedError

    def backward(self) -> None:
        raise NotImplementedError

    def update(self, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, t: int) -> None:
        """One AdamW step on every parameter (t counts from 1), decoupled weight decay as llm.c:
        p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p), through the engine's ``_adamw_update``."""
        m, v = self.state.moments()
        self._adamw_update(
            self.params_memory,
            self.grads_memory,
            m,
            v,
            self.num_parameters,
            float(lr),
            float(beta1),
            float(beta2),
            float(eps),
            float(weight_decay),
            int(t),
        )

    def zero_grad(self) -> None:
        """Zero the parameter gradients (the backward ops accumulate into them)."""
        self.state.zero_grad()

    def step(
        self, inputs, targets, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, t: int
    ) -> float:
        """One training step: forward, zero_grad, backward, AdamW at step t >= 1; returns the mean loss."""
        if targets is None:
            raise ValueError("step() trains: it needs targets")
        loss = self.forward(inputs, targets)
        self.zero_grad()
        self.backward()
        self.update(lr, beta1, beta2, eps, weight_decay, t)
        return loss

    # ------------------------------------------------------------------ what a trainer asks
    batches_on_host = False  # True: step() wants NumPy token arrays (it copies them itself)

    @staticmethod
    def training_bytes(config: GPT2Config, B: int, T: int) -> int:
        """Device memory of training with this engine at (B, T) (what llmc train's batch-size fit uses)."""
        raise NotImplementedError

    @property
    def graph_failure(self) -> str | None:
        """Why a CUDA graph could not be used (None: it was, or this engine has none)."""
        return None

    def describe(self) -> str:
        """One line for the trainer's log: which engine and what it does."""
        return f"engine: {self.name}"

    # ------------------------------------------------------------------ sampling
    def generate(
        self, tokens, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None, seed: int | None = None
    ) -> np.ndarray:
        """Continue ``tokens`` (a sequence of ids, or int [B, t] for B prompts) by ``max_new_tokens``
        sampled tokens; returns a NumPy int array with the prompt(s) and the new tokens. The context is the
        last maxT tokens. ``temperature`` divides the logits (0 takes the most likely token), ``top_k``
        keeps the k most likely, ``seed`` makes the draw reproducible. Uses the forward pass only."""
        toks = np.asarray(tokens, dtype=np.int64)
        single = toks.ndim == 1
        toks = np.atleast_2d(toks)
        if toks.ndim != 2 or toks.shape[1] < 1:
            raise ValueError("generate needs at least one prompt token (GPT-2's <|endoftext|> is 50256)")
        if temperature < 0 or (top_k is not None and top_k < 1):
            raise ValueError(f"need temperature >= 0 and top_k >= 1; got {temperature}, {top_k}")
        rng = np.random.default_rng(seed)
        V = self.config.vocab_size
        for _ in range(int(max_new_tokens)):
            ctx = toks[:, -self.config.max_seq_len :].astype(np.int32)
            self.forward(ctx)
            logits = host(self.acts["logits"][:, -1, :V]).astype(np.float64)
            if temperature == 0:
                nxt = logits.argmax(axis=1)
            else:
                logits /= temperature
                if top_k is not None and top_k < V:
                    kth = np.partition(logits, -top_k, axis=1)[:, -top_k][:, None]
                    logits = np.where(logits < kth, -np.inf, logits)
                probs = np.exp(logits - logits.max(axis=1, keepdims=True))
                cdf = np.cumsum(probs, axis=1)
                coin = rng.random(len(toks))[:, None] * cdf[:, -1:]  # inverse-CDF draw, as llm.c
                nxt = np.minimum((cdf <= coin).sum(axis=1), V - 1)
            toks = np.concatenate([toks, nxt[:, None]], axis=1)
        return toks[0] if single else toks
