"""Random test cases for :mod:`llmc_kernels.check`: inputs, poisoned outputs, pre-filled accumulators and
the expected results (float64 reference, or finite differences for the "fd" case of a backward).

A case is described by a :class:`CaseSpec` (sizes, a kind, AdamW's hyperparameters; each op's cases are in
its :mod:`llmc_kernels.opspec` row) and built by :func:`build` into a :class:`Case`: one :class:`Tensor` or
scalar per argument of the function, in the SPEC order. Kinds:

``random``     ordinary random inputs
``large``      inputs of large magnitude (softmax logits in the hundreds, attention scores of order 100,
               layernorm rows of scale 1e3, GELU inputs up to ~100, ...)
``nearconst``  layernorm rows whose variance is far below eps (one exactly constant)
``nobias``     matmul with ``bias=None`` / ``dbias=None``
``fd``         a tiny case whose expected gradients come from central finite differences of the float64
               reference forward (see :mod:`llmc_kernels.check.fd`)

Outputs are poisoned with a NaN of a recognisable bit pattern (:data:`POISON`), so an element that was never
written can be told from a NaN the kernel computed. Accumulators are pre-filled with non-zero values of the
size of the gradient (the causal part of attention's ``dpreatt``/``datt`` with zeros: see opspec's note),
so "overwrote instead of +=" and "added twice" both show.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from .. import opspec
from ..opspec import ACCUMULATE, CAUSAL, COLS_LT_V, HYPER, INOUT, INPUT, KINDS, OUTPUT, SIZE, STEP, CaseSpec
from .values import Pool, rms

__all__ = ["build", "judged_only", "default_specs", "complete_sizes", "CaseSpec", "Case", "Tensor", "KINDS", "POISON"]

POISON_BITS = 0x7FC5A5A5  # a quiet NaN with a payload: "this element was never written"
POISON = np.uint32(POISON_BITS).view(np.float32)
POISON_INT = np.int32(-1234567891)  # the same for int32 outputs (none in the SPEC today)

# Each op's cases live in its opspec row (OpSpec.cases, OpSpec.fd_case); these are read-only views by op.
DEFAULT_CASES: dict[str, tuple[CaseSpec, ...]] = {op: spec.cases for op, spec in opspec.OPS.items()}
FD_CASES: dict[str, CaseSpec] = {op: spec.fd_case for op, spec in opspec.OPS.items() if spec.fd_case is not None}


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
    dims: tuple = ()  # coordinate names, e.g. ("b", "t", "c")
    scale: float | None = None  # another array's rms that the absolute tolerance also scales with (Arg.tol_scale)

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
    values: list  # per argument: a Tensor (arrays, possibly with initial None) or a scalar
    sizes: dict
    expected_from: str = "reference"  # or "finite differences"
    magnitude: float = 0.0  # largest |input| (for the "large inputs" hint)
    judged: tuple | None = None  # the outputs compared (None: all); see judged_only

    @property
    def label(self) -> str:
        return self.spec.label()

    @property
    def tensors(self) -> list[Tensor]:
        return [v for v in self.values if isinstance(v, Tensor)]

    def checked(self) -> list[Tensor]:
        """The tensors whose contents are compared afterwards (outputs, accumulators, in-out), present ones."""
        return [
            t
            for t in self.tensors
            if t.role in (OUTPUT, ACCUMULATE, INOUT)
            and t.initial is not None
            and (self.judged is None or t.name in self.judged)
        ]


def judged_only(case: Case, outputs) -> Case:
    """``case`` with only ``outputs`` compared (None: ``case`` itself): an optimisation exercise that implements
    part of an op (chapter 04's flash attention writes ``out``, never ``preatt``/``att``; check.performance's
    ``OpTargets.outputs``). The other outputs are not compared, whatever they hold."""
    if outputs is None:
        return case
    from dataclasses import replace

    return replace(case, judged=tuple(outputs))


# ------------------------------------------------------------------------------------------ coordinates
_DIM_NAMES = {
    "B": "b",
    "T": "t",
    "C": "c",
    "3*C": "c",
    "NH": "h",
    "OC": "oc",
    "V": "v",
    "Vp": "v",
    "maxT": "t",
    "N": "i",
    "num_params": "i",
}


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
    for rule in spec.constraints:  # "maxT >= T": a T given without maxT raises maxT's example to it
        bound = re.fullmatch(r"(\w+) >= (\w+)", rule)
        if bound and bound[1] not in sizes and bound[2] in sizes:
            full[bound[1]] = max(full[bound[1]], full[bound[2]])
    for k, v in full.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"sizes: {k} must be a positive int, got {v!r}")
        full[k] = int(v)
    env = dict(full)
    for rule in spec.constraints:
        if not eval(rule, {}, env):  # rules are the registry's own strings, e.g. "C % NH == 0"
            raise ValueError(f"sizes for {op}: {rule} must hold (got {full})")
    return {d: full[d] for d in spec.dims}


def seed_for(fname: str, spec: CaseSpec, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(fname.encode()), zlib.crc32(repr(spec).encode())])


def build(fname: str, spec: CaseSpec, seed: int) -> Case:
    """Draw the inputs of one case of ``fname`` and compute what every output must hold."""
    from .. import reference

    opsp, fn = opspec.function(fname)
    sizes = complete_sizes(opsp.op, spec.size_dict)
    pool = Pool(opsp.op, sizes, spec.kind, seed_for(fname, spec, seed))
    hyper = {a.name: a.example for a in fn.args if a.role in (HYPER, STEP)}
    hyper.update(spec.hyper)
    values = []
    for a in fn.args:
        if a.role == SIZE:
            values.append(sizes[a.name])
        elif a.role == HYPER:  # the float32 value the kernel will use, so the reference uses it too
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
                    t.initial = np.zeros(shape, dtype=np.float32)  # pre-filled below
            values.append(t)
    case = Case(fname, spec, values, sizes)
    tensors = case.tensors
    case.magnitude = max(
        [
            float(np.max(np.abs(t.initial)))
            for t in tensors
            if t.role in (INPUT, INOUT) and t.initial is not None and t.initial.dtype == np.float32
        ]
        or [0.0]
    )

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
    if accs:  # size the pre-fill like the gradient itself: run once with zeros first
        delta = run_reference()
        for t in accs:
            inside = region_mask(t.arg.region, t.initial.shape, sizes)
            scale = rms(delta[t.name], inside) or 1.0
            fill = pool.rng.standard_normal(t.initial.shape) * scale
            if t.arg.region == CAUSAL:
                fill[inside] = 0.0  # opspec: the causal part starts at zero (old contents would flow on)
            t.initial = fill.astype(np.float32)
    results = run_reference()
    for t in case.checked():
        inside = region_mask(t.arg.region, t.initial.shape, sizes)
        t.expected = results[t.name]
        if t.role == OUTPUT and inside is not None:
            t.compare = np.array(inside)  # preatt: only t2 <= t is defined
        elif inside is not None:
            t.outside = ~inside  # must keep its pre-filled value there
            t.expected = np.where(inside, t.expected, t.initial.astype(np.float64))
        if t.arg.zero_outside:  # att where t2 > t, probs in columns >= V: exactly 0
            t.outside = ~region_mask(t.arg.zero_outside, t.initial.shape, sizes)
            t.expected = np.where(t.outside, 0.0, t.expected)
        if t.arg.tol_scale:
            other = next(v for v in tensors if v.name == t.arg.tol_scale)
            t.scale = rms(results[other.name], region_mask(other.arg.region, other.initial.shape, sizes))
    if spec.kind == "fd":
        from .fd import fd_expected

        fd_expected(case, pool)
        case.expected_from = "finite differences"
    return case


def default_specs(op: str, direction: str) -> list[CaseSpec]:
    """The cases ``check.forward``/``check.backward`` run for ``op``: its row's cases (+ its fd case)."""
    spec = opspec.OPS[op]
    specs = list(spec.cases)
    if direction == "backward" and spec.fd_case is not None:
        specs.append(spec.fd_case)
    return specs
