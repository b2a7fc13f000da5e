"""RawKernel: origin, signature checks at construction, backend choice per call, lazy cached compiles,
warnings, launch options, honesty. Backends are replaced by a recording fake so these run anywhere; the last
tests run the real cpu backend when it is present."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from llmc_kernels import _honesty, runtime
from llmc_kernels.errors import ForbiddenCall, KernelArgumentError, KernelCompileError

THIS_FILE = Path(__file__)

VADD = r"""extern "C" __global__ void vadd(float* out, const float* a, const float* b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}
"""


def line_of(text: str) -> int:
    """1-based line of this file that holds ``text``."""
    for i, line in enumerate(THIS_FILE.read_text().splitlines(), 1):
        if text in line:
            return i
    raise AssertionError(text)


@pytest.fixture(autouse=True)
def fresh_cache():
    """Compiled kernels are cached per process: keep fakes and stubs out of other tests."""
    runtime.clear_cache()
    yield
    runtime.clear_cache()


class FakeBackend:
    """Stands in for CpuKernel/CudaKernel and records what RawKernel asks of it."""

    made = []
    fail_next_compile = False

    def __init__(self, kind, code, name, signature, origin, options):
        self.kind, self.code, self.name, self.signature, self.origin = kind, code, name, signature, origin
        self.compiles, self.launches, self.warnings = 0, [], [f"{kind}: warning: unused variable"]
        FakeBackend.made.append(self)

    def compile(self):
        if FakeBackend.fail_next_compile:
            FakeBackend.fail_next_compile = False
            raise KernelCompileError("boom", kernel=self.name)
        self.compiles += 1

    def launch(self, *args, **kwargs):
        self.launches.append((args, kwargs))


@pytest.fixture
def fake(monkeypatch):
    FakeBackend.made = []
    FakeBackend.fail_next_compile = False
    for kind in ("cpu", "cuda"):
        monkeypatch.setitem(runtime._FACTORIES, kind, lambda *a, kind=kind: FakeBackend(kind, *a))
    monkeypatch.setattr(runtime, "gpu_status", lambda: (False, "no GPU in this test"))
    monkeypatch.delenv("LLMC_BACKEND", raising=False)
    runtime.clear_cache()
    yield FakeBackend
    runtime.clear_cache()


class FakeCupyArray:
    """Enough of cupy.ndarray for argument validation."""

    def __init__(self, a):
        self._a = a
        self.dtype, self.shape, self.size, self.strides, self.flags = a.dtype, a.shape, a.size, a.strides, a.flags
        self.data = types.SimpleNamespace(ptr=a.ctypes.data)


@pytest.fixture
def fake_cupy(monkeypatch):
    module = types.ModuleType("cupy")
    module.ndarray = FakeCupyArray
    monkeypatch.setitem(sys.modules, "cupy", module)
    return module


def arrays(n=5, make=lambda a: a):
    return (make(np.zeros(n, np.float32)), make(np.ones(n, np.float32)), make(np.ones(n, np.float32)))


def test_origin_is_the_line_of_the_string_in_this_file(fake):
    k = runtime.RawKernel(VADD, "vadd")
    assert k.origin.display.endswith("test_runtime_rawkernel.py")
    assert k.origin.first_line == line_of('VADD = r"""extern "C"')
    assert "test_runtime_rawkernel.py" in repr(k)


def test_explicit_origin_wins(fake):
    origin = runtime.SourceOrigin("layernorm.cu", 1)
    assert runtime.RawKernel(VADD, "vadd", origin=origin).origin is origin


def test_unknown_kernel_name_lists_the_kernels(fake):
    with pytest.raises(KernelCompileError, match=r"no __global__ kernel named 'vad'.*it defines: vadd") as info:
        runtime.RawKernel(VADD, "vad")
    assert info.value.location.endswith("test_runtime_rawkernel.py")


def test_kernel_without_extern_c_is_refused_with_its_line(fake):
    code = VADD.replace('extern "C" ', "")
    with pytest.raises(KernelCompileError, match='extern "C"') as info:
        runtime.RawKernel(code, "vadd", origin=runtime.SourceOrigin("cell In[3]", 10))
    assert info.value.location == "cell In[3], line 10" and info.value.kernel_line == 1


def test_bad_constructor_arguments(fake):
    with pytest.raises(TypeError):
        runtime.RawKernel(b"bytes", "vadd")
    with pytest.raises(TypeError):
        runtime.RawKernel(VADD, "not a name")
    with pytest.raises(ValueError):
        runtime.RawKernel(VADD, "vadd", backend="gpu")


def test_numpy_arrays_launch_on_cpu_with_validated_arguments(fake):
    k = runtime.RawKernel(VADD, "vadd")
    assert fake.made == []  # nothing compiled at construction
    out, a, b = arrays()
    k(2, 4, (out, a, b, 5))
    (impl,) = fake.made
    assert impl.kind == "cpu" and impl.compiles == 1
    ((args, kwargs),) = impl.launches
    grid, block, vals, smem, schedule, timeout = args
    assert (grid, block, smem, schedule, timeout) == ((2, 1, 1), (4, 1, 1), 0, "forward", 60.0)
    assert vals[0] is out and type(vals[3]) is np.int32


def test_launch_options_reach_the_cpu_backend(fake):
    k = runtime.RawKernel(VADD, "vadd")
    with runtime.launch_options(schedule="reverse", timeout=3):
        k((1,), (8,), (*arrays(), np.int32(5)), shared_mem=128)
    args, _ = fake.made[0].launches[0]
    assert args[3:] == (128, "reverse", 3.0)


def test_compile_is_lazy_and_shared_by_source(fake):
    k1 = runtime.RawKernel(VADD, "vadd")
    k1(1, 8, (*arrays(), 5))
    k1(1, 8, (*arrays(), 5))
    k2 = runtime.RawKernel(VADD, "vadd")  # same source and origin: a re-run notebook cell
    k2(1, 8, (*arrays(), 5))
    assert len(fake.made) == 1 and fake.made[0].compiles == 1 and len(fake.made[0].launches) == 3
    runtime.RawKernel(VADD.replace("a[i] + b[i]", "a[i] - b[i]"), "vadd")(1, 8, (*arrays(), 5))
    assert len(fake.made) == 2


def test_failed_compile_is_not_cached(fake):
    k = runtime.RawKernel(VADD, "vadd")
    fake.fail_next_compile = True
    with pytest.raises(KernelCompileError):
        k(1, 8, (*arrays(), 5))
    k(1, 8, (*arrays(), 5))
    assert fake.made[-1].compiles == 1 and len(fake.made[-1].launches) == 1


def test_explicit_compile_and_warnings(fake):
    k = runtime.RawKernel(VADD, "vadd")
    assert k.warnings == []
    assert k.compile(backend="cpu") is k
    assert fake.made[0].compiles == 1 and not fake.made[0].launches
    assert k.warnings == ["cpu: warning: unused variable"]
    with runtime.use_backend("cpu"):
        k.compile()
    assert len(fake.made) == 1


def test_argument_errors_come_before_compiling(fake):
    k = runtime.RawKernel(VADD, "vadd")
    with pytest.raises(KernelArgumentError, match="argument 3 'int n'.*pass np.int32"):
        k(1, 8, (*arrays(), np.int64(5)))
    with pytest.raises(KernelArgumentError, match="block"):
        k(1, 2048, (*arrays(), 5))
    assert fake.made == []


def test_cupy_arrays_launch_on_cuda_with_check_option(fake, fake_cupy):
    k = runtime.RawKernel(VADD, "vadd")
    with runtime.launch_options(check=True):
        k((3,), (32,), (*arrays(make=FakeCupyArray), np.int32(5)))
    (impl,) = fake.made
    assert impl.kind == "cuda"
    args, kwargs = impl.launches[0]
    assert args[:2] == ((3, 1, 1), (32, 1, 1)) and kwargs == {"check": True, "stream": None}


def test_mixed_numpy_and_cupy_arrays_are_refused(fake, fake_cupy):
    k = runtime.RawKernel(VADD, "vadd")
    out, a, b = arrays()
    with pytest.raises(KernelArgumentError) as info:
        k(1, 8, (FakeCupyArray(out), a, b, 5))
    text = str(info.value)
    assert "kernel 'vadd'" in text and "argument 0 'float* out' is a CuPy array" in text
    assert "argument 1 'const float* a' is a NumPy array" in text and "cupy.asarray" in text


def test_fixed_backend_refuses_arrays_of_the_other(fake, fake_cupy):
    k = runtime.RawKernel(VADD, "vadd", backend="cpu")
    with pytest.raises(KernelArgumentError, match="expects a NumPy array \\(cpu backend\\), got cupy.ndarray"):
        k(1, 8, (*arrays(make=FakeCupyArray), 5))


def test_no_arrays_uses_the_active_backend(fake):
    code = 'extern "C" __global__ void noop(int n) {}'
    with runtime.use_backend("cpu"):
        runtime.RawKernel(code, "noop")(1, 1, (3,))
    assert fake.made[0].kind == "cpu"


def test_cuda_without_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(runtime, "gpu_status", lambda: (False, "no GPU in this test"))
    runtime.clear_cache()
    k = runtime.RawKernel(VADD, "vadd", backend="cuda")
    with pytest.raises(runtime.BackendUnavailable, match="kernel 'vadd'.*no GPU in this test"):
        k.compile()


def test_internal_kernels_refuse_inside_a_check(fake):
    own = runtime.RawKernel(VADD, "vadd", internal=True)
    learner = runtime.RawKernel(VADD, "vadd")
    with _honesty.learner_scope("vector_add"):
        with pytest.raises(ForbiddenCall, match="the package's kernel 'vadd'"):
            own(1, 8, (*arrays(), 5))
        learner(1, 8, (*arrays(), 5))
    own(1, 8, (*arrays(), 5))
    assert sum(len(m.launches) for m in fake.made) == 2


# ------------------------------------------------------------------------------- the real cpu backend


def real_cpu():
    try:
        from llmc_kernels.runtime.cpu import CpuKernel  # noqa: F401
    except ImportError:
        pytest.skip("the cpu backend (llmc_kernels.runtime.cpu) is not there yet")


def test_vector_add_on_the_cpu_backend():
    real_cpu()
    runtime.clear_cache()
    k = runtime.RawKernel(VADD, "vadd")
    n = 1000
    a, b = np.random.default_rng(1).standard_normal((2, n), dtype=np.float32)
    out = np.full(n, np.nan, np.float32)
    k(((n + 127) // 128,), (128,), (out, a, b, n))
    np.testing.assert_array_equal(out, a + b)


BROKEN = r"""extern "C" __global__ void broken(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x
    if (i < n) out[i] = 0.0f;
}
"""


def test_compile_error_on_the_cpu_backend_names_this_file_and_line():
    real_cpu()
    k = runtime.RawKernel(BROKEN, "broken", backend="cpu")
    with pytest.raises(KernelCompileError) as info:
        k.compile()
    start = line_of('BROKEN = r"""extern')
    text = str(info.value)
    assert f"test_runtime_rawkernel.py, line {start + 1} (kernel line 2)" in text, text


# --------------------------------------------------------------- how RawKernel builds the cpu backend's kernel


def stub_cpu_module(monkeypatch, with_options):
    made = []

    class CpuKernel:
        if with_options:

            def __init__(self, code, name, signature, origin, options=()):
                made.append(options)
        else:

            def __init__(self, code, name, signature, origin):
                made.append(None)

        warnings = []

        def compile(self):
            pass

        def launch(self, *args):
            pass

    module = types.ModuleType("llmc_kernels.runtime.cpu")
    module.CpuKernel = CpuKernel
    monkeypatch.setitem(sys.modules, "llmc_kernels.runtime.cpu", module)
    runtime.clear_cache()
    return made


def test_cpu_backend_receives_compile_options_when_it_takes_them(monkeypatch):
    made = stub_cpu_module(monkeypatch, with_options=True)
    runtime.RawKernel(VADD, "vadd", options=("-DTILE=16",)).compile(backend="cpu")
    assert made == [("-DTILE=16",)]


def test_options_on_a_cpu_backend_without_them_are_refused(monkeypatch):
    made = stub_cpu_module(monkeypatch, with_options=False)
    runtime.RawKernel(VADD, "vadd").compile(backend="cpu")
    assert made == [None]
    with pytest.raises(KernelCompileError, match="not supported by the cpu backend"):
        runtime.RawKernel(VADD, "vadd", options=("-DTILE=16",)).compile(backend="cpu")


def test_missing_cpu_backend_is_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "llmc_kernels.runtime.cpu", None)
    runtime.clear_cache()
    with pytest.raises(runtime.BackendUnavailable, match="cpu backend is not available"):
        runtime.RawKernel(VADD, "vadd").compile(backend="cpu")
