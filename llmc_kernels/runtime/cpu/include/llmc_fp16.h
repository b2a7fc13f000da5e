// <cuda_fp16.h> and <cuda_bf16.h> on the CPU: the 16-bit float types and their conversions, so that a kernel
// that includes them (as llm.c's do) runs, and one that stores or computes in half or bfloat16 gets the GPU's
// bits. Each type holds its 16 bits; arithmetic converts to float and rounds back (round to nearest even),
// which is what the GPU's half and bf16 arithmetic gives for one operation.
//
//   half / __half, half2 / __half2               IEEE binary16: 1 sign, 5 exponent, 10 stored mantissa bits
//   nv_bfloat16 / __nv_bfloat16, __nv_bfloat162  bfloat16: float32's 8 exponent bits, 7 stored mantissa bits
#ifndef LLMC_FP16_H
#define LLMC_FP16_H

namespace llmc {

LLMC_INLINE uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
LLMC_INLINE float f32_from(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// float -> binary16, round to nearest even; overflow to inf, NaN stays NaN, subnormals kept
LLMC_INLINE uint16_t f32_to_f16(float f) {
  uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return (uint16_t)(sign | (a > 0x7F800000u ? 0x7E00u : 0x7C00u));
  if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);          // rounds to beyond 65504: inf
  if (a < 0x38800000u) {                                            // below 2^-14: a subnormal half (or 0)
    float m = f32_from(a) * 16777216.0f;                            // in units of 2^-24, exact
    return (uint16_t)(sign | (uint32_t)nearbyintf(m));              // nearbyint: ties to even
  }
  uint32_t r = a + 0xFFFu + ((a >> 13) & 1u);                        // round the 13 dropped bits, ties to even
  return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}
LLMC_INLINE float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0x1F) return f32_from(sign | 0x7F800000u | (m << 13));
  if (e == 0) {                                                     // subnormal: m * 2^-24
    float v = (float)m * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return f32_from(sign | ((e + 112u) << 23) | (m << 13));
}
// float -> bfloat16: the top 16 bits, rounded to nearest even; NaN stays a (quiet) NaN
LLMC_INLINE uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
LLMC_INLINE float bf16_to_f32(uint16_t b) { return f32_from((uint32_t)b << 16); }

} // namespace llmc

#define LLMC_HALF_TYPE(T, TO, FROM)                                                                        \
  struct __attribute__((aligned(2))) T {                                                                   \
    uint16_t bits;                                                                                         \
    T() = default;                                                                                         \
    LLMC_INLINE T(float f) : bits(llmc::TO(f)) {}                                                          \
    LLMC_INLINE T(double f) : bits(llmc::TO((float)f)) {}                                                  \
    LLMC_INLINE T(int i) : bits(llmc::TO((float)i)) {}                                                     \
    LLMC_INLINE operator float() const { return llmc::FROM(bits); }                                        \
    LLMC_INLINE T &operator+=(T o) { return *this = T((float)*this + (float)o); }                          \
    LLMC_INLINE T &operator-=(T o) { return *this = T((float)*this - (float)o); }                          \
    LLMC_INLINE T &operator*=(T o) { return *this = T((float)*this * (float)o); }                          \
    LLMC_INLINE T &operator/=(T o) { return *this = T((float)*this / (float)o); }                          \
  };                                                                                                       \
  LLMC_INLINE T operator+(T a, T b) { return T((float)a + (float)b); }                                     \
  LLMC_INLINE T operator-(T a, T b) { return T((float)a - (float)b); }                                     \
  LLMC_INLINE T operator*(T a, T b) { return T((float)a * (float)b); }                                     \
  LLMC_INLINE T operator/(T a, T b) { return T((float)a / (float)b); }                                     \
  LLMC_INLINE T operator-(T a) { T r; r.bits = (uint16_t)(a.bits ^ 0x8000u); return r; }                  \
  LLMC_INLINE bool operator==(T a, T b) { return (float)a == (float)b; }                                   \
  LLMC_INLINE bool operator!=(T a, T b) { return (float)a != (float)b; }                                   \
  LLMC_INLINE bool operator<(T a, T b) { return (float)a < (float)b; }                                     \
  LLMC_INLINE bool operator<=(T a, T b) { return (float)a <= (float)b; }                                   \
  LLMC_INLINE bool operator>(T a, T b) { return (float)a > (float)b; }                                     \
  LLMC_INLINE bool operator>=(T a, T b) { return (float)a >= (float)b; }
LLMC_HALF_TYPE(__half, f32_to_f16, f16_to_f32)
LLMC_HALF_TYPE(__nv_bfloat16, f32_to_bf16, bf16_to_f32)
#undef LLMC_HALF_TYPE
typedef __half half;
typedef __nv_bfloat16 nv_bfloat16;
struct __attribute__((aligned(4))) __half2 { __half x, y; };
struct __attribute__((aligned(4))) __nv_bfloat162 { __nv_bfloat16 x, y; };
typedef __half2 half2;
typedef __nv_bfloat162 nv_bfloat162;

// conversions (every rounding mode rounds to nearest even here: _rn is what the plain names do on a GPU)
LLMC_INLINE __half __float2half(float f) { return __half(f); }
LLMC_INLINE __half __float2half_rn(float f) { return __half(f); }
LLMC_INLINE float __half2float(__half h) { return (float)h; }
LLMC_INLINE __half __int2half_rn(int i) { return __half((float)i); }
LLMC_INLINE int __half2int_rn(__half h) { return (int)nearbyintf((float)h); }
LLMC_INLINE int __half2int_rz(__half h) { return (int)(float)h; }
LLMC_INLINE __half2 __floats2half2_rn(float a, float b) { __half2 r = {__half(a), __half(b)}; return r; }
LLMC_INLINE __half2 __float2half2_rn(float a) { return __floats2half2_rn(a, a); }
LLMC_INLINE __half2 __float22half2_rn(float2 v) { return __floats2half2_rn(v.x, v.y); }
LLMC_INLINE float2 __half22float2(__half2 h) { return make_float2((float)h.x, (float)h.y); }
LLMC_INLINE __half2 __halves2half2(__half a, __half b) { __half2 r = {a, b}; return r; }
LLMC_INLINE __half __low2half(__half2 h) { return h.x; }
LLMC_INLINE __half __high2half(__half2 h) { return h.y; }
LLMC_INLINE float __low2float(__half2 h) { return (float)h.x; }
LLMC_INLINE float __high2float(__half2 h) { return (float)h.y; }
LLMC_INLINE __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
LLMC_INLINE __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
LLMC_INLINE float __bfloat162float(__nv_bfloat16 b) { return (float)b; }
LLMC_INLINE __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  __nv_bfloat162 r = {__nv_bfloat16(a), __nv_bfloat16(b)};
  return r;
}
LLMC_INLINE __nv_bfloat162 __float22bfloat162_rn(float2 v) { return __floats2bfloat162_rn(v.x, v.y); }
LLMC_INLINE float2 __bfloat1622float2(__nv_bfloat162 b) { return make_float2((float)b.x, (float)b.y); }
LLMC_INLINE __nv_bfloat16 __low2bfloat16(__nv_bfloat162 b) { return b.x; }
LLMC_INLINE __nv_bfloat16 __high2bfloat16(__nv_bfloat162 b) { return b.y; }
LLMC_INLINE __half __ushort_as_half(unsigned short u) { __half h; h.bits = u; return h; }
LLMC_INLINE unsigned short __half_as_ushort(__half h) { return h.bits; }
LLMC_INLINE __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { __nv_bfloat16 b; b.bits = u; return b; }
LLMC_INLINE unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.bits; }

// arithmetic intrinsics: one operation in float, rounded once (as the GPU's, for one operation)
#define LLMC_HALF_OPS(T, P)                                                                                \
  LLMC_INLINE T __h##P##add(T a, T b) { return a + b; }                                                    \
  LLMC_INLINE T __h##P##sub(T a, T b) { return a - b; }                                                    \
  LLMC_INLINE T __h##P##mul(T a, T b) { return a * b; }                                                    \
  LLMC_INLINE T __h##P##div(T a, T b) { return a / b; }                                                    \
  LLMC_INLINE T __h##P##fma(T a, T b, T c) { return T(fmaf((float)a, (float)b, (float)c)); }              \
  LLMC_INLINE T __h##P##neg(T a) { return -a; }
LLMC_HALF_OPS(__half, )
#undef LLMC_HALF_OPS
LLMC_INLINE __half hsqrt(__half a) { return __half(sqrtf((float)a)); }
LLMC_INLINE __half hexp(__half a) { return __half(expf((float)a)); }
LLMC_INLINE bool __hisnan(__half a) { return isnan((float)a); }
LLMC_INLINE bool __hisinf(__half a) { return isinf((float)a); }
LLMC_INLINE __half __hmax(__half a, __half b) { return (float)a < (float)b ? b : a; }
LLMC_INLINE __half __hmin(__half a, __half b) { return (float)b < (float)a ? b : a; }
// shuffles take any type (llmc_device.h), __half and __nv_bfloat16 included

#endif
