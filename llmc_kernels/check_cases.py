"""Random test cases for :mod:`llmc_kernels.check`: inputs, poisoned outputs, pre-filled accumulators and
the expected results (float64 reference, or finite differences for the "fd" case of a backward).

A case is described by a :class:`CaseSpec` (sizes, a kind, AdamW's hyperparameters) and built by
:func:`build` into a :class:`Case`: one :class:`Tensor` or scalar per argument of the function, in the
SPEC order (taken from :mod:`llmc_kernels.opspec`). Kinds:

``random``     ordinary random inputs
``large``      inputs of large magnitude (softmax logits in the hundreds, attention scores of order 100,
               layernorm rows of scale 1e3, GELU inputs up to ~100, ...)
``nearconst``  layernorm rows whose variance is far below eps (one exactly constant)
``nobias``     matmul with ``bias=None`` / ``dbias=None``
``fd``         a tiny case whose expected gradients come from central finite differences of the float64
               reference forward (see :mod:`llmc_kernels.check_fd`)

Outputs are poisoned with a NaN of a recognisable bit pattern (:data:`POISON`), so an element that was never
written can be told from a NaN the kernel computed. Accumulators are pre-filled with non-zero values of the
size of the gradient (the causal part of attention's ``dpreatt``/``datt`` with zeros: see opspec's note),
so "overwrote instead of +=" and "added twice" both show.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from . import opspec
from .check_values import Pool, rms
from .opspec import ACCUMULATE, CAUSAL, COLS_LT_V, HYPER, INOUT, INPUT, OUTPUT, SIZE, STEP

POISON_BITS = 0x7FC5A5A5                     # a quiet NaN with a payload: "this element was never written"
POISON = np.uint32(POISON_BITS).view(np.float32)
POISON_INT = np.int32(-1234567891)           # the same for int32 outputs (none in the SPEC today)
KINDS = ("random", "large", "nearconst", "nobias", "fd")
_KIND_LABEL = {"random": "", "large": "inputs of large magnitude", "nearconst": "near-constant rows",
               "nobias": "bias=None", "fd": "finite differences"}

# AdamW's hyperparameters per case: realistic, t >= 1 at several values, weight decay never zero
ADAMW_DEFAULT = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.1, "t": 1}


@dataclass(frozen=True)
class CaseSpec:
    sizes: tuple                      # ((name, int), ...) in the op's dims order
    kind: str = "random"
    hyper: tuple = ()                 # ((name, value), ...) overriding ADAMW_DEFAULT

    @staticmethod
    def of(sizes: dict, kind: str = "random", **hyper) -> "CaseSpec":
        return CaseSpec(tuple(sizes.items()), kind, tuple(sorted(hyper.items())))

    @property
    def size_dict(self) -> dict:
        return dict(self.sizes)

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.sizes]
        parts += [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.hyper]
        text = ", ".join(parts)
        return f"{text} ({_KIND_LABEL[self.kind]})" if _KIND_LABEL[self.kind] else text


def _c(kind="random", **kw):
    hyper = {k: kw.pop(k) for k in list(kw) if k in ADAMW_DEFAULT}
    return CaseSpec.of(kw, kind, **hyper)


# Default cases per op, in the order they run: an ordinary case with awkward sizes first (its failures are the
# most telling), then a tiny one (1 row, 1 channel), then special inputs and a bigger one. No size is a multiple
# of 32 unless it is 1 away from one; all stay small enough for the CPU backend (a few seconds per op).
DEFAULT_CASES: dict[str, list[CaseSpec]] = {
    "vector_add": [_c(N=1000), _c(N=1), _c(N=4133), _c("large", N=301)],
    "encoder": [_c(B=2, T=37, C=67, V=13, maxT=40), _c(B=1, T=1, C=1, V=1, maxT=1),
                _c(B=3, T=20, C=130, V=50, maxT=64), _c("large", B=2, T=7, C=33, V=5, maxT=9)],
    "layernorm": [_c(B=2, T=37, C=67), _c(B=1, T=1, C=1), _c("nearconst", B=2, T=9, C=130),
                  _c("large", B=2, T=5, C=77), _c(B=3, T=17, C=200)],
    "matmul": [_c(B=2, T=37, C=67, OC=45), _c(B=1, T=1, C=1, OC=1), _c("nobias", B=3, T=13, C=96, OC=130),
               _c("large", B=2, T=5, C=33, OC=17)],
    "attention": [_c(B=2, T=37, C=48, NH=4), _c(B=1, T=1, C=1, NH=1), _c(B=1, T=5, C=6, NH=3),
                  _c("large", B=1, T=33, C=32, NH=2), _c(B=2, T=19, C=24, NH=3)],
    "gelu": [_c(N=1000), _c(N=1), _c(N=4133), _c("large", N=301)],
    "residual": [_c(N=1000), _c(N=1), _c(N=4133), _c("large", N=301)],
    "softmax": [_c(B=2, T=5, V=50, Vp=64), _c(B=1, T=1, V=1, Vp=1), _c(B=1, T=2, V=7, Vp=8),
                _c("large", B=2, T=4, V=257, Vp=300), _c(B=3, T=7, V=1000, Vp=1024)],
    "crossentropy": [_c(B=2, T=37, V=100, Vp=128), _c(B=1, T=1, V=1, Vp=1), _c(B=3, T=5, V=50, Vp=61),
                     _c("large", B=2, T=9, V=257, Vp=300)],
    "adamw": [_c(num_params=1000, t=1), _c(num_params=1, t=2, lr=3e-4),
              _c(num_params=4133, t=10, lr=1e-2, beta2=0.95, weight_decay=0.01),
              _c(num_params=301, t=1000, lr=6e-4)],
}

# The tiny case of each backward whose expected gradients are finite differences.
FD_CASES: dict[str, CaseSpec] = {
    "encoder": _c("fd", B=2, T=3, C=4, V=3, maxT=5),
    "layernorm": _c("fd", B=1, T=2, C=5),
    "matmul": _c("fd", B=1, T=2, C=3, OC=4),
    "attention": _c("fd", B=1, T=3, C=4, NH=2),
    "gelu": _c("fd", N=7),
    "residual": _c("fd", N=5),
    "crossentropy": _c("fd", B=1, T=2, V=5, Vp=8),
}


@dataclass
class Tensor:
    """One array argument of a case. ``initial`` is what the function receives (float32/int32; poisoned for
    outputs, pre-filled for accumulators); ``expected`` (float64) is what it must hold afterwards, compared
    where ``compare`` is True (None: everywhere). ``outside`` marks the entries outside the op's region (the
    masked t2 > t part, the padded columns v >= V) that must be 0 or keep their pre-filled value."""
    arg: opspec.Arg
    initial: np.ndarray | None
    expected: np.ndarray | None = None
    compare: np.ndarray | None = None
    outside: np.ndarray | None = None
    dims: tuple = ()                     # coordinate names, e.g. ("b", "t", "c")

    @property
    def name(self) -> str:
        return self.arg.name

    @property
    def role(self) -> str:
        return self.arg.role


@dataclass
class Case:
    fname: str
    spec: CaseSpec
    values: list                         # per argument: a Tensor (arrays, possibly with initial None) or a scalar
    sizes: dict
    expected_from: str = "reference"     # or "finite differences"
    magnitude: float = 0.0               # largest |input| (for the "large inputs" hint)

    @property
    def label(self) -> str:
        return self.spec.label()

    @property
    def tensors(self) -> list[Tensor]:
        return [v for v in self.values if isinstance(v, Tensor)]

    def checked(self) -> list[Tensor]:
        """The tensors whose contents are compared afterwards (outputs, accumulators, in-out), present ones."""
        return [t for t in self.tensors if t.role in (OUTPUT, ACCUMULATE, INOUT) and t.initial is not None]


# ------------------------------------------------------------------------------------------ coordinates
_DIM_NAMES = {"B": "b", "T": "t", "C": "c", "3*C": "c", "NH": "h", "OC": "oc", "V": "v", "Vp": "v",
              "maxT": "t", "N": "i", "num_params": "i"}


def coord_names(shape: tuple) -> tuple:
    """("B","NH","T","T") -> ("b","h","t","t2"): the names used in "first bad index" messages."""
    names = []
    for d in shape:
        n = _DIM_NAMES.get(d, d.lower())
        while n in names:
            n = n + "2" if not n[-1].isdigit() else n[:-1] + str(int(n[-1]) + 1)
        names.append(n)
    return tuple(names)


def causal(T: int) -> np.ndarray:
    return np.tri(T, T, dtype=bool)


def region_mask(region: str | None, shape: tuple, sizes: dict) -> np.ndarray | None:
    """True inside the op's region (causal part, real columns), None for the whole array."""
    if region == CAUSAL:
        return np.broadcast_to(causal(shape[-1]), shape)
    if region == COLS_LT_V:
        return np.broadcast_to(np.arange(shape[-1]) < sizes["V"], shape)
    return None


# ------------------------------------------------------------------------------------------ building
def complete_sizes(op: str, sizes: dict) -> dict:
    """A learner's ``sizes`` (possibly partial) -> every dimension of the op, validated."""
    spec = opspec.OPS[op]
    unknown = sorted(set(sizes) - set(spec.dims))
    if unknown:
        raise ValueError(f"sizes for {op} take {', '.join(spec.dims)}; unknown: {', '.join(unknown)}")
    full = dict(spec.example_sizes)
    full.update({k: v for k, v in sizes.items()})
    if "maxT" in spec.dims and "maxT" not in sizes and "T" in sizes:
        full["maxT"] = max(full["maxT"], full["T"])
    if "Vp" in spec.dims and "Vp" not in sizes and "V" in sizes:
        full["Vp"] = max(full["Vp"], full["V"])
    for k, v in full.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"sizes: {k} must be a positive int, got {v!r}")
        full[k] = int(v)
    env = dict(full)
    for rule in spec.constraints:
        if not eval(rule, {}, env):    # rules are the registry's own strings, e.g. "C % NH == 0"
            raise ValueError(f"sizes for {op}: {rule} must hold (got {full})")
    return {d: full[d] for d in spec.dims}


def seed_for(fname: str, spec: CaseSpec, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(fname.encode()),
                                  zlib.crc32(repr(spec).encode())])


def build(fname: str, spec: CaseSpec, seed: int) -> Case:
    """Draw the inputs of one case of ``fname`` and compute what every output must hold."""
    from . import reference
    opsp, fn = opspec.function(fname)
    sizes = complete_sizes(opsp.op, spec.size_dict)
    pool = Pool(opsp.op, sizes, spec.kind, seed_for(fname, spec, seed))
    hyper = {**ADAMW_DEFAULT, **dict(spec.hyper)}
    values = []
    for a in fn.args:
        if a.role == SIZE:
            values.append(sizes[a.name])
        elif a.role == HYPER:      # the float32 value the kernel will use, so the reference uses it too
            values.append(float(np.float32(hyper[a.name])))
        elif a.role == STEP:
            values.append(int(hyper[a.name]))
        else:
            t = Tensor(a, None, dims=coord_names(a.shape))
            if not (a.optional and spec.kind == "nobias"):
                shape = opspec.shape(a, sizes)
                if a.role in (INPUT, INOUT):
                    t.initial = pool.get(a)
                elif a.role == OUTPUT:
                    t.initial = np.full(shape, POISON if a.dtype == "float32" else POISON_INT, dtype=a.dtype)
                else:
                    t.initial = np.zeros(shape, dtype=np.float32)     # pre-filled below
            values.append(t)
    case = Case(fname, spec, values, sizes)
    tensors = case.tensors
    case.magnitude = max([float(np.max(np.abs(t.initial))) for t in tensors
                          if t.role in (INPUT, INOUT) and t.initial is not None and t.initial.dtype == np.float32]
                         or [0.0])

    def run_reference():
        args = []
        for v in values:
            if isinstance(v, Tensor):
                if v.initial is None:
                    args.append(None)
                elif v.role == OUTPUT:
                    args.append(np.zeros(v.initial.shape))
                else:
                    args.append(v.initial.astype(np.float64) if v.initial.dtype == np.float32 else v.initial)
            else:
                args.append(v)
        getattr(reference, fname)(*args)
        return {v.name: a for v, a in zip(values, args) if isinstance(v, Tensor)}

    accs = [t for t in tensors if t.role == ACCUMULATE and t.initial is not None]
    if accs:        # size the pre-fill like the gradient itself: run once with zeros first
        delta = run_reference()
        for t in accs:
            inside = region_mask(t.arg.region, t.initial.shape, sizes)
            scale = rms(delta[t.name], inside) or 1.0
            fill = pool.rng.standard_normal(t.initial.shape) * scale
            if t.arg.region == CAUSAL:
                fill[inside] = 0.0         # opspec: the causal part starts at zero (old contents would flow on)
            t.initial = fill.astype(np.float32)
    results = run_reference()
    for t in case.checked():
        inside = region_mask(t.arg.region, t.initial.shape, sizes)
        t.expected = results[t.name]
        if t.role == OUTPUT and inside is not None:
            t.compare = np.array(inside)           # preatt: only t2 <= t is defined
        elif inside is not None:
            t.outside = ~inside                    # must keep its pre-filled value there
            t.expected = np.where(inside, t.expected, t.initial.astype(np.float64))
        _special_outside(fname, t, sizes)
    if spec.kind == "fd":
        from .check_fd import fd_expected
        fd_expected(case, pool)
        case.expected_from = "finite differences"
    return case


def _special_outside(fname: str, t: Tensor, sizes: dict) -> None:
    """Outputs that must be exactly 0 outside the region: att (t2 > t) and probs (columns >= V)."""
    if fname == "attention_forward" and t.name == "att":
        t.outside = ~np.broadcast_to(causal(sizes["T"]), t.initial.shape)
        t.expected = np.where(t.outside, 0.0, t.expected)
    elif fname == "softmax_forward" and t.name == "probs":
        t.outside = np.broadcast_to(np.arange(sizes["Vp"]) >= sizes["V"], t.initial.shape)
        t.expected = np.where(t.outside, 0.0, t.expected)


def default_specs(op: str, direction: str) -> list[CaseSpec]:
    specs = list(DEFAULT_CASES[op])
    if direction == "backward" and op in FD_CASES:
        specs.append(FD_CASES[op])
    return specs
