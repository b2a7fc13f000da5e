"""Issue 13's threat model, tried as a determined student would: each submission here tries one way to full
marks without a working kernel (or to change what the grader does for others), and must not get it.

One `llmc grade` run grades the class (chapter 05, GELU, plus one chapter-09 block); separate runs cover
`--chapter`, a submission that writes into the package, and the network. Where a cheat is shown to work against
the learner-facing check, the test says so: without the grader's defense it would earn the point.

1. the check judged in the learner's process: patching the checker, its comparison, its failure path or NumPy
   from the exercise cell, from inside the function, from a thread, through sys.modules; forging the records
   the grader reads (PASS lines, result files, the worker's own result frames);
2. predictable inputs: answers prepared for the check's default cases; the checks' case builder at cell time;
3. no kernel: NumPy on the host, a host fix-up after a kernel, an answer smuggled through a scratch buffer, the
   package's kernel source compiled or pasted, the package's ops called from a thread, a chapter-09 block that
   computes an activation itself;
4. reaching outside: reading --solutions, the grader's environment, a daemon that rewrites the CSV, memory,
   the network, writing into the package;
5. the wrong notebook: renamed, relabelled, or both.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _grade_helpers import (
    ROOT,
    SOLUTIONS,
    llmc_grade,
    mutate,
    namespaces_reason,
    read_csv,
    section,
    set_source,
    solved,
    source,
    student,
    write,
)

pytestmark = pytest.mark.slow
TIMEOUT = 60
FWD, BWD = "ex-gelu_forward", "ex-gelu_backward"
DOC = '    """out[i] = GELU(inp[i]) for 0 <= i < N (tanh approximation)."""'
GELU = (
    "def _gelu(x):\n    x = np.asarray(x, dtype=np.float64)\n"
    "    return (0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))).astype(np.float32)\n"
)
COPY_KERNEL = (
    'COPY_SRC = r"""\nextern "C" __global__ void copy_kernel(float* out, const float* src, int N) {\n'
    '    int i = blockIdx.x * blockDim.x + threadIdx.x;\n    if (i < N) out[i] = src[i];\n}\n"""\n'
    'copy_kernel = RawKernel(COPY_SRC, "copy_kernel")\n'
)


def wrong_forward() -> str:
    """The solved forward kernel with one mistake (0.6 for 0.5): the checks must fail it."""
    return source(solved("05_gelu"), FWD).replace("out[i] = 0.5f * x", "out[i] = 0.6f * x")


def with_forward(text: str, base: dict | None = None) -> dict:
    """Chapter 05 with ``text`` as the forward's exercise cell (the backward untouched: not attempted)."""
    return set_source(base or student("05_gelu"), FWD, text)


def in_function(prefix: str, body: str) -> str:
    """``prefix`` + the wrong forward kernel whose function first runs ``body`` (indented)."""
    lines = "".join(f"    {line}\n" for line in body.strip("\n").split("\n"))
    return prefix + wrong_forward().replace(DOC, DOC + "\n" + lines.rstrip("\n"))


# ------------------------------------------------------------------------------------------- 1. the checker
PATCH = """
import numpy, llmc_kernels.check as _c, llmc_kernels.check.compare as _cc
class _Ok:
    def __init__(self, t, *a, **k):
        self.name, self.ok, self.max_abs, self.max_rel, self.worst, self.hints = t.name, True, 0.0, 0.0, 0.0, []
    def row(self):
        return self.name
_cc.compare = _c.compare = _Ok
_c.TOLERANCES.update({k: (1e30, 1e30) for k in _c.TOLERANCES})
_c._fail = lambda name, text, cause: print("PASS " + name)
numpy.allclose = lambda *a, **k: True
check.forward = lambda op, fn, *a, **k: print("PASS gelu_forward")
"""
THREAD = """
import sys, threading, time, llmc_kernels.check as _c
def _keep_patching():
    while True:
        _c.TOLERANCES.update({k: (1e30, 1e30) for k in _c.TOLERANCES})
        _c.forward = lambda *a, **k: print("PASS gelu_forward")
        sys.__stdout__.write("PASS gelu_forward\\n")
        time.sleep(0.01)
threading.Thread(target=_keep_patching, daemon=True).start()
"""
MODULES = """
import sys, types
_fake = types.ModuleType("llmc_kernels.check")
_fake.forward = _fake.backward = lambda op, fn, *a, **k: print("PASS gelu_forward")
for _name in ("llmc_kernels.check", "llmc_kernels.check.compare", "llmc_kernels.check.cases"):
    sys.modules[_name] = _fake
sys.modules["numpy"].allclose = lambda *a, **k: True
"""
# forge the worker's own result frames: the right answers (from NumPy) for every call, a trace that "sets" the
# output, a PASS line and a result file, then leave before the real calls
FORGE = (
    GELU
    + """
import inspect, os
from llmc_kernels.grade import wire as _w
_main = next(f.frame for f in inspect.stack() if {"req", "arrays", "frames"} <= set(f.frame.f_locals))
_req, _arrays, _out = (_main.f_locals[k] for k in ("req", "arrays", "frames"))
for _run in _req["runs"]:
    _pre = f"c{_run['case']}."
    _got = {"out." + k[len(_pre):]: v.copy() for k, v in _arrays.items() if k.startswith(_pre)}
    _got["out.out"] = _gelu(_got["out.inp"])
    _meta = {"event": "run", "run": _run["index"], "ok": True, "returned": "", "ms": 1.0}
    if _run.get("trace"):
        _n = int(_got["out.out"].size)
        _noop = 'extern "C" __global__ void noop(float* out, int N) { }'
        _meta["trace"] = {"buffers": [{"grader": "out"}, {"grader": "inp"}], "refused": "", "events": [
            {"launch": {"code": _noop, "name": "noop", "options": [], "internal": False, "grid": [1], "block": [1],
                        "shared_mem": 0, "args": [{"buf": 0, "offset": 0, "dtype": "<f4", "shape": [_n],
                                                   "strides": [4]}, {"int": _n}]}},
            {"set": 0, "blob": "b"}]}
        _got["trace.b"] = _got["out.out"].view(np.uint8).copy()
    _w.write(_out, _meta, _got)
_w.write(_out, {"event": "done"})
print("PASS gelu_forward")
open("results.jsonl", "w").write('{"outcome": "passed", "cell": "check"}\\n')
os._exit(0)
"""
)


def default_seed_cheat() -> str:
    """Answers for the check's default cases (seed 0), computed here and pasted in, replayed through a kernel."""
    from llmc_kernels.check.cases import build, default_specs

    buf, n = io.BytesIO(), 0
    arrays = {}
    for n, spec in enumerate(default_specs("gelu", "forward")):
        case = build("gelu_forward", spec, 0)
        out, inp = case.tensors
        arrays[f"in{n}"], arrays[f"out{n}"] = inp.initial, out.expected.astype(np.float32)
    np.savez_compressed(buf, **arrays)
    data = base64.b64encode(buf.getvalue()).decode()
    return (
        f"import base64, io\n_z = np.load(io.BytesIO(base64.b64decode({data!r})))\n"
        f"_known = {{_z[f'in{{i}}'].tobytes(): _z[f'out{{i}}'] for i in range({n + 1})}}\n"
        + COPY_KERNEL
        + "\n\ndef gelu_forward(out, inp, N):\n"
        "    host = inp.get() if hasattr(inp, 'get') else inp\n"
        "    answer = _known.get(np.ascontiguousarray(host).tobytes(), np.zeros(N, np.float32))\n"
        "    copy_kernel(((N + 255) // 256,), (256,), (out, xp.asarray(answer), np.int32(N)))\n"
    )


# ------------------------------------------------------------------------------------------- 3. no kernel
def package_paste() -> str:
    """The package's gelu_forward_kernel and its helpers, pasted with new names and no comments."""
    import re

    src = (ROOT / "llmc_kernels" / "kernels" / "gelu.cu").read_text()
    piece = src[src.index("#define GELU_SCALING") : src.index('extern "C" __global__ void gelu_forward_vec4')]
    piece = re.sub(r"//.*", "", piece)
    for old, new in (
        ("gelu_sigmoid", "my_sigmoid"),
        ("GELU_CUBE", "CUBIC"),
        ("gelu_grad", "my_grad"),
        ("gelu_forward_kernel", "my_gelu_kernel"),
    ):
        piece = re.sub(rf"\b{old}\b", new, piece)
    piece = re.sub(r"(?<!\.)\bx\b", "v", piece)
    return (
        f'MY_SRC = r"""\n{piece}"""\nmy_gelu_kernel = RawKernel(MY_SRC, "my_gelu_kernel")\n\n'
        "def gelu_forward(out, inp, N):\n"
        "    my_gelu_kernel(((N + 255) // 256,), (256,), (out, inp, np.int32(N)))\n"
    )


PACKAGE_FILE = (
    "from pathlib import Path\nimport llmc_kernels\n"
    "_SRC = (Path(llmc_kernels.__file__).parent / 'kernels' / 'gelu.cu').read_text()\n"
    "_k = RawKernel(_SRC, 'gelu_forward_kernel')\n\n"
    "def gelu_forward(out, inp, N):\n"
    "    _k(((N + 255) // 256,), (256,), (out, inp, np.int32(N)))\n"
)
OPS_THREAD = (
    "import threading\nfrom llmc_kernels import ops\n\n"
    "def gelu_forward(out, inp, N):\n"
    "    t = threading.Thread(target=ops.gelu_forward, args=(out, inp, N))   # outside the check's scope\n"
    "    t.start()\n    t.join()\n"
)
NUMPY_ONLY = (
    GELU
    + "\ndef gelu_forward(out, inp, N):\n    out[...] = xp.asarray(_gelu(inp.get() if hasattr(inp, 'get') else inp))\n"
)
SMUGGLE = (
    GELU
    + COPY_KERNEL
    + (
        "\ndef gelu_forward(out, inp, N):\n"
        "    answer = xp.asarray(_gelu(inp.get() if hasattr(inp, 'get') else inp))\n"
        "    copy_kernel(((N + 255) // 256,), (256,), (out, answer, np.int32(N)))\n"
    )
)


# ------------------------------------------------------------------------------------------- 4. outside
def solutions_reader(private: Path) -> str:
    return f"""import json, os
PRIVATE = {str(private)!r}
_leaks = [v for v in os.environ.values() if PRIVATE in v]
for _pid in ("self", str(os.getppid())):
    try:
        _leaks += [a for a in open(f"/proc/{{_pid}}/cmdline").read().split("\\0") if PRIVATE in a]
    except OSError:
        pass
assert not _leaks, _leaks
_nb = json.load(open(os.path.join(PRIVATE, "05_gelu.ipynb")))
for _c in _nb["cells"]:
    if _c.get("metadata", {{}}).get("llmc", {{}}).get("role") == "exercise":
        exec("".join(_c["source"]))
"""


def environment_probe(folder: Path) -> str:
    return f"""import os
assert "LLMC_TEST_SECRET" not in os.environ, "the grader's environment reached the learner"
assert os.environ["HOME"] != {os.path.expanduser("~")!r} and os.path.isdir(os.environ["HOME"])
assert not os.path.realpath(os.getcwd()).startswith({str(folder.resolve())!r}), os.getcwd()
"""


def daemon(heartbeat: Path, csv_path: Path) -> str:
    return f"""import os, time
if os.fork() == 0:                       # a daemon: fork, new session, fork again, parent gone
    os.setsid()
    if os.fork() == 0:
        _end = time.time() + 120
        while time.time() < _end:
            try:
                with open({str(heartbeat)!r}, "a") as _f:
                    _f.write(".")
                if os.path.exists({str(csv_path)!r}):
                    open({str(csv_path)!r}, "w").write("hacked\\n")
            except OSError:
                pass
            time.sleep(0.1)
    os._exit(0)
"""


def network(port: int) -> str:
    return f"""import socket
try:
    _s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    _s.sendall(b"the answers, please")
    _s.close()
except OSError:
    pass
"""


class Listener:
    """A TCP server on the grader's loopback that records every connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue


# ------------------------------------------------------------------------------------------- the class
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("threats")
    private = folder / "private-solutions"
    shutil.copytree(SOLUTIONS, private)
    out = folder / "out"
    csv_path, heartbeat = out / "grades.csv", folder / "heartbeat.txt"
    listener = Listener()
    subs = {}

    def add(name, nb):
        subs[name] = write(folder, name, nb)

    add("solved_05_gelu.ipynb", solved("05_gelu"))
    add("patch_cell_05_gelu.ipynb", with_forward(PATCH + wrong_forward()))
    add("patch_call_05_gelu.ipynb", with_forward(in_function("", PATCH + '\nprint("PASS gelu_forward")')))
    add("patch_thread_05_gelu.ipynb", with_forward(THREAD + wrong_forward()))
    add("patch_modules_05_gelu.ipynb", with_forward(MODULES + wrong_forward()))
    add("forge_05_gelu.ipynb", with_forward(source(student("05_gelu"), FWD) + "\n" + FORGE))
    add("default_seed_05_gelu.ipynb", with_forward(default_seed_cheat()))
    add(
        "builder_05_gelu.ipynb",
        with_forward(
            "from llmc_kernels.check import cases as cc\n"
            "_cases = [cc.build('gelu_forward', s, 0) for s in cc.default_specs('gelu', 'forward')]\n"
            + default_seed_cheat()
        ),
    )
    add("numpy_05_gelu.ipynb", with_forward(NUMPY_ONLY))
    add(
        "fixup_05_gelu.ipynb",
        with_forward(
            GELU + wrong_forward() + "\n    out[...] = xp.asarray(_gelu(inp.get() if hasattr(inp, 'get') else inp))\n"
        ),
    )
    add("smuggle_05_gelu.ipynb", with_forward(SMUGGLE))
    add("package_file_05_gelu.ipynb", with_forward(PACKAGE_FILE))
    add("package_paste_05_gelu.ipynb", with_forward(package_paste()))
    add("ops_thread_05_gelu.ipynb", with_forward(OPS_THREAD))
    add(
        "block_host_09_gpt2_model.ipynb",
        mutate(
            solved("09_gpt2_model"),
            "ex-block_forward",
            'ops.residual_forward(a["residual2"], x, a["attproj"], N)',
            'a["residual2"][...] = x + a["attproj"]',
        ),
    )
    add("solutions_05_gelu.ipynb", with_forward(solutions_reader(private)))
    env = solved("05_gelu")
    for cid in (FWD, BWD):
        set_source(env, cid, environment_probe(folder) + source(env, cid))
    add("environment_05_gelu.ipynb", env)
    add(
        "daemon_05_gelu.ipynb",
        set_source(solved("05_gelu"), FWD, daemon(heartbeat, csv_path) + source(solved("05_gelu"), FWD)),
    )
    add(
        "network_05_gelu.ipynb",
        set_source(solved("05_gelu"), FWD, network(listener.port) + source(solved("05_gelu"), FWD)),
    )
    add("memory_05_gelu.ipynb", mutate(solved("05_gelu"), FWD, DOC, DOC + "\n    _hog = np.empty(12 << 30, np.uint8)"))
    add("renamed_05_gelu.ipynb", solved("06_residual"))  # 06, file named as 05
    relabelled = solved("06_residual")
    relabelled["metadata"]["llmc"]["chapter"] = "05_gelu"
    add("relabelled_06_residual.ipynb", relabelled)  # 06, metadata says 05
    add("both_05_gelu.ipynb", relabelled)  # 06, both say 05

    env_vars = dict(os.environ, LLMC_TEST_SECRET="do not leak")
    started = time.monotonic()
    proc = llmc_grade(
        *subs.values(),
        "--csv",
        csv_path,
        "--timeout",
        TIMEOUT,
        "--jobs",
        2,
        "--solutions",
        private,
        "--memory",
        4,
        cwd=folder,
        env=env_vars,
    )
    seconds = time.monotonic() - started
    listener.stop = True
    header, rows = read_csv(csv_path)
    return {
        "proc": proc,
        "rows": rows,
        "out": out,
        "csv": csv_path,
        "heartbeat": heartbeat,
        "listener": listener,
        "folder": folder,
        "seconds": seconds,
    }


def row(graded, name):
    return graded["rows"][name]


def line(graded, name, exercise):
    table = section(graded["proc"].stdout, name)
    return next(l for l in table.splitlines() if l.strip().startswith(exercise))


def test_the_class_was_graded(graded):
    assert graded["proc"].returncode == 0, graded["proc"].stderr[-4000:]
    assert row(graded, "solved_05_gelu.ipynb")["total"] == "3"


# ---- 1. the verdict is the grader's
@pytest.mark.parametrize(
    "name",
    [
        "patch_cell_05_gelu.ipynb",
        "patch_call_05_gelu.ipynb",
        "patch_thread_05_gelu.ipynb",
        "patch_modules_05_gelu.ipynb",
    ],
)
def test_patching_the_checker_or_numpy_changes_nothing(graded, name):
    assert row(graded, name)["gelu_forward"] == "0", section(graded["proc"].stdout, name)
    assert "wrong" in line(graded, name, "gelu_forward")  # the wrong kernel was judged as it is


def test_forged_results_pass_lines_and_files_are_not_believed(graded):
    name = "forge_05_gelu.ipynb"
    assert row(graded, name)["gelu_forward"] == "0"
    # the forged arrays were right (NumPy's); what failed them is that no kernel of the learner's wrote them
    assert "no kernel" in line(graded, name, "gelu_forward"), section(graded["proc"].stdout, name)


# ---- 2. predictable inputs
def test_answers_prepared_for_the_default_cases_fail(graded):
    from llmc_kernels import check

    ns: dict = {}
    exec(source(solved("05_gelu"), "imports") + "\n" + default_seed_cheat(), ns)
    assert repr(check.forward("gelu", ns["gelu_forward"])) == "PASS gelu_forward"  # it fools the check ...
    name = "default_seed_05_gelu.ipynb"
    assert row(graded, name)["gelu_forward"] == "0"  # ... not the grader
    assert "wrong" in line(graded, name, "gelu_forward")


def test_the_case_builder_is_refused_during_grading(graded):
    name = "builder_05_gelu.ipynb"
    assert row(graded, name)["gelu_forward"] == "0"
    assert "case builder is not available" in section(graded["proc"].stdout, name)


# ---- 3. kernels of the learner's own
@pytest.mark.parametrize(
    "name, verdict",
    [
        ("numpy_05_gelu.ipynb", "no kernel"),
        ("fixup_05_gelu.ipynb", "no kernel"),
        ("smuggle_05_gelu.ipynb", "no kernel"),
        ("package_file_05_gelu.ipynb", "package kernel"),
        ("package_paste_05_gelu.ipynb", "package kernel"),
        ("ops_thread_05_gelu.ipynb", "package kernel"),
    ],
)
def test_outputs_must_come_from_the_learners_own_kernels(graded, name, verdict):
    assert row(graded, name)["gelu_forward"] == "0"
    assert verdict in line(graded, name, "gelu_forward"), section(graded["proc"].stdout, name)
    feedback = (graded["out"] / name.replace(".ipynb", ".feedback.md")).read_text()
    assert "kernel" in feedback.split("## gelu_forward", 1)[1]


def test_a_block_that_computes_an_activation_itself_fails(graded):
    name = "block_host_09_gpt2_model.ipynb"
    r = row(graded, name)
    assert (r["block_forward"], r["block_backward"]) == ("0", "3"), section(graded["proc"].stdout, name)
    assert "no kernel" in line(graded, name, "block_forward")
    assert "residual2" in (graded["out"] / "block_host_09_gpt2_model.feedback.md").read_text()


# ---- 4. reaching outside
def test_the_solutions_are_out_of_reach(graded):
    name = "solutions_05_gelu.ipynb"
    text = section(graded["proc"].stdout, name)
    assert "AssertionError" not in text, text  # no path to them in the environment or the arguments
    reason = namespaces_reason()
    if reason:
        pytest.skip(f"reading a known path needs a mount namespace to hide it ({reason})")
    assert row(graded, name)["gelu_forward"] == "0", text


def test_learner_processes_get_a_private_home_and_no_grader_environment(graded):
    assert row(graded, "environment_05_gelu.ipynb")["total"] == "3", section(
        graded["proc"].stdout, "environment_05_gelu.ipynb"
    )


def test_a_daemon_cannot_outlive_grading(graded):
    assert row(graded, "daemon_05_gelu.ipynb")["total"] == "3"
    time.sleep(1.5)
    assert graded["csv"].read_text().startswith("submission,")
    size = graded["heartbeat"].stat().st_size if graded["heartbeat"].exists() else 0
    time.sleep(1.0)
    assert (graded["heartbeat"].stat().st_size if graded["heartbeat"].exists() else 0) == size, "still beating"


def test_memory_is_limited(graded):
    name = "memory_05_gelu.ipynb"
    assert row(graded, name)["gelu_forward"] == "0"
    assert "MemoryError" in line(graded, name, "gelu_forward")


def test_no_network(graded):
    reason = namespaces_reason()
    if reason:
        pytest.skip(reason)
    assert row(graded, "network_05_gelu.ipynb")["total"] == "3"
    assert graded["listener"].connections == 0


# ---- 5. the wrong notebook
def test_a_notebook_of_another_chapter_is_flagged(graded):
    renamed = row(graded, "renamed_05_gelu.ipynb")
    assert renamed["total"] == "2" and "06_residual" in renamed["note"] and "05_gelu" in renamed["note"]
    for name in ("relabelled_06_residual.ipynb", "both_05_gelu.ipynb"):
        r = row(graded, name)
        assert r["total"] == "0" and r["note"].startswith("wrong notebook?"), r
    assert "exercise cells are those of chapter 06_residual" in row(graded, "both_05_gelu.ipynb")["note"]
    assert row(graded, "solved_05_gelu.ipynb")["note"] == ""
    feedback = (graded["out"] / "both_05_gelu.feedback.md").read_text()
    assert "**Note:** wrong notebook?" in feedback


def test_chapter_pins_the_expected_chapter(tmp_path):
    subs = [write(tmp_path, "alice.ipynb", solved("05_gelu")), write(tmp_path, "bob.ipynb", solved("06_residual"))]
    proc = llmc_grade(*subs, "--chapter", "05_gelu", "--csv", tmp_path / "g.csv", "--timeout", TIMEOUT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    header, rows = read_csv(tmp_path / "g.csv")
    assert header == ["submission", "gelu_forward", "gelu_backward", "total", "max", "note"]
    assert (rows["alice.ipynb"]["total"], rows["alice.ipynb"]["note"]) == ("3", "")
    assert rows["bob.ipynb"]["total"] == "0" and "--chapter" in rows["bob.ipynb"]["note"]
    bad = llmc_grade(subs[0], "--chapter", "99_nothing", cwd=tmp_path)
    assert bad.returncode == 2 and "--chapter 99_nothing" in bad.stderr


def test_writing_into_the_package_stops_grading(tmp_path):
    """The grader runs from a copy of the package here: the submission appends to its checker."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "llmc_kernels", copy / "llmc_kernels", ignore=shutil.ignore_patterns("__pycache__"))
    writer = mutate(
        solved("05_gelu"),
        FWD,
        DOC,
        DOC + "\n    import llmc_kernels, pathlib\n"
        "    p = pathlib.Path(llmc_kernels.__file__).parent / 'check' / 'compare.py'\n"
        "    p.write_text(p.read_text() + '\\n# nothing to see here\\n')",
    )
    subs = [
        write(tmp_path, "writer_05_gelu.ipynb", writer),
        write(tmp_path, "later_06_residual.ipynb", solved("06_residual")),
    ]
    proc = llmc_grade(
        *subs,
        "--solutions",
        SOLUTIONS,
        "--csv",
        tmp_path / "g.csv",
        "--timeout",
        TIMEOUT,
        cwd=tmp_path,
        pythonpath=copy,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "STOPPED" in proc.stderr and "writer_05_gelu.ipynb" in proc.stderr and "compare.py" in proc.stderr
    assert "later_06_residual.ipynb" not in proc.stderr.split("STOPPED", 1)[1].split(":")[1]
    assert not (tmp_path / "g.csv").exists()


def test_without_namespaces_a_daemon_still_dies_before_results(tmp_path):
    """The fallback where Linux refuses namespaces: the grader, a child subreaper, finds the daemon anyway."""
    csv_path, heartbeat = tmp_path / "g.csv", tmp_path / "beat"
    nb = set_source(solved("05_gelu"), FWD, daemon(heartbeat, csv_path) + source(solved("05_gelu"), FWD))
    sub = write(tmp_path, "daemon_05_gelu.ipynb", nb)
    proc = llmc_grade(
        sub, "--csv", csv_path, "--timeout", TIMEOUT, cwd=tmp_path, env=dict(os.environ, LLMC_GRADE_NAMESPACES="0")
    )
    assert proc.returncode == 0 and "sandbox: no namespaces" in proc.stderr, proc.stderr
    assert read_csv(csv_path)[1]["daemon_05_gelu.ipynb"]["total"] == "3"
    size = heartbeat.stat().st_size
    time.sleep(1.0)
    assert heartbeat.stat().st_size == size and csv_path.read_text().startswith("submission,")


def test_a_race_is_its_own_verdict(tmp_path):
    """`+=` where atomicAdd belongs: right on the CPU's serial threads, caught by the race detector (issue 12)."""
    from llmc_kernels import errors

    if not hasattr(errors, "KernelRace"):
        pytest.skip("this version of the CPU backend has no race detector")
    nb = mutate(solved("01_encoder"), "ex-encoder_backward", "atomicAdd(&dwpe[t * C + c], d);", "dwpe[t * C + c] += d;")
    sub = write(tmp_path, "race_01_encoder.ipynb", nb)
    proc = llmc_grade(sub, "--csv", tmp_path / "g.csv", "--timeout", TIMEOUT, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = read_csv(tmp_path / "g.csv")[1]["race_01_encoder.ipynb"]
    assert (r["encoder_forward"], r["encoder_backward"]) == ("1", "0"), proc.stdout
    assert "race" in section(proc.stdout, "race_01_encoder.ipynb").split("encoder_backward", 1)[1].split("\n")[0]


def test_threat_run_time(graded):
    """For the report: the whole class (about 30 exercises, 2 jobs)."""
    print(f"\nthreat class graded in {graded['seconds']:.0f} s")


@pytest.mark.gpu
def test_on_a_gpu_the_provenance_check_runs_on_the_cpu_backend(tmp_path):
    """`llmc grade --backend cuda`: the learner's function runs on the GPU, its launches are recorded and replayed
    on the CPU backend (as the pre-flight runs), so host answers and the package's kernels fail there too."""
    subs = {
        name: write(tmp_path, name, nb)
        for name, nb in (
            ("solved_05_gelu.ipynb", solved("05_gelu")),
            ("numpy_05_gelu.ipynb", with_forward(NUMPY_ONLY)),
            (
                "fixup_05_gelu.ipynb",
                with_forward(
                    GELU + wrong_forward() + "\n    out[...] = xp.asarray(_gelu("
                    "inp.get() if hasattr(inp, 'get') else inp))\n"
                ),
            ),
            ("package_paste_05_gelu.ipynb", with_forward(package_paste())),
            ("oob_06_residual.ipynb", mutate(solved("06_residual"), "ex-residual_forward", "if (i < N) {", "{")),
            ("solved_09_gpt2_model.ipynb", solved("09_gpt2_model")),
        )
    }
    proc = llmc_grade(
        *subs.values(), "--backend", "cuda", "--csv", tmp_path / "g.csv", "--timeout", 120, "--jobs", 2, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cuda backend" in proc.stderr
    rows = read_csv(tmp_path / "g.csv")[1]
    assert rows["solved_05_gelu.ipynb"]["total"] == "3" and rows["solved_09_gpt2_model.ipynb"]["total"] == "5", (
        proc.stdout
    )
    for name, verdict in (
        ("numpy_05_gelu.ipynb", "no kernel"),
        ("fixup_05_gelu.ipynb", "no kernel"),
        ("package_paste_05_gelu.ipynb", "package kernel"),
    ):
        assert rows[name]["gelu_forward"] == "0" and verdict in section(proc.stdout, name), section(proc.stdout, name)
    oob = rows["oob_06_residual.ipynb"]
    assert (oob["residual_forward"], oob["residual_backward"]) == ("0", "1"), proc.stdout
    print(proc.stderr)
