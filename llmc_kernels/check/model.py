"""Whole-model checks: chapter 09 (a transformer block, forward and backward) and chapter 10 (a run learned).

    from llmc_kernels.check import model as check_model
    check_model.block_forward(block_forward)       # prints "PASS block_forward"
    check_model.block_backward(block_backward)     # prints "PASS block_backward"
    check_model.end_to_end(ops)                    # prints "PASS gpt2_end_to_end"
    check_model.loss_falls(summary)                # prints "PASS training_loss_falls"

A *block function* computes one transformer block of GPT-2 by calling the ops it is given, in llm.c's order::

    block_forward(ops, x, p, a, B, T, C, NH)                   x [B,T,C] in; a["residual3"] [B,T,C] out
    block_backward(ops, dx, dy, x, p, g, a, d, B, T, C, NH)    dy = dL/d(residual3) in; dx += dL/dx

``p``/``g`` hold the layer's parameters/gradients by name (``ln1w`` ... ``fcprojb``), ``a`` its activations
(llm.c's names ``ln1``, ``ln1_mean``, ... ``residual3``), ``d`` the gradient buffers of the block's
intermediate tensors (``dresidual2``, ... ``dln1``), zeroed by the caller before each call. :class:`BlockGPT2`
is ``llmc_kernels.model.GPT2`` with such functions as its blocks.

The block checks run a small GPT-2 (2 layers, 3 heads, 12 channels, a 61-token vocabulary) whose every
parameter is random, so that passing ``ln2w`` where ``ln1w`` belongs shows, in float64 with the NumPy
references as the ops, against ``GPT2`` itself. ``end_to_end`` runs an ops namespace in float32 on the active
backend against the float64 reference model. Unlike ``llmc_kernels.check``, the learner's function may (and
must) call the ops it is given: a block is glue between kernels, and what is judged is what it leaves in the
buffers. On success one line ``PASS <name>`` is printed (the same on every backend) and a
:class:`ModelCheckResult` returned; on failure what differed is printed and ``CheckFailed`` raised.
"""

from __future__ import annotations

import inspect
import json
import math
import types
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..model import GPT2, REQUIRED_OPS
from ..model.config import GPT2Config, param_shapes
from ..model.state import host as _host
from . import _fail
from .fd import numgrad
from .result import Report
from .values import rms

__all__ = [
    "block_forward",
    "block_backward",
    "end_to_end",
    "loss_falls",
    "trace",
    "BlockGPT2",
    "ModelCheckResult",
    "CHECK_CONFIG",
    "DEFAULT_SEED",
    "LAYER_PARAMS",
    "BLOCK_ACTS",
    "BLOCK_GRADS",
]

# the 12 parameter tensors of one layer (leading dimension L in the model), in checkpoint order
LAYER_PARAMS = (
    "ln1w",
    "ln1b",
    "qkvw",
    "qkvb",
    "attprojw",
    "attprojb",
    "ln2w",
    "ln2b",
    "fcw",
    "fcb",
    "fcprojw",
    "fcprojb",
)
# the activations a block writes, in the order it writes them (llm.c's ActivationTensors names)
BLOCK_ACTS = (
    "ln1",
    "ln1_mean",
    "ln1_rstd",
    "qkv",
    "preatt",
    "att",
    "atty",
    "attproj",
    "residual2",
    "ln2",
    "ln2_mean",
    "ln2_rstd",
    "fch",
    "fch_gelu",
    "fcproj",
    "residual3",
)
# one layer's worth, shared by every layer: no backward op reads them (config.activation_shapes)
SCRATCH_ACTS = ("preatt", "attproj", "fcproj")
# the gradients of the block's intermediate tensors, by the number of channels (x C) of each
BLOCK_GRADS = {
    "dresidual2": 1,
    "dfcproj": 1,
    "dfch_gelu": 4,
    "dfch": 4,
    "dln2": 1,
    "dattproj": 1,
    "datty": 1,
    "dpreatt": None,
    "datt": None,
    "dqkv": 3,
    "dln1": 1,
}  # None: [B, NH, T, T]
FORWARD_CALLS = (
    "layernorm_forward",
    "matmul_forward",
    "attention_forward",
    "matmul_forward",
    "residual_forward",
    "layernorm_forward",
    "matmul_forward",
    "gelu_forward",
    "matmul_forward",
    "residual_forward",
)
BACKWARD_CALLS = (
    "residual_backward",
    "matmul_backward",
    "gelu_backward",
    "matmul_backward",
    "layernorm_backward",
    "residual_backward",
    "matmul_backward",
    "attention_backward",
    "matmul_backward",
    "layernorm_backward",
)

# the model the checks run: every size awkward, every parameter random (see _case)
CHECK_CONFIG = GPT2Config(max_seq_len=8, vocab_size=61, padded_vocab_size=64, num_layers=2, num_heads=3, channels=12)
CHECK_B, CHECK_T = 2, 7
DEFAULT_SEED = 0  # of the random parameters and tokens (llmc grade may set another)
# (rtol, atol as a fraction of the tensor's rms). float64 against float64 with the same references: only
# the order of a few additions may differ
EXACT = (1e-9, 1e-9)
FD_STEP = 1e-5  # central differences of the float64 loss: error ~h^2 * loss''' ~1e-10
FD_TOL = (1e-5, 1e-6)
FD_PER_TENSOR = 2
# float32 kernels against the float64 model, through two layers (measured errors are ~30x below these)
FLOAT32 = (2e-3, 2e-4)
FLOAT32_LOSS = 1e-5  # relative error of the loss
UPDATES = 3  # AdamW steps compared by end_to_end


# ---------------------------------------------------------------------------------------------- the model
class BlockGPT2(GPT2):
    """``llmc_kernels.model.GPT2`` whose transformer blocks are computed by block functions (module
    docstring); ``None`` keeps GPT2's own block. Everything around the blocks (the encoder, the final layer
    norm, the classifier and the loss, AdamW) is GPT2's. ``block_ops`` is the namespace the block functions
    receive: the model's ops."""

    def __init__(self, config: GPT2Config, params=None, *, ops=None, xp=None, block_forward=None, block_backward=None):
        super().__init__(config, params, ops=ops, xp=xp)
        self.block_forward, self.block_backward = block_forward, block_backward
        self.block_ops = types.SimpleNamespace(**{name: self._op[name] for name in REQUIRED_OPS})
        self.dblock = {}

    @classmethod
    def from_config(
        cls, config: GPT2Config, seed: int = 0, *, ops=None, xp=None, block_forward=None, block_backward=None
    ) -> BlockGPT2:
        """GPT-2's initialisation (``GPT2.from_config``), with these block functions."""
        model = super().from_config(config, seed, ops=ops, xp=xp)
        model.block_forward, model.block_backward = block_forward, block_backward
        return model

    def block_views(self, l: int) -> tuple:
        """(x, p, g, a) of block ``l``: its input and its parameters, gradients and activations by name."""
        x = self.acts["encoded"] if l == 0 else self.acts["residual3"][l - 1]
        a = {n: self.acts[n] if n in SCRATCH_ACTS else self.acts[n][l] for n in BLOCK_ACTS}
        return x, {n: self.params[n][l] for n in LAYER_PARAMS}, {n: self.grads[n][l] for n in LAYER_PARAMS}, a

    def _layer_forward(self, l: int, B: int, T: int) -> None:
        if self.block_forward is None:
            return super()._layer_forward(l, B, T)
        x, p, _, a = self.block_views(l)
        self.block_forward(self.block_ops, x, p, a, B, T, self.config.channels, self.config.num_heads)

    def _layer_backward(self, l: int, dres, dnext, B: int, T: int) -> None:
        if self.block_backward is None:
            return super()._layer_backward(l, dres, dnext, B, T)
        C, NH = self.config.channels, self.config.num_heads
        shape = {n: (B, NH, T, T) if k is None else (B, T, k * C) for n, k in BLOCK_GRADS.items()}
        if any(self.dblock.get(n, np.empty(0)).shape != s for n, s in shape.items()):
            self.dblock = {n: self.xp.zeros(s, dtype=self.xp.float32) for n, s in shape.items()}
        for buf in self.dblock.values():
            buf.fill(0)
        x, p, g, a = self.block_views(l)
        self.block_backward(self.block_ops, dnext, dres, x, p, g, a, self.dblock, B, T, C, NH)


class _Float64NumPy:
    """NumPy, except that ``float32`` is float64: a GPT2 given it as ``xp`` keeps every buffer in float64."""

    __name__ = "numpy (float64)"
    float32 = np.float64

    def __getattr__(self, name):
        return getattr(np, name)


NP64 = _Float64NumPy()


def _reference():
    from .. import reference

    return reference


# ---------------------------------------------------------------------------------------------- the case
def _case(seed):
    """(config, random parameters, inputs, targets, rng): every parameter random, so that a mixed-up tensor
    cannot hide (layer-norm weights near 1, biases near 0, matrices scaled so that activations are of order 1
    and attention is far from uniform); a repeated token, so that encoder_backward must add two rows."""
    rng = np.random.default_rng([seed, 9])
    cfg, parts = CHECK_CONFIG, []
    for name, shape in param_shapes(cfg).items():
        z = rng.standard_normal(shape)
        scale = 0.1 if name.endswith("b") else 0.5 if name == "qkvw" else 0.3
        t = 1.0 + 0.2 * z if name in ("ln1w", "ln2w", "lnfw") else scale * z
        if name == "wte":
            t[cfg.vocab_size :] = 0  # padded rows: never read, as in GPT-2's initialisation
        parts.append(t.astype(np.float32).reshape(-1))
    inputs = rng.integers(0, cfg.vocab_size, (CHECK_B, CHECK_T)).astype(np.int32)
    inputs[1, 3] = inputs[0, 1]
    targets = rng.integers(0, cfg.vocab_size, (CHECK_B, CHECK_T)).astype(np.int32)
    return cfg, np.concatenate(parts), inputs, targets, rng


def _truth(cfg, params, inputs, targets):
    """The float64 reference model (GPT2 with the NumPy references), after forward and backward."""
    model = GPT2(cfg, params, ops=_reference(), xp=NP64)
    loss = model.forward(inputs, targets)
    model.zero_grad()
    model.backward()
    return model, loss


def _fd_entries(cfg, rng, inputs) -> list[tuple[str, tuple]]:
    """FD_PER_TENSOR entries of every parameter tensor: the first and the last layer of per-layer tensors,
    a row of wte that a token reads, rows of wpe within T."""
    picks = []
    for name, shape in param_shapes(cfg).items():
        for k in range(FD_PER_TENSOR):
            idx = [int(rng.integers(0, s)) for s in shape]
            if name in LAYER_PARAMS:
                idx[0] = 0 if k == 0 else cfg.num_layers - 1
            elif name == "wte":
                idx[0] = int(inputs.reshape(-1)[k]) if k == 0 else int(rng.integers(0, cfg.vocab_size))
            elif name == "wpe":
                idx[0] = int(rng.integers(0, inputs.shape[1]))
            picks.append((name, tuple(idx)))
    return picks


def _finite_differences(model: GPT2, entries, inputs, targets) -> list[float]:
    """Central differences of a float64 model's loss at each (tensor, index), by check_fd.numgrad."""
    out = []
    for name, idx in entries:
        k = int(np.ravel_multi_index(idx, model.params[name].shape))
        entry = model.params[name].reshape(-1)[k : k + 1]  # a view: numgrad perturbs it in place
        out.append(float(numgrad(lambda: model.forward(inputs, targets), entry, FD_STEP)[0]))
    return out


# ---------------------------------------------------------------------------------------------- results
@dataclass
class ModelCheckResult:
    """What a passing whole-model check found; its repr is the PASS line. ``fd`` holds (tensor, index, finite
    difference, backprop) of the sampled entries, ``errors`` the worst error of each compared tensor (a
    fraction of its rms), ``losses`` (ours, reference) after each AdamW step of ``end_to_end``."""

    name: str
    lines: list = field(default_factory=list)
    fd: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)
    losses: list = field(default_factory=list)

    def __repr__(self) -> str:
        return f"PASS {self.name}"

    def report(self) -> Report:
        return Report("\n".join([repr(self)] + ["  " + line for line in self.lines]))


class _Failure(Exception):
    pass


def _compare(label: str, got, expected, tol, hint: str = "") -> float:
    """The worst error as a fraction of the tensor's rms; raise _Failure unless every element is within
    ``atol * rms(expected) + rtol * |expected|`` (NaN never is)."""
    got, expected = _host(got).astype(np.float64), np.asarray(expected, dtype=np.float64)
    rtol, atol = tol
    scale = max(rms(expected), 1e-30)
    err = np.abs(got - expected)
    bad = ~(err <= atol * scale + rtol * np.abs(expected))
    if bad.any():
        first = np.unravel_index(int(np.argmax(bad)), got.shape)
        nan = int(np.isnan(got).sum())
        what = (
            f"{nan} of its {got.size} elements are NaN (never written?)"
            if nan
            else f"{int(bad.sum())} of {got.size} elements off, max abs error {np.nanmax(err):.3g} = "
            f"{np.nanmax(err) / scale:.2g} x its rms {scale:.3g} (tolerance {atol:g} x rms + {rtol:g} x |expected|)"
        )
        raise _Failure(
            f"{label} is wrong: {what}; first bad element [{', '.join(map(str, first))}]: got "
            f"{got[first]:.6g}, expected {expected[first]:.6g}" + (f"\n  hint: {hint}" if hint else "")
        )
    return float(err.max() / scale) if err.size else 0.0


def _compare_grads(result, mine, truth, tol, note: str = "") -> None:
    """Every parameter gradient, in the order the backward produces them (lnf, the layers from the top, then
    wpe and wte), so that the first failure is the earliest mistake along the chain."""
    L = mine.config.num_layers
    order = [("lnfw", None), ("lnfb", None)] + [(n, l) for l in reversed(range(L)) for n in LAYER_PARAMS[::-1]]
    order += [("wpe", None), ("wte", None)]
    for name, l in order:
        # ln1w is a layer's last gradient: when the layer above passed, the dx it passed down is what is wrong
        above_passed = (l + 1 if l is not None else 0, "ln1w") in result.errors and name not in ("lnfw", "lnfb")
        hint = _BACKWARD_HINTS["dx"] if above_passed else _BACKWARD_HINTS.get(name.rstrip("wb"), "")
        label = f"the gradient of {name}" + ("" if l is None else f"[{l}]")
        got, want = _host(mine.grads[name]), truth.grads[name]
        try:
            result.errors[(l, name)] = _compare(
                label, got if l is None else got[l], want if l is None else want[l], tol, hint
            )
        except _Failure as f:
            raise _Failure(f"{f}{note}") from None
    result.lines.append(
        f"gradients of all 16 parameter tensors match the reference model's (worst error "
        f"{max(result.errors.values()):.1e} x the tensor's rms)"
    )


def _compare_fd(result, entries, fds, backprop, tol=FD_TOL, note: str = "") -> None:
    fds, backprop = np.array(fds), np.array(backprop)
    rtol, atol = tol
    scale = rms(fds)
    result.fd = [(n, i, float(f), float(b)) for (n, i), f, b in zip(entries, fds, backprop)]
    for (name, idx), f, b in zip(entries, fds, backprop):
        if not abs(b - f) <= atol * scale + rtol * abs(f):
            raise _Failure(
                f"finite differences disagree for {name}[{', '.join(map(str, idx))}]: backprop gives "
                f"{b:.6g}, the central difference of the loss {f:.6g} (tolerance {atol:g} x "
                f"{scale:.3g} + {rtol:g} x |fd|){note}"
            )
    result.lines.append(
        f"{len(entries)} finite differences (h = {FD_STEP:g}, {FD_PER_TENSOR} entries of each "
        f"tensor) agree with backprop (worst difference {np.max(np.abs(backprop - fds)) / scale:.1e}"
        f" x their rms {scale:.2g})"
    )


# ---------------------------------------------------------------------------------------------- the learner's calls
class _Recorder:
    """The ops namespace a block function receives during a check: the real ops, each call recorded."""

    def __init__(self, ops):
        self.calls: list[list[str]] = []  # per block call: the ops it called, in order
        self.active = None  # the op running now (an exception inside it names it)
        for name in REQUIRED_OPS:
            setattr(self, name, self._wrap(name, getattr(ops, name)))

    def _wrap(self, name, fn):
        def call(*args):
            if self.calls:
                self.calls[-1].append(name)
            self.active = name
            fn(*args)
            self.active = None

        call.__name__ = name
        return call

    def block(self, fn, what: str):
        """``fn``, recording its calls; an exception it raises (but the student copy's NotImplementedError)
        becomes a check failure naming the op call it happened in."""

        def wrapped(ops, *args):
            self.calls.append([])
            try:
                return fn(ops, *args)
            except NotImplementedError:
                raise
            except Exception as e:
                calls, active, self.active = self.calls[-1], self.active, None
                where = (
                    f" in its op call number {len(calls)}, {active}(...)"
                    if active
                    else f" after its op call number {len(calls)}, {calls[-1]}(...)"
                    if calls
                    else " before calling any op"
                )
                raise _Failure(f"your {what} raised {type(e).__name__}{where}: {e}") from e

        return wrapped

    def note(self, expected: tuple, what: str) -> str:
        """The calls of the first block, and llm.c's when they differ (appended to failure messages)."""
        if not self.calls:
            return ""
        got = self.calls[0]
        return f"\n  your {what} called, in the first block it ran: {', '.join(got) or 'no op at all'}" + (
            ""
            if list(got) == list(expected)
            else f"\n  llm.c's block calls:                          {', '.join(expected)}"
        )


_FORWARD_HINTS = {
    "ln1": "ln1 = layernorm(x) with ln1w, ln1b: ops.layernorm_forward(a['ln1'], a['ln1_mean'], a['ln1_rstd'], x, ...)",
    "ln1_mean": "the first layernorm_forward writes a['ln1_mean'] and a['ln1_rstd'] (the backward needs them)",
    "qkv": "qkv = ln1 @ qkvw^T + qkvb: matmul_forward(a['qkv'], a['ln1'], p['qkvw'], p['qkvb'], B, T, C, 3*C)",
    "att": "attention_forward(a['atty'], a['preatt'], a['att'], a['qkv'], B, T, C, NH) writes att and atty",
    "residual2": "residual2 = x + attproj(atty): the first residual_forward adds the block's input x",
    "ln2": "ln2 = layernorm(residual2) with ln2w, ln2b; it writes a['ln2_mean'] and a['ln2_rstd'] too",
    "fch": "fch = ln2 @ fcw^T + fcb, OC = 4*C",
    "fch_gelu": "fch_gelu = gelu(fch) over N = B*T*4C elements",
    "residual3": "residual3 = residual2 + fcproj(fch_gelu): the block's output (fcproj: C_in = 4*C, OC = C)",
    "encoded": "block_forward must only read x (the block's input)",
}
for _name, _same in (("ln1_rstd", "ln1_mean"), ("atty", "att"), ("ln2_mean", "ln2"), ("ln2_rstd", "ln2")):
    _FORWARD_HINTS[_name] = _FORWARD_HINTS[_same]

_BACKWARD_HINTS = {  # by the tensor's stem: the hint for fcprojw serves fcprojb too
    "fcproj": "matmul_backward of fcproj: dinp d['dfch_gelu'], dout d['dfcproj'], inp a['fch_gelu'], sizes "
    "C = 4*C, OC = C",
    "fc": "matmul_backward of fc: dinp d['dln2'], dout d['dfch'] (from gelu_backward), inp a['ln2'], OC = 4*C",
    "ln2": "layernorm_backward of ln2 reads a['residual2'] and adds into d['dresidual2']",
    "attproj": "matmul_backward of attproj: dinp d['datty'], dout d['dattproj'], inp a['atty']; d['dattproj'] "
    "comes from residual_backward(dx, d['dattproj'], d['dresidual2'], N), called only once "
    "d['dresidual2'] holds both its parts (the skip around the MLP and ln2's layernorm_backward)",
    "qkv": "attention_backward (dinp d['dqkv']) comes before qkv's matmul_backward, whose dout is d['dqkv']",
    "ln1": "layernorm_backward of ln1 reads x (the block's input) and a['ln1_mean'], a['ln1_rstd']",
    "dx": "every gradient of the block above is right, so the dy it received was right and the dx it passed "
    "down is wrong. dx has two parts, the skip (residual_backward's dinp1) and ln1's layernorm_backward, "
    "both added into dx; d['dresidual2'] likewise collects the skip around the MLP and ln2's "
    "layernorm_backward before the attention half reads it",
}


def _learner_call(fn, what: str):
    if not callable(fn):
        raise TypeError(f"check_model.{what}(fn): fn must be your function {what}(...), got {type(fn).__name__}")


def _header(cfg, seed) -> str:
    return f"{cfg}, B={CHECK_B}, T={CHECK_T}, seed {seed}"


def _seed(seed) -> int:
    if seed is None:
        return DEFAULT_SEED
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    return int(seed)


# ---------------------------------------------------------------------------------------------- checks
def block_forward(fn, seed=None) -> ModelCheckResult:
    """Check ``fn(ops, x, p, a, B, T, C, NH)`` as every block of GPT-2, in float64 with the NumPy references,
    against ``llmc_kernels.model.GPT2``: the input stream, every activation of every layer (buffers poisoned
    with NaN first, so one never written shows), the parameters (only read) and the loss."""
    _learner_call(fn, "block_forward")
    seed = _seed(seed)
    cfg, params, inputs, targets, _ = _case(seed)
    result = ModelCheckResult("block_forward")
    try:
        truth, loss = _truth(cfg, params, inputs, targets)
        rec = _Recorder(_reference())
        mine = BlockGPT2(cfg, params, ops=_reference(), xp=NP64, block_forward=rec.block(fn, "block_forward"))
        mine.block_ops = rec
        mine._ensure_activations(CHECK_B, CHECK_T)
        mine.acts_memory.fill(np.nan)
        got = mine.forward(inputs, targets)
        note = rec.note(FORWARD_CALLS, "block_forward")
        compared = [("encoded", None)] + [
            (n, l) for l in range(cfg.num_layers) for n in BLOCK_ACTS if n not in SCRATCH_ACTS
        ]
        for name, l in compared:
            label = f"a['{name}'] of layer {l}" if l is not None else "the block's input x (acts['encoded'])"
            have, want = (mine.acts[name], truth.acts[name]) if l is None else (mine.acts[name][l], truth.acts[name][l])
            try:
                result.errors[(l, name)] = _compare(label, have, want, EXACT, _FORWARD_HINTS.get(name, ""))
            except _Failure as f:
                raise _Failure(f"{f}{note}") from None
        _compare("the parameters (block_forward must only read p)", mine.params_memory, params, (0, 0))
        _compare("the loss", np.array(got), np.array(loss), EXACT)
        result.lines.append(_header(cfg, seed) + ", the float64 NumPy references as the ops")
        result.lines.append(
            f"{len(compared)} activations ({cfg.num_layers} layers) and the loss ({got:.6f}) match "
            "llmc_kernels.model.GPT2's"
        )
    except _Failure as f:
        _fail("block_forward", str(f), None)
    print(repr(result))
    return result


def block_backward(fn, seed=None) -> ModelCheckResult:
    """Check ``fn(ops, dx, dy, x, p, g, a, d, B, T, C, NH)`` as every block's backward, in float64 with the
    NumPy references: every parameter gradient against ``llmc_kernels.model.GPT2``'s (the gradient buffers
    pre-filled with random values, so they must be added to), then against central finite differences of
    the loss for a few entries of every parameter tensor."""
    _learner_call(fn, "block_backward")
    seed = _seed(seed)
    cfg, params, inputs, targets, rng = _case(seed)
    result = ModelCheckResult("block_backward")
    try:
        truth, loss = _truth(cfg, params, inputs, targets)
        rec = _Recorder(_reference())
        mine = BlockGPT2(cfg, params, ops=_reference(), xp=NP64, block_backward=rec.block(fn, "block_backward"))
        mine.block_ops = rec
        mine.forward(inputs, targets)
        prefill = np.random.default_rng([seed, 10]).standard_normal(mine.num_parameters)
        mine.grads_memory[...] = prefill
        mine.backward()
        mine.grads_memory -= prefill
        note = rec.note(BACKWARD_CALLS, "block_backward")
        result.lines.append(_header(cfg, seed) + ", the float64 NumPy references as the ops")
        _compare_grads(result, mine, truth, EXACT, note)
        entries = _fd_entries(cfg, rng, inputs)
        _compare_fd(
            result,
            entries,
            _finite_differences(truth, entries, inputs, targets),
            [float(mine.grads[n][i]) for n, i in entries],
            note=note,
        )
    except _Failure as f:
        _fail("block_backward", str(f), None)
    print(repr(result))
    return result


def end_to_end(ops=None, block_forward=None, block_backward=None, seed=None) -> ModelCheckResult:
    """GPT-2 computed by the ops namespace ``ops`` (default ``llmc_kernels.ops``; a module, namespace or dict
    with the 16 SPEC functions) in float32 on the active backend, optionally with your block functions,
    against the float64 reference model: the loss, every parameter gradient, finite differences of the
    float64 loss for a few entries of every tensor, and the losses over three AdamW steps."""
    for fn, what in ((block_forward, "block_forward"), (block_backward, "block_backward")):
        if fn is not None:
            _learner_call(fn, what)
    if ops is None:
        from .. import ops as ops  # noqa: PLW0127
    seed = _seed(seed)
    cfg, params, inputs, targets, rng = _case(seed)
    result = ModelCheckResult("gpt2_end_to_end")
    restore = _fp32_matmuls(ops)
    try:
        truth, loss = _truth(cfg, params, inputs, targets)
        mine = BlockGPT2(cfg, params, ops=ops, block_forward=block_forward, block_backward=block_backward)
        batch = mine.xp.asarray(inputs), mine.xp.asarray(targets)
        got = mine.forward(*batch)
        result.lines.append(
            _header(cfg, seed) + f", ops {mine.ops_name} (float32, "
            f"{type(mine.params_memory).__module__.split('.')[0]} arrays) against the float64 "
            "reference model"
        )
        if not abs(got - loss) <= FLOAT32_LOSS * abs(loss):
            raise _Failure(
                f"the loss is {got:.7g}, the float64 reference model's {loss:.7g} (relative error "
                f"{abs(got - loss) / abs(loss):.1e}, tolerance {FLOAT32_LOSS:g})"
            )
        mine.zero_grad()
        mine.backward()
        _compare_grads(result, mine, truth, FLOAT32)
        entries = _fd_entries(cfg, rng, inputs)
        _compare_fd(
            result,
            entries,
            _finite_differences(truth, entries, inputs, targets),
            [float(_host(mine.grads[n])[i]) for n, i in entries],
            tol=FLOAT32,
        )
        for t in range(1, UPDATES + 1):  # AdamW on this batch, both models: the losses must agree
            for model, xy in ((truth, (inputs, targets)), (mine, batch)):
                model.update(1e-2, 0.9, 0.999, 1e-8, 0.01, t)
                result.losses.append(model.forward(*xy))
                model.zero_grad()
                model.backward()
            want, have = result.losses[-2:]
            if not abs(have - want) <= 1e-4 * abs(want):
                raise _Failure(
                    f"after {t} AdamW step(s) the loss is {have:.7g}, the reference model's {want:.7g}: "
                    "check adamw_update (t counts from 1, bias correction, decoupled weight decay)"
                )
        result.losses = list(zip(result.losses[1::2], result.losses[0::2]))  # (ours, reference) per step
        result.lines.append(
            f"losses over {UPDATES} AdamW steps: {loss:.5f} -> "
            + " -> ".join(f"{h:.5f}" for h, _ in result.losses)
            + " (reference within 1e-4)"
        )
    except _Failure as f:
        _fail("gpt2_end_to_end", str(f), None)
    finally:
        restore()
    print(repr(result))
    return result


def _fp32_matmuls(ops):
    """While the check runs, the package's cuBLAS matmuls use fp32 (TF32 would need looser tolerances)."""
    if getattr(ops, "__name__", "") != "llmc_kernels.ops" or not hasattr(ops, "set_matmul_precision"):
        return lambda: None
    before = ops.matmul_precision()
    ops.set_matmul_precision("fp32")
    return lambda: ops.set_matmul_precision(before)


def loss_falls(run, min_drop: float = 0.5) -> ModelCheckResult:
    """Check that a training run learned: ``run`` is the dict ``llmc_kernels.train.train`` returns, or the
    folder of its log.csv and log.json. The validation loss must end ``min_drop`` nats below the validation
    loss before the first step, and the mean training loss of the last five steps be below that of the
    first five."""
    from ..train.log import read_log

    out = Path(run["out"] if isinstance(run, dict) else run)
    result = ModelCheckResult("training_loss_falls")
    try:
        rows = read_log(out / "log.csv") if (out / "log.csv").exists() else []
        if len(rows) < 10:
            raise _Failure(f"{out / 'log.csv'} has {len(rows)} steps: train at least 10")
        first = float(np.mean([r["loss"] for r in rows[:5]]))
        last = float(np.mean([r["loss"] for r in rows[-5:]]))
        vals = [r["val_loss"] for r in rows if r["val_loss"] is not None]
        start = (
            json.loads((out / "log.json").read_text()).get("initial_val_loss") if (out / "log.json").exists() else None
        )
        if start is None or not vals:
            raise _Failure("the run measured no validation loss (train with --val-every > 0)")
        if not all(map(math.isfinite, [first, last, start, *vals])):
            raise _Failure("a loss is not finite: training diverged")
        if not last < first:
            raise _Failure(
                f"the training loss did not fall: mean {first:.4f} over the first five steps, "
                f"{last:.4f} over the last five"
            )
        if not vals[-1] < start - min_drop:
            raise _Failure(
                f"the validation loss went from {start:.4f} to {vals[-1]:.4f}, not {min_drop} nats "
                "lower: train longer, or check the learning rate"
            )
        result.lines.append(
            f"train loss {first:.3f} -> {last:.3f} (first/last five steps), validation loss "
            f"{start:.3f} -> {vals[-1]:.3f} over {rows[-1]['step']} steps"
        )
    except _Failure as f:
        _fail("training_loss_falls", str(f), None)
    print(repr(result))
    return result


# ---------------------------------------------------------------------------------------------- trace
def trace(
    model: GPT2, inputs, targets, forward: bool = True, backward: bool = True, file=None, blocks: bool = True
) -> list[str]:
    """Run ``model.forward(inputs, targets)`` and then ``zero_grad`` and ``backward``, printing the op calls of
    the passes asked for with the buffers each receives, named after the model's dicts (``params``,
    ``grads`` with a prefix d, ``acts``, ``gacts``; ``[l]`` is layer l of a per-layer tensor) and their shapes,
    e.g. ``layernorm_forward(ln1[0]:2x8x64, ...)``. Returns the printed lines.

    ``blocks=False`` prints each transformer block as one line instead of its calls: the number of calls and
    the ops it uses, alphabetically (chapter 09, whose exercise is that sequence of calls)."""

    def key(arr):
        ptr = arr.__array_interface__["data"][0] if isinstance(arr, np.ndarray) else int(arr.data.ptr)
        return ptr, tuple(arr.shape)

    names, lines, show = {}, [], [forward]
    inside: list[list[str]] = []  # the ops called by the block running now, when blocks are not shown

    def register(tensors: dict, prefix: str = "", per_layer=()):
        for name, t in tensors.items():
            views = [(f"{prefix}{name}", t)] + [
                (f"{prefix}{name}[{l}]", t[l]) for l in range(len(t)) if name in per_layer
            ]
            for label, v in views:
                names.setdefault(key(v), label)
                names.setdefault(key(v.reshape(-1)), label)

    def wrap(name, fn):
        ref = getattr(_reference(), name, None)
        params = list(inspect.signature(ref or fn).parameters)

        def call(*args):
            if inside:
                inside[-1].append(name)
            elif show[0]:
                parts = [
                    f"{p}=None"
                    if a is None
                    else f"{names.get(key(a), '?')}:{'x'.join(map(str, a.shape))}"
                    if hasattr(a, "shape")
                    else f"{p}={a}"
                    for p, a in zip(params, args)
                ]
                lines.append(f"{name}({', '.join(parts)})")
                print(lines[-1], file=file)
            return fn(*args)

        return call

    def hidden(kind, method):
        def run(l, *args):
            inside.append([])
            try:
                method(l, *args)
            finally:
                called = inside.pop()
            if show[0]:
                counts = Counter(called)
                uses = ", ".join(f"{n} x{k}" if k > 1 else n for n, k in sorted(counts.items()))
                lines.append(f"block_{kind}(layer {l}): {len(called)} calls, not shown (your exercise): {uses}")
                print(lines[-1], file=file)

        return run

    original = dict(model._op)
    if not blocks:
        model._layer_forward = hidden("forward", model._layer_forward)
        model._layer_backward = hidden("backward", model._layer_backward)
    try:
        model._ensure_activations(*(int(s) for s in np.shape(inputs)))
        register({"inputs": inputs, "targets": targets})
        register(model.params, per_layer=LAYER_PARAMS)
        register(model.grads, "d", per_layer=LAYER_PARAMS)
        register(model.acts, per_layer=[n for n in BLOCK_ACTS if n not in SCRATCH_ACTS])
        register(model.gacts)
        model._op.update({name: wrap(name, fn) for name, fn in original.items() if fn is not None})
        model.forward(inputs, targets)
        if backward:
            show[0] = True
            model.zero_grad()
            model.backward()
    finally:
        model._op.update(original)
        if not blocks:
            del model._layer_forward, model._layer_backward  # the class's methods again
    return lines
