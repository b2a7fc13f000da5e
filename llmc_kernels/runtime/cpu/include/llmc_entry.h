// The two entry points per kernel that a kernel library exports to the runtime (the translator appends
// LLMC_ENTRY(kernel, parameter indices) after the learner's code, for each extern "C" kernel):
//   llmc_thread_entry(args)     runs one CUDA thread to completion (on its own fiber),
//   llmc_fast_block(args, run)  runs every thread of one block in a plain loop (no barriers in the kernel).
// Parameter types come from the kernel itself: checked pointers are built from the region Python passes,
// scalars are read from their bytes.
#ifndef LLMC_ENTRY_H
#define LLMC_ENTRY_H

namespace llmc {
template <unsigned long... I> struct seq {};
template <class T> struct unpack {
  static LLMC_INLINE T get(void *a) { T v; memcpy((void *)&v, a, sizeof(T)); return v; }
};
template <class T> struct unpack<ptr<T>> {
  static LLMC_INLINE ptr<T> get(void *a) { return ptr<T>::from_region((const llmc_region *)a); }
};

template <auto F, class... P, unsigned long... I> LLMC_INLINE void invoke(void (*)(P...), void **a, seq<I...>) {
  F(unpack<P>::get(a[I])...);
}

// Arguments are unpacked once per block; the kernel is inlined into the loop.
template <auto F, class... A> LLMC_INLINE void block_loop(llmc_block_run *r, A... args) {
  llmc_ctx *c = r->ctx;
  const llmc_dim *t = r->tids;
  const unsigned *o = r->order;
  for (unsigned k = 0, n = r->n; k < n; ++k) {
    c->tid = t[o[k]];
    F(args...);
  }
}
template <auto F, class... P, unsigned long... I>
LLMC_INLINE void run_block(void (*)(P...), void **a, llmc_block_run *r, seq<I...>) {
  block_loop<F>(r, unpack<P>::get(a[I])...);
}
} // namespace llmc

// Per kernel K (every extern "C" kernel of the source gets its pair, so one library serves them all).
#define LLMC_ENTRY(K, ...)                                                                                 \
  extern "C" LLMC_EXPORT void llmc_thread_entry_##K(void **a) {                                            \
    llmc::invoke<&K>(&K, a, llmc::seq<__VA_ARGS__>());                                                     \
  }                                                                                                        \
  extern "C" LLMC_EXPORT void llmc_fast_block_##K(void **a, llmc_block_run *r) {                           \
    llmc::run_block<&K>(&K, a, r, llmc::seq<__VA_ARGS__>());                                               \
  }

extern "C" LLMC_EXPORT int llmc_kernel_abi(void) { return LLMC_ABI; }

#endif
