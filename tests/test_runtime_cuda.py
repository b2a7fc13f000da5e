"""The cuda backend on a real GPU: launches through CuPy, compile errors naming the learner's line, launch
errors, and a GPU fault reported as GPUFault (in a subprocess: a fault kills the process's CUDA context)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from llmc_kernels import runtime
from llmc_kernels.errors import GPUFault, KernelArgumentError, KernelCompileError, KernelError

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")
if not runtime.gpu_available():
    pytest.skip(f"no usable GPU: {runtime.gpu_status()[1]}", allow_module_level=True)

THIS_FILE = Path(__file__)
REPO = THIS_FILE.resolve().parent.parent


def line_of(text: str) -> int:
    for i, line in enumerate(THIS_FILE.read_text().splitlines(), 1):
        if text in line:
            return i
    raise AssertionError(text)


VADD = r"""extern "C" __global__ void vadd(float* out, const float* a, const float* b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i] + (float)(INFINITY - INFINITY == 0.0f) * FLT_MAX;
}
"""


def test_vector_add_through_cupy():
    k = runtime.RawKernel(VADD, "vadd")
    n = 1000
    a = cupy.random.standard_normal(n, dtype=cupy.float32)
    b = cupy.random.standard_normal(n, dtype=cupy.float32)
    out = cupy.full(n, cupy.nan, dtype=cupy.float32)
    with runtime.launch_options(check=True):
        k(((n + 127) // 128,), (128,), (out, a, b, n))
    np.testing.assert_array_equal(cupy.asnumpy(out), cupy.asnumpy(a + b))
    assert k.warnings == []


def test_same_kernel_on_both_backends_when_the_cpu_backend_exists():
    try:
        from llmc_kernels.runtime.cpu import CpuKernel  # noqa: F401
    except ImportError:
        pytest.skip("no cpu backend yet")
    k = runtime.RawKernel(VADD, "vadd")
    a, b = np.arange(300, dtype=np.float32), np.ones(300, np.float32)
    out_cpu = np.zeros(300, np.float32)
    out_gpu = cupy.zeros(300, cupy.float32)
    k(3, 128, (out_cpu, a, b, 300))
    k(3, 128, (out_gpu, cupy.asarray(a), cupy.asarray(b), 300))
    np.testing.assert_array_equal(out_cpu, cupy.asnumpy(out_gpu))


MISSING_SEMICOLON = r"""extern "C" __global__ void broken(float* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x
    if (i < n) out[i] = 0.0f;
}
"""


def test_compile_error_names_the_learners_line_without_cupy_noise():
    k = runtime.RawKernel(MISSING_SEMICOLON, "broken", backend="cuda")
    with pytest.raises(KernelCompileError) as info:
        k.compile()
    start = line_of('MISSING_SEMICOLON = r"""extern')
    text = str(info.value)
    here = os.path.relpath(THIS_FILE)
    assert text.startswith(f"kernel 'broken', {here}, line {start + 2} (kernel line 3): NVRTC compile error")
    assert f"probably missing at the end of {here}, line {start + 1} (kernel line 2)" in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "CompileException" not in text and "llmc_prelude" not in text


def test_warnings_are_collected():
    code = 'extern "C" __global__ void warn(float* o) {\n    int unused = 1;\n    o[0] = 2.0f;\n}\n'
    # a define unique to this run dodges CuPy's disk cache, which would skip NVRTC and its log
    k = runtime.RawKernel(code, "warn", options=(f"-DLLMC_TEST_UNIQUE={os.getpid()}",))
    out = cupy.zeros(1, cupy.float32)
    k(1, 1, (out,))
    assert float(out[0]) == 2.0
    assert any('"unused"' in w for w in k.warnings), k.warnings


def test_arguments_are_validated_on_cuda():
    k = runtime.RawKernel(VADD, "vadd", backend="cuda")
    x = cupy.zeros(8, cupy.float32)
    with pytest.raises(KernelArgumentError, match="got numpy.ndarray.*cupy.asarray"):
        k(1, 8, (np.zeros(8, np.float32), x, x, 8))
    with pytest.raises(KernelArgumentError, match="expects a float32 array.*float64"):
        k(1, 8, (x, cupy.zeros(8), x, 8))
    with pytest.raises(KernelArgumentError, match="pass np.int32"):
        k(1, 8, (x, x, x, np.int64(8)))


def test_float4_alignment_on_cuda():
    code = r"""extern "C" __global__ void f4(float4* out) { out[threadIdx.x] = make_float4(1.f, 2.f, 3.f, 4.f); }"""
    k = runtime.RawKernel(code, "f4")
    buf = cupy.zeros(12, cupy.float32)
    with pytest.raises(KernelArgumentError, match="16-byte aligned"):
        k(1, 2, (buf[1:9],))
    k(1, 3, (buf,))
    assert cupy.asnumpy(buf).tolist() == [1, 2, 3, 4] * 3


def test_launch_beyond_launch_bounds_is_a_kernel_error_not_a_fault():
    code = r"""extern "C" __global__ void __launch_bounds__(128) small(float* out) { out[threadIdx.x] = 1.0f; }"""
    k = runtime.RawKernel(code, "small")
    out = cupy.zeros(512, cupy.float32)
    with pytest.raises(KernelError) as info:
        with runtime.launch_options(check=True):
            k(1, 512, (out,))
    assert not isinstance(info.value, GPUFault)
    assert "kernel 'small'" in str(info.value)
    k(1, 128, (out,))  # the context survived
    cupy.cuda.get_current_stream().synchronize()
    assert float(out.sum()) == 128.0


def test_prelude_coexists_with_cuda_headers():
    code = (
        '#include <cuda_fp16.h>\nextern "C" __global__ void h(__half* o, int32_t n) { o[0] = __float2half((float)n); }'
    )
    try:
        k = runtime.RawKernel(code, "h").compile(backend="cuda")
    except KernelCompileError as e:
        if "cuda_fp16.h" in str(e) and "open source file" in str(e):
            pytest.skip("CuPy found no CUDA headers on this machine")
        raise
    out = cupy.zeros(1, cupy.float16)
    k(1, 1, (out, 3))
    assert float(out[0]) == 3.0


FAULT_SCRIPT = textwrap.dedent(r'''
    import json
    import cupy
    from llmc_kernels import runtime
    from llmc_kernels.errors import GPUFault
    code = r"""extern "C" __global__ void oob(float* out) { out[threadIdx.x + (1LL << 40)] = 1.0f; }"""
    k = runtime.RawKernel(code, "oob")
    out = cupy.zeros(4, cupy.float32)
    result = {}
    try:
        with runtime.launch_options(check=True):
            k(1, 32, (out,))
    except GPUFault as e:
        result["first"] = str(e)
    try:
        k(1, 32, (out,))
    except GPUFault as e:
        result["second"] = str(e)
    print("RESULT " + json.dumps(result))
''')


def test_illegal_address_in_check_mode_is_a_gpu_fault_saying_restart():
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", FAULT_SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert "RESULT " in done.stdout, done.stdout + done.stderr
    result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    first = result.get("first", "")
    assert first.startswith("kernel 'oob': GPU fault while"), result
    assert "CUDA context of this process is lost" in first and "Restart the notebook kernel" in first
    assert "use_backend('cpu')" in first
    assert "earlier GPU fault" in result.get("second", ""), result
