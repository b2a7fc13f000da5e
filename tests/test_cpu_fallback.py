"""When the CPU backend's C++ compiler rejects a kernel, the learner is told whose fault it is (fallback.py):
NVRTC accepts it -> a limit of the CPU backend, not their code; NVRTC rejects it too -> the compiler's own
message, unchanged; no NVRTC -> the code may or may not be valid CUDA."""

from __future__ import annotations

import pytest

from llmc_kernels.errors import KernelCompileError
from llmc_kernels.runtime import RawKernel, cpu, nvrtc

GOOD = r"""
extern "C" __global__ void k(float* out, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i];          // <- here
}
"""
TYPO = GOOD.replace("in[i];", "inn[i];")


@pytest.fixture
def broken_translation(monkeypatch):
    """A translator that gets line 5 wrong, as a limit of the real one would (the source stays valid CUDA)."""
    real = cpu.translate

    def translate(code, kernels, line_directive):
        tr = real(code, kernels, line_directive)
        tr.text = tr.text.replace("= in[i];", "= (llmc::ptr<float>)in[i];")
        return tr

    monkeypatch.setattr(cpu, "translate", translate)


needs_nvrtc = pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed")


@needs_nvrtc
def test_valid_cuda_the_translation_cannot_compile_is_a_limit_of_the_cpu_backend(broken_translation):
    with pytest.raises(KernelCompileError) as info:
        RawKernel(GOOD, "k", backend="cpu").compile()
    err, msg = info.value, str(info.value)
    assert "this is a limit of the CPU backend, not your code" in msg
    assert "NVRTC (NVIDIA's CUDA compiler) compiles this kernel" in msg
    assert err.kernel == "k" and err.kernel_line == 4  # still the line, in the learner's terms
    assert "float*" in msg and "llmc::" not in msg
    assert "issue tracker" in msg and "backend='cuda'" in msg  # how to report it, how to go on


@needs_nvrtc
def test_invalid_cuda_keeps_the_compilers_message():
    with pytest.raises(KernelCompileError) as info:
        RawKernel(TYPO, "k", backend="cpu").compile()
    msg = str(info.value)
    assert "'inn' was not declared in this scope" in msg and info.value.kernel_line == 4
    assert "limit of the CPU backend" not in msg and "may or may not be valid CUDA" not in msg


def test_without_nvrtc_the_code_may_or_may_not_be_valid_cuda(monkeypatch):
    monkeypatch.setattr(nvrtc, "available", lambda: False)
    with pytest.raises(KernelCompileError) as info:
        RawKernel(TYPO.replace("out[i]", "out[i] "), "k", backend="cpu").compile()
    msg = str(info.value)
    assert "'inn' was not declared in this scope" in msg
    assert "NVRTC (NVIDIA's CUDA compiler) is not installed here, so the code may or may not be valid CUDA" in msg
    assert "pip install" in msg
