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


@pytest.mark.parametrize(
    "cuda, cpp",
    [
        (
            "void k(const float* __restrict__ inp, float *out, int n);",
            "void k(llmc::ptr<const float> __restrict__ inp, llmc::ptr<float> out, int n);",
        ),
        ("float const * const p = q;", "llmc::ptr<float const> const p = q;"),
        ("unsigned int* bins = 0;", "llmc::ptr<unsigned int> bins = 0;"),
        ("float** pp;", "llmc::ptr<llmc::ptr<float>> pp;"),
        ("float * const * pp;", "llmc::ptr<llmc::ptr<float> const> pp;"),
        ("float *a = x, *b = y;", "llmc::ptr<float> a = x, b = y;"),
        (
            "static float a, *b, **c;",
            "static float a; static llmc::ptr<float> b; static llmc::ptr<llmc::ptr<float>> c;",
        ),
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
        (
            "template <typename T> T* at(T* p, int i) { return p + i; }",
            "template <typename T> llmc::ptr<T> at(llmc::ptr<T> p, int i) { return p + i; }",
        ),
        ("typedef float real; real* x;", "typedef float real; llmc::ptr<real> x;"),
        ("struct Pair { float* a; }; Pair* p;", "struct Pair { llmc::ptr<float> a; }; llmc::ptr<Pair> p;"),
        ("y = s.half * 2;", "y = s.half * 2;"),
    ],
)
def test_rewrites(cuda, cpp):
    assert squash(body(cuda)) == squash(cpp)


def test_shared_declarations():
    code = (
        "void k() {\n  __shared__ float s[128], t[2][B + 1];\n  __shared__ float mean;\n"
        "  extern __shared__ __align__(16) char dyn[];\n}\n"
    )
    out = squash(body(code))
    assert (
        'llmc::shared_array<float, (128)> & s = llmc::shared_static<llmc::shared_array<float, (128)>, 1>("s");' in out
    )
    assert "llmc::shared_array<llmc::shared_array<float, (B + 1)>, (2)> & t" in out
    assert 'float & mean = llmc::shared_static<float, 3>("mean");' in out
    assert "llmc::ptr<char> dyn = llmc::shared_dynamic<char>();" in out


def test_file_scope_extern_shared_becomes_an_accessor():
    code = "extern __shared__ float buf[];\nvoid k() { buf[0] = 1; x.buf = 2; }\n"
    out = body(code)
    assert "static inline llmc::ptr<float> llmc_shared_buf() { return llmc::shared_dynamic<float>(); }" in out
    assert "llmc_shared_buf()[llmc::st((0))] = 1;" in out and "x.buf = 2" in out


def test_directives_comments_and_strings():
    code = (
        '#include <stdio.h>\n#include "mine.h"\n#pragma unroll 4\n#pragma once\n'
        '// float* p = *q;\n/* a * b\n   *c */ printf("*p = %f\\n", *p);\n'
        "#define LOAD(p) (*(p))\n#define real float\nreal* r;\n"
    )
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
        assert code.split("\n").index(next(l for l in code.split("\n") if marker in l)) == out.split("\n").index(
            next(l for l in out.split("\n") if marker in l)
        )


def test_barriers_and_warp_operations_select_fibers():
    assert translate("void k() { __syncthreads(); }", [], DIRECTIVE).uses_sync
    assert translate("#define SYNC __syncwarp()\nvoid k() { SYNC; }", [], DIRECTIVE).uses_sync
    assert translate("void k() { int m = __activemask(); }", [], DIRECTIVE).uses_sync
    assert not translate("void k(float* x) { x[0] = expf(1.0f); } // __syncthreads", [], DIRECTIVE).uses_sync


def test_entry_points_for_every_kernel():
    text = translate('extern "C" __global__ void a(int n) {}\n', [("a", 1), ("b", 3)], DIRECTIVE).text
    assert text.startswith('#include "cuda_cpu.h"\n#line 1 "cell"\n')
    assert text.endswith("LLMC_ENTRY(a, 0)\nLLMC_ENTRY(b, 0, 1, 2)\n")


@pytest.mark.parametrize(
    "cuda,cpp",
    [
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
    ],
)
def test_access_kinds(cuda, cpp):
    assert squash(body(cuda)) == squash(cpp)


# ------------------------------------------------------------------------- names and scopes (scopes.py)
@pytest.mark.parametrize(
    "cuda, cpp",
    [
        # a variable named like a type is a value where it is in sight
        (
            "void k(float* x) { float half = 0.5f; x[0] = half * *x; }",
            "void k(llmc::ptr<float> x) { float half = 0.5f; x[llmc::st((0))] = half * (x)[0]; }",
        ),
        (
            "void k(float* x) { int dim3 = 3; x[0] = dim3 * x[1]; }",
            "void k(llmc::ptr<float> x) { int dim3 = 3; x[llmc::st((0))] = dim3 * x[1]; }",
        ),
        (
            "float f(float half, const float* p) { return half * *p; }",
            "float f(float half, llmc::ptr<const float> p) { return half * (p)[0]; }",
        ),
        (
            "void k(float* x) { for (int half = 1; half < 3; half++) x[0] += half * x[1]; }",
            "void k(llmc::ptr<float> x) { for (int half = 1; half < 3; half++) x[llmc::upd((0))] += half * x[1]; }",
        ),
        ("auto f = [](float half) { return half * 2.0f; };", "auto f = [](float half) { return half * 2.0f; };"),
        (
            "void k(float* x) { float half = 2; x[0] = (half) * *x; }",  # a product, not a cast
            "void k(llmc::ptr<float> x) { float half = 2; x[llmc::st((0))] = (half) * (x)[0]; }",
        ),
        # ... and a type again outside that scope
        ("void k() { { int half = 1; } half* p; }", "void k() { { int half = 1; } llmc::ptr<half> p; }"),
        (
            "void k(float* x) { float half = 1; { typedef int half; half* p; } }",
            "void k(llmc::ptr<float> x) { float half = 1; { typedef int half; llmc::ptr<half> p; } }",
        ),
        # a template parameter is a type only in its template: llm.c's `int T` elsewhere is a value
        (
            "template <typename T> T f(T* p) { return *p; }\nvoid k(float* o, int B, int T, int C) { o[0] = B * T * C; }",  # noqa: E501
            (
                "template <typename T> T f(llmc::ptr<T> p) { return (p)[0]; }\n"
                "void k(llmc::ptr<float> o, int B, int T, int C) { o[llmc::st((0))] = B * T * C; }"
            ),
        ),
        # types spelled by decltype, dependent names, template-ids and qualified names
        (
            "void k(float* x) { decltype(x[0] + 1.0f)* q = x; }",
            "void k(llmc::ptr<float> x) { llmc::ptr<decltype ( x [ 0 ] + 1.0f )> q = x; }",
        ),
        (
            "template <class B> void f(typename B::value_type* p) {}",
            "template <class B> void f(llmc::ptr<typename B :: value_type> p) {}",
        ),
        (
            "template <class T> struct Box { T v; }; Box<float>* b; Box<float*>* c;",
            "template <class T> struct Box { T v; }; llmc::ptr<Box < float >> b; llmc::ptr<Box < llmc::ptr<float> >> c;",  # noqa: E501
        ),
        (
            "namespace u { struct V { float x; }; } u::V* v = (u::V*)p;",
            "namespace u { struct V { float x; }; } llmc::ptr<u :: V> v = (llmc::ptr<u :: V>)p;",
        ),
        (
            "template <class T> struct Box; y = reinterpret_cast<Box<float>*>(x);",
            "template <class T> struct Box; y = llmc::reinterpret_cast_<llmc::ptr<Box < float >>>(x);",
        ),
        (
            "namespace cg = cooperative_groups; void k() { cg::thread_block_tile<32> w = cg::tiled_partition<32>(b); }",
            "namespace cg = cooperative_groups; void k() { cg::thread_block_tile<32> w = cg::tiled_partition<32>(b); }",
        ),
        (
            "struct S { float half; float g() { return half * 2; } };",
            "struct S { float half; float g() { return half * 2; } };",
        ),
        ("y = p->half * 2;", "y = p[0].half * 2;"),
        ("auto f(float* p) -> float* { return p; }", "auto f(llmc::ptr<float> p) -> llmc::ptr<float> { return p; }"),
    ],
)
def test_names_are_looked_up_in_their_scope(cuda, cpp):
    assert squash(body(cuda)) == squash(cpp)


def test_macro_parameters_are_types_where_only_a_type_can_stand():
    code = (
        "#define PTR(T) T*\n#define AS(T, p) ((const T*)(p))\n#define CAST(T, p) reinterpret_cast<T*>(p)\n"
        "#define MUL(a, b) ((a) * (b))\n#define SCALE(x) half * (x)\n"
    )
    out = [squash(line) for line in body(code).split("\n")]
    assert out[0] == "#define PTR(T) llmc::ptr<T>"
    assert out[1] == "#define AS(T, p) ((llmc::ptr<const T> )(p))"
    assert out[2] == "#define CAST(T, p) llmc::reinterpret_cast_<llmc::ptr<T>>(p)"
    assert out[3] == "#define MUL(a, b) ((a) * (b))" and out[4] == "#define SCALE(x) half * (x)"


def test_a_name_the_code_declares_as_a_variable_is_no_type_in_macros():
    code = "#define HALF_OF(x) (half * x)\n#define P half* p\nvoid k(float x) { float half = 0.5f; }\n"
    out = [squash(line) for line in body(code).split("\n")]
    assert out[0] == "#define HALF_OF(x) (half * x)" and out[1] == "#define P half* p"
    assert squash(body("#define P half* p\n")) == "#define P llmc::ptr<half> p"


def test_cooperative_groups_header_and_fibers():
    code = (
        "#include <cooperative_groups.h>\n#include <cooperative_groups/reduce.h>\nnamespace cg = cooperative_groups;\n"
    )
    tr = translate(code, [], DIRECTIVE)
    out = body(code).split("\n")
    assert out[0] == '#include "llmc_cg.h"' and out[1] == '#include "llmc_cg.h"' and len(out) == 4
    assert tr.uses_sync  # tiles synchronise inside llmc_cg.h, where the scan for barriers cannot look
