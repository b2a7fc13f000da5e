"""diagnostics.compile_error on logs of both compilers (g++ logs are written out here, so these run without
any compiler): the learner's line, the missing-';' hint, errors outside the learner's code, odd logs."""

from llmc_kernels.errors import KernelCompileError
from llmc_kernels.runtime.diagnostics import compile_error, missing_semicolon_line, parse_log, warnings_of
from llmc_kernels.runtime.source import SourceOrigin

CODE = """extern "C" __global__ void k(float* o, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x
    if (i < n) o[i] = 1.0f;
}"""
ORIGIN = SourceOrigin("cell In[7]", 20)


def test_gcc_log_with_unicode_quotes_gets_the_hint():
    log = (
        "cell In[7]: In function 'void k(float*, int)':\n"
        "cell In[7]:22:5: error: expected \u2018,\u2019 or \u2018;\u2019 before \u2018if\u2019\n"
        "   22 |     if (i < n) o[i] = 1.0f;\n"
    )
    err = compile_error(log, kernel="k", code=CODE, origin=ORIGIN, compiler="g++")
    assert isinstance(err, KernelCompileError)
    assert err.location == "cell In[7], line 22" and err.kernel_line == 3
    text = str(err)
    assert "g++ compile error:" in text
    assert "a ';' is probably missing at the end of cell In[7], line 21 (kernel line 2)" in text
    assert "  21 |     int i = blockIdx.x * blockDim.x + threadIdx.x" in text


def test_gcc_reporting_the_line_itself_needs_no_hint():
    log = "cell In[7]:21:49: error: expected ';' at end of declaration\n"
    text = str(compile_error(log, kernel="k", code=CODE, origin=ORIGIN, compiler="g++"))
    assert "cell In[7], line 21 (kernel line 2): expected ';' at end of declaration" in text
    assert "probably missing" not in text


def test_nvrtc_log_parsed_with_file_and_kind():
    log = (
        'cell In[7](22): error: expected a ";"\n    if (i < n) o[i] = 1.0f;\n    ^\n\n'
        'cell In[7](21): warning #177-D: variable "i" was declared but never referenced\n'
        '1 error detected in the compilation of "llmc_prelude.cu".\n'
    )
    diags = parse_log(log, ORIGIN)
    assert [(d.kind, d.file_line, d.kernel_line, d.file) for d in diags] == [
        ("error", 22, 3, "cell In[7]"),
        ("warning", 21, 2, "cell In[7]"),
    ]
    assert warnings_of(log, ORIGIN) == ['cell In[7], line 21: warning: variable "i" was declared but never referenced']


def test_errors_outside_the_learners_code_are_shown_as_they_are():
    log = "llmc_prelude.cu(3): error: something in a header\n"
    err = compile_error(log, kernel="k", code=CODE, origin=ORIGIN, compiler="NVRTC")
    assert "outside the kernel source" in str(err) and "llmc_prelude.cu(3): something in a header" in str(err)
    assert err.kernel_line is None


def test_unparsable_log_is_shown_trimmed():
    log = "\n".join(f"noise {i}" for i in range(40))
    text = str(compile_error(log, kernel="k", code=CODE, origin=ORIGIN, compiler="NVRTC"))
    assert "NVRTC failed to compile the kernel" in text and "noise 39" in text and "noise 10" not in text


def test_missing_semicolon_line_heuristic():
    code = "a = 1\n\n// comment only\nb = 2;\nfor (int i = 0; i < n; i++)\nx++\ny = f(a,\n      b)\nz = 3;"
    assert missing_semicolon_line(code, 4) == 1  # skips blank and comment-only lines
    assert missing_semicolon_line(code, 6) is None  # a for header needs no ';'
    assert missing_semicolon_line(code, 7) == 6  # x++
    assert missing_semicolon_line(code, 9) == 8  # the end of a call spread over two lines
    assert missing_semicolon_line(code, 5) is None  # 'b = 2;' is complete
    assert missing_semicolon_line(code, 1) is None
