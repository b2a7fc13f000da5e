// CUDA's built-in vector types (with CUDA's sizes and alignments, so float4 loads behave the same),
// dim3/uint3, and the thread-index variables.
#ifndef LLMC_TYPES_H
#define LLMC_TYPES_H

#define LLMC_VEC1(T, N, A) struct __attribute__((aligned(A))) N##1 { T x; };
#define LLMC_VEC2(T, N, A) struct __attribute__((aligned(A))) N##2 { T x, y; };
#define LLMC_VEC3(T, N) struct N##3 { T x, y, z; };
#define LLMC_VEC4(T, N, A) struct __attribute__((aligned(A))) N##4 { T x, y, z, w; };
#define LLMC_VECS(T, N, S)                                                                                 \
  LLMC_VEC1(T, N, S) LLMC_VEC2(T, N, 2 * S) LLMC_VEC3(T, N) LLMC_VEC4(T, N, 4 * S)                          \
  LLMC_INLINE N##1 make_##N##1(T x) { N##1 v = {x}; return v; }                                            \
  LLMC_INLINE N##2 make_##N##2(T x, T y) { N##2 v = {x, y}; return v; }                                    \
  LLMC_INLINE N##3 make_##N##3(T x, T y, T z) { N##3 v = {x, y, z}; return v; }                            \
  LLMC_INLINE N##4 make_##N##4(T x, T y, T z, T w) { N##4 v = {x, y, z, w}; return v; }

LLMC_VECS(float, float, 4)
LLMC_VECS(int, int, 4)
LLMC_VECS(unsigned int, uint, 4)
LLMC_VECS(signed char, char, 1)
LLMC_VECS(unsigned char, uchar, 1)
LLMC_VECS(short, short, 2)
LLMC_VECS(unsigned short, ushort, 2)
LLMC_VECS(long long, longlong, 8)
LLMC_VECS(unsigned long long, ulonglong, 8)
// double4 is 16-byte aligned in CUDA 12 (32 in CUDA 13's double4_32a); double2 is 16.
LLMC_VEC1(double, double, 8) LLMC_VEC2(double, double, 16) LLMC_VEC3(double, double)
struct __attribute__((aligned(16))) double4 { double x, y, z, w; };
LLMC_INLINE double1 make_double1(double x) { double1 v = {x}; return v; }
LLMC_INLINE double2 make_double2(double x, double y) { double2 v = {x, y}; return v; }
LLMC_INLINE double3 make_double3(double x, double y, double z) { double3 v = {x, y, z}; return v; }
LLMC_INLINE double4 make_double4(double x, double y, double z, double w) { double4 v = {x, y, z, w}; return v; }
#undef LLMC_VECS
#undef LLMC_VEC1
#undef LLMC_VEC2
#undef LLMC_VEC3
#undef LLMC_VEC4

struct dim3 {
  unsigned int x, y, z;
  dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  operator uint3() const { uint3 v = {x, y, z}; return v; }
};

// threadIdx & co. are read-only views of the running CUDA thread's context, typed as in CUDA (uint3 and
// dim3 with unsigned x, y, z): `threadIdx.x - 1` wraps around for thread 0, as on the GPU.
#define threadIdx (*reinterpret_cast<const uint3 *>(&llmc::ctx()->tid))
#define blockIdx (*reinterpret_cast<const uint3 *>(&llmc::ctx()->bid))
#define blockDim (*reinterpret_cast<const dim3 *>(&llmc::ctx()->bdim))
#define gridDim (*reinterpret_cast<const dim3 *>(&llmc::ctx()->gdim))

#endif
