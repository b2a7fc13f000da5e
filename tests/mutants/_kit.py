"""What the mutation suite's kernels share: ceil_div, making a variant of a kernel string, and the record of
one wrong kernel (which check must reject it, and what the failure message should say)."""
from __future__ import annotations

from dataclasses import dataclass


def ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


def mutate(code: str, *edits: tuple[str, str]) -> str:
    """``code`` with each (old, new) replaced once; every ``old`` must be there (the mutant stays what it says)."""
    for old, new in edits:
        if code.count(old) != 1:
            raise AssertionError(f"mutation target found {code.count(old)} times: {old!r}")
        code = code.replace(old, new)
    return code


@dataclass(frozen=True)
class Mutant:
    """A deliberately wrong kernel: ``make()`` returns the launch function with the op's signature."""
    name: str
    op: str
    direction: str                 # "forward" | "backward"
    make: object                   # () -> fn
    says: tuple = ()               # substrings the failure message must contain (the hint we expect)


@dataclass(frozen=True)
class Correct:
    op: str
    direction: str
    make: object
