// Barriers, warp operations, atomics, printf, traps: CUDA device functions that talk to the runtime.
//
// Every function that can report an error takes the caller's line as a last defaulted argument
// (`int line = __builtin_LINE()`), which the compiler fills in with the learner's line at the call site.
#ifndef LLMC_DEVICE_H
#define LLMC_DEVICE_H

// ---- barriers (scheduling points: the fiber waits here until its whole block arrives)
LLMC_INLINE void __syncthreads(int line = __builtin_LINE()) { llmc::hooks()->sync(LLMC_B_PLAIN, 0, line); }
LLMC_INLINE int __syncthreads_count(int pred, int line = __builtin_LINE()) {
  return llmc::hooks()->sync(LLMC_B_COUNT, pred != 0, line);
}
LLMC_INLINE int __syncthreads_and(int pred, int line = __builtin_LINE()) {
  return llmc::hooks()->sync(LLMC_B_AND, pred != 0, line);
}
LLMC_INLINE int __syncthreads_or(int pred, int line = __builtin_LINE()) {
  return llmc::hooks()->sync(LLMC_B_OR, pred != 0, line);
}
// One OS thread runs a block's fibers, so memory is always coherent: fences only stop compiler reordering.
// The race detector learns of device-wide fences: an atomic after one releases what the thread did before
// (the "last block" pattern). __threadfence_block orders nothing across blocks, so it tells it nothing.
LLMC_INLINE void __threadfence(int line = __builtin_LINE()) {
  __asm__ __volatile__("" ::: "memory");
  if (__builtin_expect(llmc::tracing(), 0)) llmc::hooks()->fence(line);
}
LLMC_INLINE void __threadfence_block() { __asm__ __volatile__("" ::: "memory"); }
LLMC_INLINE void __threadfence_system(int line = __builtin_LINE()) { __threadfence(line); }
LLMC_INLINE void __nanosleep(unsigned int) {}

// ---- warp operations (a rendezvous of the lanes named in mask)
namespace llmc {
template <class T> LLMC_INLINE uint64_t bits_of(T v) {
  static_assert(sizeof(T) <= 8, "warp shuffles move values of at most 8 bytes");
  uint64_t b = 0;
  memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T> LLMC_INLINE T from_bits(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof(T));
  return v;
}
template <class T> LLMC_INLINE T shfl(int kind, unsigned mask, T var, int arg, int width, int line) {
  return from_bits<T>(hooks()->warp(kind, mask, bits_of(var), arg, width, line));
}
} // namespace llmc
template <class T>
LLMC_INLINE T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32, int line = __builtin_LINE()) {
  return llmc::shfl(LLMC_W_SHFL_IDX, mask, var, srcLane, width, line);
}
template <class T>
LLMC_INLINE T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = 32, int line = __builtin_LINE()) {
  return llmc::shfl(LLMC_W_SHFL_UP, mask, var, (int)delta, width, line);
}
template <class T>
LLMC_INLINE T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = 32, int line = __builtin_LINE()) {
  return llmc::shfl(LLMC_W_SHFL_DOWN, mask, var, (int)delta, width, line);
}
template <class T>
LLMC_INLINE T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32, int line = __builtin_LINE()) {
  return llmc::shfl(LLMC_W_SHFL_XOR, mask, var, laneMask, width, line);
}
LLMC_INLINE unsigned __ballot_sync(unsigned mask, int pred, int line = __builtin_LINE()) {
  return (unsigned)llmc::hooks()->warp(LLMC_W_BALLOT, mask, pred != 0, 0, 32, line);
}
LLMC_INLINE int __any_sync(unsigned mask, int pred, int line = __builtin_LINE()) {
  return (int)llmc::hooks()->warp(LLMC_W_ANY, mask, pred != 0, 0, 32, line);
}
LLMC_INLINE int __all_sync(unsigned mask, int pred, int line = __builtin_LINE()) {
  return (int)llmc::hooks()->warp(LLMC_W_ALL, mask, pred != 0, 0, 32, line);
}
LLMC_INLINE void __syncwarp(unsigned mask = 0xffffffffu, int line = __builtin_LINE()) {
  llmc::hooks()->warp(LLMC_W_SYNCWARP, mask, 0, 0, 32, line);
}
// The lanes that are here together: on a GPU, those converged at this point; here, the lanes that reach
// this call before the warp can run no further (the others have returned or wait elsewhere).
LLMC_INLINE unsigned __activemask(int line = __builtin_LINE()) {
  return (unsigned)llmc::hooks()->warp(LLMC_W_ACTIVEMASK, 0, 0, 0, 32, line);
}
LLMC_INLINE unsigned __lanemask_lt() {
  unsigned lane = (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31u;
  return (1u << lane) - 1u;
}

// ---- atomics: one OS thread runs the launch and switches fibers only at barriers and warp operations,
// so a plain read-modify-write is atomic. Overloads for checked pointers check the address first.
namespace llmc {
LLMC_INLINE void note_atomic(const void *a, uint64_t size, int line) {
  if (__builtin_expect(tracing(), 0)) note_access(a, size, LLMC_A_ATOMIC, line);
}
} // namespace llmc
#define LLMC_ATOMIC(NAME, T, EXPR)                                                                         \
  LLMC_INLINE T NAME(T *address, T val, int line = __builtin_LINE()) {                                    \
    llmc::note_atomic(address, sizeof(T), line);                                                           \
    T old = *address;                                                                                      \
    *address = (EXPR);                                                                                     \
    return old;                                                                                            \
  }                                                                                                        \
  LLMC_INLINE T NAME(llmc::ptr<T> address, T val, int line = __builtin_LINE()) {                          \
    return NAME(address.at(0, line), val, line);                                                           \
  }
#define LLMC_ATOMIC_INTS(NAME, EXPR)                                                                       \
  LLMC_ATOMIC(NAME, int, EXPR) LLMC_ATOMIC(NAME, unsigned int, EXPR)                                       \
  LLMC_ATOMIC(NAME, unsigned long long, EXPR)
LLMC_ATOMIC_INTS(atomicAdd, old + val)
LLMC_ATOMIC(atomicAdd, float, old + val)
LLMC_ATOMIC(atomicAdd, double, old + val)
LLMC_ATOMIC(atomicSub, int, old - val)
LLMC_ATOMIC(atomicSub, unsigned int, old - val)
LLMC_ATOMIC_INTS(atomicExch, val)
LLMC_ATOMIC(atomicExch, float, val)
LLMC_ATOMIC_INTS(atomicMin, val < old ? val : old)
LLMC_ATOMIC(atomicMin, long long, val < old ? val : old)
LLMC_ATOMIC_INTS(atomicMax, val > old ? val : old)
LLMC_ATOMIC(atomicMax, long long, val > old ? val : old)
LLMC_ATOMIC_INTS(atomicAnd, old & val)
LLMC_ATOMIC_INTS(atomicOr, old | val)
LLMC_ATOMIC_INTS(atomicXor, old ^ val)
LLMC_ATOMIC(atomicInc, unsigned int, old >= val ? 0u : old + 1u)
LLMC_ATOMIC(atomicDec, unsigned int, (old == 0u || old > val) ? val : old - 1u)
#undef LLMC_ATOMIC_INTS
#undef LLMC_ATOMIC
#define LLMC_CAS(T)                                                                                        \
  LLMC_INLINE T atomicCAS(T *address, T compare, T val, int line = __builtin_LINE()) {                    \
    llmc::note_atomic(address, sizeof(T), line);                                                           \
    T old = *address;                                                                                      \
    if (old == compare) *address = val;                                                                    \
    return old;                                                                                            \
  }                                                                                                        \
  LLMC_INLINE T atomicCAS(llmc::ptr<T> address, T compare, T val, int line = __builtin_LINE()) {           \
    return atomicCAS(address.at(0, line), compare, val, line);                                             \
  }
LLMC_CAS(int) LLMC_CAS(unsigned int) LLMC_CAS(unsigned long long) LLMC_CAS(unsigned short)
#undef LLMC_CAS

// __ldg: a read through the read-only cache; here a checked read.
template <class T> LLMC_INLINE T __ldg(const T *p, int line = __builtin_LINE()) {
  if (__builtin_expect(llmc::tracing(), 0)) llmc::note_access(p, sizeof(T), LLMC_A_LOAD, line);
  return *p;
}
template <class T> LLMC_INLINE T __ldg(llmc::ptr<const T> p, int line = __builtin_LINE()) {
  return p[llmc::index(0, line)];
}
template <class T> LLMC_INLINE T __ldg(llmc::ptr<T> p, int line = __builtin_LINE()) { return p[llmc::index(0, line)]; }

LLMC_INLINE long long clock64() {
#if defined(__x86_64__)
  return (long long)__builtin_ia32_rdtsc();
#elif defined(__aarch64__)
  long long v;
  __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
  return v;
#else
  return 0;
#endif
}

// ---- printf: captured by the runtime and written to Python's sys.stdout after the launch.
static __attribute__((format(printf, 1, 2), unused)) int llmc_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  llmc::hooks()->vprintf(fmt, ap);
  va_end(ap);
  return 0;
}
#define printf llmc_printf

// ---- traps
[[noreturn]] LLMC_INLINE void __trap(int line = __builtin_LINE()) {
  llmc::hooks()->trap(LLMC_T_TRAP, "__trap()", 0, 0, line);
  __builtin_unreachable();
}
[[noreturn]] LLMC_INLINE void __brkpt(int line = __builtin_LINE()) {
  llmc::hooks()->trap(LLMC_T_TRAP, "__brkpt()", 0, 0, line);
  __builtin_unreachable();
}
namespace llmc {
[[noreturn]] LLMC_COLD inline void assert_failed(const char *expr, int line) {
  hooks()->trap(LLMC_T_ASSERT, expr, 0, 0, line);
  __builtin_unreachable();
}
} // namespace llmc
#undef assert
#define assert(e) ((e) ? (void)0 : llmc::assert_failed(#e, __LINE__))

// ---- UBSan entry points: -fsanitize=integer-divide-by-zero,bounds calls these with the learner's line
// (the kernel library defines them itself and never links the sanitizer runtime).
extern "C" {
struct llmc_ubsan_loc { const char *file; unsigned line, column; };
struct llmc_ubsan_type { unsigned short kind, info; char name[1]; };
struct llmc_ubsan_oob { llmc_ubsan_loc loc; const llmc_ubsan_type *array_type, *index_type; };
struct llmc_ubsan_overflow { llmc_ubsan_loc loc; const llmc_ubsan_type *type; };
}
namespace llmc {
// A ValueHandle holds an integer inline when it fits in a pointer (all our kernels' integers do).
inline long long ubsan_int(const llmc_ubsan_type *t, void *v) {
  unsigned bits = 1u << (t->info >> 1);
  unsigned long long u = (unsigned long long)(uintptr_t)v;
  if (bits < 64) u &= (1ull << bits) - 1ull;
  if ((t->info & 1) && bits < 64 && (u >> (bits - 1)) & 1ull) u |= ~((1ull << bits) - 1ull);
  return (long long)u;
}
} // namespace llmc
extern "C" {
LLMC_COLD void __ubsan_handle_divrem_overflow(void *data, void *lhs, void *rhs) {
  llmc_ubsan_overflow *d = (llmc_ubsan_overflow *)data;
  long long a = llmc::ubsan_int(d->type, lhs), b = llmc::ubsan_int(d->type, rhs);
  llmc::hooks()->trap(b == 0 ? LLMC_T_DIV_ZERO : LLMC_T_DIV_OVERFLOW, d->type->name, a, b, (int)d->loc.line);
}
LLMC_COLD void __ubsan_handle_divrem_overflow_abort(void *data, void *lhs, void *rhs) {
  __ubsan_handle_divrem_overflow(data, lhs, rhs);
}
LLMC_COLD void __ubsan_handle_out_of_bounds(void *data, void *index) {
  llmc_ubsan_oob *d = (llmc_ubsan_oob *)data;
  llmc::hooks()->oob_array(llmc::ubsan_int(d->index_type, index), -1, 0, d->array_type->name, (int)d->loc.line);
}
LLMC_COLD void __ubsan_handle_out_of_bounds_abort(void *data, void *index) {
  __ubsan_handle_out_of_bounds(data, index);
}
}

#endif
