"""The package's encoder, layernorm, gelu, residual and adamw ops pass the course's own checks
(llmc_kernels.check), on the active backend (cpu in CI; cuda, after a cpu pre-flight, on a GPU machine)."""

import pytest

from llmc_kernels import check, ops
from llmc_kernels._honesty import package_scope

CASES = [
    ("encoder", "forward", "encoder_forward"),
    ("encoder", "backward", "encoder_backward"),
    ("layernorm", "forward", "layernorm_forward"),
    ("layernorm", "backward", "layernorm_backward"),
    ("gelu", "forward", "gelu_forward"),
    ("gelu", "backward", "gelu_backward"),
    ("residual", "forward", "residual_forward"),
    ("residual", "backward", "residual_backward"),
    ("adamw", "forward", "adamw_update"),
]


def _trusted(fn):
    """The check runs its function as a learner's, where the package's ops refuse to run; these are ours."""

    def call(*args):
        with package_scope():
            fn(*args)

    return call


@pytest.mark.parametrize("op, direction, name", CASES, ids=[c[2] for c in CASES])
def test_passes_the_check(op, direction, name, capsys):
    result = getattr(check, direction)(op, _trusted(getattr(ops, name)))
    assert repr(result) == f"PASS {name}"
    assert capsys.readouterr().out == f"PASS {name}\n"


def test_ops_refuse_to_run_inside_a_learners_check():
    import numpy as np

    from llmc_kernels._honesty import learner_scope
    from llmc_kernels.errors import ForbiddenCall

    a = np.zeros(4, np.float32)
    with learner_scope("gelu_forward"), pytest.raises(ForbiddenCall, match="llmc_kernels.ops.gelu_forward"):
        ops.gelu_forward(a, a.copy(), 4)
