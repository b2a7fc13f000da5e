"""Every op lives in one place: its opspec row. Each row is complete (a reference, a wrapper, a tolerance and
cases for every function; a finite-difference case for every backward), and every wrapper of the package
validates its arguments from a signature in opspec (the contract's table or EXTENSIONS)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from llmc_kernels import check, ops, opspec, reference
from llmc_kernels.check import cases as check_cases
from llmc_kernels.ops import _validate

ROWS = list(opspec.OPS.values())
# ops.* names that are not kernels with array arguments: settings, the host-side AdamW numbers, and mean_loss
# (its `out` may be longer than the one float it writes)
NOT_VALIDATED_FROM_OPSPEC = {"set_matmul_precision", "matmul_precision", "adamw_hyper", "mean_loss"}


@pytest.mark.parametrize("spec", ROWS, ids=[s.op for s in ROWS])
def test_every_row_has_a_reference_a_wrapper_a_tolerance_and_cases(spec):
    for fn in spec.functions:
        names = [a.name for a in fn.args]
        for impl in (getattr(reference, fn.name), getattr(ops, fn.name)):
            params = [p.name for p in inspect.signature(impl).parameters.values() if p.kind != p.KEYWORD_ONLY]
            assert params[: len(names)] == names, (impl, params)
        rtol, atol = fn.tolerance
        assert 0 < rtol < 1e-3 and 0 < atol < 1e-3 and check.TOLERANCES[fn.name] == fn.tolerance
    assert spec.cases and all(c.kind in opspec.KINDS for c in spec.cases)
    assert (spec.backward is not None) == (spec.fd_case is not None), "a backward needs its finite-difference case"
    for case in spec.cases + ((spec.fd_case,) if spec.fd_case else ()):
        sizes = case.size_dict
        assert tuple(sizes) == spec.dims and check_cases.complete_sizes(spec.op, sizes) == sizes
    arrays = {a.name for fn in spec.functions for a in fn.args if a.is_array}
    arrays |= {
        s.split(".")[1] for fn in spec.functions for a in fn.args for s in [a.source or a.grad_of or ""] if "." in s
    }
    assert set(spec.values) <= arrays, "values name arrays of the op"
    if spec.backward is None:
        assert spec.no_backward or spec.op == "vector_add"  # chapter 00's first exercise says nothing of one


def test_every_wrapper_validates_from_a_signature_in_opspec():
    for name in ops.__all__:
        if name in NOT_VALIDATED_FROM_OPSPEC:
            continue
        fn_spec, _ = opspec.signature(name)
        params = list(inspect.signature(getattr(ops, name)).parameters)
        assert {a.name for a in fn_spec.args} <= set(params), name


def test_derived_validation_reads_the_row():
    """A dimension that is no argument is read off its array, and the row's message explains a broken rule."""
    z = lambda *s: np.zeros(s, np.float32)  # noqa: E731
    inp = np.zeros((2, 3), np.int32)
    backend, dims = _validate.arguments(
        "encoder_forward", dict(out=z(2, 3, 4), inp=inp, wte=z(5, 4), wpe=z(9, 4), B=2, T=3, C=4)
    )
    assert backend == "cpu" and dims == {"B": 2, "T": 3, "C": 4, "V": 5, "maxT": 9}
    with pytest.raises(ValueError, match=r"encoder_backward: 'dwpe' has 2 rows \(positions\) but T = 3"):
        _validate.arguments(
            "encoder_backward", dict(dwte=z(5, 4), dwpe=z(2, 4), dout=z(2, 3, 4), inp=inp, B=2, T=3, C=4)
        )
