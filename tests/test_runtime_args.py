"""Launch-argument validation (runtime/args.py): every rule, and that each message names what a learner needs:
the kernel, the parameter, what was expected and what came."""

import numpy as np
import pytest

from llmc_kernels.errors import KernelArgumentError, KernelError
from llmc_kernels.runtime import args
from llmc_kernels.runtime.signature import find_kernel

CODE = r"""
extern "C" __global__ void scale(float* out, const float* inp, float alpha, int n, unsigned int flags,
                                 const float4* vec, double beta, unsigned char* bytes, bool flag) {}
"""
SIG = find_kernel(CODE, "scale")


def good_args(**change):
    a = dict(
        out=np.zeros(8, np.float32),
        inp=np.ones(8, np.float32),
        alpha=np.float32(2),
        n=np.int32(8),
        flags=np.uint32(0),
        vec=np.zeros(8, np.float32),
        beta=np.float64(1),
        bytes=np.zeros(3, np.uint8),
        flag=np.bool_(True),
    )
    a.update(change)
    return tuple(a.values())


def fails(message_parts, **change):
    with pytest.raises(KernelArgumentError) as info:
        args.validate(SIG, good_args(**change), "cpu")
    text = str(info.value)
    assert "kernel 'scale'" in text
    for part in message_parts:
        assert part in text, f"{part!r} not in {text!r}"
    return info.value


def test_valid_arguments_pass_through_unchanged():
    given = good_args()
    out = args.validate(SIG, given, "cpu")
    assert len(out) == len(given)
    assert all(a is b for a, b in zip(out, given))


def test_error_is_a_kernel_error_and_a_type_error():
    err = fails(["argument 2 'float alpha'"], alpha=0.5)
    assert isinstance(err, KernelError) and isinstance(err, TypeError)
    assert err.kernel == "scale" and err.buffer == "alpha"


def test_count():
    with pytest.raises(
        KernelArgumentError,
        match=r"takes 9 arguments \(out, inp, alpha, n, flags, vec, beta, "
        r"bytes, flag\), got 8",
    ):
        args.validate(SIG, good_args()[:-1], "cpu")


def test_args_must_be_a_sequence():
    with pytest.raises(KernelArgumentError, match="args must be a tuple"):
        args.validate(SIG, np.zeros(3, np.float32), "cpu")


def test_python_float_for_float_parameter_says_pass_np_float32():
    fails(["argument 2 'float alpha'", "Python float 0.5", "pass np.float32(x)", "np.float32(0.5)"], alpha=0.5)


def test_np_float64_for_float_parameter_says_pass_np_float32():
    fails(["argument 2 'float alpha'", "pass np.float32(x)"], alpha=np.float64(0.5))


def test_python_int_for_float_parameter_is_refused():
    fails(["'float alpha'", "Python int 2", "np.float32"], alpha=2)


def test_python_int_for_int_parameter_is_converted():
    out = args.validate(SIG, good_args(n=8, flags=7, bytes=None), "cpu")
    assert type(out[3]) is np.int32 and out[3] == 8
    assert type(out[4]) is np.uint32 and out[4] == 7


def test_python_int_out_of_range():
    fails(["argument 3 'int n'", "2147483648 does not fit", "-2147483648..2147483647"], n=2**31)
    fails(["'unsigned int flags'", "-1 does not fit"], flags=-1)


def test_wrong_numpy_integer_type_is_refused():
    fails(["argument 3 'int n'", "expects np.int32", "np.int64(8)", "pass np.int32(x)"], n=np.int64(8))


def test_python_float_for_int_parameter_hints_integer_division():
    fails(["'int n'", "Python float 4.0", "use // for integer division"], n=4.0)


def test_bool_is_not_an_int():
    fails(["'int n'", "Python bool"], n=True)
    out = args.validate(SIG, good_args(flag=False), "cpu")
    assert out[-1] == np.bool_(False)


def test_python_float_for_double_parameter_is_fine():
    out = args.validate(SIG, good_args(beta=0.25), "cpu")
    assert type(out[6]) is np.float64 and out[6] == 0.25


def test_array_for_scalar_parameter():
    fails(["argument 3 'int n' is a single value", "numpy.ndarray"], n=np.zeros(2, np.int32))


def test_pointer_dtype():
    fails(
        ["argument 1 'const float* inp'", "expects a float32 array", "numpy.ndarray of float64", ".astype(np.float32)"],
        inp=np.ones(8),
    )


def test_pointer_must_be_array_of_backend():
    fails(["argument 0 'float* out'", "expects a NumPy array (cpu backend)", "Python float"], out=1.0)
    with pytest.raises(
        KernelArgumentError, match="expects a CuPy array \\(cuda backend\\), got numpy.ndarray.*cupy.asarray"
    ):
        args.validate(SIG, good_args(), "cuda")


def test_pointer_must_be_c_contiguous():
    strided = np.zeros(16, np.float32)[::2]
    fails(["argument 1 'const float* inp'", "C-contiguous", "np.ascontiguousarray"], inp=strided)
    fortran = np.zeros((4, 2), np.float32, order="F")
    fails(["C-contiguous"], inp=fortran)


def test_none_is_a_null_pointer():
    out = args.validate(SIG, good_args(inp=None), "cpu")
    assert out[1] is None


def test_float4_pointer_size_and_alignment():
    fails(["argument 5 'const float4* vec'", "multiple of 4", "got 6 elements"], vec=np.zeros(6, np.float32))
    base = np.zeros(12, np.float32)
    aligned_start = (-base.ctypes.data // 4) % 4  # first element whose address is a multiple of 16
    misaligned = base[aligned_start + 1 : aligned_start + 9]
    assert misaligned.ctypes.data % 16 != 0
    fails(["'const float4* vec'", "16-byte aligned"], vec=misaligned)
    fails(["'const float4* vec'", "expects a float32 array"], vec=np.zeros(8, np.float64))


def test_read_only_array_for_non_const_pointer_on_cpu():
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    fails(["argument 0 'float* out'", "read-only"], out=ro)
    args.validate(SIG, good_args(inp=ro), "cpu")  # const: reading only is fine


def test_unknown_backend_kind():
    with pytest.raises(ValueError):
        args.validate(SIG, good_args(), "tpu")


def test_unknown_scalar_type_is_refused_with_its_type():
    sig = find_kernel('extern "C" __global__ void k(float* o, MyStruct s) {}', "k")
    with pytest.raises(KernelArgumentError, match="type 'MyStruct' cannot be passed"):
        args.validate(sig, (np.zeros(1, np.float32), np.int32(1)), "cpu")


def test_pointer_of_unknown_type_takes_any_dtype():
    sig = find_kernel('extern "C" __global__ void k(void* o) {}', "k")
    a = np.zeros(3, np.int16)
    assert args.validate(sig, (a,), "cpu")[0] is a


# -------------------------------------------------------------------------------- grid, block, shared_mem


@pytest.mark.parametrize(
    "given, want",
    [(5, (5, 1, 1)), ((5,), (5, 1, 1)), ((2, 3), (2, 3, 1)), ([2, 3, 4], (2, 3, 4)), (np.int64(7), (7, 1, 1))],
)
def test_dims_normalised(given, want):
    assert args.normalize_grid(given, "k") == want
    assert args.normalize_block(given, "k") == want


@pytest.mark.parametrize(
    "bad, match",
    [
        (0, "at least 1"),
        ((4, 0), "at least 1"),
        (-1, "at least 1"),
        ((1, 2, 3, 4), "1 to 3 ints"),
        ((), "1 to 3"),
        (2.0, "use // instead of /"),
        ((np.float32(3),), "use // instead of /"),
        ("8", "must hold ints"),
        (True, "must hold ints"),
    ],
)
def test_bad_dims(bad, match):
    with pytest.raises(KernelArgumentError, match=match) as info:
        args.normalize_block(bad, "mykernel")
    assert "kernel 'mykernel'" in str(info.value)


def test_block_limits():
    assert args.normalize_block(1024, "k") == (1024, 1, 1)
    assert args.normalize_block((32, 32), "k") == (32, 32, 1)
    assert args.normalize_block((1, 1, 64), "k") == (1, 1, 64)
    with pytest.raises(KernelArgumentError, match="blockDim.x = 1025 exceeds CUDA's limit 1024"):
        args.normalize_block(1025, "k")
    with pytest.raises(KernelArgumentError, match="1056 threads; a block holds at most 1024"):
        args.normalize_block((33, 32), "k")
    with pytest.raises(KernelArgumentError, match="2048 threads"):
        args.normalize_block((64, 32), "k")
    with pytest.raises(KernelArgumentError, match="blockDim.z = 65 exceeds CUDA's limit 64"):
        args.normalize_block((1, 1, 65), "k")


def test_grid_limits():
    assert args.normalize_grid((2**31 - 1, 65535, 65535), "k") == (2**31 - 1, 65535, 65535)
    with pytest.raises(KernelArgumentError, match="gridDim.y = 65536 exceeds"):
        args.normalize_grid((1, 65536), "k")
    with pytest.raises(KernelArgumentError, match="gridDim.z = 70000"):
        args.normalize_grid((1, 1, 70000), "k")
    with pytest.raises(KernelArgumentError, match="gridDim.x"):
        args.normalize_grid(2**31, "k")


def test_shared_mem():
    assert args.check_shared_mem(0, "k") == 0
    assert args.check_shared_mem(np.int32(49152), "k") == 49152
    for bad in (-1, 49153, 1 << 20):
        with pytest.raises(KernelArgumentError, match="outside 0..49152"):
            args.check_shared_mem(bad, "k")
    with pytest.raises(KernelArgumentError, match="shared_mem must be an int"):
        args.check_shared_mem(1024.0, "k")


def test_validate_launch_combines_everything():
    grid, block, vals, smem = args.validate_launch(SIG, 3, (128,), good_args(n=8), 256, "cpu")
    assert (grid, block, smem) == ((3, 1, 1), (128, 1, 1), 256)
    assert type(vals[3]) is np.int32
