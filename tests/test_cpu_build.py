"""Compiling for the CPU backend: the on-disk cache, one library per source, warnings, options, messages."""

from __future__ import annotations

import numpy as np
import pytest

from llmc_kernels import KernelCompileError
from llmc_kernels.runtime.cpu import CpuKernel, build
from llmc_kernels.runtime.signature import find_kernel
from llmc_kernels.runtime.source import SourceOrigin

TWO_KERNELS = r"""
extern "C" __global__ void scale(float* x, float s, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= s * SCALE;
}
extern "C" __global__ void shift(float* x, float s, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int unused = 3;
    if (i < n) x[i] += s;
}
"""


def kernel(code, name, **kw):
    return CpuKernel(code, name, find_kernel(code, name), SourceOrigin("cell In[3]", 10), **kw)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMC_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_libraries_are_cached_by_content_and_shared_by_the_kernels_of_a_source(fresh_cache):
    code = TWO_KERNELS.replace("SCALE", "1.0f")
    first = kernel(code, "scale").compile()
    assert not first.cached
    assert len(list((fresh_cache / "cpu").glob("k-*.so"))) == 1
    assert kernel(code, "scale").compile().cached  # a new process would find it on disk too
    assert kernel(code, "shift").compile().cached  # same source: same library, no compile
    assert not kernel(code + "\n", "scale").compile().cached  # any change is a new library
    x = np.ones(10, np.float32)
    kernel(code, "shift").launch((1, 1, 1), (32, 1, 1), [x, np.float32(2), np.int32(10)])
    kernel(code, "scale").launch((1, 1, 1), (32, 1, 1), [x, np.float32(2), np.int32(10)])
    assert (x == 6).all()


def test_warnings_are_kept_not_printed(fresh_cache, capfd):
    k = kernel(TWO_KERNELS.replace("SCALE", "1.0f"), "shift").compile()
    assert capfd.readouterr() == ("", "")
    assert any("unused variable 'unused'" in w and "cell In[3], line 17" in w for w in k.warnings), k.warnings
    assert k.warnings == kernel(TWO_KERNELS.replace("SCALE", "1.0f"), "shift").compile().warnings  # cached too


def test_define_options_and_unsupported_options():
    x = np.ones(4, np.float32)
    k = kernel(TWO_KERNELS, "scale", options=("-DSCALE=3.0f", "--use_fast_math", "-arch=compute_75"))
    k.launch((1, 1, 1), (4, 1, 1), [x, np.float32(2), np.int32(4)])
    assert (x == 6).all()
    assert any("--use_fast_math" in w and "no effect" in w for w in k.warnings)
    with pytest.raises(KernelCompileError, match="not supported by the cpu backend"):
        kernel(TWO_KERNELS, "scale", options=("-fopenmp",)).compile()
    with pytest.raises(KernelCompileError) as info:  # SCALE undefined: the learner's line is named
        kernel(TWO_KERNELS, "scale").compile()
    assert info.value.kernel_line == 4 and "SCALE" in str(info.value) and "cell In[3], line 13" in str(info.value)


def test_compiler_types_read_as_the_learner_wrote_them():
    log = (
        "cell:3:15: error: cannot convert 'llmc::ptr<const float>' to 'float' in initialization\n"
        "cell:4:9: note: 'llmc::shared_array<llmc::shared_array<float, (33)>, (32)>' declared here\n"
        "cell:5:9: error: no match for 'operator=' (operand types are 'llmc::ptr<llmc::ptr<float> >')"
    )
    out = build.readable_log(log)
    assert "'const float*' to 'float'" in out
    assert "'float[32][33]'" in out
    assert "'float**'" in out
    assert "llmc" not in out


def test_a_missing_compiler_says_how_to_get_one(monkeypatch):
    build.compiler.cache_clear()
    monkeypatch.setenv("LLMC_CXX", "")
    monkeypatch.setenv("CXX", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    try:
        with pytest.raises(build.CompilerMissing, match="install g\\+\\+"):
            build.compiler()
    finally:
        build.compiler.cache_clear()
