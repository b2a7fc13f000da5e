"""GPT-2 assembled from an ops namespace, laid out as llm.c's train_gpt2.c / train_gpt2_fp32.cu.

    model = GPT2.from_config(GPT2Config.tiny(), seed=0)          # or GPT2.from_checkpoint("gpt2_124M.bin")
    loss = model.forward(inputs, targets)                         # int32 [B,T] -> mean loss (float)
    model.zero_grad(); model.backward()
    model.update(lr=3e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, t=step)

Memory, as llm.c: the parameters are ONE float32 buffer (``model.params_memory``) and ``model.params[name]``
are views into it in checkpoint order; likewise ``grads``, the AdamW moments ``m``/``v``, the activations
(``acts``, sized for B,T at the first forward) and one layer's worth of gradient scratch (``gacts``).

Every number is computed by ``self.ops`` (default ``llmc_kernels.ops``; ``llmc_kernels.reference`` gives a
pure-NumPy model; chapter 09 passes the learner's functions) with the SPEC signatures: outputs first,
backward outputs accumulate (+=), so each gradient buffer is zeroed right before the op that fills it.
"""
from __future__ import annotations

import math
import types

import numpy as np

from . import checkpoint
from .config import (GPT2Config, activation_shapes, grad_activation_shapes, num_params, numel,
                           param_shapes)

__all__ = ["GPT2", "GPT2Config", "REQUIRED_OPS"]

REQUIRED_OPS = (
    "encoder_forward", "encoder_backward", "layernorm_forward", "layernorm_backward",
    "matmul_forward", "matmul_backward", "attention_forward", "attention_backward",
    "gelu_forward", "gelu_backward", "residual_forward", "residual_backward",
    "softmax_forward", "crossentropy_forward", "crossentropy_softmax_backward", "adamw_update",
)


def _host(a) -> np.ndarray:
    """A NumPy copy/view of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def _views(memory, shapes: dict[str, tuple[int, ...]]) -> dict:
    """Name -> C-contiguous view into the flat ``memory``, tensors back to back in ``shapes`` order."""
    out, offset = {}, 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        out[name] = memory[offset:offset + n].reshape(shape)
        offset += n
    return out


def _resolve_ops(ops) -> tuple[dict, str]:
    """The callables of ``ops`` (a module, namespace or dict) by name, and its name for messages."""
    if ops is None:
        from .. import ops as ops  # noqa: PLW0127 (the package's kernels, loaded lazily per op)
    if isinstance(ops, dict):
        ops = types.SimpleNamespace(**ops)
    found, missing = {}, []
    for name in REQUIRED_OPS + ("fused_classifier",):
        try:
            fn = getattr(ops, name)
        except (AttributeError, ImportError):   # llmc_kernels.ops imports each op module on first use
            fn = None
        if fn is None and name != "fused_classifier":
            missing.append(name)
        found[name] = fn
    label = getattr(ops, "__name__", type(ops).__name__)
    if missing:
        raise AttributeError(f"the ops namespace {label} lacks {', '.join(missing)}: GPT2 needs every op of "
                             "SPEC's table (encoder, layernorm, matmul, attention, gelu, residual, softmax, "
                             "crossentropy, adamw)")
    return found, label


def check_tokens(arr, what: str, cfg: GPT2Config) -> tuple[int, int]:
    """(B, T) of a 2-D int32 array of token ids in [0, V) with T <= maxT; a ValueError saying what was
    expected otherwise (reads a device array's min and max: a host sync)."""
    if getattr(arr, "ndim", None) != 2:
        raise ValueError(f"{what} must be a 2-D int32 array [B, T]; got {type(arr).__name__} "
                         f"with shape {getattr(arr, 'shape', None)}")
    if getattr(arr, "dtype", None) != np.int32:
        raise ValueError(f"{what} must be int32 (llm.c's token type); got {arr.dtype}")
    B, T = (int(s) for s in arr.shape)
    if B < 1 or not 1 <= T <= cfg.max_seq_len:
        raise ValueError(f"{what} has shape {arr.shape}: need B >= 1 and 1 <= T <= maxT={cfg.max_seq_len}")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= cfg.vocab_size:
        raise ValueError(f"{what} holds token ids in [{lo}, {hi}]; the vocabulary is [0, {cfg.vocab_size})")
    return B, T


class GPT2:
    """GPT-2 whose forward/backward/update are sequences of calls to an ops namespace."""

    def __init__(self, config: GPT2Config, params: np.ndarray | None = None, *, ops=None, xp=None):
        self.config = config
        self._op, self.ops_name = _resolve_ops(ops)
        if xp is None:
            if self.ops_name == "llmc_kernels.reference":
                xp = np     # the float64 references run on NumPy arrays whatever the backend
            else:
                from ..runtime import xp as active_xp
                xp = active_xp()
        self.xp = xp
        self.num_parameters = num_params(config)
        # one buffer each for parameters and gradients, viewed by tensor name (checkpoint order)
        self.params_memory = xp.zeros(self.num_parameters, dtype=xp.float32)
        if params is not None:
            params = np.asarray(params, dtype=np.float32).reshape(-1)
            if params.size != self.num_parameters:
                raise ValueError(f"{params.size} parameters given, {config} has {self.num_parameters}")
            self.params_memory[...] = xp.asarray(params)
        self.params = _views(self.params_memory, param_shapes(config))
        self.grads_memory = xp.zeros(self.num_parameters, dtype=xp.float32)
        self.grads = _views(self.grads_memory, param_shapes(config))
        self.m = self.v = None       # AdamW moments, allocated at the first update (llm.c does the same)
        self.acts_memory = self.gacts_memory = None
        self.acts, self.gacts = {}, {}
        self.B = self.T = 0
        self.inputs = self.targets = None
        self.mean_loss = None        # the loss of the last forward with targets, as llm.c's model.mean_loss
        self._dlogits_ready = False  # the fused classifier writes dlogits during the forward

    # ------------------------------------------------------------------ construction, files
    @classmethod
    def from_config(cls, config: GPT2Config, seed: int = 0, *, ops=None, xp=None) -> "GPT2":
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
            elif name.endswith("b"):                  # every bias and layernorm bias
                t = np.zeros(shape, np.float32)
            else:
                s = std / math.sqrt(2 * L) if name in ("attprojw", "fcprojw") else std
                t = (rng.standard_normal(shape, dtype=np.float32) * np.float32(s))
                if name == "wte":
                    t[config.vocab_size:] = 0
            parts.append(t.reshape(-1))
        return cls(config, np.concatenate(parts), ops=ops, xp=xp)

    @classmethod
    def from_checkpoint(cls, path, *, ops=None, xp=None) -> "GPT2":
        """A model from an llm.c float32 checkpoint (e.g. llm.c's gpt2_124M.bin)."""
        config, params = checkpoint.read_model(path)
        return cls(config, params, ops=ops, xp=xp)

    def save_checkpoint(self, path) -> None:
        """The parameters in llm.c's format (byte-compatible with llm.c's gpt2_124M.bin)."""
        checkpoint.write_model(path, self.config, _host(self.params_memory))

    def save_state(self, path, step: int, extra: dict | None = None) -> None:
        """AdamW's m, v and ``step`` (the t of the last update), plus the trainer's ``extra`` dict."""
        m = None if self.m is None else _host(self.m)
        v = None if self.v is None else _host(self.v)
        checkpoint.write_state(path, step, m, v, extra)

    def load_state(self, path) -> tuple[int, dict]:
        """Restore m and v saved by ``save_state``; returns (step, extra)."""
        step, m, v, extra = checkpoint.read_state(path)
        if m is None:
            self.m = self.v = None
        elif m.size != self.num_parameters:
            raise checkpoint.CheckpointError(f"{path}: optimizer state for {m.size} parameters, the model has "
                                             f"{self.num_parameters}")
        else:
            self.m, self.v = self.xp.asarray(m), self.xp.asarray(v)
        return step, extra

    # ------------------------------------------------------------------ buffers
    def _ensure_activations(self, B: int, T: int) -> None:
        """View the activation and gradient-scratch buffers for (B, T); (re)allocate only to grow."""
        if (B, T) == (self.B, self.T):
            return
        a_shapes = activation_shapes(self.config, B, T)
        g_shapes = grad_activation_shapes(self.config, B, T)
        xp = self.xp
        if self.acts_memory is None or numel(a_shapes) > self.acts_memory.size:
            self.acts_memory = None    # free the old buffer before asking for the bigger one
            self.acts_memory = xp.zeros(numel(a_shapes), dtype=xp.float32)
        if self.gacts_memory is None or numel(g_shapes) > self.gacts_memory.size:
            self.gacts_memory = None
            self.gacts_memory = xp.zeros(numel(g_shapes), dtype=xp.float32)
        self.acts = _views(self.acts_memory, a_shapes)
        self.gacts = _views(self.gacts_memory, g_shapes)
        self.B, self.T = B, T

    def _tokens(self, arr, what: str):
        """A device int32 [B,T] copy of token ids, checked against the vocabulary and maxT."""
        check_tokens(arr, what, self.config)
        return self.xp.ascontiguousarray(self.xp.asarray(arr))

    # ------------------------------------------------------------------ forward
    def forward(self, inputs, targets=None):
        """Run the model on ``inputs`` (int32 [B,T]). With ``targets`` return the mean cross-entropy loss
        (a Python float); without, compute ``acts['logits']`` and ``acts['probs']`` and return None."""
        op, p, cfg = self._op, self.params, self.config
        inputs = self._tokens(inputs, "inputs")
        B, T = inputs.shape
        if targets is not None:
            targets = self._tokens(targets, "targets")
            if targets.shape != inputs.shape:
                raise ValueError(f"targets {targets.shape} and inputs {inputs.shape} differ in shape")
        self._ensure_activations(B, T)
        self.inputs, self.targets = inputs, targets
        a, C, V, Vp = self.acts, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size
        op["encoder_forward"](a["encoded"], inputs, p["wte"], p["wpe"], B, T, C)   # wte[tok] + wpe[t]
        for l in range(cfg.num_layers):
            self._layer_forward(l, B, T)
        op["layernorm_forward"](a["lnf"], a["lnf_mean"], a["lnf_rstd"], a["residual3"][-1],
                                p["lnfw"], p["lnfb"], B, T, C)
        # classifier: logits = lnf @ wte^T (weight tying: the token embedding is the output matrix)
        op["matmul_forward"](a["logits"], a["lnf"], p["wte"], None, B, T, C, Vp)
        self._dlogits_ready = False
        if targets is None:
            op["softmax_forward"](a["probs"], a["logits"], B, T, V, Vp)
            self.mean_loss = None
            return None
        if op["fused_classifier"] is not None:
            # softmax + cross-entropy + d(mean loss)/d(logits) in one pass; dlogits overwrite the logits
            dlosses = self.gacts["dlosses"]
            dlosses.fill(1.0 / (B * T))
            op["fused_classifier"](a["logits"], a["losses"], dlosses, targets, B, T, V, Vp)
            self._dlogits_ready = True
        else:
            op["softmax_forward"](a["probs"], a["logits"], B, T, V, Vp)
            op["crossentropy_forward"](a["losses"], a["probs"], targets, B, T, Vp)
        self.mean_loss = float(a["losses"].mean(dtype=self.xp.float64))
        return self.mean_loss

    # ------------------------------------------------------------------ backward
    def zero_grad(self) -> None:
        """Zero the parameter gradients (the backward ops accumulate into them)."""
        self.grads_memory.fill(0)

    def backward(self) -> None:
        """d(mean loss)/d(every parameter), accumulated into ``grads``; needs a forward with targets."""
        if self.targets is None or self.mean_loss is None:
            raise RuntimeError("backward() needs a forward(inputs, targets) first (the loss to differentiate)")
        op, p, g, a, gr, cfg = self._op, self.params, self.grads, self.acts, self.gacts, self.config
        B, T, C, L = self.B, self.T, cfg.channels, cfg.num_layers
        V, Vp = cfg.vocab_size, cfg.padded_vocab_size
        dlogits = a["logits"]   # logits are dead once probs exist: reuse their memory for dlogits
        if not self._dlogits_ready:
            dlogits.fill(0)
            gr["dlosses"].fill(1.0 / (B * T))     # the loss is the mean over B*T positions
            op["crossentropy_softmax_backward"](dlogits, gr["dlosses"], a["probs"], self.targets, B, T, V, Vp)
        self._dlogits_ready = False
        self.mean_loss = None                     # a second backward would differentiate garbage

        dres, dnext = gr["dres_a"], gr["dres_b"]  # d loss / d residual stream, above and below a layer
        dres.fill(0)
        gr["dln"].fill(0)
        op["matmul_backward"](gr["dln"], g["wte"], None, dlogits, a["lnf"], p["wte"], B, T, C, Vp)
        op["layernorm_backward"](dres, g["lnfw"], g["lnfb"], gr["dln"], a["residual3"][-1], p["lnfw"],
                                 a["lnf_mean"], a["lnf_rstd"], B, T, C)
        for l in reversed(range(L)):
            dnext.fill(0)
            self._layer_backward(l, dres, dnext, B, T)
            dres, dnext = dnext, dres
        op["encoder_backward"](g["wte"], g["wpe"], dres, self.inputs, B, T, C)

    # ------------------------------------------------------------------ one transformer block
    def _layer_forward(self, l: int, B: int, T: int) -> None:
        """Block ``l`` forward: reads the residual stream below it, writes its activations
        (chapter 09's ``check_model.BlockGPT2`` replaces this with the learner's ``block_forward``)."""
        op, p, a = self._op, self.params, self.acts
        C, NH = self.config.channels, self.config.num_heads
        N = B * T * C
        residual = a["encoded"] if l == 0 else a["residual3"][l - 1]
        # attention block: x + attproj(attention(qkv(ln1(x))))
        op["layernorm_forward"](a["ln1"][l], a["ln1_mean"][l], a["ln1_rstd"][l], residual,
                                p["ln1w"][l], p["ln1b"][l], B, T, C)
        op["matmul_forward"](a["qkv"][l], a["ln1"][l], p["qkvw"][l], p["qkvb"][l], B, T, C, 3 * C)
        op["attention_forward"](a["atty"][l], a["preatt"], a["att"][l], a["qkv"][l], B, T, C, NH)
        op["matmul_forward"](a["attproj"], a["atty"][l], p["attprojw"][l], p["attprojb"][l], B, T, C, C)
        op["residual_forward"](a["residual2"][l].reshape(-1), residual.reshape(-1),
                               a["attproj"].reshape(-1), N)
        # MLP block: x + fcproj(gelu(fc(ln2(x))))
        op["layernorm_forward"](a["ln2"][l], a["ln2_mean"][l], a["ln2_rstd"][l], a["residual2"][l],
                                p["ln2w"][l], p["ln2b"][l], B, T, C)
        op["matmul_forward"](a["fch"][l], a["ln2"][l], p["fcw"][l], p["fcb"][l], B, T, C, 4 * C)
        op["gelu_forward"](a["fch_gelu"][l].reshape(-1), a["fch"][l].reshape(-1), 4 * N)
        op["matmul_forward"](a["fcproj"], a["fch_gelu"][l], p["fcprojw"][l], p["fcprojb"][l], B, T, 4 * C, C)
        op["residual_forward"](a["residual3"][l].reshape(-1), a["residual2"][l].reshape(-1),
                               a["fcproj"].reshape(-1), N)

    def _layer_backward(self, l: int, dres, dnext, B: int, T: int) -> None:
        """Block ``l`` backward: ``dres`` = d loss / d residual3[l]; adds d loss / d (its input) into the
        zeroed ``dnext`` and the layer's parameter gradients into ``grads``."""
        op, p, g, a, gr = self._op, self.params, self.grads, self.acts, self.gacts
        C, NH = self.config.channels, self.config.num_heads
        N = B * T * C
        residual = a["encoded"] if l == 0 else a["residual3"][l - 1]
        for name in ("dresidual2", "dfcproj", "dfch_gelu", "dfch", "dln", "dattproj", "datty",
                     "dqkv", "dpreatt", "datt"):
            gr[name].fill(0)
        # MLP block, backwards: residual3 = residual2 + fcproj
        op["residual_backward"](gr["dresidual2"].reshape(-1), gr["dfcproj"].reshape(-1), dres.reshape(-1), N)
        op["matmul_backward"](gr["dfch_gelu"], g["fcprojw"][l], g["fcprojb"][l], gr["dfcproj"],
                              a["fch_gelu"][l], p["fcprojw"][l], B, T, 4 * C, C)
        op["gelu_backward"](gr["dfch"].reshape(-1), a["fch"][l].reshape(-1), gr["dfch_gelu"].reshape(-1), 4 * N)
        op["matmul_backward"](gr["dln"], g["fcw"][l], g["fcb"][l], gr["dfch"], a["ln2"][l], p["fcw"][l],
                              B, T, C, 4 * C)
        op["layernorm_backward"](gr["dresidual2"], g["ln2w"][l], g["ln2b"][l], gr["dln"], a["residual2"][l],
                                 p["ln2w"][l], a["ln2_mean"][l], a["ln2_rstd"][l], B, T, C)
        # attention block, backwards: residual2 = residual + attproj
        op["residual_backward"](dnext.reshape(-1), gr["dattproj"].reshape(-1), gr["dresidual2"].reshape(-1), N)
        op["matmul_backward"](gr["datty"], g["attprojw"][l], g["attprojb"][l], gr["dattproj"], a["atty"][l],
                              p["attprojw"][l], B, T, C, C)
        op["attention_backward"](gr["dqkv"], gr["dpreatt"], gr["datt"], gr["datty"], a["qkv"][l], a["att"][l],
                                 B, T, C, NH)
        gr["dln"].fill(0)
        op["matmul_backward"](gr["dln"], g["qkvw"][l], g["qkvb"][l], gr["dqkv"], a["ln1"][l], p["qkvw"][l],
                              B, T, C, 3 * C)
        op["layernorm_backward"](dnext, g["ln1w"][l], g["ln1b"][l], gr["dln"], residual, p["ln1w"][l],
                                 a["ln1_mean"][l], a["ln1_rstd"][l], B, T, C)

    # ------------------------------------------------------------------ optimizer
    def update(self, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, t: int) -> None:
        """One AdamW step on every parameter (t counts from 1), decoupled weight decay as llm.c:
        p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p)."""
        if self.m is None:
            self.m = self.xp.zeros(self.num_parameters, dtype=self.xp.float32)
            self.v = self.xp.zeros(self.num_parameters, dtype=self.xp.float32)
        self._op["adamw_update"](self.params_memory, self.grads_memory, self.m, self.v, self.num_parameters,
                                 float(lr), float(beta1), float(beta2), float(eps), float(weight_decay), int(t))

    # ------------------------------------------------------------------ sampling
    def generate(self, tokens, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None) -> np.ndarray:
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
            ctx = toks[:, -self.config.max_seq_len:].astype(np.int32)
            self.forward(ctx)
            logits = _host(self.acts["logits"][:, -1, :V]).astype(np.float64)
            if temperature == 0:
                nxt = logits.argmax(axis=1)
            else:
                logits /= temperature
                if top_k is not None and top_k < V:
                    kth = np.partition(logits, -top_k, axis=1)[:, -top_k][:, None]
                    logits = np.where(logits < kth, -np.inf, logits)
                probs = np.exp(logits - logits.max(axis=1, keepdims=True))
                cdf = np.cumsum(probs, axis=1)
                coin = rng.random(len(toks))[:, None] * cdf[:, -1:]      # inverse-CDF draw, as llm.c
                nxt = np.minimum((cdf <= coin).sum(axis=1), V - 1)
            toks = np.concatenate([toks, nxt[:, None]], axis=1)
        return toks[0] if single else toks
