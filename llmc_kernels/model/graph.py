"""One training step as one CUDA graph: launch hundreds of kernels with a single call.

From Python every kernel launch costs several microseconds of host work (argument checks, CuPy's launch),
and a GPT-2 step launches ~400 of them. A CUDA graph records the launches once (stream capture) and replays
them as one unit; the GPU then runs the step back to back with no host in between. What that demands of
the step (the fast model is written for it):

- no host synchronisation inside it (no ``float(loss)``, no ``.get()``, no checks that read device data):
  the loss goes to a device buffer read after the step, token ids are validated before it;
- no allocation inside it: the graph replays fixed addresses, so every buffer exists before the capture;
- numbers that change between steps (learning rate, AdamW's bias corrections, the tokens) live in device
  buffers that the host writes before each replay; launch arguments are frozen at capture.

``StepGraph.run(key, fn)``: the first call for a ``key`` runs ``fn`` eagerly on the graph's stream (a
real step, and the warm-up: kernels compile, cuBLAS sets up its workspace for the stream); the next call
captures ``fn`` and launches the graph; later calls with the same key only launch. A new key (other
buffer addresses, batch shape or precision) starts over. If the capture fails (a CuPy without capture
support, an operation that cannot be captured) the failure is remembered in ``.failed`` and ``fn`` keeps
running eagerly: slower, never wrong. A capture during which CuPy's memory pool handed out memory is
refused the same way (a replay would write into memory that may belong to someone else by then). Work runs
on ``.stream``; the caller synchronises it.
"""

from __future__ import annotations


def _allocation_counter(cupy):
    """A CuPy memory hook counting pool allocations (None if this CuPy has no hooks)."""
    try:
        base = cupy.cuda.MemoryHook
    except AttributeError:
        return None

    class Counter(base):
        name = "llmc_capture_allocations"

        def __init__(self):
            self.count = 0

        def malloc_preprocess(self, **kwargs):
            self.count += 1

    return Counter()


class StepGraph:
    def __init__(self):
        import cupy

        self.cupy = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.graph = None
        self.key = None
        self.warm_key = None
        self.failed: str | None = None
        self.captures = 0  # how many graphs were captured (tests, reports)
        self.replays = 0

    def run(self, key, fn) -> str:
        """Run one step through the graph for ``key`` (see the module doc); returns "graph", "captured" or
        "eager" (what happened)."""
        if self.graph is not None and key == self.key:
            self.graph.launch(self.stream)
            self.replays += 1
            return "graph"
        if self.graph is not None:  # another shape or other buffers: the old graph is of no use
            self.graph, self.key = None, None
        if self.failed is None and key == self.warm_key:
            graph = self._capture(fn)
            if graph is not None:
                self.graph, self.key = graph, key
                self.captures += 1
                graph.launch(self.stream)
                return "captured"
        with self.stream:
            fn()
        self.warm_key = key
        return "eager"

    def _capture(self, fn):
        s = self.stream
        counter = _allocation_counter(self.cupy)
        try:
            with s:
                s.begin_capture()
                try:
                    if counter is None:
                        fn()
                    else:
                        with counter:
                            fn()
                finally:
                    graph = s.end_capture()  # always end it, or the stream stays in capture mode
            if counter is not None and counter.count:
                self.failed = f"{counter.count} allocation(s) from CuPy's memory pool during the capture"
                return None
            return graph
        except Exception as e:  # noqa: BLE001 - any failure means: run eagerly instead
            self.failed = f"{type(e).__name__}: {e}"
            try:
                if s.is_capturing():
                    s.end_capture()
            except Exception:  # noqa: BLE001
                pass
            return None
