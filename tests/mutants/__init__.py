"""The mutation suite's own kernels: naive but correct CUDA C kernels for every op (not the package's), and
deliberately wrong variants that the checks must reject. ``ALL_CORRECT`` and ``ALL_MUTANTS`` collect them."""

from . import adamw, attention, classifier, elementwise, encoder, layernorm, matmul, softmax_ce, transpose

_MODULES = (elementwise, encoder, layernorm, matmul, attention, softmax_ce, classifier, adamw, transpose)
ALL_CORRECT = [c for mod in _MODULES for c in mod.CORRECT]
ALL_MUTANTS = [m for mod in _MODULES for m in mod.MUTANTS]
