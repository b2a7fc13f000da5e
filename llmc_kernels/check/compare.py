"""Compare one result tensor with what it should hold, and say what went wrong in a learner's words.

An element is right when ``|got - expected| <= atol * scale + rtol * |expected|``, where ``scale`` is the RMS
of the expected tensor (over the compared elements): ``atol`` is relative to the tensor's typical size, so
one table serves inputs of any magnitude. :func:`compare` returns a :class:`TensorResult` with the errors,
the first bad element as named coordinates (``b=1, t=3, c=17``), how many were never written (still the
poison NaN) and hints for patterns we recognise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..opspec import ACCUMULATE, INOUT, OUTPUT
from .cases import POISON_BITS, Tensor
from .values import rms


@dataclass
class TensorResult:
    name: str
    ok: bool
    n_compared: int
    n_bad: int = 0
    n_unwritten: int = 0
    n_nonfinite: int = 0  # NaN/inf the kernel computed (not the poison)
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst: float = 0.0  # max over elements of |error| / its tolerance (< 1 passes)
    atol: float = 0.0  # absolute tolerance actually used (atol * scale)
    rtol: float = 0.0
    first_bad: str = ""  # "b=1, t=3, c=17"
    first_got: float = 0.0
    first_expected: float = 0.0
    hints: list = field(default_factory=list)

    def summary(self) -> str:
        """Two or three lines about a wrong tensor."""
        among = " among the finite values" if self.n_unwritten or self.n_nonfinite else ""
        errors = (
            f"max abs error {_e(self.max_abs)}, max rel error {_e(self.max_rel)}{among}; "
            if np.isfinite(self.max_abs)
            else "no finite values; "
        )
        lines = [
            f"{self.name}: {self.n_bad:,} of {self.n_compared:,} elements off "
            f"({errors}tolerance {self.atol:.1e} + {self.rtol:.0e}*|expected|)"
        ]
        extra = []
        if self.n_unwritten:
            extra.append(f"{self.n_unwritten:,} never written (still NaN)")
        if self.n_nonfinite:
            extra.append(f"{self.n_nonfinite:,} NaN/inf computed")
        if extra:
            lines.append("    " + ", ".join(extra))
        lines.append(f"    first bad at {self.first_bad}: got {_v(self.first_got)}, expected {_v(self.first_expected)}")
        return "\n".join(lines)

    def row(self) -> str:
        """One line for the PASS report."""
        return (
            f"{self.name:<10} max abs err {_e(self.max_abs):>8}  max rel err {_e(self.max_rel):>8}  "
            f"tolerance {self.atol:.1e} + {self.rtol:.0e}*|expected|  (worst element at {self.worst:.2f} "
            "of its tolerance)"
        )


def _e(x: float) -> str:
    return f"{x:.1e}" if np.isfinite(x) else str(x)


def _v(x: float) -> str:
    if isinstance(x, float) and np.isnan(x):
        return "nan"
    return f"{x:.6g}"


def is_poison(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.float32:
        return a.view(np.uint32) == np.uint32(POISON_BITS)
    return np.zeros(a.shape, dtype=bool)


def coords(dims: tuple, shape: tuple, flat: int, annotate=None) -> str:
    idx = np.unravel_index(flat, shape)
    text = ", ".join(f"{n}={int(i)}" for n, i in zip(dims, idx))
    if annotate is not None:
        more = annotate(tuple(int(i) for i in idx))
        if more:
            text += f" ({more})"
    return text


def compare(t: Tensor, got: np.ndarray, tol: tuple, annotate=None) -> TensorResult:
    """Compare ``got`` (what the function left in tensor ``t``) with ``t.expected``."""
    rtol, atol_rel = tol
    exp = t.expected
    init = t.initial.astype(np.float64)
    mask = np.ones(exp.shape, dtype=bool) if t.compare is None else np.asarray(t.compare)
    g = got.astype(np.float64)
    scale = max(rms(exp, mask), t.scale or 0.0)
    if t.role in (ACCUMULATE, INOUT):  # old contents + new: float32 rounds the sum at the larger one's size
        scale = max(scale, rms(init, mask))
    scale = scale or 1.0
    atol = atol_rel * scale
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(g - exp)
        diff = np.where(np.isfinite(g), diff, np.inf)
        allowed = atol + rtol * np.abs(exp)
        bad = ~(diff <= allowed) & mask
    n_bad = int(bad.sum())
    res = TensorResult(t.name, n_bad == 0, int(mask.sum()), n_bad, atol=atol, rtol=rtol)
    with np.errstate(invalid="ignore"):
        ratio = diff[mask] / allowed[mask]
    res.worst = float(np.max(ratio)) if ratio.size else 0.0
    finite = mask & np.isfinite(g)  # NaN/inf are counted separately, not as "the max error"
    res.max_abs = float(diff[finite].max()) if finite.any() else float("nan")
    meaningful = finite & (np.abs(exp) > atol)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = diff[meaningful] / np.abs(exp[meaningful])
    res.max_rel = float(rel.max()) if rel.size else (0.0 if finite.any() else float("nan"))
    if not n_bad:
        return res
    unwritten = is_poison(got) & mask
    res.n_unwritten = int(unwritten.sum())
    res.n_nonfinite = int((~np.isfinite(g) & mask & ~unwritten & np.isfinite(exp)).sum())
    first = int(np.flatnonzero(bad.reshape(-1))[0])
    res.first_bad = coords(t.dims, exp.shape, first, annotate)
    res.first_got = float(g.reshape(-1)[first])
    res.first_expected = float(exp.reshape(-1)[first])
    res.hints = _hints(t, g, exp, init, mask, bad, unwritten, diff, allowed, annotate)
    return res


# ------------------------------------------------------------------------------------------ hints
def _fits(x, r, allowed, where, share=0.98) -> bool:
    """Does x match r within ``allowed`` on (nearly) all elements of ``where``?"""
    n = int(where.sum())
    if n == 0:
        return False
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.abs(x - r) <= allowed
    return int((ok & where).sum()) >= share * n


def _hints(t: Tensor, g, exp, init, mask, bad, unwritten, diff, allowed, annotate) -> list[str]:
    hints = []
    n_bad = int(bad.sum())
    # 1. outside the region (masked t2 > t, padded columns): a dedicated message
    if t.outside is not None and np.all(~bad | t.outside):
        if t.role == OUTPUT and t.name == "att":
            hints.append(
                "att must be exactly 0 where t2 > t: the causal mask (a position attends only to "
                "itself and earlier ones)"
            )
        elif t.role == OUTPUT:
            hints.append(f"{t.name} must be 0 in the padded columns v >= V (they are no real tokens)")
        elif t.dims[-1] == "v":
            hints.append(
                f"{t.name} changed in the padded columns v >= V: leave them as they are "
                "(loop over the V real columns only)"
            )
        else:
            hints.append(
                f"{t.name} changed where t2 > t: the masked entries must keep their values "
                "(only the causal part t2 <= t is accumulated)"
            )
        return hints
    # 2. a prefix right, everything after it wrong: grid too small / tail not handled
    flat_bad = bad.reshape(-1)[mask.reshape(-1)]
    first = int(np.argmax(flat_bad))
    row = exp.shape[-1] if exp.ndim > 1 else 1
    whole_rows = row > 1 and first % row == 0 and (first // row) % 32 == 0
    if first > 0 and (first % 32 == 0 or whole_rows) and flat_bad[first:].mean() >= 0.98:
        # a prefix of a whole number of blocks (of threads, or of rows) is right, everything after it wrong
        total = flat_bad.size
        unit = f"{first // row} rows" if whole_rows else f"{first} elements"
        untouched = int((unwritten | (g == init)).reshape(-1)[bad.reshape(-1)].sum()) == n_bad
        what = (
            "were never written"
            if int(unwritten.sum()) == n_bad
            else "were left as they were"
            if untouched
            else "are wrong"
        )
        where = coords(t.dims, exp.shape, int(np.flatnonzero(bad.reshape(-1))[0]), annotate)
        advice = (
            (
                "the launch covers too few threads. Use enough blocks for every element, e.g. "
                "ceil_div(N, block_size), and guard the last, partial block with a bounds check"
            )
            if untouched
            else ("an index that is right only in the first block? (a block offset or a row stride)")
        )
        hints.append(
            f"only the first {unit} (a whole number of blocks) are right; all {total - first:,} elements "
            f"from {where} on {what}: {advice}"
        )
        return hints
    # 3. never written: all of it, or scattered elements
    if int(unwritten.sum()) == int(mask.sum()):
        hints.append(
            f"nothing was written into {t.name}: does your function launch the kernel, passing {t.name} "
            "(the array it was given) as the output?"
        )
    elif unwritten.any() and int(unwritten.sum()) == n_bad:
        hints.append(
            f"{int(unwritten.sum()):,} elements of {t.name} were never written (still NaN): "
            "is every element assigned by some thread?"
        )
    # 4. accumulators: +=, added twice, nothing added
    if t.role in (ACCUMULATE, INOUT):
        changed = bad & (np.abs(exp - init) > allowed)
        if _fits(g, init, allowed, changed):
            hints.append(
                f"{t.name} still holds its previous values where it should have changed: "
                + ("nothing was added to it" if t.role == ACCUMULATE else "it was not updated")
            )
            return hints
        if t.role == ACCUMULATE:
            if _fits(g, exp - init, allowed, bad):
                hints.append(
                    f"{t.name} holds only the new gradient: it was overwritten (=) instead of "
                    "accumulated (+=). Backward outputs add into their buffer, which may already "
                    "hold gradient from elsewhere"
                )
                return hints
            if _fits(g - init, 2 * (exp - init), allowed, bad):
                hints.append(f"the gradient added to {t.name} is exactly doubled: added twice?")
                return hints
    # 5. a constant factor
    base = init if t.role == ACCUMULATE else 0.0
    x, r = (g - base), (exp - base)
    fin = mask & np.isfinite(x)
    rr = float(np.sum(r[fin] * r[fin]))
    if rr > 0 and fin.sum() == mask.sum() and np.count_nonzero(r[fin]) >= 8:  # a factor needs a few points
        k = float(np.sum(x[fin] * r[fin]) / rr)
        if abs(k - 1) > 1e-3 and abs(k) > 1e-6 and _fits(x, k * r, allowed * max(1.0, abs(k)), mask, 0.99):
            what = (
                "doubled"
                if abs(k - 2) < 1e-3
                else ("halved" if abs(k - 0.5) < 1e-3 else ("negated" if abs(k + 1) < 1e-3 else f"{k:.4g} x"))
            )
            hints.append(
                f"{t.name} is off by a constant factor: {what} the expected values. A missing or "
                "extra scale factor (1/sqrt(head size), 1/N, a (1 - beta) term, 0.5, ...)?"
            )
            return hints
    # 6. NaN/inf computed where the result is finite
    nonfinite = ~np.isfinite(g) & mask & ~unwritten & np.isfinite(exp)
    if nonfinite.any():
        hints.append("NAN_INF")  # filled in by the caller, which knows whether the inputs were large
    return hints


def differs(t: Tensor, a: np.ndarray, b: np.ndarray, tol: tuple) -> bool:
    """Do two results for ``t`` (from two thread orders) differ by more than the tolerance? Sums in another
    order (atomics) differ in the last bits; a race differs by far more."""
    rtol, atol_rel = tol
    mask = np.ones(t.expected.shape, dtype=bool) if t.compare is None else np.asarray(t.compare)
    atol = atol_rel * (rms(t.expected, mask) or 1.0)
    x, y = a.astype(np.float64)[mask], b.astype(np.float64)[mask]
    both_nan = np.isnan(x) & np.isnan(y)
    with np.errstate(invalid="ignore", over="ignore"):
        close = np.abs(x - y) <= atol + rtol * np.abs(t.expected[mask])
    return bool(np.any(~(close | both_nan | (x == y))))


def nan_hint(large: bool, magnitude: float | None = None) -> str:
    """What a NaN/inf where the result is finite usually means (a check's or the grader's hint)."""
    if large:
        size = f" (up to {magnitude:.3g})" if magnitude is not None else ""
        return (
            f"NaN/inf with inputs of large magnitude{size}: something overflows float32 (max ~3.4e38; expf "
            "overflows above ~88). For a softmax, subtract the row's maximum before exp; avoid forms like exp(2x) "
            "or cosh(x)"
        )
    return (
        "the kernel computed NaN/inf where the result is finite: a division by zero, sqrt or log of a negative "
        "number or zero, or reading memory that was never written?"
    )


def order_hint(schedules: list, failing: list, differ: bool) -> str | None:
    """The race hint when the CPU thread orders disagree: one passed and another failed, or several failed with
    different results (``differ``); None when the orders agree."""
    passing = [s for s in schedules if s not in failing]
    if not (passing or (differ and len(failing) > 1)):
        return None
    said = (
        f"thread order '{failing[0]}' failed, '{passing[0]}' passed"
        if passing
        else "the thread orders give different results"
    )
    return (
        f"the result depends on the order in which threads run ({said}): a race. Most often a missing "
        "__syncthreads() between threads writing shared memory and other threads reading it; or several threads "
        "writing the same element (accumulate with atomicAdd)"
    )
