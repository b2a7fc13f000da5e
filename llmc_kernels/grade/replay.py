"""The replay process of ``llmc grade`` (``python -m llmc_kernels.grade.replay``, started by :mod:`.box`).

It runs no learner Python. It reads a trace recorded in the learner's process (:mod:`.trace`) and fresh
inputs the learner's process never saw, runs the recorded kernel launches on the CPU backend (or the recorded
op calls with the package's float64 references, for chapter 09), and sends back what the buffers hold and,
for a ``check.memory`` check, the launches' memory counters. It is
fenced in like the worker, because the learner's kernels are native code.
"""

from __future__ import annotations

import os
import sys
import types

from . import wire
from .worker import _nondumpable, describe


def main() -> int:
    _nondumpable()
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    req, arrays = next(wire.read(sys.stdin.buffer))
    from .trace import replay

    grader = {k[2:]: v.copy() for k, v in arrays.items() if k.startswith("c.")}
    blobs = {k[6:]: v for k, v in arrays.items() if k.startswith("trace.")}
    ops = None
    if req["kind"] == "block":
        from .. import reference
        from ..model import REQUIRED_OPS

        ops = types.SimpleNamespace(**{n: getattr(reference, n) for n in REQUIRED_OPS})
    prof = None
    try:
        if req.get("counters"):  # check.memory: the replayed launches' memory counters (llmc_kernels.profile)
            from ..profiling import Profile, _into

            with _into(Profile()) as prof:
                replay(req["trace"], blobs, grader, ops=ops, timeout=req["launch_timeout"])
        else:
            replay(req["trace"], blobs, grader, ops=ops, timeout=req["launch_timeout"])
    except BaseException as e:  # noqa: BLE001 -- a kernel error or a malformed trace
        wire.write(frames, {"event": "replay_error", "error": describe(e)})
        return 0
    meta = {"event": "replayed"}
    if prof is not None:
        from ..check.targets import totals

        meta["counters"] = [dict(totals([k]), name=k.name) for k in prof.kernels]
    wire.write(frames, meta, {f"out.{k}": v for k, v in grader.items()})
    frames.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
