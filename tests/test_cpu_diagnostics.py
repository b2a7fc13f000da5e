"""Every learner-caused failure on the CPU backend is a KernelError naming the kernel, the learner's line,
the thread and block, and what went wrong; all of them run inside this one pytest process, which has to
survive them (a crash would end the test run).
"""

from __future__ import annotations

import faulthandler
import os
import platform
import signal
import threading
import time

import numpy as np
import pytest

from llmc_kernels import KernelCompileError, KernelDeadlock, KernelError, KernelOutOfBounds, KernelTimeout, KernelTrap
from llmc_kernels.runtime import RawKernel, launch_options

HERE = os.path.basename(__file__)


def line_of(code: str, marker: str) -> int:
    """1-based line of the kernel string holding ``marker``."""
    return next(i for i, text in enumerate(code.split("\n"), 1) if marker in text)


def fail(code, name, grid, block, args, shared_mem=0, **options) -> KernelError:
    kernel = RawKernel(code, name, backend="cpu")
    with launch_options(**options), pytest.raises(KernelError) as info:
        kernel(grid, block, args, shared_mem=shared_mem)
    err = info.value
    assert err.kernel == name
    return err


def assert_at(err: KernelError, code: str, marker: str, in_file: bool = True):
    """The error points at the marked line; ``in_file``: the string is a literal of this file (not built
    with .replace), so the location names this file and its line."""
    line = line_of(code, marker)
    assert err.kernel_line == line, str(err)
    if in_file:
        assert f"{HERE}, line " in err.location, err.location  # the learner's file, not "kernel string"
    assert f"(kernel line {line})" in str(err)


# -------------------------------------------------------------------------------------- out of bounds
OOB_READ = r"""
extern "C" __global__ void scale(float* out, const float* inp, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) {                       // off by one
        out[i] = 2.0f * inp[i];         // <- here
    }
}
"""


def test_read_past_the_end_names_argument_shape_index_thread_and_block():
    out, inp = np.zeros((4, 25), np.float32), np.ones((4, 25), np.float32)
    err = fail(OOB_READ, "scale", (2,), (64,), (out, inp, np.int32(100)))
    assert isinstance(err, KernelOutOfBounds) and isinstance(err, IndexError)
    assert_at(err, OOB_READ, "<- here")
    assert err.block == (1, 0, 0) and err.thread == (36, 0, 0)  # i = 64 + 36 = 100
    assert err.index == 100 and err.buffer == "argument 1 'inp'"
    msg = str(err)
    assert "index 100 of argument 1 'const float* inp'" in msg
    assert "past its end" in msg and "100 elements of float32" in msg and "(4, 25)" in msg
    assert "valid indices are 0..99" in msg
    assert "blockIdx=(1,0,0), threadIdx=(36,0,0)" in msg


OOB_WRITE = r"""
extern "C" __global__ void shift(float* out, const float* inp, int n) {
    int i = threadIdx.x;
    out[i - 3] = inp[i];                // <- here
}
"""


def test_write_before_the_start_reports_a_negative_index():
    err = fail(OOB_WRITE, "shift", (1,), (8,), (np.zeros(8, np.float32), np.ones(8, np.float32), np.int32(8)))
    assert_at(err, OOB_WRITE, "<- here")
    assert err.index == -3 and err.thread == (0, 0, 0)
    assert "index -3 of argument 0 'float* out' is 3 before its start" in str(err)
    assert "out-of-bounds access" in str(err)  # not a const pointer: read or write


DERIVED = r"""
extern "C" __global__ void rows(float* out, const float* inp, int C) {
    const float* x = inp + blockIdx.x * C;    // a pointer derived from an argument keeps its bounds
    float *o = out + blockIdx.x * C, *end = o + C;
    float v = *(x + threadIdx.x + 1);         // <- deref
    end[-1] = v;
    o->x;
}
"""


def test_unary_deref_of_a_derived_pointer_has_its_line():
    code = DERIVED.replace("    o->x;\n", "")
    out, inp = np.zeros((3, 4), np.float32), np.ones((3, 4), np.float32)
    err = fail(code, "rows", (3,), (4,), (out, inp, np.int32(4)))
    assert_at(err, code, "<- deref", in_file=False)
    assert err.block == (2, 0, 0) and err.thread == (3, 0, 0)
    assert "index 12 of argument 1 'const float* inp'" in str(err)


ARROW = r"""
struct Pair { float a, b; };
extern "C" __global__ void pairs(float* out, const Pair* p, int n) {
    out[threadIdx.x] = p->a + (p + threadIdx.x)->b;   // <- arrow
}
"""


def test_arrow_access_is_checked_with_its_line():
    # Pair is not a type NumPy arguments can declare, so we call the cpu backend's kernel directly
    from llmc_kernels.runtime.cpu import CpuKernel
    from llmc_kernels.runtime.signature import KernelSignature, Param

    sig = KernelSignature(
        "pairs",
        (
            Param(0, "out", "float", True, False),
            Param(1, "p", "float2", True, True),
            Param(2, "n", "int", False, False),
        ),
        3,
        True,
    )
    k = CpuKernel(ARROW, "pairs", sig)
    with pytest.raises(KernelOutOfBounds) as info:
        k.launch((1, 1, 1), (4, 1, 1), [np.zeros(4, np.float32), np.ones((3, 2), np.float32), np.int32(3)])
    assert info.value.kernel_line == line_of(ARROW, "<- arrow") and info.value.thread == (3, 0, 0)


DYN_SHARED = r"""
extern "C" __global__ void stage(float* out, int n) {
    extern __shared__ float buf[];
    buf[threadIdx.x] = 1.0f;            // <- here
    __syncthreads();
    out[threadIdx.x] = buf[threadIdx.x];
}
"""


def test_dynamic_shared_memory_out_of_bounds():
    args = (np.zeros(64, np.float32), np.int32(64))
    err = fail(DYN_SHARED, "stage", (1,), (64,), args, shared_mem=32 * 4)
    assert_at(err, DYN_SHARED, "<- here")
    assert err.thread == (32, 0, 0)
    assert "dynamic shared memory" in str(err) and "shared_mem=128 bytes" in str(err)
    assert "valid indices 0..31" in str(err)
    err = fail(DYN_SHARED, "stage", (1,), (64,), args)
    assert "passed no dynamic shared memory" in str(err) and err.thread == (0, 0, 0)


STATIC_SHARED = r"""
extern "C" __global__ void tile(float* out) {
    __shared__ float t[32][8];
    t[threadIdx.x % 32][threadIdx.x / 32] = 1.0f;     // <- here
    __syncthreads();
    out[threadIdx.x] = t[0][0];
}
"""


def test_static_shared_array_out_of_bounds_names_the_array():
    err = fail(STATIC_SHARED, "tile", (1,), (288,), (np.zeros(288, np.float32),))
    assert_at(err, STATIC_SHARED, "<- here")
    assert err.thread == (256, 0, 0) and err.index == 8
    assert "__shared__ array 't'" in str(err) and "valid indices 0..7" in str(err)


def test_static_shared_array_out_of_bounds_through_a_pointer():
    code = r"""
extern "C" __global__ void via(float* out) {
    __shared__ float s[16];
    float* p = s + 4;
    p[threadIdx.x] = 1.0f;              // <- here
}
"""
    err = fail(code, "via", (1,), (16,), (np.zeros(1, np.float32),))
    assert err.thread == (12, 0, 0) and err.index == 16
    assert "__shared__ array 's' through a pointer" in str(err) and "valid indices 0..15" in str(err)


LOCAL_ARRAY = r"""
extern "C" __global__ void local(float* out, int n) {
    float v[8];
    for (int i = 0; i <= n; i++) v[i] = i;   // <- here
    out[0] = v[3];
}
"""


@pytest.mark.skipif(platform.system() != "Linux", reason="local arrays are checked through GCC's UBSan hooks")
def test_local_array_out_of_bounds():
    err = fail(LOCAL_ARRAY, "local", (1,), (1,), (np.zeros(1, np.float32), np.int32(8)))
    assert isinstance(err, KernelOutOfBounds)
    assert_at(err, LOCAL_ARRAY, "<- here")
    assert "index 8 of the local array" in str(err) and "float [8]" in str(err)


NULL = r"""
extern "C" __global__ void add_bias(float* out, const float* bias, int n) {
    out[threadIdx.x] += bias[threadIdx.x];   // <- here
}
"""


def test_null_pointer_argument():
    err = fail(NULL, "add_bias", (1,), (4,), (np.zeros(4, np.float32), None, np.int32(4)))
    assert_at(err, NULL, "<- here")
    assert "argument 1 'const float* bias' is a null pointer (None was passed)" in str(err)


FLOAT4 = r"""
extern "C" __global__ void load4(float* out, const float* inp, int offset) {
    float4 v = reinterpret_cast<const float4*>(inp + offset)[threadIdx.x];   // <- here
    out[threadIdx.x] = v.x + v.y + v.z + v.w;
}
"""


def test_misaligned_vector_access_is_a_trap():
    err = fail(FLOAT4, "load4", (1,), (2,), (np.zeros(2, np.float32), np.ones(16, np.float32), np.int32(1)))
    assert isinstance(err, KernelTrap)
    assert_at(err, FLOAT4, "<- here")
    assert "misaligned" in str(err) and "16-byte alignment" in str(err)


def test_vector_access_past_the_end_names_the_elements():
    err = fail(FLOAT4, "load4", (1,), (5,), (np.zeros(5, np.float32), np.ones(16, np.float32), np.int32(0)))
    assert isinstance(err, KernelOutOfBounds) and err.thread == (4, 0, 0)
    assert "16-byte access at byte offset 64" in str(err) and "elements 16..19" in str(err)


# ------------------------------------------------------------------------------------------- deadlocks
DIVERGENT = r"""
extern "C" __global__ void branches(float* out) {
    if (threadIdx.x < 64) {
        __syncthreads();                // <- first
    } else {
        __syncthreads();                // <- second
    }
    out[threadIdx.x] = 1.0f;
}
"""


@pytest.mark.parametrize("schedule", ["forward", "reverse"])
def test_deadlock_barriers_in_divergent_branches(schedule):
    err = fail(DIVERGENT, "branches", (1,), (128,), (np.zeros(128, np.float32),), schedule=schedule)
    assert isinstance(err, KernelDeadlock)
    first, second = line_of(DIVERGENT, "<- first"), line_of(DIVERGENT, "<- second")
    assert_at(err, DIVERGENT, "<- first")
    msg = str(err)
    assert "different barriers" in msg
    assert "64 threads (threadIdx.x 0..63) at line" in msg and "64 threads (threadIdx.x 64..127)" in msg
    assert f"(kernel line {first})" in msg and f"(kernel line {second})" in msg


EARLY_RETURN = r"""
extern "C" __global__ void early(float* out, int n) {
    __shared__ float s[128];
    if (threadIdx.x >= n) return;
    s[threadIdx.x] = 1.0f;
    __syncthreads();                    // <- here
    out[threadIdx.x] = s[0];
}
"""


@pytest.mark.parametrize("schedule", ["forward", "reverse", "shuffle"])
def test_deadlock_early_return_before_a_barrier(schedule):
    err = fail(EARLY_RETURN, "early", (2,), (128,), (np.zeros(128, np.float32), np.int32(96)), schedule=schedule)
    assert isinstance(err, KernelDeadlock)
    assert_at(err, EARLY_RETURN, "<- here")
    msg = str(err)
    assert "96 of the block's 128 threads wait at __syncthreads()" in msg
    assert "32 threads (threadIdx.x 96..127) returned without reaching it" in msg


WARP_SUBSET = r"""
extern "C" __global__ void half_warp(float* out) {
    float v = 1.0f;
    if (threadIdx.x % 32 < 16)
        v += __shfl_down_sync(0xffffffff, v, 1);   // <- here
    out[threadIdx.x] = v;
}
"""


def test_deadlock_warp_operation_not_reached_by_its_whole_warp():
    err = fail(WARP_SUBSET, "half_warp", (1,), (64,), (np.zeros(64, np.float32),))
    assert isinstance(err, KernelDeadlock)
    assert_at(err, WARP_SUBSET, "<- here")
    msg = str(err)
    assert "__shfl_down_sync(0xffffffff, ...)" in msg
    assert "16 threads (threadIdx.x 0..15) of warp 0 wait there" in msg
    assert "16 threads (threadIdx.x 16..31) returned without reaching it" in msg


PARTIAL_WARP = r"""
extern "C" __global__ void partial(float* out) {
    float v = threadIdx.x;
    v += __shfl_xor_sync(0xffffffff, v, 1);   // <- here
    out[threadIdx.x] = v;
}
"""


def test_deadlock_full_mask_in_a_partial_warp():
    err = fail(PARTIAL_WARP, "partial", (1,), (48,), (np.zeros(48, np.float32),))
    assert isinstance(err, KernelDeadlock) and err.thread == (32, 0, 0)
    assert "lanes 16..31 do not exist" in str(err) and "the block has 48 threads" in str(err)


def test_mask_that_leaves_out_the_caller():
    code = PARTIAL_WARP.replace("0xffffffff", "0x0000ffff")
    err = fail(code, "partial", (1,), (32,), (np.zeros(32, np.float32),))
    assert isinstance(err, KernelTrap) and err.thread == (16, 0, 0)
    assert_at(err, code, "<- here", in_file=False)
    assert "mask 0x0000ffff" in str(err) and "does not include the calling thread" in str(err)


# ---------------------------------------------------------------------------------------- time limit
SPIN = r"""
extern "C" __global__ void spin(float* out, int n) {
    int i = 0;
    while (i < n) {                     // i never changes
        out[threadIdx.x] += 1.0f;
    }
}
"""
SPIN_WITH_BARRIER = r"""
extern "C" __global__ void spin_sync(float* out, int n) {
    int i = 0;
    while (i < n) {
        __syncthreads();
        out[threadIdx.x] += 1.0f;
    }
}
"""


@pytest.mark.parametrize("code, name", [(SPIN, "spin"), (SPIN_WITH_BARRIER, "spin_sync")], ids=["plain_loop", "fibers"])
def test_a_hang_is_stopped_at_the_time_limit(code, name):
    RawKernel(code, name, backend="cpu").compile()
    t = time.perf_counter()
    err = fail(code, name, (4,), (32,), (np.zeros(32, np.float32), np.int32(1)), timeout=0.3)
    elapsed = time.perf_counter() - t
    assert isinstance(err, KernelTimeout)
    assert 0.3 <= elapsed < 5
    assert "did not finish within 0.3 s" in str(err) and "0 of 4 blocks had finished" in str(err)
    assert err.block == (0, 0, 0)


# ---------------------------------------------------------------------------------------------- traps
DIV = r"""
extern "C" __global__ void per_row(int* out, int n) {
    out[threadIdx.x] = 100 / (n - 3);   // <- here
}
"""


def test_an_endless_loop_without_side_effects_is_not_optimised_away():
    code = r"""
extern "C" __global__ void idle(int n) {
    int i = 0;
    while (i < n) { }                  // forgot i++
}
"""
    err = fail(code, "idle", (1,), (1,), (np.int32(1),), timeout=0.2)
    assert isinstance(err, KernelTimeout)


def test_integer_division_by_zero():
    err = fail(DIV, "per_row", (1,), (4,), (np.zeros(4, np.int32), np.int32(3)))
    assert isinstance(err, KernelTrap)
    assert "integer division by zero" in str(err)
    if platform.system() == "Linux":  # the line comes from GCC's UBSan hook
        assert_at(err, DIV, "<- here")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="only x86 traps on INT_MIN / -1")
def test_integer_division_overflow():
    code = DIV.replace("100 / (n - 3)", "(-2147483647 - 1) / (n - 4)")
    err = fail(code, "per_row", (1,), (4,), (np.zeros(4, np.int32), np.int32(3)))
    assert isinstance(err, KernelTrap) and "division" in str(err)


RECURSE = r"""
__device__ float deep(float x, int depth) {
    volatile float pad[64];            // a real frame on every level
    pad[depth % 64] = x;
    return depth == 0 ? x : deep(pad[depth % 64], depth - 1) + 1.0f;
}
extern "C" __global__ void recurse(float* out, int n) {
    out[threadIdx.x] = deep(1.0f, n);
}
"""


@pytest.mark.parametrize("threads", [1, 64], ids=["plain_loop", "fibers"])
def test_stack_overflow_names_the_stack_size(threads):
    code = RECURSE if threads == 1 else RECURSE.replace("deep(1.0f, n);", "deep(1.0f, n); __syncthreads();")
    err = fail(code, "recurse", (1,), (threads,), (np.zeros(threads, np.float32), np.int32(1_000_000)))
    assert isinstance(err, KernelTrap)
    assert "stack overflow" in str(err) and "KiB stack" in str(err)
    assert err.thread == (0, 0, 0)
    # the same kernel with a shallow recursion is fine afterwards (the guard page still works, too)
    out = np.zeros(threads, np.float32)
    RawKernel(code, "recurse", backend="cpu")((1,), (threads,), (out, np.int32(10)))
    assert out[0] == 11


TRAP = r"""
extern "C" __global__ void checks(float* out, int n) {
    assert(threadIdx.x < n);            // <- assert
    if (threadIdx.x == 2) __trap();     // <- trap
}
"""


def test_assert_and_trap():
    err = fail(TRAP, "checks", (1,), (8,), (np.zeros(8, np.float32), np.int32(3)))
    assert isinstance(err, KernelTrap) and err.thread == (2, 0, 0)
    assert_at(err, TRAP, "<- trap")
    assert "__trap()" in str(err)
    code = TRAP.replace("__trap();", "{}")
    err = fail(code, "checks", (1,), (8,), (np.zeros(8, np.float32), np.int32(3)))
    assert_at(err, code, "<- assert", in_file=False)
    assert "assertion failed: threadIdx.x < n" in str(err) and err.thread == (3, 0, 0)


TOO_BIG = r"""
extern "C" __global__ void big(float* out) {
    __shared__ float s[10000];          // <- here
    s[threadIdx.x] = 0.0f;
    out[0] = s[0];
}
"""


def test_too_much_shared_memory():
    err = fail(TOO_BIG, "big", (1,), (4,), (np.zeros(4, np.float32),), shared_mem=10000)
    assert isinstance(err, KernelTrap)
    assert_at(err, TOO_BIG, "<- here")
    assert "__shared__ 's' (40000 bytes) does not fit" in str(err) and "48 KiB" in str(err)


# ---------------------------------------------------------------------------------------- compile errors
MISSING_SEMICOLON = r"""
extern "C" __global__ void k(float* out) {
    out[threadIdx.x] = 1.0f             // <- missing
    out[0] = 2.0f;
}
"""


def test_compile_error_names_the_learner_line():
    kernel = RawKernel(MISSING_SEMICOLON, "k", backend="cpu")
    with pytest.raises(KernelCompileError) as info:
        kernel.compile()
    err = info.value
    line = line_of(MISSING_SEMICOLON, "<- missing")
    assert err.kernel == "k" and err.kernel_line == line and f"{HERE}, line " in err.location
    assert "expected ';'" in str(err) and "out[threadIdx.x] = 1.0f" in str(err)


TYPE_ERROR = r"""
extern "C" __global__ void k(float* out, const float* inp) {
    float x = inp;                      // <- here
    out[0] = x;
}
"""


def test_compile_error_spells_pointer_types_as_the_learner_wrote_them():
    with pytest.raises(KernelCompileError) as info:
        RawKernel(TYPE_ERROR, "k", backend="cpu").compile()
    msg = str(info.value)
    assert info.value.kernel_line == line_of(TYPE_ERROR, "<- here")
    assert "const float*" in msg and "llmc" not in msg


# ------------------------------------------------------------------------------------- the process lives on
LONG = r"""
extern "C" __global__ void forever(float* out, int n) {
    for (int i = 0; i < n; i++) out[threadIdx.x] += 1.0f;
    while (n > 0) { out[0] += 1.0f; }
}
"""


def test_ctrl_c_stops_a_running_kernel():
    kernel = RawKernel(LONG, "forever", backend="cpu").compile()
    main = threading.main_thread().ident
    timer = threading.Timer(0.3, lambda: signal.pthread_kill(main, signal.SIGINT))
    t = time.perf_counter()
    timer.start()
    with launch_options(timeout=30), pytest.raises(KeyboardInterrupt) as info:
        kernel((1,), (1,), (np.zeros(1, np.float32), np.int32(5)))
    assert time.perf_counter() - t < 10
    assert "forever" in str(info.value)


PRINT_THEN_FAIL = r"""
extern "C" __global__ void talk(float* out, int n) {
    printf("thread %d before\n", threadIdx.x);
    out[threadIdx.x + n] = 1.0f;
}
"""


def test_printf_output_before_a_fault_is_shown(capsys):
    fail(PRINT_THEN_FAIL, "talk", (1,), (2,), (np.zeros(2, np.float32), np.int32(1)))
    assert capsys.readouterr().out.splitlines() == ["thread 0 before", "thread 1 before"]


def test_handlers_are_restored_and_launches_still_work():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    fault_enabled = faulthandler.is_enabled()
    for code, name, args in [
        (OOB_READ, "scale", (np.zeros(4, np.float32), np.ones(4, np.float32), np.int32(4))),
        (DIV, "per_row", (np.zeros(4, np.int32), np.int32(3))),
    ]:
        with pytest.raises(KernelError):
            RawKernel(code, name, backend="cpu")((1,), (64,), args)
    fail(SPIN, "spin", (1,), (1,), (np.zeros(1, np.float32), np.int32(1)), timeout=0.1)
    assert {s: signal.getsignal(s) for s in before} == before
    assert faulthandler.is_enabled() == fault_enabled
    out = np.zeros(100, np.float32)
    RawKernel(OOB_READ, "scale", backend="cpu")((2,), (64,), (out, np.ones(100, np.float32), np.int32(99)))
    assert out.sum() == 200
    # a late timeout signal after the launch must not kill the process either
    time.sleep(0.2)


NOTEBOOK_CELLS = [
    "import numpy as np\nfrom llmc_kernels.runtime import RawKernel, launch_options",
    'code = r"""\nextern "C" __global__ void k(float* out, int n) {\n    printf("hello from %d\\n", threadIdx.x);\n'
    '    out[threadIdx.x + n] = 1.0f;\n}\n"""\nk = RawKernel(code, "k", backend="cpu")\n'
    "k((1,), (2,), (np.zeros(2, np.float32), np.int32(0)))",
    "k((1,), (2,), (np.zeros(2, np.float32), np.int32(5)))",
    'spin = RawKernel(r"""\nextern "C" __global__ void s(float* o) { while (o[0] >= 0) o[0] += 1; }\n""", "s",\n'
    '                 backend="cpu")\nwith launch_options(timeout=0.3):\n    spin((1,), (1,), (np.zeros(1, np.float32),))',  # noqa: E501
    'print("still alive")',
]


def test_a_notebook_session_survives_and_shows_cells_lines_and_printf():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    env_path = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH", "")]
    )
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env_path  # the kernel process imports this checkout
    try:
        nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old
    out = [[(o.output_type, o.get("ename"), o.get("text") or o.get("evalue")) for o in c.outputs] for c in nb.cells]
    assert out[1] == [("stream", None, "hello from 0\nhello from 1\n")]
    printed, (kind, name, message) = out[2]
    assert printed == ("stream", None, "hello from 0\n")  # what ran before the fault is shown
    assert (kind, name) == ("error", "KernelOutOfBounds")
    assert "cell In[2], line 4 (kernel line 4)" in message and "index 5 of argument 0 'float* out'" in message
    assert out[3][0][1] == "KernelTimeout"
    assert out[4] == [("stream", None, "still alive\n")]
