// CUDA C on the CPU: what a kernel string sees when the CPU backend compiles it with the system C++
// compiler. The translator (translate.py) has already rewritten pointer types into checked pointers and
// __shared__ declarations into per-block storage; everything else CUDA offers is defined here.
//
// Kept light on purpose (C headers only, no STL): every new kernel compiles in well under a second.
#ifndef LLMC_CUDA_CPU_H
#define LLMC_CUDA_CPU_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 // sincosf, exp10f
#endif
// Standard headers a kernel may also include: pulled in first so that their later #include is a no-op
// and our printf/assert macros below are not undone.
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "llmc_abi.h"

// NVRTC's predefined macros: kernels that test them take their device-code path.
#define __CUDACC__ 1
#define __CUDACC_RTC__ 1
#define __CUDA_ARCH__ 750
#define LLMC_CPU_BACKEND 1

// Declaration specifiers: on the CPU every function is an ordinary (inline-able) C++ function.
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __constant__
#define __managed__
#define __restrict__
#define __grid_constant__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __builtin_align__(n) __attribute__((aligned(n)))
#define __inline_hint__ inline
#define warpSize 32

#define LLMC_EXPORT __attribute__((visibility("default")))
#define LLMC_COLD __attribute__((noinline, cold))
#define LLMC_INLINE __attribute__((always_inline)) inline

namespace llmc {

// The calling CUDA thread's context: the base of the stack slot we run on (see llmc_abi.h).
LLMC_INLINE llmc_ctx *ctx() {
  uintptr_t sp;
#if defined(__x86_64__)
  __asm__("movq %%rsp, %0" : "=r"(sp));
#elif defined(__aarch64__)
  __asm__("mov %0, sp" : "=r"(sp));
#else
  volatile char probe;
  sp = (uintptr_t)&probe;
#endif
  return (llmc_ctx *)(sp & ~(uintptr_t)(LLMC_STACK_BYTES - 1));
}
LLMC_INLINE const llmc_hooks *hooks() { return ctx()->L->hooks; }

// Minimal type traits (no <type_traits>: it costs compile time).
template <class T> struct is_int_like { static const bool value = false; };
#define LLMC_INT_LIKE(T) template <> struct is_int_like<T> { static const bool value = true; };
LLMC_INT_LIKE(bool) LLMC_INT_LIKE(char) LLMC_INT_LIKE(signed char) LLMC_INT_LIKE(unsigned char)
LLMC_INT_LIKE(short) LLMC_INT_LIKE(unsigned short) LLMC_INT_LIKE(int) LLMC_INT_LIKE(unsigned int)
LLMC_INT_LIKE(long) LLMC_INT_LIKE(unsigned long) LLMC_INT_LIKE(long long) LLMC_INT_LIKE(unsigned long long)
#undef LLMC_INT_LIKE
template <bool B, class T = void> struct enable_if {};
template <class T> struct enable_if<true, T> { typedef T type; };
template <class T> struct is_const { static const bool value = false; };
template <class T> struct is_const<const T> { static const bool value = true; };
template <class T> struct remove_cv { typedef T type; };
template <class T> struct remove_cv<const T> { typedef T type; };
template <class T> struct remove_cv<volatile T> { typedef T type; };
template <class T> struct remove_cv<const volatile T> { typedef T type; };
template <class A, class B> struct same { static const bool value = false; };
template <class A> struct same<A, A> { static const bool value = true; };
template <class T> struct integral_or_enum {
  static const bool value = is_int_like<typename remove_cv<T>::type>::value || __is_enum(T);
};

} // namespace llmc

#include "llmc_types.h"
#include "llmc_ptr.h"
#include "llmc_math.h"
#include "llmc_device.h"
#include "llmc_hints.h"
#include "llmc_entry.h"

#endif
