"""Provenance for ``llmc grade``: record what a learner's function did to its buffers, and replay it without it.

A right answer is not enough: the outputs must be written by kernels the submission compiled and launched. So
the worker calls the learner's function once more under a :class:`Tracer`, on the CPU backend with NumPy
arrays, and records, in order:

- every kernel launch through ``llmc_kernels.runtime.RawKernel`` (source, name, options, grid, block, shared
  memory, scalar arguments, and each array argument as a reference into a buffer: which one, byte offset,
  dtype, shape and strides);
- every call of an op of the namespace a chapter-09 block function receives (its name and arguments);
- every change the *host* made to a buffer between those calls ("set": the buffer's new bytes), including the
  first contents of a scratch buffer the learner allocated, and what the function left after its last launch.

Buffers are the grader's (the arrays the function was called with, by key) and scratch buffers the learner
allocated (by number). :func:`replay` then runs the recorded events on *fresh* grader buffers holding new inputs
-- in a process that runs no learner Python, only the learner's kernels on the CPU backend (or the package's
reference ops) -- and the grader compares what they hold with the float64 reference of those new inputs.
Kernels that compute the outputs pass; a NumPy answer written by the host, an answer smuggled in through a
scratch buffer, or host code fixing up a kernel's output replay as stale bytes and fail.

The trace is a claim the replay verifies, so the learner's process may tamper with the tracer as it likes: it
can only make its own replay fail, or submit the kernels it records.

For the GPU time target of an optimisation exercise (``llmc grade --backend cuda``), the worker also calls the
learner's function at the op's GPU sizes (``TARGETS[op].gpu_sizes``: B=8, T=1024, ...) under a
:class:`RecordTracer`, which records the launches without running them, and the replay process runs that trace
on the GPU with a :class:`DeviceReplay` (see :mod:`.gputime`).
"""

from __future__ import annotations

import threading

import numpy as np

MAX_EVENTS = 20000  # launches and op calls of one traced call; beyond it the call is refused
MAX_SCRATCH_BYTES = 256 << 20
# a record-only trace at the GPU sizes: scratch buffers may be as large as the op's own arrays (GPT-2's logits are
# 1.6 GB), but what the host wrote into buffers travels in the trace, so that stays small
MAX_DEVICE_SCRATCH_BYTES = 4 << 30
MAX_RECORDED_WRITES = 64 << 20
SCALAR_TYPES = (
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
)


class TraceError(Exception):
    """A trace the replay cannot run (malformed, or beyond the limits): the exercise fails provenance."""


def _bounds(a: np.ndarray) -> tuple[int, int]:
    lo, hi = np.lib.array_utils.byte_bounds(a) if hasattr(np.lib, "array_utils") else np.byte_bounds(a)
    return int(lo), int(hi)


class Tracer:
    """Records the events of one call of the learner's function on ``buffers`` (key -> NumPy array)."""

    max_scratch = MAX_SCRATCH_BYTES

    def __init__(self, buffers: dict):
        self.lock = threading.RLock()
        self.keys = list(buffers)
        self.arrays = [buffers[k] for k in self.keys]  # buffer id i < len(keys): the grader's buffer keys[i]
        self.regions = [_bounds(a) for a in self.arrays]
        self.scratch = []  # (owner array, (lo, hi)); id len(keys) + j
        self.snaps = [self._raw(i).copy() for i in range(len(self.arrays))]  # bytes after the last event
        self.events: list[dict] = []
        self.blobs: dict[str, np.ndarray] = {}
        self.refused = ""  # why this trace cannot be replayed, if so

    # -- buffers
    def _raw(self, i: int) -> np.ndarray:
        if i < len(self.arrays):
            return self.arrays[i].reshape(-1).view(np.uint8)
        owner, (lo, hi) = self.scratch[i - len(self.arrays)]
        return np.ctypeslib.as_array((np.ctypeslib.ctypes.c_uint8 * (hi - lo)).from_address(lo))

    def ref(self, a):
        """A JSON reference to array ``a`` (registering a scratch buffer on first sight); scalars as values."""
        if a is None:
            return None
        if isinstance(a, np.ndarray):
            lo, hi = _bounds(a)
            ptr = int(a.__array_interface__["data"][0])
            for i, (blo, bhi) in enumerate(self.regions + [r for _, r in self.scratch]):
                if blo <= lo and hi <= bhi:
                    return {
                        "buf": i,
                        "offset": ptr - blo,
                        "dtype": a.dtype.str,
                        "shape": list(a.shape),
                        "strides": list(a.strides),
                    }
            owner = a
            while isinstance(owner.base, np.ndarray):
                owner = owner.base
            olo, ohi = _bounds(owner)
            if not (olo <= lo and hi <= ohi):
                olo, ohi, owner = lo, hi, a
            total = sum(h - l for _, (l, h) in self.scratch) + (ohi - olo)
            if total > self.max_scratch:
                self.refused = f"scratch buffers of more than {self.max_scratch >> 20} MiB"
                raise TraceError(self.refused)
            self.scratch.append((owner, (olo, ohi)))
            self.snaps.append(None)  # first use: its contents are recorded
            return {
                "buf": len(self.arrays) + len(self.scratch) - 1,
                "offset": ptr - olo,
                "dtype": a.dtype.str,
                "shape": list(a.shape),
                "strides": list(a.strides),
            }
        if isinstance(a, np.generic):
            return {"scalar": a.dtype.name, "value": a.item()}
        if isinstance(a, bool):
            return {"bool": a}
        if isinstance(a, int):
            return {"int": a}
        if isinstance(a, float):
            return {"float": a}
        return {"other": type(a).__name__}  # replays as a refusal: nothing else is an argument

    def sync(self) -> None:
        """Record, as "set" events, every buffer the host changed since the last event."""
        for i in range(len(self.snaps)):
            raw = self._raw(i)
            snap = self.snaps[i]
            if snap is not None and np.array_equal(raw, snap):
                continue
            key = f"set{len(self.blobs)}"
            self.blobs[key] = raw.copy()
            self.events.append({"set": i, "blob": key})
            self.snaps[i] = self.blobs[key]

    def _after(self) -> None:
        for i in range(len(self.snaps)):
            self.snaps[i] = self._raw(i).copy()

    def _event(self, event: dict, run):
        with self.lock:
            if len(self.events) >= MAX_EVENTS:
                self.refused = f"more than {MAX_EVENTS} kernel launches or op calls in one call"
                raise TraceError(self.refused)
            self.sync()
            self.events.append(event)
            return self._perform(run)

    def _perform(self, run):
        """Run the recorded launch or op call; the buffers' snapshots then hold what it left."""
        try:
            return run()
        finally:
            self._after()

    # -- what is recorded
    def launch(self, kernel, grid, block, args, shared_mem, run):
        refs = [self.ref(a) for a in (args if isinstance(args, (tuple, list)) else [args])]
        event = {
            "launch": {
                "code": kernel.code,
                "name": kernel.name,
                "options": [str(o) for o in kernel.options],
                "internal": bool(getattr(kernel, "internal", False)),
                "grid": _dims(grid),
                "block": _dims(block),
                "shared_mem": int(shared_mem),
                "args": refs,
            }
        }
        return self._event(event, run)

    def op(self, name: str, args, run):
        return self._event({"op": name, "args": [self.ref(a) for a in args]}, run)

    def finish(self) -> tuple[dict, dict]:
        """``(meta, arrays)`` of the whole trace, after a final look for host writes."""
        with self.lock:
            self.sync()
            buffers = [{"grader": k} for k in self.keys]
            buffers += [{"scratch": hi - lo} for _, (lo, hi) in self.scratch]
            return {"buffers": buffers, "events": self.events, "refused": self.refused}, dict(self.blobs)


class RecordTracer(Tracer):
    """A record-only tracer, for the learner's function called at the op's GPU sizes on the CPU backend.

    Launches are recorded exactly as :class:`Tracer` records them, and *never run*: at B=8, T=1024 the CPU
    backend would take minutes to hours per launch, and nothing needs to run here -- the trace is replayed on the
    GPU by the replay process, on fresh inputs, and judged there. So the worker never needs the GPU-size inputs
    either: it calls the function on zero-filled buffers (``np.zeros``: pages the OS maps lazily, so the 1.6 GB of
    GPT-2's logits cost no memory until written), and host writes are found without copies of the buffers: a
    buffer known to be all zeros is compared with zero, and a write that leaves zeros is recorded as such
    (``{"set": i, "zero": true}``), not as bytes. Other host writes travel as bytes, at most
    :data:`MAX_RECORDED_WRITES` in all (beyond it the trace is refused).

    Why record on the CPU backend rather than run the function on the GPU: this is the recording the
    provenance run already makes, by the same code path (the same hook, the same ``xp``: NumPy for the session's
    CuPy names, see :mod:`llmc_kernels.check.array_module`), it needs no GPU memory in the learner's process
    and no GPU at all to test, and the learner's process computes nothing the grader uses: a launch that depends on
    a value a kernel computed (read back by the host) sees zeros here, replays wrong and earns no performance
    points, as a data-dependent launch sequence already fails provenance.
    """

    max_scratch = MAX_DEVICE_SCRATCH_BYTES

    def __init__(self, buffers: dict):
        self.lock = threading.RLock()
        self.keys = list(buffers)
        self.arrays = [buffers[k] for k in self.keys]
        self.regions = [_bounds(a) for a in self.arrays]
        self.scratch = []
        self.snaps = [_ZERO if not self._raw(i).any() else self._raw(i).copy() for i in range(len(self.arrays))]
        self.events = []
        self.blobs = {}
        self.refused = ""
        self.recorded = 0  # bytes of host writes recorded as blobs
        self.skipped = 0  # launches recorded and not run

    def sync(self) -> None:
        for i in range(len(self.snaps)):
            raw = self._raw(i)
            snap = self.snaps[i]
            if snap is _ZERO:
                if not raw.any():
                    continue
            elif snap is not None and np.array_equal(raw, snap):
                continue
            if not raw.any():
                self.events.append({"set": i, "zero": True})
                self.snaps[i] = _ZERO
                continue
            self.recorded += raw.nbytes
            if self.recorded > MAX_RECORDED_WRITES:
                self.refused = (
                    f"more than {MAX_RECORDED_WRITES >> 20} MiB of host writes into buffers at the GPU sizes "
                    "(fill buffers with kernels, or with zeros)"
                )
                raise TraceError(self.refused)
            key = f"set{len(self.blobs)}"
            self.blobs[key] = raw.copy()
            self.events.append({"set": i, "blob": key})
            self.snaps[i] = self.blobs[key]

    def _perform(self, run):  # recorded, never run: the snapshots still hold
        self.skipped += 1
        return None


_ZERO = "zero"  # a RecordTracer's snapshot of a buffer known to hold only zero bytes


def _dims(x) -> list[int]:
    if isinstance(x, (tuple, list)):
        return [int(v) for v in x]
    return [int(x)]


# ------------------------------------------------------------------------------------------ replay
def launches(meta: dict) -> list[dict]:
    """The launch records of a trace (TraceError if one is malformed)."""
    found = [e["launch"] for e in meta.get("events", []) if isinstance(e, dict) and "launch" in e]
    for L in found:
        if not (isinstance(L, dict) and isinstance(L.get("code"), str) and isinstance(L.get("name"), str)):
            raise TraceError("a launch without kernel source and name")
    return found


def _layout(ref, n_buffers: int):
    """(buffer index, dtype, shape, strides, byte offset) of a recorded buffer reference, each checked (TraceError
    if the trace is malformed): the trace comes from the learner's process and is believed in nothing."""
    if not isinstance(ref, dict) or not isinstance(ref.get("buf"), int) or not 0 <= ref["buf"] < n_buffers:
        raise TraceError(f"a bad buffer reference {ref!r}")
    try:
        dtype = np.dtype(ref.get("dtype"))
    except TypeError:
        raise TraceError(f"a bad buffer reference {ref!r}") from None
    if dtype.kind not in "biuf" or dtype.hasobject:
        raise TraceError(f"a buffer reference of dtype {dtype}")
    shape, strides, offset = ref.get("shape"), ref.get("strides"), ref.get("offset")
    if not (
        isinstance(shape, list)
        and isinstance(strides, list)
        and len(shape) == len(strides)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in shape + strides + [offset])
    ):
        raise TraceError(f"a bad buffer reference {ref!r}")
    return ref["buf"], dtype, tuple(shape), tuple(strides), offset


def _view(ref, raws: list) -> np.ndarray:
    buf, dtype, shape, strides, offset = _layout(ref, len(raws))
    try:
        return np.ndarray(shape, dtype=dtype, buffer=raws[buf], offset=offset, strides=strides)
    except (TypeError, ValueError) as e:
        raise TraceError(f"a buffer reference outside its buffer ({e})") from None


def _device_view(ref, raws: list, xp):
    """``_view`` for buffers of ``xp`` (CuPy on the GPU): the bounds checked here, as CuPy does not."""
    if xp is np:
        return _view(ref, raws)
    buf, dtype, shape, strides, offset = _layout(ref, len(raws))
    raw = raws[buf]
    end = offset if 0 in shape else offset + sum((n - 1) * s for n, s in zip(shape, strides)) + dtype.itemsize
    if end > raw.size:
        raise TraceError(f"a buffer reference outside its buffer ({end} bytes of {raw.size})")
    return xp.ndarray(shape, dtype=dtype, memptr=raw.data + offset, strides=strides)


def _arg(ref, raws: list, xp=np):
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise TraceError(f"a bad argument {ref!r}")
    if "buf" in ref:
        return _device_view(ref, raws, xp)
    if "scalar" in ref:
        if ref["scalar"] not in SCALAR_TYPES:
            raise TraceError(f"a scalar of type {ref['scalar']!r}")
        return np.dtype(ref["scalar"]).type(ref["value"])
    for kind, cast in (("bool", bool), ("int", int), ("float", float)):
        if kind in ref:
            return cast(ref[kind])
    raise TraceError(f"an argument the replay cannot pass ({ref.get('other', ref)!r})")


def replay(meta: dict, blobs: dict, grader: dict, *, ops=None, timeout: float = 20.0, on_launch=None) -> None:
    """Run a trace's events on fresh ``grader`` buffers (key -> C-contiguous NumPy array, modified in place).

    Kernels run on the CPU backend (forward thread order, ``timeout`` seconds per launch); op calls go to ``ops``
    (the package's reference for chapter 09). Raises TraceError for a malformed trace, KernelError from a launch.
    """
    from .. import runtime
    from ..runtime.source import SourceOrigin

    buffers = meta.get("buffers")
    events = meta.get("events")
    if not isinstance(buffers, list) or not isinstance(events, list) or len(events) > MAX_EVENTS + 1:
        raise TraceError("the trace has no list of buffers and events")
    raws, total = [], 0
    for b in buffers:
        if isinstance(b, dict) and b.get("grader") in grader:
            a = grader[b["grader"]]
            raws.append(a.reshape(-1).view(np.uint8))
        elif isinstance(b, dict) and isinstance(b.get("scratch"), int) and b["scratch"] >= 0:
            total += b["scratch"]
            if total > MAX_SCRATCH_BYTES:
                raise TraceError("scratch buffers beyond the limit")
            raws.append(np.zeros(b["scratch"], dtype=np.uint8))
        else:
            raise TraceError(f"a bad buffer {b!r}")
    kernels = {}
    for event in events:
        if not isinstance(event, dict):
            raise TraceError("a bad event")
        if "set" in event:
            i, blob = event.get("set"), blobs.get(event.get("blob"))
            if (
                not isinstance(i, int)
                or not 0 <= i < len(raws)
                or blob is None
                or blob.dtype != np.uint8
                or blob.shape != raws[i].shape
            ):
                raise TraceError("a bad host write in the trace")
            raws[i][...] = blob
        elif "launch" in event:
            L = event["launch"]
            key = (L.get("code"), L.get("name"), tuple(L.get("options") or ()))
            if key not in kernels:
                if not isinstance(key[0], str) or not isinstance(key[1], str):
                    raise TraceError("a launch without kernel source")
                kernels[key] = runtime.RawKernel(
                    key[0], key[1], "cpu", options=key[2], origin=SourceOrigin(f"your kernel '{key[1]}'", 1)
                )
            args = tuple(_arg(r, raws) for r in L.get("args") or ())
            if on_launch is not None:
                on_launch(L)
            with runtime.launch_options(schedule="forward", timeout=timeout):
                kernels[key](
                    tuple(L.get("grid") or (1,)), tuple(L.get("block") or (1,)), args, int(L.get("shared_mem") or 0)
                )
        elif "op" in event:
            name = event["op"]
            fn = getattr(ops, name, None) if ops is not None and isinstance(name, str) else None
            if fn is None or name.startswith("_"):
                raise TraceError(f"a call of an unknown op {name!r}")
            fn(*[_arg(r, raws) for r in event.get("args") or ()])
        else:
            raise TraceError("an event of unknown kind")


class DeviceReplay:
    """A trace's events made ready once, then run as often as asked (:meth:`run`): the GPU time target.

    ``grader``: key -> C-contiguous array of ``xp`` (CuPy on the GPU; NumPy with the cpu backend in tests), modified
    in place. Everything the events need is prepared here, before the first run and outside any timing: the
    kernels compiled for ``backend`` (a compile error is raised now), every array argument a view into its buffer,
    every host write's bytes already on the device. :meth:`run` then only launches and copies on the device, so
    what is timed is the learner's launches (each through ``RawKernel``, as the learner's own wrapper launches
    them) and the host writes the trace records, nothing of the replay's own bookkeeping. Only kernel launches and
    host writes: a trace with op calls (chapter 09's blocks) is refused.
    """

    def __init__(self, meta: dict, blobs: dict, grader: dict, *, xp, backend: str):
        from .. import runtime
        from ..runtime.source import SourceOrigin

        buffers = meta.get("buffers")
        events = meta.get("events")
        if not isinstance(buffers, list) or not isinstance(events, list) or len(events) > MAX_EVENTS + 1:
            raise TraceError("the trace has no list of buffers and events")
        self.raws, total = [], 0
        for b in buffers:
            if isinstance(b, dict) and b.get("grader") in grader:
                self.raws.append(grader[b["grader"]].reshape(-1).view(xp.uint8))
            elif isinstance(b, dict) and isinstance(b.get("scratch"), int) and b["scratch"] >= 0:
                total += b["scratch"]
                if total > MAX_DEVICE_SCRATCH_BYTES:
                    raise TraceError("scratch buffers beyond the limit")
                self.raws.append(xp.zeros(b["scratch"], dtype=xp.uint8))
            else:
                raise TraceError(f"a bad buffer {b!r}")
        kernels: dict = {}
        self.steps = []
        self.launches = 0
        for event in events:
            if not isinstance(event, dict):
                raise TraceError("a bad event")
            if "set" in event:
                i = event.get("set")
                if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self.raws):
                    raise TraceError("a bad host write in the trace")
                raw = self.raws[i]
                if event.get("zero") is True:
                    self.steps.append(lambda raw=raw: raw.fill(0))
                    continue
                blob = blobs.get(event.get("blob"))
                if blob is None or blob.dtype != np.uint8 or tuple(blob.shape) != tuple(raw.shape):
                    raise TraceError("a bad host write in the trace")
                on_device = xp.asarray(blob)
                self.steps.append(lambda raw=raw, src=on_device: raw.__setitem__(Ellipsis, src))
            elif "launch" in event:
                L = event["launch"]
                if not isinstance(L, dict):
                    raise TraceError("a bad launch")
                key = (L.get("code"), L.get("name"), tuple(str(o) for o in (L.get("options") or ())))
                if key not in kernels:
                    if not isinstance(key[0], str) or not isinstance(key[1], str):
                        raise TraceError("a launch without kernel source")
                    k = runtime.RawKernel(
                        key[0], key[1], backend, options=key[2], origin=SourceOrigin(f"your kernel '{key[1]}'", 1)
                    )
                    kernels[key] = k.compile(backend)
                args = tuple(_arg(r, self.raws, xp) for r in L.get("args") or ())
                grid, block = _launch_dims(L.get("grid")), _launch_dims(L.get("block"))
                smem = L.get("shared_mem") or 0
                if not isinstance(smem, int) or isinstance(smem, bool):
                    raise TraceError("a bad shared-memory size")
                self.steps.append(lambda k=kernels[key], g=grid, b=block, a=args, s=smem: k(g, b, a, s))
                self.launches += 1
            else:
                raise TraceError("an event of unknown kind (only kernel launches and host writes replay on a GPU)")

    def run(self) -> None:
        for step in self.steps:
            step()


def _launch_dims(x) -> tuple:
    dims = tuple(x or (1,)) if isinstance(x, (list, tuple)) or x is None else None
    if dims is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in dims):
        raise TraceError(f"bad launch dimensions {x!r}")
    return dims
