"""Compile-only NVRTC (no GPU): errors name the learner's file/cell and line, the missing-';' hint, warnings,
and the prelude that gives NVRTC the names a C++ compiler's headers provide."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmc_kernels.errors import KernelCompileError
from llmc_kernels.runtime import nvrtc
from llmc_kernels.runtime.source import SourceOrigin

if not nvrtc.available():
    pytest.skip(
        f"NVRTC is not installed (pip install -e .[test]): {nvrtc.unavailable_reason()}", allow_module_level=True
    )

THIS_FILE = Path(__file__)
REPO = THIS_FILE.resolve().parent.parent


def line_of(text: str) -> int:
    for i, line in enumerate(THIS_FILE.read_text().splitlines(), 1):
        if text in line:
            return i
    raise AssertionError(text)


def test_version():
    major, minor = nvrtc.version()
    assert isinstance(major, int) and major >= 11 and minor >= 0
    assert nvrtc.binding() in ("cupy", "cuda-bindings")


GOOD = r"""extern "C" __global__ void relu(float* out, const float* inp, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = fmaxf(inp[i], 0.0f);
}
"""


def test_good_kernel_compiles_without_warnings():
    assert nvrtc.check_compile(GOOD, "relu") == []


def test_an_empty_log_leaves_pythons_shared_bytes_alone():
    """Regression: NVRTC once wrote a clean compile's 1-byte log ("\\0") into CPython's shared b" ", after
    which bytes([32]) was b"\\x00" everywhere in the process (tiktoken's GPT-2 vocabulary then failed to load).
    A fresh interpreter, so that a failure cannot poison this one."""
    probe = (
        "from llmc_kernels.runtime import nvrtc\n"
        f"nvrtc.check_compile({GOOD!r}, 'relu')\n"
        "assert bytes([32])[0] == 32 and (b'x' * 0 + bytes([32]))[0] == 32, bytes([32])\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=REPO)


UNDEFINED = r"""extern "C" __global__ void relu(float* out, const float* inp, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = fmaxf(inpt[i], 0.0f);
}
"""


def test_error_names_this_file_and_the_line():
    with pytest.raises(KernelCompileError) as info:
        nvrtc.check_compile(UNDEFINED, "relu")
    err = info.value
    line = line_of('UNDEFINED = r"""extern') + 2
    assert err.kernel == "relu" and err.kernel_line == 3
    assert err.location == f"{os.path.relpath(THIS_FILE)}, line {line}"
    text = str(err)
    assert text.startswith(f"kernel 'relu', {os.path.relpath(THIS_FILE)}, line {line} (kernel line 3): NVRTC")
    assert 'identifier "inpt" is undefined' in text
    assert "if (i < n) out[i] = fmaxf(inpt[i], 0.0f);" in text  # the line is quoted
    assert "llmc_prelude" not in text and "Traceback" not in text


MISSING_SEMICOLON = r"""extern "C" __global__ void relu(float* out, const float* inp, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x
    if (i < n) out[i] = fmaxf(inp[i], 0.0f);
}
"""


def test_missing_semicolon_names_line_2():
    with pytest.raises(KernelCompileError) as info:
        nvrtc.check_compile(MISSING_SEMICOLON, "relu")
    start = line_of('MISSING_SEMICOLON = r"""extern')
    text = str(info.value)
    assert info.value.kernel_line == 3  # where NVRTC sees it
    assert 'expected a ";"' in text
    assert (
        f"a ';' is probably missing at the end of {os.path.relpath(THIS_FILE)}, line {start + 1} (kernel line 2)"
    ) in text
    assert "int i = blockIdx.x * blockDim.x + threadIdx.x" in text


def test_no_semicolon_hint_when_the_previous_line_is_complete():
    code = 'extern "C" __global__ void k(float* o) {\n    int a = 1;\n    int b = 2 int c = 3;\n}\n'
    with pytest.raises(KernelCompileError) as info:
        nvrtc.check_compile(code, "k", origin=SourceOrigin("cell In[4]", 1))
    assert "probably missing" not in str(info.value)
    assert info.value.location == "cell In[4], line 3"


def test_explicit_origin_maps_lines():
    with pytest.raises(KernelCompileError) as info:
        nvrtc.check_compile(UNDEFINED, "relu", origin=SourceOrigin("relu.cu", 40))
    assert info.value.location == "relu.cu, line 42" and "relu.cu, line 42 (kernel line 3)" in str(info.value)


def test_many_errors_are_capped():
    body = "".join(f"    x{i} = 1;\n" for i in range(8))
    code = 'extern "C" __global__ void k(float* o) {\n' + body + "}\n"
    with pytest.raises(KernelCompileError, match=r"NVRTC compile errors:(.|\n)*\.\.\. and 3 more errors"):
        nvrtc.check_compile(code, "k")


def test_warnings_are_returned_not_printed(capsys):
    code = 'extern "C" __global__ void k(float* o) {\n    int unused = 3;\n    o[0] = 1.0f;\n}\n'
    warnings = nvrtc.check_compile(code, "k", origin=SourceOrigin("cell In[2]", 5))
    assert len(warnings) == 1 and warnings[0].startswith("cell In[2], line 6: warning:")
    assert '"unused"' in warnings[0]
    assert capsys.readouterr() == ("", "")


def test_unknown_kernel_name():
    with pytest.raises(KernelCompileError, match="no __global__ kernel named 'gelu'.*it defines: relu"):
        nvrtc.check_compile(GOOD, "gelu")


PRELUDE_NAMES = r"""extern "C" __global__ void names(float* out, double* d, long long* q) {
    uint32_t u = UINT_MAX; int64_t big = INT_MAX; int32_t small = INT_MIN; uint8_t b = 255;
    int8_t s = -1; uint16_t h = 7; int16_t g = -7; uint64_t w = 1;
    out[0] = FLT_MAX + FLT_MIN + FLT_EPSILON + INFINITY + NAN + (float)M_PI + (float)M_SQRT1_2;
    out[1] = -INFINITY + (float)(M_E + M_SQRT2 + M_2_SQRTPI + M_LN2 + M_LOG2E);
    d[0] = DBL_MAX + DBL_EPSILON;
    q[0] = u + big + small + b + s + h + g + w;
}
"""


def test_prelude_gives_nvrtc_the_usual_header_names():
    assert nvrtc.check_compile(PRELUDE_NAMES, "names") == []


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_prelude_is_invisible_to_a_cpp_compiler(tmp_path):
    # the CPU backend's compiler must not see conflicting typedefs or macros if it ever includes the prelude
    src = tmp_path / "t.cpp"
    src.write_text(
        nvrtc.PRELUDE + "#include <cstdint>\n#include <cmath>\n#include <cfloat>\n#include <climits>\n"
        "int64_t f() { return (int64_t)(FLT_MAX + INFINITY + M_PI) + INT_MAX; }\n"
    )
    done = subprocess.run(["g++", "-fsyntax-only", "-Wall", "-Werror", str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


CELL = '''from llmc_kernels.runtime import RawKernel, nvrtc
code = r"""extern "C" __global__ void k(float* o) {
    int i = threadIdx.x
    o[i] = 1.0f;
}
"""
k = RawKernel(code, "k")
print("ORIGIN", k.origin.display, k.origin.first_line)
try:
    nvrtc.check_compile(code, "k")
except Exception as e:
    print("ERROR", json.dumps(str(e)))
'''


def test_kernel_string_in_an_ipython_cell_is_located_in_that_cell():
    pytest.importorskip("IPython")
    script = textwrap.dedent(f"""
        import json
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_cell("import json", store_history=True)
        shell.run_cell({CELL!r}, store_history=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    out = done.stdout
    assert "ORIGIN cell In[2] 2" in out, out + done.stderr
    error = json.loads(out.split("ERROR ", 1)[1].splitlines()[0])
    assert error.startswith("kernel 'k', cell In[2], line 4 (kernel line 3)")
    assert "probably missing at the end of cell In[2], line 3 (kernel line 2)" in error
