"""runtime/cuda.py's translation of CuPy's exceptions, against a stand-in CuPy (runs without a GPU; the real
thing is covered by test_runtime_cuda.py on a GPU): compile errors, sticky faults, launch errors."""

import sys
import types

import numpy as np
import pytest

from llmc_kernels.errors import GPUFault, KernelCompileError, KernelError
from llmc_kernels.runtime import cuda
from llmc_kernels.runtime.signature import find_kernel
from llmc_kernels.runtime.source import SourceOrigin

CODE = 'extern "C" __global__ void k(float* o) {\n    o[0] = 1.0f\n}\n'
ORIGIN = SourceOrigin("cell In[9]", 3)


class CudaError(Exception):
    def __init__(self, status, text):
        super().__init__(text)
        self.status = status


class FakeCupy:
    """Builds the modules cuda.py imports, with hooks to make compile/launch/synchronize fail."""

    def __init__(self):
        self.compile_log = ""
        self.compile_raises = None
        self.launch_raises = None
        self.sync_raises = None
        self.sources, self.launches, self.syncs = [], [], 0
        fake = self

        class CompileException(Exception):
            pass

        class RawKernel:
            def __init__(self, code, name, options=()):
                fake.sources.append((code, name, options))

            def compile(self, log_stream=None):
                if fake.compile_raises:
                    raise fake.compile_raises
                log_stream.write(fake.compile_log)

            def __call__(self, grid, block, args, shared_mem=0, stream=None):
                if fake.launch_raises:
                    raise fake.launch_raises
                fake.launches.append((grid, block, args, shared_mem, stream))

        class Stream:
            def synchronize(self):
                fake.syncs += 1
                if fake.sync_raises:
                    raise fake.sync_raises

        self.CompileException = CompileException
        self.cupy = types.ModuleType("cupy")
        self.cupy.RawKernel = RawKernel
        self.cupy.cuda = types.ModuleType("cupy.cuda")
        self.cupy.cuda.compiler = types.ModuleType("cupy.cuda.compiler")
        self.cupy.cuda.compiler.CompileException = CompileException
        self.cupy.cuda.driver = types.SimpleNamespace(CUDADriverError=type("CUDADriverError", (CudaError,), {}))
        self.cupy.cuda.runtime = types.SimpleNamespace(CUDARuntimeError=type("CUDARuntimeError", (CudaError,), {}))
        self.cupy.cuda.get_current_stream = Stream


@pytest.fixture
def fake(monkeypatch):
    f = FakeCupy()
    for name, module in (("cupy", f.cupy), ("cupy.cuda", f.cupy.cuda), ("cupy.cuda.compiler", f.cupy.cuda.compiler)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(cuda, "_context_lost", None)
    return f


def kernel(code=CODE):
    return cuda.CudaKernel(code, "k", find_kernel(code, "k"), ORIGIN, options=("-DX=1",))


def test_cupy_compiles_prelude_line_directive_and_code(fake):
    fake.compile_log = 'cell In[9](4): warning #177-D: variable "x" was declared but never referenced\n'
    k = kernel()
    k.compile()
    ((source, name, options),) = fake.sources
    assert source.endswith('#line 3 "cell In[9]"\n' + CODE) and "FLT_MAX" in source
    assert (name, options) == ("k", ("-DX=1",))
    assert k.warnings == ['cell In[9], line 4: warning: variable "x" was declared but never referenced']


def test_compile_exception_becomes_kernel_compile_error_without_cupy_context(fake):
    fake.compile_raises = fake.CompileException('cell In[9](5): error: expected a ";"\n')
    with pytest.raises(KernelCompileError) as info:
        kernel().compile()
    err = info.value
    assert err.__cause__ is None and err.__suppress_context__
    assert err.location == "cell In[9], line 5" and err.kernel_line == 3
    assert "probably missing at the end of cell In[9], line 4 (kernel line 2)" in str(err)


def test_launch_passes_arguments_and_synchronizes_only_in_check_mode(fake):
    k = kernel()
    k.compile()
    args = (np.zeros(1, np.float32),)
    k.launch((1, 1, 1), (32, 1, 1), args, 0)
    assert fake.syncs == 0
    k.launch((2, 1, 1), (32, 1, 1), args, 64, check=True)
    assert fake.syncs == 1
    assert fake.launches[1][:2] == ((2, 1, 1), (32, 1, 1)) and fake.launches[1][3] == 64


def test_illegal_address_is_a_gpu_fault_and_every_later_launch_refuses(fake):
    k = kernel()
    k.compile()
    fake.sync_raises = fake.cupy.cuda.runtime.CUDARuntimeError(
        700, "cudaErrorIllegalAddress: an illegal memory access was encountered"
    )
    with pytest.raises(GPUFault) as info:
        k.launch((1, 1, 1), (1, 1, 1), (None,), 0, check=True)
    text = str(info.value)
    assert text.startswith("kernel 'k': GPU fault while running the kernel: an illegal memory access")
    assert "in this kernel [" in text and "Restart the notebook kernel" in text and "use_backend('cpu')" in text
    assert cuda.context_lost()
    fake.sync_raises = None
    with pytest.raises(GPUFault, match="an earlier GPU fault .* killed the CUDA context"):
        k.launch((1, 1, 1), (1, 1, 1), (None,), 0)
    with pytest.raises(GPUFault, match="earlier GPU fault"):
        kernel().compile()


def test_fault_seen_at_an_unchecked_launch_may_come_from_earlier(fake):
    k = kernel()
    k.compile()
    fake.launch_raises = fake.cupy.cuda.driver.CUDADriverError(719, "CUDA_ERROR_LAUNCH_FAILED: unspecified")
    with pytest.raises(GPUFault, match="or an earlier launch.*launch_options\\(check=True\\)"):
        k.launch((1, 1, 1), (1, 1, 1), (None,), 0)


@pytest.mark.parametrize(
    "status, text",
    [
        (701, "too many resources requested for launch"),
        (9, "refused the launch configuration"),
        (222, "cupy-cuda12x or cupy-cuda13x"),
        (999, "CUDA error while launching the kernel"),
    ],
)
def test_other_launch_errors_are_kernel_errors_and_leave_the_context_alive(fake, status, text):
    k = kernel()
    k.compile()
    fake.launch_raises = fake.cupy.cuda.driver.CUDADriverError(status, f"error {status}")
    with pytest.raises(KernelError, match=text) as info:
        k.launch((1, 1, 1), (2048, 1, 1), (None,), 0)
    assert not isinstance(info.value, GPUFault) and cuda.context_lost() is None
    fake.launch_raises = None
    k.launch((1, 1, 1), (1, 1, 1), (None,), 0)


def test_module_load_error_at_compile(fake):
    fake.compile_raises = fake.cupy.cuda.driver.CUDADriverError(222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION")
    with pytest.raises(KernelError, match="driver is older"):
        kernel().compile()


def test_cupy_without_log_stream_still_compiles(fake, monkeypatch):
    def old_compile(self):  # a CuPy whose compile() takes no log_stream
        pass

    monkeypatch.setattr(fake.cupy.RawKernel, "compile", old_compile)
    k = kernel()
    k.compile()
    assert k.warnings == []
