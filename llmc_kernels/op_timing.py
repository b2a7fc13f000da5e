"""Where a training step's time goes, op by op, and whose kernel each op is.

    profiles = [profile("yours", my_ops, cfg, batches), profile("package", None, cfg, batches)]
    print(table(profiles))

:func:`profile` trains a fresh ``GPT2`` (the plain engine: the ops one at a time) for a few steps on the given
batches: first untimed steps for the real step time, then steps in which every op call is wrapped by
:class:`OpTimer`, which waits for the device before and after the call (kernel launches are asynchronous), so
each op's milliseconds are its own. Those waits add a little time, so the table reports shares of the timed
step, and the untimed step time beside it. The first step compiles the kernels and is never counted.
"""

from __future__ import annotations

import statistics
import time
import types
from dataclasses import dataclass, field

from .learner_ops import MODEL_OPS, describe

OPTIONAL_OPS = ("fused_classifier",)  # the package's fused softmax + loss + gradient, used when present
LR, BETA1, BETA2, EPS, WEIGHT_DECAY = 1e-3, 0.9, 0.999, 1e-8, 0.0


def _synchronize() -> None:
    from .runtime import backend

    if backend() == "cuda":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


class OpTimer:
    """An ops namespace whose calls add their time to ``ms[op]`` and ``calls[op]`` while ``enabled``."""

    def __init__(self, ops=None):
        if ops is None:
            from . import ops as ops  # noqa: PLW0127
        self.ops, self.enabled = ops, False
        self.ms: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        fns = {}
        for name in MODEL_OPS + OPTIONAL_OPS:
            try:
                fn = ops[name] if isinstance(ops, dict) else getattr(ops, name)
            except (KeyError, AttributeError, ImportError):
                continue
            if fn is not None:
                fns[name] = self._timed(name, fn)
        self.namespace = types.SimpleNamespace(**fns)
        self.namespace.__name__ = getattr(ops, "__name__", "ops")

    def _timed(self, name: str, fn):
        def call(*args):
            if not self.enabled:
                return fn(*args)
            _synchronize()
            t0 = time.perf_counter()
            fn(*args)
            _synchronize()
            self.ms[name] = self.ms.get(name, 0.0) + 1e3 * (time.perf_counter() - t0)
            self.calls[name] = self.calls.get(name, 0) + 1

        return call


@dataclass
class Profile:
    label: str  # "yours", "package", ...
    owner: dict  # op -> whose kernel: a notebook name or "package"
    step_ms: float  # median untimed step
    timed_step_ms: float  # median step with every op timed
    op_ms: dict = field(default_factory=dict)  # op -> ms per step
    calls: dict = field(default_factory=dict)  # op -> calls per step
    losses: list = field(default_factory=list)

    @property
    def other_ms(self) -> float:
        """The timed step minus its ops: zeroing gradients, the loss's mean, Python between the calls."""
        return max(0.0, self.timed_step_ms - sum(self.op_ms.values()))


def profile(label: str, ops, cfg, batches, *, steps: int = 2, seed: int = 0) -> Profile:
    """Train ``GPT2(cfg)`` with ``ops`` on ``batches`` (a list of (inputs, targets), at least ``1 + 2 * steps``,
    reused in turn when fewer): one warm-up step, ``steps`` untimed steps, ``steps`` steps timed op by op."""
    from .model import GPT2

    timer = OpTimer(ops)
    model = GPT2.from_config(cfg, seed, ops=timer.namespace)
    d = describe(ops)
    owner = {op: d["learner"].get(op, "package") for op in MODEL_OPS}
    owner.update({op: "package" for op in OPTIONAL_OPS if hasattr(timer.namespace, op)})
    untimed, timed, losses = [], [], []
    for t in range(1, 2 + 2 * steps):
        timer.enabled = t > 1 + steps
        inputs, targets = batches[(t - 1) % len(batches)]
        _synchronize()
        t0 = time.perf_counter()
        losses.append(model.forward(inputs, targets))
        model.zero_grad()
        model.backward()
        model.update(LR, BETA1, BETA2, EPS, WEIGHT_DECAY, t)
        _synchronize()
        ms = 1e3 * (time.perf_counter() - t0)
        if t > 1:
            (timed if timer.enabled else untimed).append(ms)
    op_ms = {op: timer.ms[op] / steps for op in MODEL_OPS + OPTIONAL_OPS if op in timer.ms}
    calls = {op: timer.calls[op] // steps for op in op_ms}
    return Profile(label, owner, statistics.median(untimed), statistics.median(timed), op_ms, calls, losses)


def table(profiles: list[Profile]) -> str:
    """One row per op: whose kernel (from the first profile), then ms per step and share of the step for each
    profile; then the rest of the step, the timed step and the real (untimed) step."""
    first = profiles[0]
    ops = [op for op in MODEL_OPS + OPTIONAL_OPS if any(op in p.op_ms for p in profiles)]
    head = f"{'op':<30} {'calls':>5}  {'whose kernel (' + first.label + ')':<30}" + "".join(
        f" {p.label + ' ms':>12} {'share':>6}" for p in profiles
    )
    lines = [head, "-" * len(head)]

    def cells(values):
        return "".join(
            f" {v:>12.2f} {100 * v / p.timed_step_ms:>5.1f}%" if v is not None else f" {'-':>12} {'':>6}"
            for v, p in zip(values, profiles)
        )

    for op in ops:
        calls = next(p.calls[op] for p in profiles if op in p.calls)
        whose = first.owner.get(op, "package") if op in first.op_ms else "(not called)"
        lines.append(f"{op:<30} {calls:>5}  {whose:<30}" + cells([p.op_ms.get(op) for p in profiles]))
    lines.append(f"{'other (zero_grad, Python)':<30} {'':>5}  {'':<30}" + cells([p.other_ms for p in profiles]))
    lines.append(f"{'step, every op timed':<30} {'':>5}  {'':<30}" + cells([p.timed_step_ms for p in profiles]))
    lines.append(f"{'step, untimed':<30} {'':>5}  {'':<30}" + "".join(f" {p.step_ms:>12.2f} {'':>6}" for p in profiles))
    return "\n".join(lines)
