// Checked pointers and __shared__ storage.
//
// The translator rewrites every pointer type of the kernel source (`const float* __restrict__ inp`,
// `float4* v`, casts, __device__ parameters) into llmc::ptr<T>: a raw pointer plus the region it was derived
// from (an argument, dynamic shared memory, a __shared__ array). Arithmetic is free, as in C; each access
// checks that the bytes touched lie inside the region and are aligned for T, and otherwise reports the
// region and the learner's line (__builtin_LINE() as a default argument is evaluated at the call site).
// `*p` and `p->x` are rewritten into `(p)[0]` and `p[0].x` by the translator so they carry the line too.
#ifndef LLMC_PTR_H
#define LLMC_PTR_H

namespace llmc {

// An index with the source line of the expression it came from.
struct index {
  long long v;
  int line;
  template <class I, class = typename enable_if<integral_or_enum<I>::value>::type>
  LLMC_INLINE index(I i, int l = __builtin_LINE()) : v((long long)i), line(l) {}
};

// How the translator marks an index whose element is written or whose address is taken: `p[i] = v` is
// compiled as `p[llmc::st((i))] = v`, `p[i] += v` as `p[llmc::upd((i))]`, `&p[i]` as `&p[llmc::adr((i))]`;
// a plain `p[i]` is a load. The tag picks the operator[] overload, so classifying costs nothing at run time,
// and it converts to an integer for built-in arrays (`float acc[4]; acc[llmc::st((k))] = 0;`).
template <int K> struct tagged_index {
  long long v;
  int line;
  LLMC_INLINE operator long long() const { return v; }
};
template <class I> LLMC_INLINE tagged_index<LLMC_A_STORE> st(I i, int l = __builtin_LINE()) { return {(long long)i, l}; }
template <class I> LLMC_INLINE tagged_index<LLMC_A_UPDATE> upd(I i, int l = __builtin_LINE()) { return {(long long)i, l}; }
template <class I> LLMC_INLINE tagged_index<LLMC_A_ADDR> adr(I i, int l = __builtin_LINE()) { return {(long long)i, l}; }

// The access-event layer's entry point on the kernel side (rt/access.cpp records it). Out of line and cold:
// the instrumented path is the slow one, and the uninstrumented one stays small.
LLMC_COLD inline void note_access(const void *a, uint64_t size, int kind, int line) {
  ctx()->L->hooks->access(a, (uint32_t)size, kind, line);
}
LLMC_INLINE bool tracing() { return ctx()->L->trace != 0; }

template <class T> struct add_ref { typedef T &type; };
template <> struct add_ref<void> { typedef void type; };
template <> struct add_ref<const void> { typedef void type; };
template <> struct add_ref<volatile void> { typedef void type; };
template <> struct add_ref<const volatile void> { typedef void type; };
template <class T> struct size_of { static const uint64_t value = sizeof(T); static const uint64_t align = alignof(T); };
template <> struct size_of<void> { static const uint64_t value = 1, align = 1; };
template <> struct size_of<const void> { static const uint64_t value = 1, align = 1; };
template <> struct size_of<volatile void> { static const uint64_t value = 1, align = 1; };
template <> struct size_of<const volatile void> { static const uint64_t value = 1, align = 1; };
template <class From, class To> struct ptr_convertible {
  static char test(To *);
  static long test(...);
  static const bool value = sizeof(test((From *)0)) == 1;
};

struct cast_tag {};
template <class T, long long N> struct shared_array;

template <class T> struct ptr {
  T *p;
  char *lo;
  uint64_t span;
  int rid;
  int trace;  // the launch records accesses through this pointer (kept in the pointer: a register test)
  static const uint64_t S = size_of<T>::value, A = size_of<T>::align;

  // A pointer nobody initialised is null: using it is reported, not undefined.
  LLMC_INLINE ptr() : p(0), lo(0), span(0), rid(LLMC_R_NULL), trace(0) {}
  LLMC_INLINE static ptr from_region(const llmc_region *r) {
    ptr q;
    q.p = (T *)r->lo;
    q.lo = r->lo;
    q.span = r->span;
    q.rid = r->id;
    q.trace = (r->flags & LLMC_TRACE_ACCESSES) && !(is_const<T>::value && (r->flags & LLMC_REGION_READONLY));
    return q;
  }
  // A raw address (`&x[i]`, nullptr): found again among the launch's regions.
  LLMC_INLINE ptr(T *raw) { adopt((void *)raw); }
  template <class U, class = typename enable_if<!ptr_convertible<U, T>::value>::type>
  LLMC_INLINE explicit ptr(U *raw) { adopt((void *)raw); }
  template <class U, typename enable_if<ptr_convertible<U, T>::value, int>::type = 0>
  LLMC_INLINE ptr(const ptr<U> &o) : p(o.p), lo(o.lo), span(o.span), rid(o.rid), trace(o.trace) {}
  template <class U, typename enable_if<!ptr_convertible<U, T>::value, int>::type = 0>
  LLMC_INLINE explicit ptr(const ptr<U> &o) : p((T *)(void *)o.p), lo(o.lo), span(o.span), rid(o.rid), trace(o.trace) {}
  template <class U> LLMC_INLINE ptr(const ptr<U> &o, cast_tag)
      : p((T *)(const volatile void *)o.p), lo(o.lo), span(o.span), rid(o.rid), trace(o.trace) {}

  LLMC_INLINE void adopt(void *raw) {
    p = (T *)raw;
    if (!raw) { lo = 0; span = 0; rid = LLMC_R_NULL; trace = 0; return; }
    llmc_region r;
    hooks()->find_region(raw, &r);
    lo = r.lo;
    span = r.span;
    rid = r.id;
    trace = r.flags & LLMC_TRACE_ACCESSES;
  }

  // The access check: one subtraction and compare covers both ends (unsigned wrap-around).
  LLMC_INLINE T *at(long long i, int line) const {
    uintptr_t a = (uintptr_t)p + (uintptr_t)i * (uintptr_t)S;
    uintptr_t off = a - (uintptr_t)lo;
    if (__builtin_expect((off > span - S) | (span < S) | ((a & (A - 1)) != 0), 0)) fail(a, line);
    return (T *)a;
  }
  LLMC_COLD __attribute__((noreturn)) void fail(uintptr_t a, int line) const {
    llmc_region r = {lo, span, rid, 0, 0, 0};
    hooks()->oob((const void *)a, S, A, &r, is_const<T>::value, line);
    __builtin_unreachable();
  }

  LLMC_INLINE typename add_ref<T>::type operator[](index i) const {
    T *a = at(i.v, i.line);
    if (__builtin_expect(trace, 0)) note_access((const void *)(uintptr_t)a, S, LLMC_A_LOAD, i.line);
    return *a;
  }
  template <int K> LLMC_INLINE typename add_ref<T>::type operator[](tagged_index<K> i) const {
    T *a = at(i.v, i.line);
    if (K != LLMC_A_ADDR && __builtin_expect(trace, 0)) note_access((const void *)(uintptr_t)a, S, K, i.line);
    return *a;
  }
  // Left by the translator only where it could not see the operand; the line is then unknown (0).
  LLMC_INLINE typename add_ref<T>::type operator*() const { return *at(0, 0); }
  LLMC_INLINE T *operator->() const { return at(0, 0); }
  LLMC_INLINE T *get() const { return p; }

  template <class I> using if_int = typename enable_if<integral_or_enum<I>::value, ptr>::type;
  template <class I> LLMC_INLINE if_int<I> operator+(I k) const {
    ptr r(*this);
    r.p = (T *)((uintptr_t)p + (uintptr_t)(long long)k * (uintptr_t)S);
    return r;
  }
  template <class I> LLMC_INLINE if_int<I> operator-(I k) const {
    ptr r(*this);
    r.p = (T *)((uintptr_t)p - (uintptr_t)(long long)k * (uintptr_t)S);
    return r;
  }
  template <class I> LLMC_INLINE if_int<I> &operator+=(I k) { return *this = *this + k; }
  template <class I> LLMC_INLINE if_int<I> &operator-=(I k) { return *this = *this - k; }
  LLMC_INLINE ptr &operator++() { return *this = *this + 1; }
  LLMC_INLINE ptr &operator--() { return *this = *this - 1; }
  LLMC_INLINE ptr operator++(int) { ptr r(*this); *this = *this + 1; return r; }
  LLMC_INLINE ptr operator--(int) { ptr r(*this); *this = *this - 1; return r; }
  template <class U> LLMC_INLINE long long operator-(const ptr<U> &o) const {
    return ((long long)((uintptr_t)p - (uintptr_t)o.p)) / (long long)S;
  }
  LLMC_INLINE explicit operator bool() const { return p != 0; }
  LLMC_INLINE bool operator!() const { return p == 0; }
};

template <class I, class T>
LLMC_INLINE typename enable_if<integral_or_enum<I>::value, ptr<T>>::type operator+(I k, const ptr<T> &q) {
  return q + k;
}
#define LLMC_PTR_CMP(OP)                                                                                   \
  template <class T, class U> LLMC_INLINE bool operator OP(const ptr<T> &a, const ptr<U> &b) {             \
    return (const volatile void *)a.p OP (const volatile void *)b.p;                                       \
  }                                                                                                        \
  template <class T> LLMC_INLINE bool operator OP(const ptr<T> &a, const T *b) {                           \
    return (const volatile void *)a.p OP (const volatile void *)b;                                         \
  }                                                                                                        \
  template <class T> LLMC_INLINE bool operator OP(const T *a, const ptr<T> &b) {                           \
    return (const volatile void *)a OP (const volatile void *)b.p;                                         \
  }                                                                                                        \
  template <class T> LLMC_INLINE bool operator OP(const ptr<T> &a, decltype(nullptr)) {                    \
    return (const volatile void *)a.p OP (const volatile void *)0;                                         \
  }
LLMC_PTR_CMP(==) LLMC_PTR_CMP(!=) LLMC_PTR_CMP(<) LLMC_PTR_CMP(>) LLMC_PTR_CMP(<=) LLMC_PTR_CMP(>=)
#undef LLMC_PTR_CMP

// A fixed-size __shared__ array (nested for more dimensions): checked indexing, decays to a checked pointer.
template <class T> struct is_shared_array { static const bool value = false; };
template <class T, long long N> struct is_shared_array<shared_array<T, N>> { static const bool value = true; };

template <class T, long long N> struct shared_array {
  T a[N];
  // Only the innermost subscript of `s[i][j]` touches memory; the outer one picks a row.
  LLMC_INLINE void note(long long i, int kind, int line) const {
    if (!is_shared_array<T>::value && __builtin_expect(tracing(), 0)) note_access((const void *)(uintptr_t)&a[i], sizeof(T), kind, line);
  }
  LLMC_INLINE T &operator[](index i) {
    if (__builtin_expect((unsigned long long)i.v >= (unsigned long long)N, 0)) fail(i);
    note(i.v, LLMC_A_LOAD, i.line);
    return a[i.v];
  }
  LLMC_INLINE const T &operator[](index i) const {
    if (__builtin_expect((unsigned long long)i.v >= (unsigned long long)N, 0)) fail(i);
    note(i.v, LLMC_A_LOAD, i.line);
    return a[i.v];
  }
  template <int K> LLMC_INLINE T &operator[](tagged_index<K> t) {
    index i(t.v, t.line);
    if (__builtin_expect((unsigned long long)i.v >= (unsigned long long)N, 0)) fail(i);
    if (K != LLMC_A_ADDR) note(i.v, K, i.line);
    return a[i.v];
  }
  LLMC_COLD __attribute__((noreturn)) void fail(index i) const {
    hooks()->oob_array(i.v, N, (const void *)a, "__shared__", i.line);
    __builtin_unreachable();
  }
  LLMC_INLINE ptr<T> decay() const {
    llmc_region r = {(char *)a, (uint64_t)sizeof(a), LLMC_R_STATIC_SHARED, (int32_t)sizeof(T), tracing() ? 1 : 0, 0};
    return ptr<T>::from_region(&r);
  }
  template <class U, typename enable_if<ptr_convertible<T, U>::value, int>::type = 0>
  LLMC_INLINE operator ptr<U>() const { return decay(); }
  template <class U, typename enable_if<!ptr_convertible<T, U>::value, int>::type = 0>
  LLMC_INLINE explicit operator ptr<U>() const { return ptr<U>(decay(), cast_tag()); }
  template <class I> LLMC_INLINE typename enable_if<integral_or_enum<I>::value, ptr<T>>::type operator+(I k) const {
    return decay() + k;
  }
  template <class I> LLMC_INLINE typename enable_if<integral_or_enum<I>::value, ptr<T>>::type operator-(I k) const {
    return decay() - k;
  }
};

// `__shared__ float s[128];` becomes `llmc::shared_array<float, (128)> &s = llmc::shared_static<...>(...)`:
// every thread of the block gets the same storage; the runtime poisons it at each block's start.
template <class A, int ID> LLMC_INLINE A &shared_static(const char *name, int line = __builtin_LINE()) {
  static uint64_t generation; // also the declaration's unique key
  static A *storage;
  llmc_launch *L = ctx()->L;
  if (__builtin_expect(generation != L->generation, 0)) {
    storage = (A *)L->hooks->shared_static(&generation, sizeof(A), alignof(A) < 16 ? 16 : alignof(A), name, line);
    generation = L->generation;
  }
  return *storage;
}
// `extern __shared__ float s[];`: the launch's dynamic shared memory (shared_mem bytes), as a checked pointer.
template <class T> LLMC_INLINE ptr<T> shared_dynamic() { return ptr<T>::from_region(&ctx()->L->dyn_shared); }

// reinterpret_cast / const_cast on rewritten pointer types (the translator renames the keywords to these).
template <class To> struct rcast { // To is a reference or an integer
  template <class F> static LLMC_INLINE To go(F &f) { return reinterpret_cast<To>(f); }
  template <class V> static LLMC_INLINE To go(ptr<V> &f) { return reinterpret_cast<To>(f.p); }
  template <class V> static LLMC_INLINE To go(const ptr<V> &f) { return reinterpret_cast<To>(f.p); }
};
template <class U> struct rcast<ptr<U>> {
  template <class V> static LLMC_INLINE ptr<U> go(const ptr<V> &f) { return ptr<U>(f, cast_tag()); }
  template <class V, long long N> static LLMC_INLINE ptr<U> go(const shared_array<V, N> &s) {
    return ptr<U>(s.decay(), cast_tag());
  }
  template <class V> static LLMC_INLINE ptr<U> go(V *f) { return ptr<U>((U *)(const volatile void *)f); }
  template <class I, typename enable_if<integral_or_enum<I>::value, int>::type = 0>
  static LLMC_INLINE ptr<U> go(I v) { return ptr<U>((U *)(uintptr_t)v); }
};
template <class To, class F> LLMC_INLINE To reinterpret_cast_(F &&f) { return rcast<To>::go(f); }

template <class To> struct ccast {
  template <class F> static LLMC_INLINE To go(F &f) { return const_cast<To>(f); }
};
template <class U> struct ccast<ptr<U>> {
  template <class V> static LLMC_INLINE ptr<U> go(const ptr<V> &f) { return ptr<U>(f, cast_tag()); }
  template <class V> static LLMC_INLINE ptr<U> go(V *f) { return ptr<U>(const_cast<U *>(f)); }
};
template <class To, class F> LLMC_INLINE To const_cast_(F &&f) { return ccast<To>::go(f); }

} // namespace llmc

#endif
