// CUDA's device math beyond <math.h>: fast intrinsics (here: the accurate functions), rsqrtf, bit casts,
// integer intrinsics, rounding conversions, and the global min/max overloads.
//
// Results can differ from a GPU by a few ulps (other libm, no FMA contraction): compare with tolerances.
#ifndef LLMC_MATH_H
#define LLMC_MATH_H

LLMC_INLINE float rsqrtf(float x) { return 1.0f / sqrtf(x); }
LLMC_INLINE double rsqrt(double x) { return 1.0 / sqrt(x); }
LLMC_INLINE float rcbrtf(float x) { return 1.0f / cbrtf(x); }
LLMC_INLINE float __expf(float x) { return expf(x); }
LLMC_INLINE float __exp10f(float x) { return exp10f(x); }
LLMC_INLINE float __logf(float x) { return logf(x); }
LLMC_INLINE float __log2f(float x) { return log2f(x); }
LLMC_INLINE float __log10f(float x) { return log10f(x); }
LLMC_INLINE float __powf(float x, float y) { return powf(x, y); }
LLMC_INLINE float __sinf(float x) { return sinf(x); }
LLMC_INLINE float __cosf(float x) { return cosf(x); }
LLMC_INLINE float __tanf(float x) { return tanf(x); }
LLMC_INLINE float __tanhf(float x) { return tanhf(x); }
LLMC_INLINE void __sincosf(float x, float *s, float *c) { sincosf(x, s, c); }
LLMC_INLINE float __fdividef(float x, float y) { return x / y; }
LLMC_INLINE float fdividef(float x, float y) { return x / y; }
LLMC_INLINE float __frcp_rn(float x) { return 1.0f / x; }
LLMC_INLINE float __fsqrt_rn(float x) { return sqrtf(x); }
LLMC_INLINE float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
LLMC_INLINE float __fadd_rn(float x, float y) { return x + y; }
LLMC_INLINE float __fsub_rn(float x, float y) { return x - y; }
LLMC_INLINE float __fmul_rn(float x, float y) { return x * y; }
LLMC_INLINE float __fdiv_rn(float x, float y) { return x / y; }
LLMC_INLINE float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
LLMC_INLINE double __dadd_rn(double x, double y) { return x + y; }
LLMC_INLINE double __dmul_rn(double x, double y) { return x * y; }
LLMC_INLINE double __fma_rn(double x, double y, double z) { return fma(x, y, z); }
LLMC_INLINE float __saturatef(float x) { return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
LLMC_INLINE float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
LLMC_INLINE double normcdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752); }

LLMC_INLINE float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
LLMC_INLINE int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
LLMC_INLINE float __uint_as_float(unsigned int x) { float f; memcpy(&f, &x, 4); return f; }
LLMC_INLINE unsigned int __float_as_uint(float x) { unsigned int i; memcpy(&i, &x, 4); return i; }
LLMC_INLINE double __longlong_as_double(long long x) { double d; memcpy(&d, &x, 8); return d; }
LLMC_INLINE long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }

LLMC_INLINE int __popc(unsigned int x) { return __builtin_popcount(x); }
LLMC_INLINE int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
LLMC_INLINE int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
LLMC_INLINE int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
LLMC_INLINE int __ffs(int x) { return __builtin_ffs(x); }
LLMC_INLINE int __ffsll(long long x) { return __builtin_ffsll(x); }
LLMC_INLINE unsigned int __brev(unsigned int x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
  x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
  return (x >> 16) | (x << 16);
}
LLMC_INLINE int __mul24(int x, int y) { return (int)((long long)((x << 8) >> 8) * ((y << 8) >> 8)); }
LLMC_INLINE unsigned int __umul24(unsigned int x, unsigned int y) { return (x & 0xFFFFFFu) * (y & 0xFFFFFFu); }
LLMC_INLINE int __mulhi(int x, int y) { return (int)(((long long)x * y) >> 32); }
LLMC_INLINE unsigned int __umulhi(unsigned int x, unsigned int y) { return (unsigned)(((unsigned long long)x * y) >> 32); }

// Float -> int conversions saturate on the GPU (NaN -> 0); the C++ casts would be undefined there.
LLMC_INLINE int llmc_f2i(double r) {
  return r != r ? 0 : (r >= 2147483647.0 ? 2147483647 : (r <= -2147483648.0 ? (-2147483647 - 1) : (int)r));
}
LLMC_INLINE int __float2int_rn(float x) { return llmc_f2i(nearbyint((double)x)); }
LLMC_INLINE int __float2int_rz(float x) { return llmc_f2i(trunc((double)x)); }
LLMC_INLINE int __float2int_rd(float x) { return llmc_f2i(floor((double)x)); }
LLMC_INLINE int __float2int_ru(float x) { return llmc_f2i(ceil((double)x)); }
LLMC_INLINE float __int2float_rn(int x) { return (float)x; }
LLMC_INLINE float __uint2float_rn(unsigned int x) { return (float)x; }
LLMC_INLINE double __int2double_rn(int x) { return (double)x; }
LLMC_INLINE float __double2float_rn(double x) { return (float)x; }

// min/max as CUDA overloads them: integers compare in the usual-arithmetic-conversion type; a floating
// operand makes it fminf/fmaxf/fmin/fmax (which return the other operand when one is NaN).
namespace llmc {
template <class A, class B, bool F> struct minmax_impl {
  typedef decltype(A() + B()) R;
  static LLMC_INLINE R lo(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; }
  static LLMC_INLINE R hi(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
};
template <class A, class B> struct minmax_impl<A, B, true> {
  typedef decltype(A() + B()) R;
  static LLMC_INLINE R lo(A a, B b) { return (R)fmin((double)a, (double)b); }
  static LLMC_INLINE R hi(A a, B b) { return (R)fmax((double)a, (double)b); }
};
template <> struct minmax_impl<float, float, true> {
  static LLMC_INLINE float lo(float a, float b) { return fminf(a, b); }
  static LLMC_INLINE float hi(float a, float b) { return fmaxf(a, b); }
};
template <class T> struct is_float_like { static const bool value = false; };
template <> struct is_float_like<float> { static const bool value = true; };
template <> struct is_float_like<double> { static const bool value = true; };
template <class A, class B>
struct minmax : minmax_impl<A, B, is_float_like<A>::value || is_float_like<B>::value> {};
} // namespace llmc

template <class A, class B>
LLMC_INLINE auto min(A a, B b) -> decltype(llmc::minmax<A, B>::lo(a, b)) { return llmc::minmax<A, B>::lo(a, b); }
template <class A, class B>
LLMC_INLINE auto max(A a, B b) -> decltype(llmc::minmax<A, B>::hi(a, b)) { return llmc::minmax<A, B>::hi(a, b); }
LLMC_INLINE unsigned int umin(unsigned int a, unsigned int b) { return a < b ? a : b; }
LLMC_INLINE unsigned int umax(unsigned int a, unsigned int b) { return a > b ? a : b; }
LLMC_INLINE long long llmin(long long a, long long b) { return a < b ? a : b; }
LLMC_INLINE long long llmax(long long a, long long b) { return a > b ? a : b; }

#endif
