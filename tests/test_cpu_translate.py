"""The CPU backend's source translation: CUDA C -> C++ with checked pointers, line for line.

Lines must never move (compiler messages and runtime errors name the learner's lines), and each rewrite
must touch exactly what it should: a pointer type, not a multiplication; a dereference, not a declarator.
"""
from __future__ import annotations

import re

import pytest

from llmc_kernels.runtime.cpu.translate import translate

DIRECTIVE = '#line 1 "cell"\n'


def body(code: str) -> str:
    """The translated learner's code, without prelude and entry points."""
    text = translate(code, [], DIRECTIVE).text
    start = text.index(DIRECTIVE) + len(DIRECTIVE)
    end = text.index('#line 1 "<llmc entry points>"')
    return text[start:end]


def squash(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


@pytest.mark.parametrize("cuda, cpp", [
    ("void k(const float* __restrict__ inp, float *out, int n);",
     "void k(llmc::ptr<const float> __restrict__ inp, llmc::ptr<float> out, int n);"),
    ("float const * const p = q;", "llmc::ptr<float const> const p = q;"),
    ("unsigned int* bins = 0;", "llmc::ptr<unsigned int> bins = 0;"),
    ("float** pp;", "llmc::ptr<llmc::ptr<float>> pp;"),
    ("float * const * pp;", "llmc::ptr<llmc::ptr<float> const> pp;"),
    ("float *a = x, *b = y;", "llmc::ptr<float> a = x, b = y;"),
    ("static float a, *b, **c;", "static float a; static llmc::ptr<float> b; static llmc::ptr<llmc::ptr<float>> c;"),
    ("for (float *p = a, *q = b; p < q; ++p) {}", "for (llmc::ptr<float> p = a, q = b; p < q; ++p) {}"),
    ("y = (float4*)x + 1;", "y = (llmc::ptr<float4>)x + 1;"),
    ("v = reinterpret_cast<const float4*>(x)[i];", "v = llmc::reinterpret_cast_<llmc::ptr<const float4> >(x)[i];"),
    ("p = const_cast<float*>(q);", "p = llmc::const_cast_<llmc::ptr<float>>(q);"),
    ("n = sizeof(float) * k;", "n = sizeof(float) * k;"),
    ("y = a * b * c;", "y = a * b * c;"),
    ("y = *p * *q;", "y = (p)[0] * (q)[0];"),
    ("*out = 1;", "(out)[llmc::st((0))] = 1;"),
    ("*p++ = v;", "(p++)[llmc::st((0))] = v;"),
    ("*(p + i) = v;", "((p + i))[llmc::st((0))] = v;"),
    ("y = x / *p;", "y = x / (p)[0];"),
    ("if (ok) *p = 0;", "if (ok) (p)[llmc::st((0))] = 0;"),
    ("y = (float)*p;", "y = (float)(p)[0];"),
    ("y = **pp;", "y = ((pp)[0])[0];"),
    ("y = *p->next;", "y = (p[0].next)[0];"),
    ("y = p->x + q[i].y;", "y = p[0].x + q[i].y;"),
    ("auto f = [](float a) -> float { return a; };", "auto f = [](float a) -> float { return a; };"),
    ("auto* p = &x[i];", "auto p = &x[llmc::adr((i))];"),
    ("float (*fp)(float) = 0;", "float (*fp)(float) = 0;"),
    ("template <typename T> T* at(T* p, int i) { return p + i; }",
     "template <typename T> llmc::ptr<T> at(llmc::ptr<T> p, int i) { return p + i; }"),
    ("typedef float real; real* x;", "typedef float real; llmc::ptr<real> x;"),
    ("struct Pair { float* a; }; Pair* p;", "struct Pair { llmc::ptr<float> a; }; llmc::ptr<Pair> p;"),
    ("y = s.half * 2;", "y = s.half * 2;"),
])
def test_rewrites(cuda, cpp):
    assert squash(body(cuda)) == squash(cpp)


def test_shared_declarations():
    code = ("void k() {\n  __shared__ float s[128], t[2][B + 1];\n  __shared__ float mean;\n"
            "  extern __shared__ __align__(16) char dyn[];\n}\n")
    out = squash(body(code))
    assert 'llmc::shared_array<float, (128)> & s = llmc::shared_static<llmc::shared_array<float, (128)>, 1>("s");' in out
    assert "llmc::shared_array<llmc::shared_array<float, (B + 1)>, (2)> & t" in out
    assert 'float & mean = llmc::shared_static<float, 3>("mean");' in out
    assert "llmc::ptr<char> dyn = llmc::shared_dynamic<char>();" in out


def test_file_scope_extern_shared_becomes_an_accessor():
    code = "extern __shared__ float buf[];\nvoid k() { buf[0] = 1; x.buf = 2; }\n"
    out = body(code)
    assert "static inline llmc::ptr<float> llmc_shared_buf() { return llmc::shared_dynamic<float>(); }" in out
    assert "llmc_shared_buf()[llmc::st((0))] = 1;" in out and "x.buf = 2" in out


def test_directives_comments_and_strings():
    code = ('#include <stdio.h>\n#include "mine.h"\n#pragma unroll 4\n#pragma once\n'
            '// float* p = *q;\n/* a * b\n   *c */ printf("*p = %f\\n", *p);\n'
            "#define LOAD(p) (*(p))\n#define real float\nreal* r;\n")
    out = body(code).split("\n")
    assert out[0] == "" and out[1] == '#include "mine.h"' and out[2] == "" and out[3] == "#pragma once"
    assert out[4] == "// float* p = *q;"
    assert out[6] == '   *c */ printf("*p = %f\\n", (p)[0]);'
    assert out[7] == "#define LOAD(p) (((p))[0])"
    assert out[9].strip() == "llmc::ptr<real> r;"


def test_lines_never_move():
    code = r"""
#define N 4
extern "C" __global__ void k(float* out,
                             const float* in,
                             int n) {
    __shared__ float s[N
        * 32];
    extern __shared__
        float dyn[];
    float *a = out,
          *b = (float*)in;
    *a = *b
         * 2;
    if (n) a->x;  /* multi-line
    comment */ s[0] = dyn[0];
}
"""
    out = body(code)
    assert out.count("\n") == code.count("\n")
    for marker in ("#define N 4", "int n) {", "if (n)", "comment */"):
        assert code.split("\n").index(next(l for l in code.split("\n") if marker in l)) == \
            out.split("\n").index(next(l for l in out.split("\n") if marker in l))


def test_barriers_and_warp_operations_select_fibers():
    assert translate("void k() { __syncthreads(); }", [], DIRECTIVE).uses_sync
    assert translate("#define SYNC __syncwarp()\nvoid k() { SYNC; }", [], DIRECTIVE).uses_sync
    assert translate("void k() { int m = __activemask(); }", [], DIRECTIVE).uses_sync
    assert not translate("void k(float* x) { x[0] = expf(1.0f); } // __syncthreads", [], DIRECTIVE).uses_sync


def test_entry_points_for_every_kernel():
    text = translate("extern \"C\" __global__ void a(int n) {}\n", [("a", 1), ("b", 3)], DIRECTIVE).text
    assert text.startswith('#include "cuda_cpu.h"\n#line 1 "cell"\n')
    assert text.endswith("LLMC_ENTRY(a, 0)\nLLMC_ENTRY(b, 0, 1, 2)\n")


@pytest.mark.parametrize("cuda,cpp", [
    # how an access uses memory (issue 14): stores, updates and addresses get a tagged index, loads stay
    ("y = p[i];", "y = p[i];"),
    ("p[i] = v;", "p[llmc::st((i))] = v;"),
    ("p[i] += v;", "p[llmc::upd((i))] += v;"),
    ("p[i]++; --p[j];", "p[llmc::upd((i))]++; --p[llmc::upd((j))];"),
    ("atomicAdd(&p[i], v);", "atomicAdd(&p[llmc::adr((i))], v);"),
    ("s[i][j] = v;", "s[i][llmc::st((j))] = v;"),
    ("p[i].x = v;", "p[llmc::st((i))].x = v;"),
    ("p->x = v;", "p[llmc::st((0))].x = v;"),
    ("if (p[i] == v) q[i] = p[i];", "if (p[i] == v) q[llmc::st((i))] = p[i];"),
    ("float a[4] = {0};", "float a[4] = {0};"),
])
def test_access_kinds(cuda, cpp):
    assert squash(body(cuda)) == squash(cpp)
