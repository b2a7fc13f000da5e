"""What every op of the SPEC table takes: a machine-readable copy of the signatures.

``OPS[op]`` is an :class:`OpSpec` for each op name (encoder, layernorm, matmul, attention, gelu, residual,
softmax, crossentropy, adamw, vector_add). It names the forward and backward functions and, for each of
their arguments in order, an :class:`Arg`: its role, its shape in terms of size names, its dtype and what
its values must be. The checks build random cases from it; the tests prove it against
``llmc_kernels.reference`` (every function called with arrays built from this table).

Roles (``Arg.role``)
    ``"output"``       written by the function (its previous contents do not matter, except outside ``region``)
    ``"input"``        read only
    ``"accumulate"``   a backward output: the function adds (``+=``) into it, never overwrites it
    ``"inout"``        read and updated in place (AdamW's params, m, v)
    ``"size"``         a Python ``int`` (B, T, C, ...)
    ``"hyper"``        a Python ``float`` hyperparameter (AdamW's lr, beta1, ...)
    ``"step"``         a Python ``int`` step counter (AdamW's t, starting at 1)

Shapes are tuples of dimension expressions: a size name (``"C"``) or ``"<int>*<name>"`` (``"3*C"``);
:func:`dim` and :func:`shape` turn them into ints. Some dimensions are not arguments of the function
(the encoder's ``V`` and ``maxT``, crossentropy's ``V`` in the forward): ``OpSpec.dims`` lists every
dimension of the op, ``OpSpec.constraints`` what must hold between them.

``Arg.region`` says which part of an array the function touches:
    ``"causal"``   [..., T, T] arrays: only entries with t2 <= t (last index <= second-to-last) are read or
                   written; the masked entries (t2 > t) of ``preatt``, ``dpreatt`` and ``datt`` keep whatever
                   they held, and the masked entries of an ``att`` input are never read.
    ``"cols<V"``   [..., Vp] arrays: only columns < V are read or written; the padded columns of ``dlogits``
                   keep whatever they held, the padded columns of ``logits`` and of a ``probs`` input are
                   never read.
    ``None``       the whole array (``att`` output: 0 where t2 > t; ``probs`` output: 0 in columns >= V).

``Arg.source`` (``"layernorm_forward.mean"``) marks a backward input that must be what that forward wrote
for the same inputs; ``Arg.grad_of`` names the forward argument a gradient belongs to (``dinp`` -> ``inp``,
``dout`` -> ``out``); ``Arg.values`` constrains integer contents (``"[0,V)"``: token ids).

This module is plain Python (no NumPy), so anything may import it cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field

OUTPUT, INPUT, ACCUMULATE, INOUT, SIZE, HYPER, STEP = (
    "output", "input", "accumulate", "inout", "size", "hyper", "step")
ROLES = (OUTPUT, INPUT, ACCUMULATE, INOUT, SIZE, HYPER, STEP)
ARRAY_ROLES = (OUTPUT, INPUT, ACCUMULATE, INOUT)
CAUSAL, COLS_LT_V = "causal", "cols<V"


@dataclass(frozen=True)
class Arg:
    name: str
    role: str
    shape: tuple[str, ...] = ()      # () for scalars (sizes, hyperparameters, step)
    dtype: str = "float32"           # "float32" | "int32" for arrays; "int" | "float" for scalars
    optional: bool = False           # may be None (matmul's bias and dbias)
    region: str | None = None        # CAUSAL | COLS_LT_V | None (whole array), see the module docstring
    source: str | None = None        # "fn.arg": must hold what that forward function wrote
    grad_of: str | None = None       # the forward argument this array is the gradient of
    values: str | None = None        # integer contents, e.g. "[0,V)"
    example: float | None = None     # a typical value for a hyperparameter
    note: str = ""

    @property
    def is_array(self) -> bool:
        return self.role in ARRAY_ROLES


@dataclass(frozen=True)
class FnSpec:
    name: str
    args: tuple[Arg, ...]

    @property
    def arg_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.args)

    def arg(self, name: str) -> Arg:
        for a in self.args:
            if a.name == name:
                return a
        raise KeyError(f"{self.name} has no argument '{name}'")

    def by_role(self, *roles: str) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.role in roles)


@dataclass(frozen=True)
class OpSpec:
    op: str
    forward: FnSpec
    backward: FnSpec | None
    dims: tuple[str, ...]                        # every dimension name used by the op's shapes
    constraints: tuple[str, ...] = ()            # e.g. "C % NH == 0", "maxT >= T", "Vp >= V"
    example_sizes: dict = field(default_factory=dict)   # small, awkward sizes that satisfy the constraints
    notes: str = ""

    @property
    def functions(self) -> tuple[FnSpec, ...]:
        return (self.forward,) if self.backward is None else (self.forward, self.backward)


def dim(expr: str, sizes: dict) -> int:
    """Value of one dimension expression: ``"C"`` -> sizes["C"], ``"3*C"`` -> 3 * sizes["C"]."""
    if "*" in expr:
        factor, name = expr.split("*")
        return int(factor) * int(sizes[name.strip()])
    return int(sizes[expr])


def shape(arg: Arg, sizes: dict) -> tuple[int, ...]:
    """The concrete shape of an array argument for the given sizes."""
    return tuple(dim(d, sizes) for d in arg.shape)


# ----------------------------------------------------------------------------------------------- helpers
def _out(name, *shape_, **kw):
    return Arg(name, OUTPUT, tuple(shape_), **kw)


def _in(name, *shape_, **kw):
    return Arg(name, INPUT, tuple(shape_), **kw)


def _acc(name, *shape_, **kw):
    return Arg(name, ACCUMULATE, tuple(shape_), **kw)


def _sizes(*names):
    return tuple(Arg(n, SIZE, (), "int") for n in names)


def _fn(name, *args):
    flat = []
    for a in args:
        flat.extend(a if isinstance(a, tuple) else (a,))
    return FnSpec(name, tuple(flat))


# ----------------------------------------------------------------------------------------------- the table
OPS: dict[str, OpSpec] = {}


def _add(spec: OpSpec) -> None:
    OPS[spec.op] = spec


_add(OpSpec(
    "vector_add",
    _fn("vector_add", _out("out", "N"), _in("a", "N"), _in("b", "N"), _sizes("N")),
    None,
    dims=("N",), example_sizes={"N": 1000},
    notes="out = a + b (chapter 00's first exercise)."))

_add(OpSpec(
    "encoder",
    _fn("encoder_forward",
        _out("out", "B", "T", "C"),
        _in("inp", "B", "T", dtype="int32", values="[0,V)"),
        _in("wte", "V", "C"), _in("wpe", "maxT", "C"),
        _sizes("B", "T", "C")),
    _fn("encoder_backward",
        _acc("dwte", "V", "C", grad_of="wte"), _acc("dwpe", "maxT", "C", grad_of="wpe"),
        _in("dout", "B", "T", "C", grad_of="out"),
        _in("inp", "B", "T", dtype="int32", values="[0,V)"),
        _sizes("B", "T", "C")),
    dims=("B", "T", "C", "V", "maxT"), constraints=("maxT >= T",),
    example_sizes={"B": 2, "T": 5, "C": 7, "V": 4, "maxT": 9},
    notes="out[b,t] = wte[inp[b,t]] + wpe[t]. Token ids repeat, so dwte rows collect several += (atomics on "
          "a GPU). Rows t >= T of wpe/dwpe are not touched. In the model wte is [Vp,C] and V here is Vp."))

_add(OpSpec(
    "layernorm",
    _fn("layernorm_forward",
        _out("out", "B", "T", "C"), _out("mean", "B", "T"), _out("rstd", "B", "T"),
        _in("inp", "B", "T", "C"), _in("weight", "C"), _in("bias", "C"),
        _sizes("B", "T", "C")),
    _fn("layernorm_backward",
        _acc("dinp", "B", "T", "C", grad_of="inp"), _acc("dweight", "C", grad_of="weight"),
        _acc("dbias", "C", grad_of="bias"),
        _in("dout", "B", "T", "C", grad_of="out"),
        _in("inp", "B", "T", "C"), _in("weight", "C"),
        _in("mean", "B", "T", source="layernorm_forward.mean"),
        _in("rstd", "B", "T", source="layernorm_forward.rstd"),
        _sizes("B", "T", "C")),
    dims=("B", "T", "C"), example_sizes={"B": 2, "T": 3, "C": 7},
    notes="eps = 1e-5 inside the square root, biased variance (divide by C); mean and rstd = "
          "1/sqrt(var + eps) are outputs the backward reuses."))

_add(OpSpec(
    "matmul",
    _fn("matmul_forward",
        _out("out", "B", "T", "OC"), _in("inp", "B", "T", "C"), _in("weight", "OC", "C"),
        _in("bias", "OC", optional=True),
        _sizes("B", "T", "C", "OC")),
    _fn("matmul_backward",
        _acc("dinp", "B", "T", "C", grad_of="inp"), _acc("dweight", "OC", "C", grad_of="weight"),
        _acc("dbias", "OC", optional=True, grad_of="bias"),
        _in("dout", "B", "T", "OC", grad_of="out"),
        _in("inp", "B", "T", "C"), _in("weight", "OC", "C"),
        _sizes("B", "T", "C", "OC")),
    dims=("B", "T", "C", "OC"), example_sizes={"B": 2, "T": 3, "C": 5, "OC": 6},
    notes="out = inp @ weight.T + bias (weight is [OC, C], PyTorch's Linear layout). bias may be None (no "
          "bias added); dbias may be None (not computed). Checked both ways."))

_add(OpSpec(
    "attention",
    _fn("attention_forward",
        _out("out", "B", "T", "C"),
        _out("preatt", "B", "NH", "T", "T", region=CAUSAL,
             note="scaled scores q.k/sqrt(hs) for t2 <= t; masked entries are not written (as llm.c)"),
        _out("att", "B", "NH", "T", "T", note="softmax over t2 <= t; exactly 0 where t2 > t"),
        _in("inp", "B", "T", "3*C", note="q, k, v at columns [0,C), [C,2C), [2C,3C); head h uses h*hs..(h+1)*hs"),
        _sizes("B", "T", "C", "NH")),
    _fn("attention_backward",
        _acc("dinp", "B", "T", "3*C", grad_of="inp"),
        _acc("dpreatt", "B", "NH", "T", "T", region=CAUSAL, grad_of="preatt"),
        _acc("datt", "B", "NH", "T", "T", region=CAUSAL, grad_of="att"),
        _in("dout", "B", "T", "C", grad_of="out"),
        _in("inp", "B", "T", "3*C"),
        _in("att", "B", "NH", "T", "T", region=CAUSAL, source="attention_forward.att"),
        _sizes("B", "T", "C", "NH")),
    dims=("B", "T", "C", "NH"), constraints=("C % NH == 0",),
    example_sizes={"B": 2, "T": 5, "C": 6, "NH": 2},
    notes="hs = C/NH, scale = 1/sqrt(hs). The backward follows llm.c: datt += dout.v (causal part), then "
          "dpreatt += softmax-backward of the WHOLE datt buffer (its old contents included), then dinp's q/k "
          "parts += from the WHOLE dpreatt buffer: each buffer holds the total gradient of the loss w.r.t. "
          "that tensor, old contents counting as gradient from elsewhere. Pre-filling the causal parts of "
          "datt/dpreatt with zeros makes the old contents irrelevant."))

_add(OpSpec(
    "gelu",
    _fn("gelu_forward", _out("out", "N"), _in("inp", "N"), _sizes("N")),
    _fn("gelu_backward", _acc("dinp", "N", grad_of="inp"), _in("inp", "N"), _in("dout", "N", grad_of="out"),
        _sizes("N")),
    dims=("N",), example_sizes={"N": 37},
    notes="tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Note the backward's argument "
          "order: (dinp, inp, dout, N)."))

_add(OpSpec(
    "residual",
    _fn("residual_forward", _out("out", "N"), _in("inp1", "N"), _in("inp2", "N"), _sizes("N")),
    _fn("residual_backward", _acc("dinp1", "N", grad_of="inp1"), _acc("dinp2", "N", grad_of="inp2"),
        _in("dout", "N", grad_of="out"), _sizes("N")),
    dims=("N",), example_sizes={"N": 37},
    notes="out = inp1 + inp2."))

_add(OpSpec(
    "softmax",
    _fn("softmax_forward",
        _out("probs", "B", "T", "Vp", note="0 in columns >= V"),
        _in("logits", "B", "T", "Vp", region=COLS_LT_V),
        _sizes("B", "T", "V", "Vp")),
    None,
    dims=("B", "T", "V", "Vp"), constraints=("Vp >= V",),
    example_sizes={"B": 2, "T": 3, "V": 7, "Vp": 10},
    notes="Row-wise softmax over the first V columns, numerically stable (subtract the row max). Its backward "
          "is fused into crossentropy_softmax_backward."))

_add(OpSpec(
    "crossentropy",
    _fn("crossentropy_forward",
        _out("losses", "B", "T"),
        _in("probs", "B", "T", "Vp", region=COLS_LT_V, source="softmax_forward.probs"),
        _in("targets", "B", "T", dtype="int32", values="[0,V)"),
        _sizes("B", "T", "Vp")),
    _fn("crossentropy_softmax_backward",
        _acc("dlogits", "B", "T", "Vp", region=COLS_LT_V, grad_of="softmax_forward.logits"),
        _in("dlosses", "B", "T", grad_of="losses", note="filled by the caller: 1/(B*T) for a mean loss"),
        _in("probs", "B", "T", "Vp", region=COLS_LT_V, source="softmax_forward.probs"),
        _in("targets", "B", "T", dtype="int32", values="[0,V)"),
        _sizes("B", "T", "V", "Vp")),
    dims=("B", "T", "V", "Vp"), constraints=("Vp >= V",),
    example_sizes={"B": 2, "T": 3, "V": 7, "Vp": 10},
    notes="losses[b,t] = -log probs[b,t,targets[b,t]]. The backward goes through softmax and cross-entropy "
          "together: dlogits[b,t,i] += (probs[b,t,i] - [i == target]) * dlosses[b,t] for i < V; columns >= V "
          "untouched. Its input gradient is w.r.t. softmax_forward's logits."))

_add(OpSpec(
    "adamw",
    _fn("adamw_update",
        Arg("params", INOUT, ("num_params",)), _in("grads", "num_params"),
        Arg("m", INOUT, ("num_params",), note="first moment; realistic non-zero values in checks"),
        Arg("v", INOUT, ("num_params",), note="second moment, >= 0"),
        *_sizes("num_params"),
        Arg("lr", HYPER, (), "float", example=1e-3), Arg("beta1", HYPER, (), "float", example=0.9),
        Arg("beta2", HYPER, (), "float", example=0.999), Arg("eps", HYPER, (), "float", example=1e-8),
        Arg("weight_decay", HYPER, (), "float", example=0.1),
        Arg("t", STEP, (), "int", note="step number, starts at 1")),
    None,
    dims=("num_params",), example_sizes={"num_params": 1000},
    notes="m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mhat = m/(1-b1^t); vhat = v/(1-b2^t); "
          "param -= lr (mhat/(sqrt(vhat)+eps) + weight_decay param) with the param before this step "
          "(decoupled decay, as llm.c; algebraically the same as torch.optim.AdamW)."))


def function(name: str) -> tuple[OpSpec, FnSpec]:
    """Look up a function by its name ('layernorm_backward') -> (its op, its FnSpec)."""
    for spec in OPS.values():
        for fn in spec.functions:
            if fn.name == name:
                return spec, fn
    raise KeyError(f"no op function named '{name}'")


FUNCTIONS: tuple[str, ...] = tuple(fn.name for spec in OPS.values() for fn in spec.functions)

__all__ = ["OPS", "FUNCTIONS", "OpSpec", "FnSpec", "Arg", "dim", "shape", "function", "ROLES",
           "OUTPUT", "INPUT", "ACCUMULATE", "INOUT", "SIZE", "HYPER", "STEP", "CAUSAL", "COLS_LT_V"]
