"""Every kernel of kernels/{encoder,layernorm,gelu,residual,adamw}.cu compiles with NVRTC, warning-free, for
the oldest (sm_75, T4) and newest (sm_90, H100) targets; no GPU needed."""

import pytest

from llmc_kernels.ops import _loader
from llmc_kernels.runtime import nvrtc
from llmc_kernels.runtime.signature import find_kernel, list_kernels
from llmc_kernels.runtime.source import SourceOrigin

KERNELS = {
    "encoder.cu": ["encoder_forward_kernel", "encoder_forward_vec4_kernel", "encoder_backward_kernel"],
    "layernorm.cu": ["layernorm_forward_kernel", "layernorm_backward_kernel", "layernorm_backward_global_kernel"],
    "gelu.cu": ["gelu_forward_kernel", "gelu_forward_vec4_kernel", "gelu_backward_kernel", "gelu_backward_vec4_kernel"],
    "residual.cu": [
        "residual_forward_kernel",
        "residual_forward_vec4_kernel",
        "residual_backward_kernel",
        "residual_backward_vec4_kernel",
    ],
    "adamw.cu": ["adamw_kernel", "adamw_vec4_kernel"],
}


@pytest.mark.parametrize("filename", sorted(KERNELS))
def test_kernels_are_extern_c_and_listed(filename):
    src = _loader.source(filename)
    assert list_kernels(src) == KERNELS[filename]
    assert all(find_kernel(src, k).extern_c for k in KERNELS[filename])


@pytest.mark.parametrize("arch", ["compute_75", "compute_90"])
@pytest.mark.parametrize("filename", sorted(KERNELS))
def test_nvrtc_compiles_without_warnings(filename, arch):
    if not nvrtc.available():
        pytest.skip(f"NVRTC unavailable: {nvrtc.unavailable_reason()}")
    src = _loader.source(filename)
    warnings = nvrtc.check_compile(src, KERNELS[filename][0], arch=arch, origin=SourceOrigin(filename, 1))
    assert warnings == []
