"""FastGPT2: the same GPT-2 as ``plain.GPT2`` (same parameters, checkpoints, interface, numbers), trained
faster and in less memory. What changes, and why (bench/step_breakdown.py shows where the time goes):

- attention is ``flash_attention_forward/backward`` (kernels/flash_attention.cu): tensor cores, and no
  [B,NH,T,T] buffers at all (llm.c's layout keeps att for every layer: 4.8 GB at B=8, T=1024, plus 3 x 400 MB
  of preatt/dpreatt/datt scratch, each written and read several times per step); on GPUs without TF32
  tensor cores (compute capability 7.0-7.5: a T4, a V100) the same ops run a SIMT flash attention
  (kernels/flash_attention_simt.cu, fp32 FMA) and the products stay fp32: the sm_75 path (ops/arch.py),
  the rest of the engine (fused kernels, memory plan, CUDA graph) unchanged. ``LLMC_FORCE_SM75=1`` forces
  it on a newer GPU (the tests' and bench/train.py's stand-in for a T4);
- the linear layers are single cuBLASLt calls (``ops.linear_*``) that write their outputs (beta = 0) instead
  of adding into zeroed buffers; biases ride on neighbouring passes: qkv's in the product's epilogue, fc's
  with GELU
  (``bias_gelu_forward``), the projections' biases with the residual add and the next layernorm
  (``residual_layernorm_forward``: 4 reads + 3 writes of the stream become 2 + 2);
- the residual gradient flows through ONE buffer: ``layernorm_backward`` already accumulates into its dinp,
  so d(stream) += d(layernorm input) is exactly residual_backward, for free; no gradient buffer is zeroed
  per layer except dqkv (flash attention's dq arrives by atomics);
- the GELU backward overwrites its input gradient in place; the loss is averaged on the device;
- the classifier runs in chunks of at most ``CLASSIFIER_ROWS`` rows of lnf, its backward inside the step
  right after its forward (``_classifier_pass``): training keeps a [CLASSIFIER_ROWS, Vp] logits buffer, not
  the [B*T, Vp] one (GPT-2 at B=8, T=1024: 0.41 GB instead of 1.65 GB, the largest buffer of the plan);
- in fp32 on a GPU with TF32 tensor cores, the products of the layers whose reduction is C long (C <= 1024:
  the forward's qkv, attproj and fc, the input gradients of attproj and fcproj) run as 3xTF32 cuBLAS products
  (``split``: ops/linear.py): accurate like fp32 at that length (error 2.2-2.6e-6 of the largest value,
  SGEMM's 1.1-1.4e-6) and 1.4-2.2x faster than SGEMM, the splits included; the
  longer reductions (the weight gradients, fcproj's forward, fc's and qkv's input gradients) stay SGEMM;
- the scratch of a layer's backward is shared by buffers never live together (``fast_scratch_shapes``);
- every buffer is allocated before the first step (one block for activations, one for scratch, aligned
  to 256 bytes), nothing in a step reads device data on the host, so ``step()`` runs the whole training
  step (forward, zero_grad, backward, AdamW) as one CUDA graph (``graph.StepGraph``) on the GPU.

    model = FastGPT2.from_config(GPT2Config.d12(), seed=0)
    loss = model.step(inputs, targets, lr=3e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, t=1)
    # or, as GPT2: loss = model.forward(x, y); model.zero_grad(); model.backward(); model.update(...)
    # (backward() recomputes the classifier's logits, chunk by chunk: forward(x, y) keeps only the losses)

Both engines offer engine.Engine's interface over a state.ParameterState (the parameters, gradients and
AdamW moments); ``FastGPT2.on(model.state)`` trains another engine's parameters in place. ``self._f`` maps
names to the ops it calls (the package's, ``FAST_OPS``), so bench/step_breakdown.py can time each. On the
cpu backend everything runs eagerly with the same kernels (tests/test_fast_model.py).
"""

from __future__ import annotations

import functools

import numpy as np

from ..ops.linear import SPLIT_MAX_K, split_numel
from .config import GPT2Config, num_params
from .engine import Engine, check_pair
from .state import ParameterState, aligned_numel, views

__all__ = [
    "FastGPT2",
    "FAST_OPS",
    "fast_activation_shapes",
    "fast_scratch_shapes",
    "fast_training_bytes",
    "fast_path_problem",
    "scratch_views",
    "classifier_chunks",
    "CLASSIFIER_ROWS",
    "layer_products",
]

FAST_OPS = (
    "encoder_forward",
    "encoder_backward",
    "residual_layernorm_forward",
    "layernorm_backward",
    "linear_forward",
    "linear_backward_input",
    "linear_backward_weight",
    "bias_gelu_forward",
    "gelu_forward",
    "gelu_backward_inplace",
    "bias_backward",
    "flash_attention_forward",
    "flash_attention_backward",
    "fused_classifier",
    "softmax_forward",
    "mean_loss",
    "adamw_update",
    "adamw_update_device",
)
ALIGN = 64  # floats: every buffer view starts on a 256-byte boundary (float4 paths, cuBLAS)
MAX_HEAD = 64  # flash attention's head-size limit

# The classifier's rows per chunk. Training keeps one [CLASSIFIER_ROWS, Vp] logits buffer (the fused classifier
# writes dlogits over it) instead of [B*T, Vp]: at B=8, T=1024 four chunks, 0.41 GB instead of 1.65 GB. Why 2048:
# - the products stay large: each chunk runs three of rows x Vp x C multiply-adds (logits = lnf wte^T,
#   dln = dlogits wte, dwte += dlogits^T lnf), 79 G each at 2048 rows of GPT-2 small: long, compute-bound
#   cuBLASLt kernels, thousands of 128 x 128 output tiles for the logits and dwte (dln's 2048 x 768 is the
#   smallest, 96 tiles over a K of Vp = 50304: cuBLASLt's heuristic may split K over its workspace);
# - the traffic stays the same: each logit is still written once by its product, read and written once by
#   the fused classifier and read once by each backward product. What a chunk adds is one read + write of
#   dwte (Vp x C: 155 MB) in its product's epilogue, 3 more at B*T = 8192 against 3 x 79 G multiply-adds each;
# - fewer rows would save little more (the buffer is already a quarter of the whole) for one more dwte pass
#   and smaller products each; more would save less. A multiple of 64 keeps every chunk's first row of lnf
#   and dln 256-byte aligned whatever C (64 rows x C floats x 4 bytes).
CLASSIFIER_ROWS = 2048


def classifier_chunks(rows: int, classifier_rows: int | None = CLASSIFIER_ROWS) -> list[tuple[int, int]]:
    """[r0, r1) of each chunk of the classifier over ``rows`` = B*T rows: at most ``classifier_rows`` rows each,
    the last one ragged when they do not divide; None: one chunk of every row (the unchunked classifier)."""
    if classifier_rows is None:
        return [(0, rows)]
    if isinstance(classifier_rows, bool) or not isinstance(classifier_rows, (int, np.integer)) or classifier_rows < 1:
        raise ValueError(f"classifier_rows must be a positive integer or None; got {classifier_rows!r}")
    step = int(classifier_rows)
    return [(r0, min(r0 + step, rows)) for r0 in range(0, rows, step)]


def fast_activation_shapes(
    cfg: GPT2Config, B: int, T: int, recompute_gelu: bool = False, classifier_rows: int | None = CLASSIFIER_ROWS
) -> dict:
    """What the forward keeps for the backward: config.activation_shapes without preatt/att/probs
    (flash attention keeps a log-sum-exp per row instead, ``att_lse``) and without the projection
    scratch (in ``fast_scratch_shapes``). ``recompute_gelu`` drops fch_gelu (recomputed in the backward).
    The logits are one chunk's, [min(B*T, classifier_rows), Vp] (``classifier_chunks``)."""
    C, L, NH, Vp = cfg.channels, cfg.num_layers, cfg.num_heads, cfg.padded_vocab_size
    chunk = max(r1 - r0 for r0, r1 in classifier_chunks(B * T, classifier_rows))
    shapes = {
        "encoded": (B, T, C),
        "ln1": (L, B, T, C),
        "ln1_mean": (L, B, T),
        "ln1_rstd": (L, B, T),
        "qkv": (L, B, T, 3 * C),
        "atty": (L, B, T, C),
        "att_lse": (L, B, NH, T),
        "residual2": (L, B, T, C),
        "ln2": (L, B, T, C),
        "ln2_mean": (L, B, T),
        "ln2_rstd": (L, B, T),
        "fch": (L, B, T, 4 * C),
        "fch_gelu": (L, B, T, 4 * C),
        "residual3": (L, B, T, C),
        "lnf": (B, T, C),
        "lnf_mean": (B, T),
        "lnf_rstd": (B, T),
        "logits_chunk": (chunk, Vp),  # one chunk's logits; the fused classifier writes dlogits over them
        "losses": (B, T),
    }
    if recompute_gelu:
        del shapes["fch_gelu"]
    return shapes


def fast_scratch_shapes(
    cfg: GPT2Config, B: int, T: int, recompute_gelu: bool = False, classifier_rows: int | None = CLASSIFIER_ROWS
) -> dict:
    """One layer's worth of scratch, reused by every layer, plus the step's device-side numbers. Buffers that
    are never live at the same time share memory (``scratch_views`` makes the views; 6 x [B,T,C] in all where
    separate buffers would take 11, 15 with recompute_gelu):
    - "dres" is also "proj", the forward's projection output: the forward never touches d(residual), the
      backward never the projection (and zeroes dres before its first use);
    - "layer" [B,T,4C] is "dfch" in a layer's MLP backward and "datty" [B,T,C] + "dqkv" [B,T,3C] in its
      attention backward: each pair is dead before the other is written (the MLP's ends in dln, the attention
      backward's first write is datty; the next layer's MLP backward writes dfch once dqkv is consumed);
    - with ``recompute_gelu`` it is "fch_gelu" too: the forward's GELU output (dres, as proj, is the other
      buffer there) and the backward's recomputed one, read by fcprojw's weight gradient, the last reader
      before fcproj's input gradient writes dfch over it.
    (``classifier_rows`` changes nothing here; the signature is the activations'.)"""
    C, NH = cfg.channels, cfg.num_heads
    return {
        "dres": (B, T, C),  # d loss / d residual stream (the one buffer, see the module doc); "proj" too
        "dln": (B, T, C),
        "layer": (max(B * T * 4 * C, _numel(_attention_grads(B, T, C))),),  # dfch | datty + dqkv | fch_gelu
        "delta": (B, NH, T),  # flash attention backward's row terms
        "split": (_split_numel(cfg, B, T),),  # the 3xTF32 products' operands (ops/linear.py), one at a time
        "dlosses": (B, T),  # 1/(B*T) per row: d(mean loss)/d(loss of a row), whatever the classifier's chunk
        "loss": (1,),
        "hyper": (7,),  # the mean loss, AdamW's numbers for this step
    }


def layer_products(C: int) -> list[tuple[str, int, int]]:
    """(name, K, N) of each linear layer of a block: out [B*T, N] = inp [B*T, K] @ weight [N, K]^T."""
    return [("qkv", C, 3 * C), ("attproj", C, C), ("fc", C, 4 * C), ("fcproj", 4 * C, C)]


def _split_numel(cfg: GPT2Config, B: int, T: int) -> int:
    """Scratch for the largest 3xTF32 product of a layer: of each layer's forward (reduction K, B' of N rows) and
    input gradient (reduction N, B' of K rows), those whose reduction is short enough to take it
    (ops.linear.SPLIT_MAX_K); 1 when none is."""
    products = [p for _, K, N in layer_products(cfg.channels) for p in ((K, N), (N, K))]
    return max([split_numel(B * T, k, rows) for k, rows in products if k <= SPLIT_MAX_K], default=1)


def _attention_grads(B: int, T: int, C: int) -> dict:
    """The attention backward's two buffers, laid out in the "layer" scratch (each 256-byte aligned)."""
    return {"datty": (B, T, C), "dqkv": (B, T, 3 * C)}


def scratch_views(memory, cfg: GPT2Config, B: int, T: int, recompute_gelu: bool = False) -> dict:
    """Name -> view of the scratch block: fast_scratch_shapes' buffers and the names that share them."""
    C = cfg.channels
    s = views(memory, fast_scratch_shapes(cfg, B, T, recompute_gelu), ALIGN)
    s["proj"] = s["dres"]
    s["dfch"] = s["layer"][: B * T * 4 * C].reshape(B, T, 4 * C)
    s.update(views(s["layer"], _attention_grads(B, T, C), ALIGN))
    if recompute_gelu:
        s["fch_gelu"] = s["dfch"]
    return s


def _numel(shapes: dict) -> int:
    return aligned_numel(shapes, ALIGN)


def fast_training_bytes(
    cfg: GPT2Config, B: int, T: int, recompute_gelu: bool = False, classifier_rows: int | None = CLASSIFIER_ROWS
) -> int:
    """Device memory of FastGPT2 training: params, grads, m, v + activations + scratch + tokens.
    GPT-2 small at B=8, T=1024: 1.99 GB + 5.30 GB + 0.26 GB = 7.55 GB (7.03 GiB; 6.34 GB, 5.90 GiB, with
    recompute_gelu), of which 0.10 GB are the 3xTF32 products' operands ("split"); classifier_rows=None, the
    whole [B*T, Vp] logits: 8.78 GB (8.18 GiB). Before the chunked classifier and the shared scratch it was
    8.81 GB (8.20 GiB) without "split"."""
    return 4 * (
        4 * num_params(cfg)
        + _numel(fast_activation_shapes(cfg, B, T, recompute_gelu, classifier_rows))
        + _numel(fast_scratch_shapes(cfg, B, T, recompute_gelu, classifier_rows))
        + 2 * B * T
    )


def fast_path_problem(cfg: GPT2Config, ops=None) -> str | None:
    """Why FastGPT2 cannot run this model with these ops (None when it can)."""
    hs = cfg.channels // cfg.num_heads
    if hs > MAX_HEAD:
        return f"head size {hs} > {MAX_HEAD} (flash attention's limit)"
    if ops is not None:
        import llmc_kernels.ops as package_ops

        if ops is not package_ops:
            missing = [n for n in FAST_OPS if getattr(ops, n, None) is None]
            if missing:
                return f"the ops namespace lacks {', '.join(missing)}"
    return None


# the package's ops that read token ids on the device to validate them (a host sync a CUDA graph cannot
# hold); FastGPT2 validates its tokens on the host before a step and calls these with check_ids=False
READS_TOKEN_IDS = ("encoder_forward", "encoder_backward", "fused_classifier")


class FastGPT2(Engine):
    """GPT-2 with fused kernels, flash attention, a preallocated memory plan and a CUDA-graph step."""

    name = "fast"
    batches_on_host = True  # step() copies NumPy tokens into its own device buffer
    training_bytes = staticmethod(lambda config, B, T: fast_training_bytes(config, B, T))

    def __init__(
        self,
        config: GPT2Config,
        params=None,
        *,
        ops=None,
        xp=None,
        graph: bool = True,
        recompute_gelu: bool = False,
        classifier_rows: int | None = CLASSIFIER_ROWS,
        state: ParameterState | None = None,
    ):
        problem = fast_path_problem(config, ops)
        if problem:
            raise ValueError(f"FastGPT2 cannot run this model: {problem}; use GPT2")
        if state is None:
            if xp is None:
                from ..runtime import xp as active_xp

                xp = active_xp()
            state = ParameterState(config, params, xp)
        super().__init__(state)
        import llmc_kernels.ops as package_ops

        if ops is None:
            ops = package_ops
        self._f = {name: getattr(ops, name) for name in FAST_OPS}
        self.ops_name = getattr(ops, "__name__", type(ops).__name__)
        if ops is package_ops:
            for name in READS_TOKEN_IDS:
                self._f[name] = functools.partial(self._f[name], check_ids=False)
        # not the bound method self._zero: model -> _f -> method -> model is a cycle, and a cycle keeps the
        # model's device memory (gigabytes) until the garbage collector happens to run
        self._f["zero"] = _zero_fn(self.xp)
        # the 3xTF32 scratch goes to the package's linear ops only (another namespace's take no ``split``)
        self._takes_split = all(
            self._f[n] is getattr(package_ops, n) for n in ("linear_forward", "linear_backward_input")
        )
        self.recompute_gelu = bool(recompute_gelu)
        classifier_chunks(1, classifier_rows)  # refuses a bad value now, not at the first step
        self._classifier_rows = None if classifier_rows is None else int(classifier_rows)
        self.use_graph = bool(graph) and self.xp is not np
        self.acts_memory = self.gacts_memory = None
        self.acts, self.gacts = {}, {}
        self.B = self.T = 0
        self.inputs = self.targets = None
        self.mean_loss = None
        self._graph = None  # graph.StepGraph, made at the first step on cuda
        self._token_buffer = None  # int32 [2 * B * T]: inputs then targets
        self._chunks = []  # the classifier's chunks: dicts of views into the plan (_ensure_activations)
        self._sampling_memory = None  # a forward without targets' logits + probs, when the plan has no room
        self.last_step_mode = None  # "eager" | "captured" | "graph" (what the last step() did)

    @property
    def classifier_rows(self) -> int | None:
        """Rows of lnf per classifier chunk (None: all B*T at once); fixed at construction, as the plan is."""
        return self._classifier_rows

    @property
    def op_table(self) -> dict:
        """The ops this engine calls, by name (bench/step_breakdown.py times each)."""
        return self._f

    def describe(self) -> str:
        from ..ops.arch import simt_path

        attention = "SIMT flash attention (the sm_75 path)" if simt_path() else "flash attention"
        return f"engine: fast (FastGPT2: fused kernels, {attention}" + (
            ", each step one CUDA graph)" if self.use_graph else ")"
        )

    # ------------------------------------------------------------------ buffers
    def _split_args(self) -> dict:
        """``split=`` for the layers' products (ops/linear.py decides per product whether it is 3xTF32)."""
        return {"split": self.gacts["split"]} if self._takes_split else {}

    def _ensure_activations(self, B: int, T: int) -> None:
        if (B, T) == (self.B, self.T):
            return
        xp, cfg, rg, rows = self.xp, self.config, self.recompute_gelu, self._classifier_rows
        a_shapes, g_shapes = fast_activation_shapes(cfg, B, T, rg, rows), fast_scratch_shapes(cfg, B, T, rg, rows)
        if self.acts_memory is None or _numel(a_shapes) > self.acts_memory.size:
            self.acts_memory = None
            self.acts_memory = xp.zeros(_numel(a_shapes), dtype=xp.float32)
        if self.gacts_memory is None or _numel(g_shapes) > self.gacts_memory.size:
            self.gacts_memory = None
            self.gacts_memory = xp.zeros(_numel(g_shapes), dtype=xp.float32)
        if self._token_buffer is None or 2 * B * T > self._token_buffer.size:
            self._token_buffer = xp.zeros(2 * B * T, dtype=xp.int32)
        self.acts = views(self.acts_memory, a_shapes, ALIGN)
        self.gacts = scratch_views(self.gacts_memory, cfg, B, T, rg)
        # d(mean loss)/d(loss of each row) = 1/(B*T) for the whole batch, so the fused classifier, called
        # on a chunk of n rows (its B, T = 1, n), gets it from dlosses and not from its default 1/(1*n).
        # A constant of the shape: written once here (outside any step or graph), read by every step.
        self.gacts["dlosses"].fill(1.0 / (B * T))
        self._chunks = self._chunk_views(B, T)
        self.B, self.T = B, T

    def _chunk_views(self, B: int, T: int) -> list[dict]:
        """Each classifier chunk's rows of lnf, dln, losses, dlosses and targets, and the logits buffer's first
        rows: views into the plan, made once per shape, so a step makes no views (a captured graph holds their
        addresses, and they stay the same)."""
        C, Vp, BT = self.config.channels, self.config.padded_vocab_size, B * T
        a, s = self.acts, self.gacts
        lnf, dln, logits = a["lnf"].reshape(BT, C), s["dln"].reshape(BT, C), a["logits_chunk"]
        losses, dlosses = a["losses"].reshape(BT), s["dlosses"].reshape(BT)
        targets = self._token_buffer[BT : 2 * BT]  # where _load_tokens puts the targets
        out = []
        for r0, r1 in classifier_chunks(BT, self._classifier_rows):
            n = r1 - r0
            # the fused classifier's [B, T, ...] arguments as B = 1, T = n (its SPEC shapes, unchanged)
            out.append(
                {
                    "n": n,
                    "lnf": lnf[r0:r1],
                    "dln": dln[r0:r1],
                    "logits": logits[:n].reshape(1, n, Vp),
                    "losses": losses[r0:r1].reshape(1, n),
                    "dlosses": dlosses[r0:r1].reshape(1, n),
                    "targets": targets[r0:r1].reshape(1, n),
                }
            )
        return out

    def _load_tokens(self, inputs, targets) -> None:
        """Validate, size the buffers, copy the tokens into the model's own device buffers (on the current
        stream). Sets self.inputs / self.targets to those buffers."""
        B, T = check_pair(inputs, targets, self.config)  # reads device arrays once, outside any step
        self._ensure_activations(B, T)
        n = B * T
        self.inputs = self._token_buffer[:n].reshape(B, T)
        self.targets = None if targets is None else self._token_buffer[n : 2 * n].reshape(B, T)
        for dst, src in ((self.inputs, inputs), (self.targets, targets)):
            if src is None:
                continue
            if self.xp is not np and isinstance(src, np.ndarray):
                dst.set(np.ascontiguousarray(src))
            else:
                dst[...] = src

    # ------------------------------------------------------------------ the passes (no host sync inside)
    def _forward_pass(self) -> None:
        """The body: tokens to lnf = layernorm(residual3[L-1]), every activation the backward reads kept."""
        f, p, a, s, cfg = self._f, self.params, self.acts, self.gacts, self.config
        B, T, C, NH, L = self.B, self.T, cfg.channels, cfg.num_heads, cfg.num_layers
        BT, sp = self.B * self.T, self._split_args()
        f["encoder_forward"](a["encoded"], self.inputs, p["wte"], p["wpe"], B, T, C)
        f["residual_layernorm_forward"](
            None,
            a["ln1"][0],
            a["ln1_mean"][0],
            a["ln1_rstd"][0],
            a["encoded"],
            None,
            None,
            p["ln1w"][0],
            p["ln1b"][0],
            B,
            T,
            C,
        )
        for l in range(L):
            residual = a["encoded"] if l == 0 else a["residual3"][l - 1]
            # attention block: residual2 = residual + attproj(attention(qkv(ln1)))
            f["linear_forward"](a["qkv"][l], a["ln1"][l], p["qkvw"][l], BT, C, 3 * C, p["qkvb"][l], **sp)
            f["flash_attention_forward"](a["atty"][l], a["att_lse"][l], a["qkv"][l], B, T, C, NH)
            f["linear_forward"](s["proj"], a["atty"][l], p["attprojw"][l], BT, C, C, **sp)
            f["residual_layernorm_forward"](
                a["residual2"][l],
                a["ln2"][l],
                a["ln2_mean"][l],
                a["ln2_rstd"][l],
                residual,
                s["proj"],
                p["attprojb"][l],
                p["ln2w"][l],
                p["ln2b"][l],
                B,
                T,
                C,
            )
            # MLP block: residual3 = residual2 + fcproj(gelu(fc(ln2))), then the next layernorm
            gelu = s["fch_gelu"] if self.recompute_gelu else a["fch_gelu"][l]
            f["linear_forward"](a["fch"][l], a["ln2"][l], p["fcw"][l], BT, C, 4 * C, **sp)
            f["bias_gelu_forward"](a["fch"][l], gelu, p["fcb"][l], B, T, 4 * C)
            f["linear_forward"](s["proj"], gelu, p["fcprojw"][l], BT, 4 * C, C, **sp)
            if l + 1 < L:
                nxt = (a["ln1"][l + 1], a["ln1_mean"][l + 1], a["ln1_rstd"][l + 1])
                w, b = p["ln1w"][l + 1], p["ln1b"][l + 1]
            else:
                nxt, w, b = (a["lnf"], a["lnf_mean"], a["lnf_rstd"]), p["lnfw"], p["lnfb"]
            f["residual_layernorm_forward"](
                a["residual3"][l], *nxt, a["residual2"][l], s["proj"], p["fcprojb"][l], w, b, B, T, C
            )

    def _classifier_pass(self, backward: bool) -> None:
        """The loss, chunk by chunk of lnf's B*T rows (``self._chunks``), into gacts['loss']; with ``backward``
        also the classifier's gradients: s['dln'] = d loss / d lnf (written) and g['wte'] += its share.

        For the rows [r0, r1) of a chunk, with X = lnf[r0:r1] (n x C) and W = wte (Vp x C, the tied classifier):
            Z  = X W^T                                  (n x Vp, the logits: linear_forward)
            losses[r0:r1], G = dZ = (softmax(Z) - onehot(y)) / (B*T)   (fused_classifier, G written over Z)
            dX = G W                                    (dln[r0:r1]: linear_backward_input, written)
            dW += G^T X                                 (g['wte']: linear_backward_weight, accumulates)
        The rows are independent, so the chunks' dX rows are the unchunked dln's (the same sums over Vp), and
        dW = sum over the chunks of G^T X is the unchunked G^T X with its sum over rows split (float rounding
        apart: a product's blocking depends on its shape). The 1/(B*T) is the whole batch's (s['dlosses'],
        filled per shape): the loss is the mean over all B*T rows, not over the chunk's. Only one chunk's
        logits exist at a time, in a['logits_chunk'], which the next chunk reuses once this one's products are
        done. g['wte'] must be zeroed before (step: before the forward; else zero_grad); the encoder's
        backward adds the embedding's share into it afterwards."""
        f, p, g, a, s, cfg = self._f, self.params, self.grads, self.acts, self.gacts, self.config
        C, V, Vp = cfg.channels, cfg.vocab_size, cfg.padded_vocab_size
        for ch in self._chunks:
            n, logits = ch["n"], ch["logits"]
            f["linear_forward"](logits, ch["lnf"], p["wte"], n, C, Vp)  # tied weights: wte is the classifier
            # softmax + cross-entropy + d(mean loss)/d(logits), the gradient written over the logits
            f["fused_classifier"](logits, ch["losses"], ch["dlosses"], ch["targets"], 1, n, V, Vp)
            if backward:
                f["linear_backward_input"](ch["dln"], logits, p["wte"], n, C, Vp)
                f["linear_backward_weight"](g["wte"], logits, ch["lnf"], n, C, Vp)
        f["mean_loss"](s["loss"], a["losses"], self.B * self.T)

    def _sample_pass(self) -> None:
        """A forward without targets: the [B,T,Vp] logits (whole: generate reads them) and probabilities."""
        f, cfg = self._f, self.config
        B, T, C, V, Vp = self.B, self.T, cfg.channels, cfg.vocab_size, cfg.padded_vocab_size
        logits, probs = self._sampling_buffers()
        f["linear_forward"](logits, self.acts["lnf"], self.params["wte"], B * T, C, Vp)
        f["softmax_forward"](probs, logits, B, T, V, Vp)

    def _backward_pass(self) -> None:
        """The body's backward, from s['dln'] = d loss / d lnf (the classifier pass's) to the embeddings."""
        f, p, g, a, s, cfg = self._f, self.params, self.grads, self.acts, self.gacts, self.config
        B, T, C, NH, L = self.B, self.T, cfg.channels, cfg.num_heads, cfg.num_layers
        BT, sp = self.B * self.T, self._split_args()
        dres = s["dres"]
        f["zero"](dres)
        f["layernorm_backward"](
            dres,
            g["lnfw"],
            g["lnfb"],
            s["dln"],
            a["residual3"][L - 1],
            p["lnfw"],
            a["lnf_mean"],
            a["lnf_rstd"],
            B,
            T,
            C,
        )
        for l in reversed(range(L)):
            residual = a["encoded"] if l == 0 else a["residual3"][l - 1]
            # MLP block, backwards: dres is d(residual3); the branch's gradient is dres itself
            if self.recompute_gelu:
                gelu = s["fch_gelu"]  # shares "layer" with dfch: written below, once this gelu is read
                f["gelu_forward"](gelu, a["fch"][l], BT * 4 * C)
            else:
                gelu = a["fch_gelu"][l]
            f["bias_backward"](g["fcprojb"][l], dres, B, T, C)
            f["linear_backward_weight"](g["fcprojw"][l], dres, gelu, BT, 4 * C, C)
            f["linear_backward_input"](s["dfch"], dres, p["fcprojw"][l], BT, 4 * C, C, **sp)
            f["gelu_backward_inplace"](s["dfch"], a["fch"][l], BT * 4 * C)
            f["bias_backward"](g["fcb"][l], s["dfch"], B, T, 4 * C)
            f["linear_backward_weight"](g["fcw"][l], s["dfch"], a["ln2"][l], BT, C, 4 * C)
            f["linear_backward_input"](s["dln"], s["dfch"], p["fcw"][l], BT, C, 4 * C, **sp)
            # += d(ln2 input): dres becomes d(residual2) (residual_backward for free)
            f["layernorm_backward"](
                dres,
                g["ln2w"][l],
                g["ln2b"][l],
                s["dln"],
                a["residual2"][l],
                p["ln2w"][l],
                a["ln2_mean"][l],
                a["ln2_rstd"][l],
                B,
                T,
                C,
            )
            # attention block, backwards
            f["bias_backward"](g["attprojb"][l], dres, B, T, C)
            f["linear_backward_weight"](g["attprojw"][l], dres, a["atty"][l], BT, C, C)
            # datty and dqkv share "layer" with dfch (dead now: the MLP backward ended in dln)
            f["linear_backward_input"](s["datty"], dres, p["attprojw"][l], BT, C, C, **sp)
            f["zero"](s["dqkv"])
            f["flash_attention_backward"](
                s["dqkv"], s["datty"], a["qkv"][l], a["atty"][l], a["att_lse"][l], B, T, C, NH, delta=s["delta"]
            )
            f["bias_backward"](g["qkvb"][l], s["dqkv"], B, T, 3 * C)
            f["linear_backward_weight"](g["qkvw"][l], s["dqkv"], a["ln1"][l], BT, C, 3 * C)
            f["linear_backward_input"](s["dln"], s["dqkv"], p["qkvw"][l], BT, C, 3 * C, **sp)
            f["layernorm_backward"](
                dres,
                g["ln1w"][l],
                g["ln1b"][l],
                s["dln"],
                residual,
                p["ln1w"][l],
                a["ln1_mean"][l],
                a["ln1_rstd"][l],
                B,
                T,
                C,
            )
        f["encoder_backward"](g["wte"], g["wpe"], dres, self.inputs, B, T, C)

    def _train_pass(self) -> None:
        """zero_grad + forward + backward + AdamW with the numbers in gacts['hyper']: one CUDA graph. The
        gradients are zeroed first so that each classifier chunk's backward runs right after its forward
        (adding into g['wte']), while its logits are still in the one chunk buffer: no recomputation."""
        self._f["zero"](self.grads_memory)
        self._forward_pass()
        self._classifier_pass(backward=True)
        self._backward_pass()
        m, v = self.state.moments()
        self._f["adamw_update_device"](
            self.params_memory, self.grads_memory, m, v, self.gacts["hyper"], self.num_parameters
        )

    def _sampling_buffers(self) -> tuple:
        """The [B,T,Vp] logits and probabilities of a forward without targets (training needs neither), as
        acts['logits'] and acts['probs']. The logits are the chunk buffer when B*T rows fit in it (sampling:
        B=1, T <= maxT); the probabilities (and the logits otherwise) go in the unused tail of the activation
        block, sized for the training batch: no allocation, so the memory plan still holds. What does not fit
        there (probabilities of a whole training batch) gets its own buffer, kept for the next such call."""
        B, T, Vp = self.B, self.T, self.config.padded_vocab_size
        extra = {"probs": (B, T, Vp)}
        if B * T > self.acts["logits_chunk"].shape[0]:
            extra["logits"] = (B, T, Vp)
        n = _numel(extra)
        used = _numel(fast_activation_shapes(self.config, B, T, self.recompute_gelu, self._classifier_rows))
        if self.acts_memory.size - used >= n:
            memory = self.acts_memory[used:]
        else:
            if self._sampling_memory is None or self._sampling_memory.size < n:
                self._sampling_memory = None
                self._sampling_memory = self.xp.zeros(n, dtype=self.xp.float32)
            memory = self._sampling_memory
        bufs = views(memory, extra, ALIGN)
        self.acts["probs"] = bufs["probs"]
        self.acts["logits"] = bufs["logits"] if "logits" in bufs else self.acts["logits_chunk"].reshape(B, T, Vp)
        return self.acts["logits"], self.acts["probs"]

    def _read_loss(self) -> float:
        loss = self.gacts["loss"]
        return float(loss[0] if self.xp is np else loss.get()[0])

    # ------------------------------------------------------------------ the engine interface
    def forward(self, inputs, targets=None):
        """As GPT2.forward. With targets, the classifier runs chunk by chunk and keeps only the losses (each
        chunk's logits buffer is the next one's); without, acts['logits'] and acts['probs'] hold [B,T,Vp]."""
        self._load_tokens(inputs, targets)
        self._forward_pass()
        if targets is None:
            self._sample_pass()
            self.mean_loss = None
        else:
            self._classifier_pass(backward=False)
            self.mean_loss = self._read_loss()
        return self.mean_loss

    def backward(self) -> None:
        """As GPT2.backward (gradients accumulate). forward(x, y) kept no logits, so the classifier's chunks
        run again here, forward then backward each (one more logits product and fused classifier than step(),
        which zeroes the gradients first and runs each chunk's backward right after its forward: training
        never pays this; evaluation's forward(x, y) alone never keeps [B*T, Vp])."""
        if self.targets is None or self.mean_loss is None:
            raise RuntimeError("backward() needs a forward(inputs, targets) first (the loss to differentiate)")
        self._classifier_pass(backward=True)  # the same losses and mean again, the same numbers
        self._backward_pass()
        self.mean_loss = None

    @property
    def _adamw_update(self):  # Engine.update's op: the package's
        return self._f["adamw_update"]

    def step(
        self, inputs, targets, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, t: int
    ) -> float:
        """One training step (forward, zero_grad, backward, AdamW at step t >= 1); returns the mean loss.
        On cuda the step is a CUDA graph after its first (warm-up) call for a batch shape."""
        if targets is None:
            raise ValueError("step() trains: it needs targets")
        hyper = _hyper(lr, beta1, beta2, eps, weight_decay, t)
        self.state.moments()
        if self.xp is np:
            self._load_tokens(inputs, targets)
            self.gacts["hyper"][...] = hyper
            self._train_pass()
            self.last_step_mode = "eager"
        else:
            self._step_cuda(inputs, targets, hyper)
        self.mean_loss = None  # the step consumed it (as forward + backward would)
        return self._read_loss()

    def _step_cuda(self, inputs, targets, hyper) -> None:
        cupy = self.xp
        if self._graph is None:
            from .graph import StepGraph

            self._graph = StepGraph()
        runner = self._graph
        cupy.cuda.Stream.null.synchronize()  # anything queued on the default stream (e.g. a load) first
        with runner.stream:
            self._load_tokens(inputs, targets)
            self.gacts["hyper"].set(hyper)
        if self.use_graph:
            self.last_step_mode = runner.run(self._graph_key(), self._train_pass)
        else:
            with runner.stream:
                self._train_pass()
            self.last_step_mode = "eager"
        runner.stream.synchronize()

    def _graph_key(self) -> tuple:
        """Everything a captured step depends on: shapes, precision, the kernels' path (tensor-core or SIMT
        flash attention, ops/arch.py) and every buffer's address."""
        from ..ops import matmul_precision
        from ..ops.arch import simt_path

        bufs = (
            self.params_memory,
            self.grads_memory,
            self.m,
            self.v,
            self.acts_memory,
            self.gacts_memory,
            self._token_buffer,
        )
        head = (self.B, self.T, matmul_precision(), simt_path(), self.recompute_gelu)
        return head + tuple(int(b.data.ptr) for b in bufs)

    @property
    def graph_failure(self) -> str | None:
        """Why the CUDA graph could not be used (None when it was, or was never tried)."""
        return None if self._graph is None else self._graph.failed


def _zero_fn(xp):
    """arr = 0: a memset on the current stream on cuda (capturable in a CUDA graph, allocates nothing)."""
    if xp is np:
        return lambda arr: arr.fill(0)
    return lambda arr: xp.cuda.runtime.memsetAsync(arr.data.ptr, 0, arr.nbytes, xp.cuda.get_current_stream().ptr)


def _hyper(lr, beta1, beta2, eps, weight_decay, t) -> np.ndarray:
    from ..ops.fused import adamw_hyper

    return adamw_hyper(lr, beta1, beta2, eps, weight_decay, t)
