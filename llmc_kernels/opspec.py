"""One home per op: what every op of the contract (book/contract.md) takes and how the checks judge it.

``OPS[op]`` is an :class:`OpSpec` for each op name (encoder, layernorm, matmul, attention, gelu, residual,
softmax, crossentropy, fused_classifier, adamw, vector_add, transpose). It names the forward and backward
functions and, for each of their arguments in order, an :class:`Arg`: its role, its shape in terms of size
names, its dtype and what its values must be. The same row holds what the checks need to know about the
op: each function's tolerance (``FnSpec.tolerance``), the cases a check runs (``OpSpec.cases``,
``OpSpec.fd_case``), the distributions its inputs are drawn from (``OpSpec.values``, from :mod:`.draw`) and
the regions of its outputs. ``ops/_validate.py`` derives the wrappers' argument checks from it; the tests
prove it against ``llmc_kernels.reference`` and tests/test_opspec_complete.py that every row has a
reference, a wrapper, a tolerance and cases. Adding an op: a row here, a reference function,
``kernels/<op>.cu`` and a launcher.

``CHAPTER_ONLY`` ops are exercises that GPT-2 never calls; ``OPTIONAL`` ones (the fused classifier) it calls
when an ops namespace has them and does without otherwise.

``EXTENSIONS`` holds the signatures of the package's functions beyond the contract's table (fused ops,
flash attention, the linear layers of the fast engine): no check runs them, but their wrappers validate
their arguments from here the same way.

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

``Arg.zero_outside`` (a region) marks an output that must be exactly 0 outside it (``att`` where t2 > t,
``probs`` in columns >= V).

``Arg.source`` (``"layernorm_forward.mean"``) marks a backward input that must be what that forward wrote
for the same inputs; ``Arg.grad_of`` names the forward argument a gradient belongs to (``dinp`` -> ``inp``,
``dout`` -> ``out``); ``Arg.values`` constrains integer contents (``"[0,V)"``: token ids).

Case kinds (``CaseSpec.kind``, see check_cases): ``random``, ``large`` (inputs of large magnitude),
``nearconst`` (layernorm rows of variance far below eps), ``nobias`` (matmul with bias=None), ``fd``
(expected gradients from central finite differences).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import draw

OUTPUT, INPUT, ACCUMULATE, INOUT, SIZE, HYPER, STEP = (
    "output",
    "input",
    "accumulate",
    "inout",
    "size",
    "hyper",
    "step",
)
ROLES = (OUTPUT, INPUT, ACCUMULATE, INOUT, SIZE, HYPER, STEP)
ARRAY_ROLES = (OUTPUT, INPUT, ACCUMULATE, INOUT)
CAUSAL, COLS_LT_V = "causal", "cols<V"


@dataclass(frozen=True)
class Arg:
    name: str
    role: str
    shape: tuple[str, ...] = ()  # () for scalars (sizes, hyperparameters, step)
    dtype: str = "float32"  # "float32" | "int32" for arrays; "int" | "float" for scalars
    optional: bool = False  # may be None (matmul's bias and dbias)
    region: str | None = None  # CAUSAL | COLS_LT_V | None (whole array), see the module docstring
    source: str | None = None  # "fn.arg": must hold what that forward function wrote
    grad_of: str | None = None  # the forward argument this array is the gradient of
    values: str | None = None  # integer contents, e.g. "[0,V)"
    example: float | None = None  # a typical value for a hyperparameter (the checks' default)
    zero_outside: str | None = None  # an output that is exactly 0 outside this region
    # the absolute tolerance scales with this other array's rms too (when larger): for a gradient computed by
    # cancellation from it, whose own rms can be far smaller than the rounding of the terms that cancel
    tol_scale: str | None = None
    note: str = ""

    @property
    def is_array(self) -> bool:
        return self.role in ARRAY_ROLES


@dataclass(frozen=True)
class FnSpec:
    name: str
    args: tuple[Arg, ...]
    # (rtol, atol) of the check: |got - expected| <= atol * rms(expected) + rtol * |expected| elementwise
    tolerance: tuple[float, float] | None = None
    flat: bool = False  # arrays of the given element count in any shape (elementwise ops)

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


KINDS = ("random", "large", "nearconst", "nobias", "fd")
_KIND_LABEL = {
    "random": "",
    "large": "inputs of large magnitude",
    "nearconst": "near-constant rows",
    "nobias": "bias=None",
    "fd": "finite differences",
}


@dataclass(frozen=True)
class CaseSpec:
    """One case of a check: sizes, a kind (KINDS) and hyperparameters overriding the Args' examples."""

    sizes: tuple  # ((name, int), ...) in the op's dims order
    kind: str = "random"
    hyper: tuple = ()  # ((name, value), ...), sorted

    @staticmethod
    def of(sizes: dict, kind: str = "random", **hyper) -> CaseSpec:
        return CaseSpec(tuple(sizes.items()), kind, tuple(sorted(hyper.items())))

    @property
    def size_dict(self) -> dict:
        return dict(self.sizes)

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.sizes]
        parts += [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.hyper]
        text = ", ".join(parts)
        return f"{text} ({_KIND_LABEL[self.kind]})" if _KIND_LABEL[self.kind] else text


Draw = Callable  # (pool, shape) -> ndarray: see draw.py


@dataclass(frozen=True)
class OpSpec:
    op: str
    forward: FnSpec
    backward: FnSpec | None
    dims: tuple[str, ...]  # every dimension name used by the op's shapes
    constraints: tuple[str, ...] = ()  # e.g. "C % NH == 0", "maxT >= T", "Vp >= V"
    example_sizes: dict = field(default_factory=dict)  # small, awkward sizes that satisfy the constraints
    notes: str = ""
    # what a wrapper says when a constraint fails: a format string of the sizes, ``fn`` and ``rows_of[dim]``
    # (the argument a dimension was read from, for dims that are not arguments: the encoder's maxT)
    explain: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # the checks: the cases in the order they run, the backward's finite-difference case, the distributions
    cases: tuple[CaseSpec, ...] = ()
    fd_case: CaseSpec | None = None
    values: Mapping[str, Draw] = field(default_factory=lambda: MappingProxyType({}))
    no_backward: str = ""  # what check.backward(op, ...) says when there is none

    @property
    def functions(self) -> tuple[FnSpec, ...]:
        return (self.forward,) if self.backward is None else (self.forward, self.backward)


def dim(expr: str, sizes: dict) -> int:
    """Value of one dimension expression: ``"C"`` -> sizes["C"], ``"3*C"`` -> 3 * sizes["C"], ``"7"`` -> 7."""
    if expr.isdigit():
        return int(expr)
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


def _fn(name, *args, tol=None, flat=False):
    listed = []
    for a in args:
        listed.extend(a if isinstance(a, tuple) else (a,))
    return FnSpec(name, tuple(listed), tol, flat)


def _c(kind="random", hyper=None, **sizes):
    """A case: sizes in the op's dims order, a kind, hyperparameters (AdamW's) overriding the examples."""
    return CaseSpec.of(sizes, kind, **(hyper or {}))


def _frozen(**items):
    return MappingProxyType(dict(items))


# ----------------------------------------------------------------------------------------------- the table
OPS: dict[str, OpSpec] = {}


def _add(spec: OpSpec) -> None:
    OPS[spec.op] = spec


# Tolerances, (rtol, atol) per function: an element passes when |got - expected| <= atol * rms(expected) +
# rtol * |expected|. expected is float64 computed from the same float32 inputs, so these bound float32
# rounding only. One float32 rounding is 6e-8 relative; each entry leaves room for the roundings of a
# straightforward kernel in any summation order (tree reductions, atomics), and stays far below what any real
# mistake produces (a wrong term, a dropped eps, a factor, a race -- see tests/test_check_mutations.py).
#
# Cases run in the order listed: an ordinary case with awkward sizes first (its failures are the most
# telling), then a tiny one (1 row, 1 channel), then special inputs and a bigger one. No size is a multiple
# of 32 unless it is 1 away from one; all stay small enough for the CPU backend (a few seconds per op). A
# backward also runs ``fd_case``, a tiny case whose expected gradients are central finite differences.
ELEMENTWISE_CASES = (_c(N=1000), _c(N=1), _c(N=4133), _c("large", N=301))

_add(
    OpSpec(
        "vector_add",
        # one addition per element: a couple of roundings at most
        _fn("vector_add", _out("out", "N"), _in("a", "N"), _in("b", "N"), _sizes("N"), tol=(1e-6, 1e-6), flat=True),
        None,
        dims=("N",),
        example_sizes={"N": 1000},
        cases=ELEMENTWISE_CASES,
        notes="out = a + b (chapter 00's first exercise).",
    )
)

_add(
    OpSpec(
        "transpose",
        # a copy: every element moves unchanged, so any tolerance above zero is exact
        _fn("transpose", _out("out", "C", "T"), _in("inp", "T", "C"), _sizes("T", "C"), tol=(1e-6, 1e-6)),
        None,
        dims=("T", "C"),
        example_sizes={"T": 5, "C": 7},
        cases=(_c(T=37, C=67), _c(T=1, C=1), _c(T=130, C=75), _c(T=9, C=200), _c("large", T=33, C=5)),
        no_backward="transpose has no backward here (it would be another transpose): check it with "
        "check.forward('transpose', fn)",
        notes="out[c, t] = inp[t, c] (chapter 04b's exercise: a [T, C] matrix turned into [C, T], as the "
        "attention's K^T or the matmul backward's dout^T). Its check.performance targets live in check/performance.py.",
    )
)

_add(
    OpSpec(
        "encoder",
        _fn(
            "encoder_forward",
            _out("out", "B", "T", "C"),
            _in("inp", "B", "T", dtype="int32", values="[0,V)"),
            _in("wte", "V", "C"),
            _in("wpe", "maxT", "C"),
            _sizes("B", "T", "C"),
            tol=(1e-6, 1e-6),
        ),
        _fn(
            "encoder_backward",
            _acc("dwte", "V", "C", grad_of="wte"),
            _acc("dwpe", "maxT", "C", grad_of="wpe"),
            _in("dout", "B", "T", "C", grad_of="out"),
            _in("inp", "B", "T", dtype="int32", values="[0,V)"),
            _sizes("B", "T", "C"),
            tol=(1e-5, 1e-6),
        ),  # dwte rows sum every position holding that token (atomics: any order)
        dims=("B", "T", "C", "V", "maxT"),
        constraints=("maxT >= T",),
        example_sizes={"B": 2, "T": 5, "C": 7, "V": 4, "maxT": 9},
        explain=_frozen(
            **{"maxT >= T": "{fn}: '{rows_of[maxT]}' has {maxT} rows (positions) but T = {T}; it needs at least T rows"}
        ),
        cases=(
            _c(B=2, T=37, C=67, V=13, maxT=40),
            _c(B=1, T=1, C=1, V=1, maxT=1),
            _c(B=3, T=20, C=130, V=50, maxT=64),
            _c("large", B=2, T=7, C=33, V=5, maxT=9),
        ),
        fd_case=_c("fd", B=2, T=3, C=4, V=3, maxT=5),
        values=_frozen(dout=draw.normal()),
        notes="out[b,t] = wte[inp[b,t]] + wpe[t]. Token ids repeat, so dwte rows collect several += (atomics on "
        "a GPU). Rows t >= T of wpe/dwpe are not touched. In the model wte is [Vp,C] and V here is Vp.",
    )
)

_add(
    OpSpec(
        "layernorm",
        # sums over C <= 200 channels; near-constant rows multiply the rounding of x - mean by rstd ~ 300
        _fn(
            "layernorm_forward",
            _out("out", "B", "T", "C"),
            _out("mean", "B", "T"),
            _out("rstd", "B", "T"),
            _in("inp", "B", "T", "C"),
            _in("weight", "C"),
            _in("bias", "C"),
            _sizes("B", "T", "C"),
            tol=(1e-4, 3e-5),
        ),
        _fn(
            "layernorm_backward",
            _acc("dinp", "B", "T", "C", grad_of="inp"),
            _acc("dweight", "C", grad_of="weight"),
            _acc("dbias", "C", grad_of="bias"),
            _in("dout", "B", "T", "C", grad_of="out"),
            _in("inp", "B", "T", "C"),
            _in("weight", "C"),
            _in("mean", "B", "T", source="layernorm_forward.mean"),
            _in("rstd", "B", "T", source="layernorm_forward.rstd"),
            _sizes("B", "T", "C"),
            tol=(1e-4, 1e-5),
        ),
        dims=("B", "T", "C"),
        example_sizes={"B": 2, "T": 3, "C": 7},
        cases=(
            _c(B=2, T=37, C=67),
            _c(B=1, T=1, C=1),
            _c("nearconst", B=2, T=9, C=130),
            _c("large", B=2, T=5, C=77),
            _c(B=3, T=17, C=200),
        ),
        fd_case=_c("fd", B=1, T=2, C=5),
        values=_frozen(
            inp=draw.layernorm_rows, weight=draw.normal(0.5, 1.0), bias=draw.normal(0.5), dout=draw.normal()
        ),
        notes="eps = 1e-5 inside the square root, biased variance (divide by C); mean and rstd = "
        "1/sqrt(var + eps) are outputs the backward reuses.",
    )
)

_add(
    OpSpec(
        "matmul",
        # dot products of length C (forward, dinp) or B*T (dweight, dbias), float32 accumulation in any order
        _fn(
            "matmul_forward",
            _out("out", "B", "T", "OC"),
            _in("inp", "B", "T", "C"),
            _in("weight", "OC", "C"),
            _in("bias", "OC", optional=True),
            _sizes("B", "T", "C", "OC"),
            tol=(1e-4, 1e-5),
        ),
        _fn(
            "matmul_backward",
            _acc("dinp", "B", "T", "C", grad_of="inp"),
            _acc("dweight", "OC", "C", grad_of="weight"),
            _acc("dbias", "OC", optional=True, grad_of="bias"),
            _in("dout", "B", "T", "OC", grad_of="out"),
            _in("inp", "B", "T", "C"),
            _in("weight", "OC", "C"),
            _sizes("B", "T", "C", "OC"),
            tol=(1e-4, 1e-5),
        ),
        dims=("B", "T", "C", "OC"),
        example_sizes={"B": 2, "T": 3, "C": 5, "OC": 6},
        cases=(
            _c(B=2, T=37, C=67, OC=45),
            _c(B=1, T=1, C=1, OC=1),
            _c("nobias", B=3, T=13, C=96, OC=130),
            _c("large", B=2, T=5, C=33, OC=17),
        ),
        fd_case=_c("fd", B=1, T=2, C=3, OC=4),
        values=_frozen(inp=draw.activations, weight=draw.fan_in("C"), dout=draw.normal()),
        notes="out = inp @ weight.T + bias (weight is [OC, C], PyTorch's Linear layout). bias may be None (no "
        "bias added); dbias may be None (not computed). Checked both ways.",
    )
)

_add(
    OpSpec(
        "attention",
        # q.k over hs, a softmax over <= T entries and att @ v; scores of order 100 (the large case) carry
        # absolute errors of ~1e-5 into exp, i.e. relative errors of ~1e-5 in att; the backward chains three steps
        _fn(
            "attention_forward",
            # out = att @ v: a weighted mean of v rounds at v's size even where it cancels to a small value
            _out("out", "B", "T", "C", tol_scale="inp"),
            _out(
                "preatt",
                "B",
                "NH",
                "T",
                "T",
                region=CAUSAL,
                note="scaled scores q.k/sqrt(hs) for t2 <= t; masked entries are not written (as llm.c)",
            ),
            _out("att", "B", "NH", "T", "T", zero_outside=CAUSAL, note="softmax over t2 <= t; exactly 0 where t2 > t"),
            _in("inp", "B", "T", "3*C", note="q, k, v at columns [0,C), [C,2C), [2C,3C); head h uses h*hs..(h+1)*hs"),
            _sizes("B", "T", "C", "NH"),
            tol=(2e-4, 2e-5),
        ),
        _fn(
            "attention_backward",
            _acc("dinp", "B", "T", "3*C", grad_of="inp"),
            # dpreatt = att * (datt - sum(att * datt)): with inputs of large magnitude the softmax is nearly one-hot,
            # dpreatt's own rms tiny, and float32's rounding of the terms that cancel is of datt's size
            _acc("dpreatt", "B", "NH", "T", "T", region=CAUSAL, grad_of="preatt", tol_scale="datt"),
            _acc("datt", "B", "NH", "T", "T", region=CAUSAL, grad_of="att"),
            _in("dout", "B", "T", "C", grad_of="out"),
            _in("inp", "B", "T", "3*C"),
            _in("att", "B", "NH", "T", "T", region=CAUSAL, source="attention_forward.att"),
            _sizes("B", "T", "C", "NH"),
            tol=(3e-4, 3e-5),
        ),
        dims=("B", "T", "C", "NH"),
        constraints=("C % NH == 0",),
        example_sizes={"B": 2, "T": 5, "C": 6, "NH": 2},
        explain=_frozen(**{"C % NH == 0": "{fn}: C = {C} must be a multiple of NH = {NH} (head size hs = C/NH)"}),
        cases=(
            _c(B=2, T=37, C=48, NH=4),
            _c(B=1, T=1, C=1, NH=1),
            _c(B=1, T=5, C=6, NH=3),
            _c("large", B=1, T=33, C=32, NH=2),
            _c(B=2, T=19, C=24, NH=3),
        ),
        fd_case=_c("fd", B=1, T=3, C=4, NH=2),
        values=_frozen(inp=draw.qkv, dout=draw.normal()),
        notes="hs = C/NH, scale = 1/sqrt(hs). The backward follows llm.c: datt += dout.v (causal part), then "
        "dpreatt += softmax-backward of the WHOLE datt buffer (its old contents included), then dinp's q/k "
        "parts += from the WHOLE dpreatt buffer: each buffer holds the total gradient of the loss w.r.t. "
        "that tensor, old contents counting as gradient from elsewhere. Pre-filling the causal parts of "
        "datt/dpreatt with zeros makes the old contents irrelevant.",
    )
)

_add(
    OpSpec(
        "gelu",
        # tanhf/expf are within a few ulp; 1 + tanh cancels for very negative x (hence the atol)
        # 1 + tanh(u) cancels for negative x: the rounding left is of x's size, not out's (which can be tiny)
        _fn(
            "gelu_forward",
            _out("out", "N", tol_scale="inp"),
            _in("inp", "N"),
            _sizes("N"),
            tol=(1e-5, 1e-6),
            flat=True,
        ),
        _fn(
            "gelu_backward",
            _acc("dinp", "N", grad_of="inp", tol_scale="dout"),  # the same cancellation, scaled by dout
            _in("inp", "N"),
            _in("dout", "N", grad_of="out"),
            _sizes("N"),
            tol=(1e-4, 1e-5),
            flat=True,
        ),
        dims=("N",),
        example_sizes={"N": 37},
        cases=ELEMENTWISE_CASES,
        fd_case=_c("fd", N=7),
        values=_frozen(inp=draw.normal_or_large(2.0, 30.0), dout=draw.normal()),
        notes="tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Note the backward's argument "
        "order: (dinp, inp, dout, N).",
    )
)

_add(
    OpSpec(
        "residual",
        # one addition per element: a couple of roundings at most
        _fn(
            "residual_forward",
            _out("out", "N"),
            _in("inp1", "N"),
            _in("inp2", "N"),
            _sizes("N"),
            tol=(1e-6, 1e-6),
            flat=True,
        ),
        _fn(
            "residual_backward",
            _acc("dinp1", "N", grad_of="inp1"),
            _acc("dinp2", "N", grad_of="inp2"),
            _in("dout", "N", grad_of="out"),
            _sizes("N"),
            tol=(1e-6, 1e-6),
            flat=True,
        ),
        dims=("N",),
        example_sizes={"N": 37},
        cases=ELEMENTWISE_CASES,
        fd_case=_c("fd", N=5),
        values=_frozen(dout=draw.normal()),
        notes="out = inp1 + inp2.",
    )
)

VOCAB = "{fn}: the padded vocabulary Vp = {Vp} must be at least V = {V}"
# what the ops over the padded vocabulary share (softmax, crossentropy, fused_classifier), and the cases and values
# of the two that take targets (the fused classifier adds GPT-2's row length, V = 1000 of 1024)
_VOCAB_SHAPE = dict(
    dims=("B", "T", "V", "Vp"),
    constraints=("Vp >= V",),
    example_sizes={"B": 2, "T": 3, "V": 7, "Vp": 10},
    explain=_frozen(**{"Vp >= V": VOCAB}),
)
_CLASSIFIER_CASES = (
    _c(B=2, T=37, V=100, Vp=128),
    _c(B=1, T=1, V=1, Vp=1),
    _c(B=3, T=5, V=50, Vp=61),
    _c("large", B=2, T=9, V=257, Vp=300),
)
_CLASSIFIER_VALUES = _frozen(
    logits=draw.logits(None, 10.0), dlosses=draw.mean_loss_weights, targets=draw.reachable_targets
)

_add(
    OpSpec(
        "softmax",
        # expf per element and a sum over V <= 1000 columns
        _fn(
            "softmax_forward",
            _out("probs", "B", "T", "Vp", zero_outside=COLS_LT_V, note="0 in columns >= V"),
            _in("logits", "B", "T", "Vp", region=COLS_LT_V),
            _sizes("B", "T", "V", "Vp"),
            tol=(1e-4, 1e-6),
        ),
        None,
        **_VOCAB_SHAPE,
        cases=(
            _c(B=2, T=5, V=50, Vp=64),
            _c(B=1, T=1, V=1, Vp=1),
            _c(B=1, T=2, V=7, Vp=8),
            _c("large", B=2, T=4, V=257, Vp=300),
            _c(B=3, T=7, V=1000, Vp=1024),
        ),
        values=_frozen(logits=draw.logits(300.0, 100.0)),
        no_backward="softmax has no backward of its own: it is fused into the cross-entropy backward; check it "
        "with check.backward('crossentropy', crossentropy_softmax_backward)",
        notes="Row-wise softmax over the first V columns, numerically stable (subtract the row max). Its backward "
        "is fused into crossentropy_softmax_backward.",
    )
)

_add(
    OpSpec(
        "crossentropy",
        _fn(
            "crossentropy_forward",
            _out("losses", "B", "T"),
            _in("probs", "B", "T", "Vp", region=COLS_LT_V, source="softmax_forward.probs"),
            _in("targets", "B", "T", dtype="int32", values="[0,V)"),
            _sizes("B", "T", "Vp"),
            tol=(1e-5, 1e-6),
        ),  # one logf
        _fn(
            "crossentropy_softmax_backward",
            _acc("dlogits", "B", "T", "Vp", region=COLS_LT_V, grad_of="softmax_forward.logits"),
            _in("dlosses", "B", "T", grad_of="losses", note="filled by the caller: 1/(B*T) for a mean loss"),
            _in("probs", "B", "T", "Vp", region=COLS_LT_V, source="softmax_forward.probs"),
            _in("targets", "B", "T", dtype="int32", values="[0,V)"),
            _sizes("B", "T", "V", "Vp"),
            tol=(1e-5, 1e-5),
        ),  # one multiply-add per element
        **_VOCAB_SHAPE,
        cases=_CLASSIFIER_CASES,
        fd_case=_c("fd", B=1, T=2, V=5, Vp=8),
        values=_CLASSIFIER_VALUES,
        notes="losses[b,t] = -log probs[b,t,targets[b,t]]. The backward goes through softmax and cross-entropy "
        "together: dlogits[b,t,i] += (probs[b,t,i] - [i == target]) * dlosses[b,t] for i < V; columns >= V "
        "untouched. Its input gradient is w.r.t. softmax_forward's logits.",
    )
)

_add(
    OpSpec(
        "fused_classifier",
        # softmax statistics over V <= 1000 columns, a logf for the loss, one multiply-add per gradient entry
        _fn(
            "fused_classifier",
            Arg(
                "logits",
                INOUT,
                ("B", "T", "Vp"),
                zero_outside=COLS_LT_V,
                note="in: the logits (columns < V read); out: dlogits written over them, exactly 0 in columns >= V",
            ),
            _out("losses", "B", "T"),
            _in("dlosses", "B", "T", optional=True, note="None: 1/(B*T) everywhere (the mean loss)"),
            _in("targets", "B", "T", dtype="int32", values="[0,V)"),
            _sizes("B", "T", "V", "Vp"),
            tol=(1e-5, 1e-5),
        ),
        None,
        **_VOCAB_SHAPE,
        cases=_CLASSIFIER_CASES + (_c(B=2, T=3, V=1000, Vp=1024),),
        values=_CLASSIFIER_VALUES,
        no_backward="fused_classifier is forward and backward in one: check it with "
        "check.forward('fused_classifier', fn) (or check.performance)",
        notes="llm.c's fused_classifier, chapter 07's optimisation exercise: losses[b,t] = -log p_y with "
        "p = softmax(logits[b,t,:V]) and y = targets[b,t], and the logits OVERWRITTEN by the gradient "
        "(p_c - [c == y]) * dlosses[b,t] for c < V, 0 for V <= c < Vp. The same as softmax_forward + "
        "crossentropy_forward + crossentropy_softmax_backward into a zeroed dlogits, with no probs buffer. "
        "Its check.performance targets live in check/performance.py.",
    )
)

_add(
    OpSpec(
        "adamw",
        # a few multiply-adds, sqrtf, powf for the bias corrections. The reference uses the float32 values of the
        # hyperparameters that the kernel sees (1 - 0.999f differs from 1 - 0.999 by 1.3e-5, more than this rtol)
        _fn(
            "adamw_update",
            Arg("params", INOUT, ("num_params",)),
            _in("grads", "num_params"),
            Arg("m", INOUT, ("num_params",), note="first moment; realistic non-zero values in checks"),
            Arg("v", INOUT, ("num_params",), note="second moment, >= 0"),
            *_sizes("num_params"),
            Arg("lr", HYPER, (), "float", example=1e-3),
            Arg("beta1", HYPER, (), "float", example=0.9),
            Arg("beta2", HYPER, (), "float", example=0.999),
            Arg("eps", HYPER, (), "float", example=1e-8),
            Arg("weight_decay", HYPER, (), "float", example=0.1),
            Arg("t", STEP, (), "int", example=1, note="step number, starts at 1"),
            tol=(1e-5, 1e-6),
            flat=True,
        ),
        None,
        dims=("num_params",),
        example_sizes={"num_params": 1000},
        # realistic hyperparameters, t >= 1 at several values, weight decay never zero
        cases=(
            _c(num_params=1000, hyper=dict(t=1)),
            _c(num_params=1, hyper=dict(t=2, lr=3e-4)),
            _c(num_params=4133, hyper=dict(t=10, lr=1e-2, beta2=0.95, weight_decay=0.01)),
            _c(num_params=301, hyper=dict(t=1000, lr=6e-4)),
        ),
        values=_frozen(params=draw.adamw_params, grads=draw.adamw_grads, m=draw.adamw_m, v=draw.adamw_v),
        no_backward="adamw has only an update (adamw_update), no backward: check it with "
        "check.forward('adamw', adamw_update)",
        notes="m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; mhat = m/(1-b1^t); vhat = v/(1-b2^t); "
        "param -= lr (mhat/(sqrt(vhat)+eps) + weight_decay param) with the param before this step "
        "(decoupled decay, as llm.c; algebraically the same as torch.optim.AdamW).",
    )
)


# ----------------------------------------------------------------------------------------------- extensions
# The package's functions beyond the contract's table (the fast engine's fused ops, flash attention, its
# linear layers, the tiled matmul kernels): their wrappers validate their arguments from these signatures
# (ops/_validate.arguments); no check runs them (tests/test_fast_*.py compare them with the SPEC ops).
EXTENSIONS: dict[str, tuple[FnSpec, OpSpec]] = {}


def _extend(fn: FnSpec, like: str | None = None) -> None:
    """Register ``fn``; its constraints and their messages are those of the op ``like`` (if any)."""
    owner = OPS[like] if like else OpSpec(fn.name, fn, None, dims=())
    EXTENSIONS[fn.name] = (fn, owner)


_mm = OPS["matmul"]
_extend(FnSpec("matmul_forward_kernel", _mm.forward.args), "matmul")
_extend(FnSpec("matmul_backward_kernel", _mm.backward.args), "matmul")
_extend(
    _fn(
        "flash_attention_forward",
        _out("out", "B", "T", "C"),
        _out("lse", "B", "NH", "T"),
        _in("inp", "B", "T", "3*C"),
        _sizes("B", "T", "C", "NH"),
    ),
    "attention",
)
_extend(
    _fn(
        "flash_attention_backward",
        _acc("dinp", "B", "T", "3*C"),
        _in("dout", "B", "T", "C"),
        _in("inp", "B", "T", "3*C"),
        _in("out", "B", "T", "C"),
        _in("lse", "B", "NH", "T"),
        _sizes("B", "T", "C", "NH"),
        _out("delta", "B", "NH", "T", optional=True, note="scratch; allocated when None"),
    ),
    "attention",
)
_extend(
    _fn(
        "residual_layernorm_forward",
        _out("res_out", "B", "T", "C", optional=True),
        _out("out", "B", "T", "C"),
        _out("mean", "B", "T"),
        _out("rstd", "B", "T"),
        _in("inp1", "B", "T", "C"),
        _in("inp2", "B", "T", "C", optional=True),
        _in("bias2", "C", optional=True),
        _in("weight", "C"),
        _in("bias", "C"),
        _sizes("B", "T", "C"),
    )
)
_extend(
    _fn(
        "bias_gelu_forward",
        Arg("pre", INOUT, ("B", "T", "OC")),
        _out("out", "B", "T", "OC"),
        _in("bias", "OC"),
        _sizes("B", "T", "OC"),
    )
)
_extend(_fn("bias_backward", _acc("dbias", "OC"), _in("dout", "B", "T", "OC"), _sizes("B", "T", "OC")))
_extend(_fn("gelu_backward_inplace", Arg("d", INOUT, ("N",)), _in("pre", "N"), _sizes("N"), flat=True))
_extend(
    _fn(
        "adamw_update_device",
        Arg("params", INOUT, ("num_params",)),
        _in("grads", "num_params"),
        Arg("m", INOUT, ("num_params",)),
        Arg("v", INOUT, ("num_params",)),
        _in("hyper", "7", note="lr, beta1, beta2, 1-beta1^t, 1-beta2^t, eps, weight_decay"),
        _sizes("num_params"),
        flat=True,
    )
)
_extend(
    _fn(
        "linear_forward",
        _out("out", "M", "N"),
        _in("inp", "M", "K"),
        _in("weight", "N", "K"),
        _sizes("M", "K", "N"),
        _in("bias", "N", optional=True),
        flat=True,
    )
)
_extend(
    _fn(
        "linear_backward_input",
        _out("dinp", "M", "K"),
        _in("dout", "M", "N"),
        _in("weight", "N", "K"),
        _sizes("M", "K", "N"),
        flat=True,
    )
)
_extend(
    _fn(
        "linear_backward_weight",
        _acc("dweight", "N", "K"),
        _in("dout", "M", "N"),
        _in("inp", "M", "K"),
        _sizes("M", "K", "N"),
        flat=True,
    )
)


def signature(name: str) -> tuple[FnSpec, OpSpec]:
    """The FnSpec of any function the package validates (the contract's or an extension) and the OpSpec
    whose constraints apply to it."""
    if name in EXTENSIONS:
        return EXTENSIONS[name]
    spec, fn = function(name)
    return fn, spec


def function(name: str) -> tuple[OpSpec, FnSpec]:
    """Look up a function by its name ('layernorm_backward') -> (its op, its FnSpec)."""
    for spec in OPS.values():
        for fn in spec.functions:
            if fn.name == name:
                return spec, fn
    raise KeyError(f"no op function named '{name}'")


FUNCTIONS: tuple[str, ...] = tuple(fn.name for spec in OPS.values() for fn in spec.functions)
# ops that are a chapter's exercise only, not a step of GPT-2 (no ops namespace of the model needs them)
CHAPTER_ONLY: tuple[str, ...] = ("vector_add", "transpose")
# ops that GPT-2 uses when an ops namespace has them, and does without otherwise (the model falls back on the
# unfused functions): no namespace must provide them
OPTIONAL: tuple[str, ...] = ("fused_classifier",)

__all__ = [
    "OPS",
    "FUNCTIONS",
    "CHAPTER_ONLY",
    "OPTIONAL",
    "EXTENSIONS",
    "OpSpec",
    "FnSpec",
    "Arg",
    "CaseSpec",
    "KINDS",
    "dim",
    "shape",
    "function",
    "signature",
    "ROLES",
    "OUTPUT",
    "INPUT",
    "ACCUMULATE",
    "INOUT",
    "SIZE",
    "HYPER",
    "STEP",
    "CAUSAL",
    "COLS_LT_V",
]
