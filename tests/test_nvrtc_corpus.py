"""Every kernel of the course compiles for the GPU, checked with NVRTC on any machine: each
``llmc_kernels/kernels/*.cu`` and each CUDA string (a string constant containing ``__global__``) in the code
cells of every notebook under ``solutions/`` and ``chapters/`` (student copies must compile too).

Strings are compiled as written: build kernel variants with ``#define``s inside the string, not with Python
string formatting, so that this test (and a learner reading the cell) sees real CUDA C.
"""

import ast
import json
import re
from pathlib import Path

import pytest

from llmc_kernels.runtime import nvrtc
from llmc_kernels.runtime.source import SourceOrigin, file_origin

REPO = Path(__file__).resolve().parent.parent
KERNEL_DIR = REPO / "llmc_kernels" / "kernels"

# Always compiled, so this test cannot pass vacuously: the features the course's kernels lean on.
KNOWN_GOOD = r"""#define BLOCK 128
extern "C" __global__ void known_good(float* out, const float4* inp, const int* idx, int n) {
    __shared__ float tile[BLOCK];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float4 v = i < n / 4 ? inp[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    float s = v.x + v.y + v.z + v.w;
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffff, s, off);
    tile[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        float m = -INFINITY;
        for (int t = 0; t < BLOCK; t += 32) m = fmaxf(m, tile[t]);
        atomicAdd(out + idx[0], tanhf(m) + expf(-m) + rsqrtf(1.0f + m * m) + (float)M_PI);
    }
}
"""


def _notebook_kernels(path: Path):
    """(id, code, origin) of each CUDA string constant in the notebook's code cells."""
    nb = json.loads(path.read_text())
    rel = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else path.name
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        # IPython magics and shell escapes are not Python: blank them, keeping the line numbers
        source = re.sub(r"(?m)^\s*[%!].*$", "", source)
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue  # the notebook tests report broken cells; here only kernels matter
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and "__global__" in node.value:
                origin = SourceOrigin(f"{rel} cell {index}", node.lineno)
                yield f"{rel}:cell{index}:line{node.lineno}", node.value, origin


def _cases():
    """(code, origin, strict): the package's own kernels (strict) must also compile without warnings."""
    cases = [pytest.param(KNOWN_GOOD, SourceOrigin("known_good", 1), True, id="known_good")]
    for cu in sorted(KERNEL_DIR.glob("*.cu")):
        cases.append(pytest.param(cu.read_text(), file_origin(str(cu)), True, id=f"kernels/{cu.name}"))
    for folder in ("solutions", "chapters"):
        for nb in sorted((REPO / folder).glob("**/*.ipynb")):
            if ".ipynb_checkpoints" in nb.parts:
                continue
            cases += [pytest.param(code, origin, False, id=case_id) for case_id, code, origin in _notebook_kernels(nb)]
    return cases


CASES = _cases()
needs_nvrtc = pytest.mark.skipif(not nvrtc.available(), reason="NVRTC is not installed (pip install -e .[test])")


@needs_nvrtc
@pytest.mark.slow  # NVRTC compiles every package kernel (flash attention: ~20 s)
@pytest.mark.parametrize("code, origin, strict", CASES)
def test_kernel_compiles_with_nvrtc(code, origin, strict):
    warnings = nvrtc.check_compile(code, origin=origin)
    if strict:
        assert warnings == [], "the package's kernels compile without warnings:\n" + "\n".join(warnings)


def test_the_corpus_is_not_empty():
    """Says so (as a skip) while no .cu file or notebook kernel exists yet, instead of passing silently."""
    if len(CASES) == 1:
        pytest.skip("no kernels/*.cu and no notebook kernel strings yet: only the built-in case was compiled")
    assert len(CASES) > 1


@needs_nvrtc
def test_a_broken_kernel_fails_this_check():
    with pytest.raises(Exception, match="known_good"):
        nvrtc.check_compile(KNOWN_GOOD.replace("tile[BLOCK]", "tile[BLOCKS]"), origin=SourceOrigin("known_good", 1))


def test_notebook_kernel_strings_are_found_with_their_lines(tmp_path):
    cells = [
        {"cell_type": "markdown", "source": "__global__ in prose is not code"},
        {
            "cell_type": "code",
            "source": [
                "%%time\n",
                "import numpy as np\n",
                'KERNEL = r"""extern "C"\n',
                "__global__ void k(float* o) {}\n",
                '"""\n',
                "!ls\n",
            ],
        },
        {"cell_type": "code", "source": "x = 'no kernel here'"},
        {"cell_type": "code", "source": "def broken(:\n    '__global__'"},
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    ((case_id, code, origin),) = _notebook_kernels(path)
    assert case_id == "nb.ipynb:cell1:line3" and code.startswith('extern "C"')
    assert origin == SourceOrigin("nb.ipynb cell 1", 3)
