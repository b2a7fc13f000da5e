"""GPT-2 assembled from an ops namespace, laid out as llm.c's train_gpt2.c / train_gpt2_fp32.cu: the plain engine.

    model = GPT2.from_config(GPT2Config.tiny(), seed=0)          # or GPT2.from_checkpoint("gpt2_124M.bin")
    loss = model.forward(inputs, targets)                         # int32 [B,T] -> mean loss (float)
    model.zero_grad(); model.backward()
    model.update(lr=3e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, t=step)
    loss = model.step(inputs, targets, lr, beta1, beta2, eps, weight_decay, t)    # the four calls as one

Memory, as llm.c: the parameters, gradients and AdamW moments are one float32 buffer each (``model.state``,
state.ParameterState; ``model.params[name]`` are views in checkpoint order); the activations (``acts``,
sized for B,T at the first forward) and one layer's worth of gradient scratch (``gacts``) are the engine's.

Every number is computed by ``self.ops`` (default ``llmc_kernels.ops``; ``llmc_kernels.reference`` gives a
pure-NumPy model; chapter 09 passes the learner's functions) with the SPEC signatures: outputs first,
backward outputs accumulate (+=), so each gradient buffer is zeroed right before the op that fills it.
"""

from __future__ import annotations

import types

import numpy as np

from .. import opspec
from .config import GPT2Config, activation_shapes, grad_activation_shapes, numel, training_bytes
from .engine import Engine, check_pair
from .state import ParameterState, views

__all__ = ["GPT2", "GPT2Config", "REQUIRED_OPS"]

# every function of the contract's table but the chapter-only exercises (vector_add, transpose) and the optional
# fused classifier: what an ops namespace must provide
REQUIRED_OPS = tuple(name for name in opspec.FUNCTIONS if name not in opspec.CHAPTER_ONLY + opspec.OPTIONAL)


def _reference_module():
    from .. import reference

    return reference


def _resolve_ops(ops) -> tuple[dict, str]:
    """The callables of ``ops`` (a module, namespace or dict) by name, and its name for messages."""
    if ops is None:
        from .. import ops as ops  # noqa: PLW0127 (the package's kernels, loaded lazily per op
    if isinstance(ops, dict):
        ops = types.SimpleNamespace(**ops)
    found, missing = {}, []
    for name in REQUIRED_OPS + ("fused_classifier",):
        try:
            fn = getattr(ops, name)
        except (AttributeError, ImportError):  # llmc_kernels.ops imports each op module on first use
            fn = None
        if fn is None and name != "fused_classifier":
            missing.append(name)
        if name in opspec.OPTIONAL and fn is getattr(_reference_module(), name, None):
            # the float64 reference model runs the unfused ops, as llm.c's CPU train_gpt2.c does: its
            # softmax_forward, crossentropy_forward and crossentropy_softmax_backward are what the checks compare
            fn = None
        found[name] = fn
    label = getattr(ops, "__name__", type(ops).__name__)
    if missing:
        raise AttributeError(
            f"the ops namespace {label} lacks {', '.join(missing)}: GPT2 needs every op of "
            "SPEC's table (encoder, layernorm, matmul, attention, gelu, residual, softmax, "
            "crossentropy, adamw)"
        )
    return found, label


class GPT2(Engine):
    """GPT-2 whose forward/backward/update are sequences of calls to an ops namespace."""

    name = "plain"

    def __init__(
        self,
        config: GPT2Config,
        params: np.ndarray | None = None,
        *,
        ops=None,
        xp=None,
        state: ParameterState | None = None,
    ):
        self._op, self.ops_name = _resolve_ops(ops)
        if state is None:
            if xp is None:
                if self.ops_name == "llmc_kernels.reference":
                    xp = np  # the float64 references run on NumPy arrays whatever the backend
                else:
                    from ..runtime import xp as active_xp

                    xp = active_xp()
            state = ParameterState(config, params, xp)
        super().__init__(state)
        self.acts_memory = self.gacts_memory = None
        self.acts, self.gacts = {}, {}
        self.B = self.T = 0
        self.inputs = self.targets = None
        self.mean_loss = None  # the loss of the last forward with targets, as llm.c's model.mean_loss
        self._dlogits_ready = False  # the fused classifier writes dlogits during the forward

    training_bytes = staticmethod(training_bytes)

    @property
    def op_table(self) -> dict:
        """The ops this engine calls, by name (bench/step_breakdown.py times each)."""
        return self._op

    def describe(self) -> str:
        return "engine: plain (GPT2: the SPEC ops one at a time)"

    # ------------------------------------------------------------------ buffers
    def _ensure_activations(self, B: int, T: int) -> None:
        """View the activation and gradient-scratch buffers for (B, T); (re)allocate only to grow."""
        if (B, T) == (self.B, self.T):
            return
        a_shapes = activation_shapes(self.config, B, T)
        g_shapes = grad_activation_shapes(self.config, B, T)
        xp = self.xp
        if self.acts_memory is None or numel(a_shapes) > self.acts_memory.size:
            self.acts_memory = None  # free the old buffer before asking for the bigger one
            self.acts_memory = xp.zeros(numel(a_shapes), dtype=xp.float32)
        if self.gacts_memory is None or numel(g_shapes) > self.gacts_memory.size:
            self.gacts_memory = None
            self.gacts_memory = xp.zeros(numel(g_shapes), dtype=xp.float32)
        self.acts = views(self.acts_memory, a_shapes)
        self.gacts = views(self.gacts_memory, g_shapes)
        self.B, self.T = B, T

    def _device_tokens(self, arr):
        """Token ids (checked by check_pair) as a C-contiguous int32 array of this engine's backend."""
        return self.xp.ascontiguousarray(self.xp.asarray(arr))

    # ------------------------------------------------------------------ forward
    def forward(self, inputs, targets=None):
        """Run the model on ``inputs`` (int32 [B,T]). With ``targets`` return the mean cross-entropy loss
        (a Python float); without, compute ``acts['logits']`` and ``acts['probs']`` and return None."""
        op, p, cfg = self._op, self.params, self.config
        B, T = check_pair(inputs, targets, cfg)
        inputs = self._device_tokens(inputs)
        targets = None if targets is None else self._device_tokens(targets)
        self._ensure_activations(B, T)
        self.inputs, self.targets = inputs, targets
        a, C, V, Vp = self.acts, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size
        op["encoder_forward"](a["encoded"], inputs, p["wte"], p["wpe"], B, T, C)  # wte[tok] + wpe[t]
        for l in range(cfg.num_layers):
            self._layer_forward(l, B, T)
        op["layernorm_forward"](
            a["lnf"], a["lnf_mean"], a["lnf_rstd"], a["residual3"][-1], p["lnfw"], p["lnfb"], B, T, C
        )
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
    def backward(self) -> None:
        """d(mean loss)/d(every parameter), accumulated into ``grads``; needs a forward with targets."""
        if self.targets is None or self.mean_loss is None:
            raise RuntimeError("backward() needs a forward(inputs, targets) first (the loss to differentiate)")
        op, p, g, a, gr, cfg = self._op, self.params, self.grads, self.acts, self.gacts, self.config
        B, T, C, L = self.B, self.T, cfg.channels, cfg.num_layers
        V, Vp = cfg.vocab_size, cfg.padded_vocab_size
        dlogits = a["logits"]  # logits are dead once probs exist: reuse their memory for dlogits
        if not self._dlogits_ready:
            dlogits.fill(0)
            gr["dlosses"].fill(1.0 / (B * T))  # the loss is the mean over B*T positions
            op["crossentropy_softmax_backward"](dlogits, gr["dlosses"], a["probs"], self.targets, B, T, V, Vp)
        self._dlogits_ready = False
        self.mean_loss = None  # a second backward would differentiate garbage

        dres, dnext = gr["dres_a"], gr["dres_b"]  # d loss / d residual stream, above and below a layer
        dres.fill(0)
        gr["dln"].fill(0)
        op["matmul_backward"](gr["dln"], g["wte"], None, dlogits, a["lnf"], p["wte"], B, T, C, Vp)
        op["layernorm_backward"](
            dres, g["lnfw"], g["lnfb"], gr["dln"], a["residual3"][-1], p["lnfw"], a["lnf_mean"], a["lnf_rstd"], B, T, C
        )
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
        op["layernorm_forward"](
            a["ln1"][l], a["ln1_mean"][l], a["ln1_rstd"][l], residual, p["ln1w"][l], p["ln1b"][l], B, T, C
        )
        op["matmul_forward"](a["qkv"][l], a["ln1"][l], p["qkvw"][l], p["qkvb"][l], B, T, C, 3 * C)
        op["attention_forward"](a["atty"][l], a["preatt"], a["att"][l], a["qkv"][l], B, T, C, NH)
        op["matmul_forward"](a["attproj"], a["atty"][l], p["attprojw"][l], p["attprojb"][l], B, T, C, C)
        op["residual_forward"](a["residual2"][l].reshape(-1), residual.reshape(-1), a["attproj"].reshape(-1), N)
        # MLP block: x + fcproj(gelu(fc(ln2(x))))
        op["layernorm_forward"](
            a["ln2"][l], a["ln2_mean"][l], a["ln2_rstd"][l], a["residual2"][l], p["ln2w"][l], p["ln2b"][l], B, T, C
        )
        op["matmul_forward"](a["fch"][l], a["ln2"][l], p["fcw"][l], p["fcb"][l], B, T, C, 4 * C)
        op["gelu_forward"](a["fch_gelu"][l].reshape(-1), a["fch"][l].reshape(-1), 4 * N)
        op["matmul_forward"](a["fcproj"], a["fch_gelu"][l], p["fcprojw"][l], p["fcprojb"][l], B, T, 4 * C, C)
        op["residual_forward"](a["residual3"][l].reshape(-1), a["residual2"][l].reshape(-1), a["fcproj"].reshape(-1), N)

    def _layer_backward(self, l: int, dres, dnext, B: int, T: int) -> None:
        """Block ``l`` backward: ``dres`` = d loss / d residual3[l]; adds d loss / d (its input) into the
        zeroed ``dnext`` and the layer's parameter gradients into ``grads``."""
        op, p, g, a, gr = self._op, self.params, self.grads, self.acts, self.gacts
        C, NH = self.config.channels, self.config.num_heads
        N = B * T * C
        residual = a["encoded"] if l == 0 else a["residual3"][l - 1]
        for name in (
            "dresidual2",
            "dfcproj",
            "dfch_gelu",
            "dfch",
            "dln",
            "dattproj",
            "datty",
            "dqkv",
            "dpreatt",
            "datt",
        ):
            gr[name].fill(0)
        # MLP block, backwards: residual3 = residual2 + fcproj
        op["residual_backward"](gr["dresidual2"].reshape(-1), gr["dfcproj"].reshape(-1), dres.reshape(-1), N)
        op["matmul_backward"](
            gr["dfch_gelu"],
            g["fcprojw"][l],
            g["fcprojb"][l],
            gr["dfcproj"],
            a["fch_gelu"][l],
            p["fcprojw"][l],
            B,
            T,
            4 * C,
            C,
        )
        op["gelu_backward"](gr["dfch"].reshape(-1), a["fch"][l].reshape(-1), gr["dfch_gelu"].reshape(-1), 4 * N)
        op["matmul_backward"](gr["dln"], g["fcw"][l], g["fcb"][l], gr["dfch"], a["ln2"][l], p["fcw"][l], B, T, C, 4 * C)
        op["layernorm_backward"](
            gr["dresidual2"],
            g["ln2w"][l],
            g["ln2b"][l],
            gr["dln"],
            a["residual2"][l],
            p["ln2w"][l],
            a["ln2_mean"][l],
            a["ln2_rstd"][l],
            B,
            T,
            C,
        )
        # attention block, backwards: residual2 = residual + attproj
        op["residual_backward"](dnext.reshape(-1), gr["dattproj"].reshape(-1), gr["dresidual2"].reshape(-1), N)
        op["matmul_backward"](
            gr["datty"], g["attprojw"][l], g["attprojb"][l], gr["dattproj"], a["atty"][l], p["attprojw"][l], B, T, C, C
        )
        op["attention_backward"](
            gr["dqkv"], gr["dpreatt"], gr["datt"], gr["datty"], a["qkv"][l], a["att"][l], B, T, C, NH
        )
        gr["dln"].fill(0)
        op["matmul_backward"](
            gr["dln"], g["qkvw"][l], g["qkvb"][l], gr["dqkv"], a["ln1"][l], p["qkvw"][l], B, T, C, 3 * C
        )
        op["layernorm_backward"](
            dnext,
            g["ln1w"][l],
            g["ln1b"][l],
            gr["dln"],
            residual,
            p["ln1w"][l],
            a["ln1_mean"][l],
            a["ln1_rstd"][l],
            B,
            T,
            C,
        )

    # ------------------------------------------------------------------ optimizer
    @property
    def _adamw_update(self):  # Engine.update's op: the namespace's
        return self._op["adamw_update"]
