"""GPT-2's sizes: the config, the parameter tensors in llm.c's order, the activations, memory estimates.

Everything that allocates (the engines) or estimates (llmc train) reads the shapes from here, so the
estimate and the allocation can never disagree.
"""

from __future__ import annotations

import dataclasses
import math

FLOAT_BYTES = 4
HEADER_BYTES = 256 * 4  # llm.c files start with 256 int32


@dataclasses.dataclass(frozen=True)
class GPT2Config:
    max_seq_len: int  # maxT: longest context (rows of wpe)
    vocab_size: int  # V: real tokens (50257 for GPT-2)
    padded_vocab_size: int  # Vp: V rounded up (to 128 in llm.c) so the classifier matmul tiles nicely
    num_layers: int  # L
    num_heads: int  # NH
    channels: int  # C

    def __post_init__(self):
        for field in dataclasses.fields(self):
            v = getattr(self, field.name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"GPT2Config.{field.name} must be a positive int; got {v!r}")
        if self.padded_vocab_size < self.vocab_size:
            raise ValueError(f"padded_vocab_size ({self.padded_vocab_size}) < vocab_size ({self.vocab_size})")
        if self.channels % self.num_heads:
            raise ValueError(f"channels ({self.channels}) must be a multiple of num_heads ({self.num_heads})")

    @classmethod
    def d12(cls) -> GPT2Config:
        """GPT-2 small, 124M parameters (llm.c's gpt2_124M.bin)."""
        return cls(
            max_seq_len=1024, vocab_size=50257, padded_vocab_size=50304, num_layers=12, num_heads=12, channels=768
        )

    @classmethod
    def tiny(cls) -> GPT2Config:
        """GPT-2's vocabulary on a tiny body (3.3M parameters, 3.2M of them in wte), for the CPU backend."""
        return cls(max_seq_len=64, vocab_size=50257, padded_vocab_size=50304, num_layers=2, num_heads=4, channels=64)

    @classmethod
    def named(cls, name: str) -> GPT2Config:
        if name not in ("d12", "tiny"):
            raise ValueError(f"unknown model {name!r}: choose d12 or tiny")
        return getattr(cls, name)()


def param_shapes(cfg: GPT2Config) -> dict[str, tuple[int, ...]]:
    """The 16 parameter tensors in llm.c's checkpoint order (SPEC "Model and training")."""
    Vp, C, maxT, L = cfg.padded_vocab_size, cfg.channels, cfg.max_seq_len, cfg.num_layers
    return {
        "wte": (Vp, C),
        "wpe": (maxT, C),
        "ln1w": (L, C),
        "ln1b": (L, C),
        "qkvw": (L, 3 * C, C),
        "qkvb": (L, 3 * C),
        "attprojw": (L, C, C),
        "attprojb": (L, C),
        "ln2w": (L, C),
        "ln2b": (L, C),
        "fcw": (L, 4 * C, C),
        "fcb": (L, 4 * C),
        "fcprojw": (L, C, 4 * C),
        "fcprojb": (L, C),
        "lnfw": (C,),
        "lnfb": (C,),
    }


def num_params(cfg: GPT2Config) -> int:
    return sum(math.prod(s) for s in param_shapes(cfg).values())


def checkpoint_bytes(cfg: GPT2Config) -> int:
    """Size of an llm.c model file: the header, then every parameter as float32."""
    return HEADER_BYTES + FLOAT_BYTES * num_params(cfg)


def activation_shapes(cfg: GPT2Config, B: int, T: int) -> dict[str, tuple[int, ...]]:
    """What the forward pass keeps for the backward pass (llm.c's ActivationTensors).

    Per layer (leading L) only what a backward op reads: ln1/ln2 (matmul inputs) and their mean/rstd,
    qkv and att (attention_backward), atty, fch, fch_gelu (matmul/gelu inputs), residual2/residual3
    (layernorm inputs). ``preatt``, ``attproj`` and ``fcproj`` are written by the forward but read by no
    backward op, so like llm.c's train_gpt2_fp32.cu we keep a single layer's worth of each as scratch:
    a [L,B,NH,T,T] preatt alone would be 4.8 GB for GPT-2 small at B=8, T=1024.
    """
    C, L, NH, Vp = cfg.channels, cfg.num_layers, cfg.num_heads, cfg.padded_vocab_size
    return {
        "encoded": (B, T, C),
        "ln1": (L, B, T, C),
        "ln1_mean": (L, B, T),
        "ln1_rstd": (L, B, T),
        "qkv": (L, B, T, 3 * C),
        "preatt": (B, NH, T, T),  # scratch, one layer
        "att": (L, B, NH, T, T),
        "atty": (L, B, T, C),
        "attproj": (B, T, C),  # scratch, one layer
        "residual2": (L, B, T, C),
        "ln2": (L, B, T, C),
        "ln2_mean": (L, B, T),
        "ln2_rstd": (L, B, T),
        "fch": (L, B, T, 4 * C),
        "fch_gelu": (L, B, T, 4 * C),
        "fcproj": (B, T, C),  # scratch, one layer
        "residual3": (L, B, T, C),
        "lnf": (B, T, C),
        "lnf_mean": (B, T),
        "lnf_rstd": (B, T),
        "logits": (B, T, Vp),  # the backward reuses it for dlogits
        "probs": (B, T, Vp),
        "losses": (B, T),
    }


def grad_activation_shapes(cfg: GPT2Config, B: int, T: int) -> dict[str, tuple[int, ...]]:
    """Gradient buffers for the backward pass, one layer's worth, reused layer after layer.

    ``dres_a``/``dres_b`` carry d(loss)/d(residual stream) down the layers (ping-pong: the ops
    accumulate, so the layer below needs a zeroed buffer while the one above is still being read).
    dlogits lives in the ``logits`` activation (no longer needed once probs exist).
    """
    C, NH = cfg.channels, cfg.num_heads
    return {
        "dres_a": (B, T, C),
        "dres_b": (B, T, C),
        "dresidual2": (B, T, C),
        "dfcproj": (B, T, C),
        "dattproj": (B, T, C),
        "dln": (B, T, C),
        "datty": (B, T, C),
        "dqkv": (B, T, 3 * C),
        "dpreatt": (B, NH, T, T),
        "datt": (B, NH, T, T),
        "dfch": (B, T, 4 * C),
        "dfch_gelu": (B, T, 4 * C),
        "dlosses": (B, T),
    }


def numel(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes.values())


def training_bytes(cfg: GPT2Config, B: int, T: int) -> int:
    """Device memory for one training step: params, grads, AdamW m and v, activations, gradient scratch.

    GPT-2 small at B=8, T=1024: 2.0 GB of parameter-sized buffers + ~13 GB of activations + ~1.3 GB of
    gradient scratch (printed by ``llmc train`` when it picks a batch size).
    """
    return FLOAT_BYTES * (
        4 * num_params(cfg) + numel(activation_shapes(cfg, B, T)) + numel(grad_activation_shapes(cfg, B, T))
    )
