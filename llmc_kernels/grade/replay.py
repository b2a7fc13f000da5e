"""The replay process of ``llmc grade`` (``python -m llmc_kernels.grade.replay``, started by :mod:`.box`).

It runs no learner Python. It reads a trace recorded in the learner's process (:mod:`.trace`) and fresh
inputs the learner's process never saw, runs the recorded kernel launches on the CPU backend (or the recorded
op calls with the package's float64 references, for chapter 09), and sends back what the buffers hold. For a
performance check (``"profile"`` in the request) it also sends the memory counters of those launches
(:mod:`llmc_kernels.profiling`), measured here, so that the grader judges the targets from a run of the
learner's kernels that no learner Python took part in. It is
fenced in like the worker, because the learner's kernels are native code.

For the GPU time target (``"gpu_time"`` in the request, on the cuda backend only) it replays a trace recorded at
the op's GPU sizes on the GPU instead, on fresh inputs it draws itself from the request's secret seed, checks
the outputs against the float64 reference, times those launches and the package's kernel, and sends back the
times, the GPU's name and any wrong output (:func:`.gputime.measure`): a ``timed`` frame, or a ``replay_error``
(the learner's launches failed) or ``timing_error`` (the grader's side failed: no GPU, say).
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import fields

from . import wire
from .worker import _nondumpable, describe


def counters(k) -> dict:
    """One launch's counters as plain integers (the per-site details stay here)."""
    return {f.name: getattr(k, f.name) for f in fields(k) if isinstance(getattr(k, f.name), int)}


def main() -> int:
    _nondumpable()
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    req, arrays = next(wire.read(sys.stdin.buffer))
    from .trace import replay

    grader = {k[2:]: v.copy() for k, v in arrays.items() if k.startswith("c.")}
    blobs = {k[6:]: v for k, v in arrays.items() if k.startswith("trace.")}
    if req.get("gpu_time"):
        from .gputime import Failure, measure

        try:
            meta = measure(
                req["gpu_time"], req["trace"], blobs, ready=lambda: wire.write(frames, {"event": "inputs_ready"})
            )
        except Failure as e:
            event = "replay_error" if e.learner else "timing_error"
            wire.write(frames, {"event": event, "error": describe(e.error)})
            return 0
        except BaseException as e:  # noqa: BLE001 -- a malformed request: the grader's
            wire.write(frames, {"event": "timing_error", "error": describe(e)})
            return 0
        wire.write(frames, meta)
        frames.close()
        return 0
    ops = None
    if req["kind"] == "block":
        from .. import reference
        from ..model import REQUIRED_OPS

        ops = types.SimpleNamespace(**{n: getattr(reference, n) for n in REQUIRED_OPS})
    prof = None
    try:
        if req.get("profile"):  # a performance check: the memory counters of the replayed launches
            from ..profiling import Profile, _into

            prof = Profile()
            with _into(prof):
                replay(req["trace"], blobs, grader, ops=ops, timeout=req["launch_timeout"])
        else:
            replay(req["trace"], blobs, grader, ops=ops, timeout=req["launch_timeout"])
    except BaseException as e:  # noqa: BLE001 -- a kernel error or a malformed trace
        wire.write(frames, {"event": "replay_error", "error": describe(e)})
        return 0
    meta = {"event": "replayed"}
    if prof is not None:
        meta["counters"] = [counters(k) for k in prof.kernels]
    wire.write(frames, meta, {f"out.{k}": v for k, v in grader.items()})
    frames.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
