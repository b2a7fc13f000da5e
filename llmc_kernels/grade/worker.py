"""The learner's process of ``llmc grade`` (``python -m llmc_kernels.grade.worker``, started by :mod:`.box`).

It runs one exercise of one submission and believes nothing it does: it only produces arrays for the grader.

1. reads the request (:mod:`.wire`) from stdin: the course's set-up cells, the learner's cells, the case
   inputs as plain arrays, and the list of calls to make. The secret seed is not in it;
2. runs the set-up cells, then the learner's cells, in one namespace (IPython's ``InteractiveShell`` in this
   process when IPython is installed, so magics work; plain ``exec`` otherwise), with the checks' case builder
   refused;
3. calls the learner's function once per requested run, each time on fresh copies of the inputs (outputs
   poisoned, accumulators pre-filled, as the grader built them), in the requested backend and CPU thread
   order, and once more on the CPU backend with its kernel launches (or op calls) recorded (:mod:`.trace`);
4. writes one frame per step to its original stdout; what the learner's code prints goes to stderr.

The grader compares the arrays with its own reference, replays the trace elsewhere, and kills this process and
all it started when it is done. Nothing here needs to be trusted: learner code can change any of it, and can
only spoil its own result by doing so.
"""

from __future__ import annotations

import inspect
import linecache
import os
import re
import sys
import time
import traceback

import numpy as np

from ..check.array_module import array_module_for
from . import wire

TRACEBACK_CHARS = 6000


def _nondumpable() -> None:
    """No other process of this user may read or write this one's memory (ptrace, /proc/PID/mem)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def describe(err: BaseException) -> dict:
    names = [c.__name__ for c in type(err).__mro__]
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return {"ename": type(err).__name__, "evalue": str(err)[:20000], "names": names, "traceback": tb[-TRACEBACK_CHARS:]}


# ------------------------------------------------------------------------------------------ running cells
class IPythonCells:
    """Cells run as in a notebook: IPython's shell, in this process (no kernel, no ZMQ)."""

    def __init__(self):
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.enabled = False
        self.shell = InteractiveShell.instance(config=config)
        self.ns = self.shell.user_ns

    def run(self, source: str) -> dict | None:
        result = self.shell.run_cell(source, store_history=True)
        err = result.error_before_exec or result.error_in_exec
        return describe(err) if err is not None else None


class PlainCells:
    """Cells run with ``exec`` when IPython is not installed: magic and shell lines (``%``, ``!``) are skipped."""

    def __init__(self):
        self.ns = {"__name__": "__main__"}
        self.count = 0

    def run(self, source: str) -> dict | None:
        self.count += 1
        name = f"<cell In[{self.count}]>"
        text = "\n".join(re.sub(r"^(\s*)[%!].*$", r"\1pass", line) for line in source.split("\n"))
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
        try:
            exec(compile(text, name, "exec"), self.ns)
        except BaseException as e:  # noqa: BLE001 -- anything a cell raises is its result
            traceback.print_exc()
            return describe(e)
        return None


def cell_runner():
    if not os.environ.get("LLMC_GRADE_PLAIN_CELLS"):
        try:
            return IPythonCells()
        except ImportError:
            pass
    return PlainCells()


def refuse_case_builder() -> None:
    """The checks' case builder is off limits while grading (the grader's cases are secret anyway)."""
    from .. import check
    from ..check import cases as check_cases

    def refused(*args, **kwargs):
        raise RuntimeError(
            "the checks' case builder is not available while llmc grade runs your code (grading uses secret cases)"
        )

    check_cases.build = refused
    check.build = refused
    check._case = refused


# ------------------------------------------------------------------------------------------ tracing
_TRACER = None


def install_launch_hook() -> None:
    """Route every RawKernel launch through the active tracer, if any (set only during the traced call)."""
    from .. import runtime

    original = runtime.RawKernel.__call__
    if getattr(original, "llmc_grade_hook", False):
        return

    def launch(self, grid, block, args, shared_mem=0, stream=None):
        tracer = _TRACER
        if tracer is None:
            return original(self, grid, block, args, shared_mem, stream)
        return tracer.launch(
            self, grid, block, args, shared_mem, lambda: original(self, grid, block, args, shared_mem, stream)
        )

    launch.llmc_grade_hook = True
    runtime.RawKernel.__call__ = launch


class BlockOps:
    """The ops namespace a chapter-09 block function receives: the package's float64 references, each call
    recorded while a tracer is active."""

    def __init__(self):
        from .. import reference
        from ..model import REQUIRED_OPS

        for name in REQUIRED_OPS:
            setattr(self, name, self._op(name, getattr(reference, name)))

    @staticmethod
    def _op(name, fn):
        from .._honesty import package_scope

        def call(*args):
            def run():
                with package_scope():
                    fn(*args)

            tracer = _TRACER
            return tracer.op(name, args, run) if tracer is not None else run()

        call.__name__ = name
        return call


# ------------------------------------------------------------------------------------------ calling
def _build_args(case: dict, arrays: dict, prefix: str, xp, ops) -> tuple[list, dict]:
    """The function's arguments (fresh copies) and the arrays by key, to read back afterwards."""
    made = {}

    def array(key):
        a = xp.array(arrays[f"{prefix}.{key}"], copy=True)
        made[key] = a
        return a

    args = []
    for d in case["args"]:
        if "array" in d:
            args.append(array(d["array"]))
        elif "dict" in d:
            args.append({name: array(key) for name, key in d["dict"].items()})
        elif "ops" in d:
            args.append(ops)
        elif "int" in d:
            args.append(int(d["int"]))
        elif "float" in d:
            args.append(float(d["float"]))
        else:
            args.append(None)
    return args, made


def _race_sink():
    """The CPU backend's list for same-value race warnings (None in a version without the race detector)."""
    try:
        from ..runtime import cpu
    except ImportError:
        return None
    return getattr(cpu, "RACE_WARNINGS", None)


def call(fn, req: dict, arrays: dict, run: dict, ops) -> tuple[dict, dict]:
    """One call of the learner's function: (frame meta, frame arrays)."""
    global _TRACER
    from .. import runtime
    from .._honesty import learner_scope

    backend = run["backend"]
    xp = np
    if backend == "cuda":
        import cupy as xp
    args, made = _build_args(req["cases"][run["case"]], arrays, f"c{run['case']}", xp, ops)
    if backend == "cpu":
        opts = dict(schedule=run["schedule"], timeout=req["launch_timeout"])
        # the race detector (KernelRace: verdict race) judges accesses whatever order the threads ran in, so once
        # per case is enough: in the second thread order, after the first has shown the kernel ends (a kernel
        # that never ends would fill the detector's memory before its time limit)
        if run.get("races") and "races" in inspect.signature(runtime.launch_options).parameters:
            opts["races"] = True
    else:
        opts = dict(check=True)
    meta = {"event": "run", "run": run["index"], "ok": True, "error": None, "returned": ""}
    out = {}
    tracer = None
    if run.get("trace"):
        from .trace import Tracer

        tracer = Tracer(made)
    race_warnings: list = []  # same-value races: warnings, not failures (as in the checks)
    sink = _race_sink() if backend == "cpu" else None
    token = sink.set(race_warnings) if sink is not None else None
    start = time.perf_counter()
    try:
        with (
            runtime.use_backend(backend),
            runtime.launch_options(**opts),
            array_module_for(fn, backend),
            learner_scope(req["checked"]),
        ):
            _TRACER = tracer
            try:
                returned = fn(*args)
            finally:
                _TRACER = None
            if backend == "cuda":
                xp.cuda.get_current_stream().synchronize()
        if returned is not None:
            meta["returned"] = type(returned).__name__
    except BaseException as e:  # noqa: BLE001 -- SystemExit, KeyboardInterrupt: the learner's too
        meta.update(ok=False, error=describe(e))
    meta["ms"] = (time.perf_counter() - start) * 1e3
    if token is not None:
        sink.reset(token)
    meta["race_warnings"] = [str(w)[:500] for w in race_warnings[:5]]
    for key, a in made.items():
        try:
            out[f"out.{key}"] = xp.asnumpy(a) if backend == "cuda" else np.asarray(a)
        except Exception as e:  # noqa: BLE001 -- a dead CUDA context: the arrays are gone
            meta.update(ok=False, error=meta["error"] or describe(e))
            break
    if tracer is not None and meta["ok"]:
        try:
            trace, blobs = tracer.finish()
        except Exception as e:  # noqa: BLE001
            trace, blobs = {"refused": f"{type(e).__name__}: {e}"}, {}
        meta["trace"] = trace
        out.update({f"trace.{k}": v for k, v in blobs.items()})
    return meta, out


# ------------------------------------------------------------------------------------------ main
def main() -> int:
    _nondumpable()
    frames = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # the learner's prints go to the log, never into the frames
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    req, arrays = next(wire.read(sys.stdin.buffer))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    cells = cell_runner()
    for i, source in enumerate(req["setup"]):
        err = cells.run(source)
        if err is not None:
            wire.write(frames, {"event": "setup_error", "cell": i, "error": err})
            return 0
    install_launch_hook()
    refuse_case_builder()
    wire.write(frames, {"event": "setup_done"})
    for i, source in enumerate(req["cells"]):
        wire.write(frames, {"event": "cell", "index": i, "error": cells.run(source)})
    fn = cells.ns.get(req["function"])
    if not callable(fn):
        what = "not defined" if fn is None else f"a {type(fn).__name__}, not a function"
        wire.write(frames, {"event": "missing", "what": what})
        return 0
    ops = BlockOps() if req["kind"] == "block" else None
    for run in req["runs"]:
        meta, out = call(fn, req, arrays, run, ops)
        wire.write(frames, meta, out)
    wire.write(frames, {"event": "done"})
    frames.close()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # no interpreter shutdown: learner threads and atexit hooks do not run
