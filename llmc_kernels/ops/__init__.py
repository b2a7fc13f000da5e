"""The package's kernels behind the SPEC signatures: ``ops.layernorm_forward(out, mean, rstd, inp, ...)``.

Each op lives in its own module (``ops/layernorm.py`` launches ``kernels/layernorm.cu``); this module
re-exports the public names lazily, so importing one op never compiles or loads the others. The signatures
are the contract's (book/contract.md), and each wrapper validates its arguments from opspec (_validate.py).
"""

from __future__ import annotations

import importlib

# public name -> module that defines it
_WHERE = {
    "vector_add": "vector_add",
    "transpose": "transpose",
    "encoder_forward": "encoder",
    "encoder_backward": "encoder",
    "layernorm_forward": "layernorm",
    "layernorm_backward": "layernorm",
    "matmul_forward": "matmul",
    "matmul_backward": "matmul",
    "matmul_forward_kernel": "matmul",
    "matmul_backward_kernel": "matmul",
    "set_matmul_precision": "matmul",
    "matmul_precision": "matmul",
    "attention_forward": "attention",
    "attention_backward": "attention",
    "gelu_forward": "gelu",
    "gelu_backward": "gelu",
    "residual_forward": "residual",
    "residual_backward": "residual",
    "softmax_forward": "softmax",
    "crossentropy_forward": "crossentropy",
    "crossentropy_softmax_backward": "crossentropy",
    "fused_classifier": "classifier",
    "adamw_update": "adamw",
    # the fast model's extensions (beyond SPEC's table; each checked in tests/test_fast_*.py)
    "flash_attention_forward": "flash_attention",
    "flash_attention_backward": "flash_attention",
    "residual_layernorm_forward": "fused",
    "bias_gelu_forward": "fused",
    "gelu_backward_inplace": "fused",
    "bias_backward": "fused",
    "mean_loss": "fused",
    "adamw_update_device": "fused",
    "adamw_hyper": "fused",
    "linear_forward": "linear",
    "linear_backward_input": "linear",
    "linear_backward_weight": "linear",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'llmc_kernels.ops' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
