// Cache-hint loads and stores (__ldcs, __ldcg, __ldca, __ldlu, __ldcv, __stcs, __stcg, __stwb, __stwt), as
// llm.c's kernels use them: on the CPU there is one cache, so a hint is just a checked access. Loads go
// through __ldg (llmc_device.h), so whatever __ldg does (bounds, line, instrumentation), they do too.
#ifndef LLMC_HINTS_H
#define LLMC_HINTS_H

#define LLMC_LOAD_HINT(NAME)                                                                               \
  template <class T> LLMC_INLINE T NAME(const T *p) { return __ldg(p); }                                   \
  template <class T> LLMC_INLINE T NAME(llmc::ptr<const T> p, int line = __builtin_LINE()) {               \
    return __ldg(p, line);                                                                                 \
  }                                                                                                        \
  template <class T> LLMC_INLINE T NAME(llmc::ptr<T> p, int line = __builtin_LINE()) { return __ldg(p, line); }
LLMC_LOAD_HINT(__ldcs)
LLMC_LOAD_HINT(__ldcg)
LLMC_LOAD_HINT(__ldca)
LLMC_LOAD_HINT(__ldlu)
LLMC_LOAD_HINT(__ldcv)
#undef LLMC_LOAD_HINT

// A store is the checked pointer's own element access, as `p[0] = value` in the kernel would be, tagged as a
// store (llmc::st) so that the race detector and the memory counters see a store, not a load.
#define LLMC_STORE_HINT(NAME)                                                                              \
  template <class T> LLMC_INLINE void NAME(T *p, T value, int line = __builtin_LINE()) {                  \
    llmc::ptr<T> q(p); /* a raw address (&out[i]) is found again among the launch's arrays: checked */      \
    q[llmc::st(0, line)] = value;                                                                          \
  }                                                                                                        \
  template <class T, class V>                                                                              \
  LLMC_INLINE void NAME(llmc::ptr<T> p, V value, int line = __builtin_LINE()) {                            \
    p[llmc::st(0, line)] = (T)value;                                                                    \
  }
LLMC_STORE_HINT(__stcs)
LLMC_STORE_HINT(__stcg)
LLMC_STORE_HINT(__stwb)
LLMC_STORE_HINT(__stwt)
#undef LLMC_STORE_HINT

#endif
