// Cooperative groups (<cooperative_groups.h>, <cooperative_groups/reduce.h>, <cooperative_groups/scan.h>)
// on the CPU backend: the thread-block and tile API that llm.c's dev/cuda kernels use, with CUDA's names.
//
// The translator replaces the learner's #include of those headers with this file. Everything here goes
// through the primitives of llmc_device.h (__syncthreads, __syncwarp, __shfl_*_sync, __ballot_sync, ...),
// so a tile's shuffle is checked (and scheduled, and counted) exactly like the learner's own __shfl_sync:
// a lane that is missing, or a partial warp, is reported at the learner's line, which every function takes
// as a last defaulted argument (`int line = __builtin_LINE()` is evaluated at the call site).
//
// A tile of N threads is CUDA's: the threads of the block's linear thread rank r with the same r / N, and
// its mask is those N lanes of their warp. Tiles of 1, 2, 4, 8, 16 and 32 threads are provided, and
// coalesced_threads(); grid-wide synchronisation (this_grid().sync()) is not, and says so at compile time.
#ifndef LLMC_CG_H
#define LLMC_CG_H

#if defined(__clang__)
#define LLMC_CG_UNSUPPORTED(msg) __attribute__((diagnose_if(true, msg, "error")))
#else
#define LLMC_CG_UNSUPPORTED(msg) __attribute__((error(msg)))
#endif

namespace cooperative_groups {
namespace details {
// x fastest, as CUDA numbers the threads of a block (and as the runtime assigns lanes and warps)
LLMC_INLINE unsigned block_rank() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
LLMC_INLINE unsigned block_size() { return blockDim.x * blockDim.y * blockDim.z; }
LLMC_INLINE unsigned tile_mask(unsigned n) { // the n lanes of the calling thread's tile within its warp
  return n >= 32 ? 0xffffffffu : ((1u << n) - 1u) << ((block_rank() & 31u) & ~(n - 1u));
}
} // namespace details

class thread_group;

// ------------------------------------------------------------------------------------------ thread_block
class thread_block {
public:
  static LLMC_INLINE void sync(int line = __builtin_LINE()) { __syncthreads(line); }
  static LLMC_INLINE unsigned int thread_rank() { return details::block_rank(); }
  static LLMC_INLINE unsigned int size() { return details::block_size(); }
  static LLMC_INLINE unsigned int num_threads() { return details::block_size(); }
  static LLMC_INLINE dim3 group_index() { return dim3(blockIdx.x, blockIdx.y, blockIdx.z); }
  static LLMC_INLINE dim3 thread_index() { return dim3(threadIdx.x, threadIdx.y, threadIdx.z); }
  static LLMC_INLINE dim3 dim_threads() { return dim3(blockDim.x, blockDim.y, blockDim.z); }
  static LLMC_INLINE dim3 group_dim() { return dim_threads(); }
  static LLMC_INLINE bool is_valid() { return true; }
};
LLMC_INLINE thread_block this_thread_block() { return thread_block(); }

// ------------------------------------------------------------------------------------ thread_block_tile
template <unsigned int N, class ParentT = void> class thread_block_tile;

template <unsigned int N> class thread_block_tile<N, void> {
  static_assert(N == 1 || N == 2 || N == 4 || N == 8 || N == 16 || N == 32,
                "thread_block_tile<N>: the CPU backend provides tiles of 1, 2, 4, 8, 16 or 32 threads");
  unsigned meta_rank_, meta_size_;

public:
  LLMC_INLINE thread_block_tile(unsigned meta_rank, unsigned meta_size)
      : meta_rank_(meta_rank), meta_size_(meta_size) {}

  static constexpr unsigned int size() { return N; }
  static constexpr unsigned int num_threads() { return N; }
  static LLMC_INLINE unsigned int thread_rank() { return details::block_rank() & (N - 1u); }
  LLMC_INLINE unsigned int meta_group_rank() const { return meta_rank_; }
  LLMC_INLINE unsigned int meta_group_size() const { return meta_size_; }
  static LLMC_INLINE bool is_valid() { return true; }
  static LLMC_INLINE unsigned int build_mask() { return details::tile_mask(N); }

  static LLMC_INLINE void sync(int line = __builtin_LINE()) { __syncwarp(build_mask(), line); }
  template <class T> static LLMC_INLINE T shfl(T var, int src_rank, int line = __builtin_LINE()) {
    return __shfl_sync(build_mask(), var, src_rank, (int)N, line);
  }
  template <class T> static LLMC_INLINE T shfl_down(T var, unsigned int delta, int line = __builtin_LINE()) {
    return __shfl_down_sync(build_mask(), var, delta, (int)N, line);
  }
  template <class T> static LLMC_INLINE T shfl_up(T var, unsigned int delta, int line = __builtin_LINE()) {
    return __shfl_up_sync(build_mask(), var, delta, (int)N, line);
  }
  template <class T> static LLMC_INLINE T shfl_xor(T var, unsigned int lane_mask, int line = __builtin_LINE()) {
    return __shfl_xor_sync(build_mask(), var, (int)lane_mask, (int)N, line);
  }
  static LLMC_INLINE int any(int predicate, int line = __builtin_LINE()) {
    return __any_sync(build_mask(), predicate, line);
  }
  static LLMC_INLINE int all(int predicate, int line = __builtin_LINE()) {
    return __all_sync(build_mask(), predicate, line);
  }
  // bit k is the tile's thread of rank k (CUDA shifts the warp's ballot down to the tile)
  static LLMC_INLINE unsigned int ballot(int predicate, int line = __builtin_LINE()) {
    return __ballot_sync(build_mask(), predicate, line) >> ((details::block_rank() & 31u) & ~(N - 1u));
  }
};

// The type tiled_partition returns (it knows its parent, as CUDA's does); it converts to thread_block_tile<N>.
template <unsigned int N, class ParentT> class thread_block_tile : public thread_block_tile<N, void> {
public:
  LLMC_INLINE thread_block_tile(unsigned meta_rank, unsigned meta_size)
      : thread_block_tile<N, void>(meta_rank, meta_size) {}
};

template <unsigned int N> LLMC_INLINE thread_block_tile<N, thread_block> tiled_partition(const thread_block &) {
  return thread_block_tile<N, thread_block>(details::block_rank() / N, (details::block_size() + N - 1u) / N);
}
template <unsigned int N, unsigned int M, class P>
LLMC_INLINE thread_block_tile<N, thread_block_tile<M, P>> tiled_partition(const thread_block_tile<M, P> &parent) {
  static_assert(N <= M, "tiled_partition<N>(tile): a tile can only be split into smaller tiles");
  return thread_block_tile<N, thread_block_tile<M, P>>(parent.thread_rank() / N, M / N);
}

// ------------------------------------------------------------------------------------------ thread_group
// The run-time-sized group: a whole block, or a tile of it (tiled_partition(parent, n), n a power of two
// up to 32).
class thread_group {
  unsigned size_, rank_; // a block: size_ = 0 (read from blockDim)
  bool block_;

public:
  LLMC_INLINE thread_group(const thread_block &) : size_(0), rank_(0), block_(true) {}
  template <unsigned int N, class P>
  LLMC_INLINE thread_group(const thread_block_tile<N, P> &) : size_(N), rank_(0), block_(false) {}
  LLMC_INLINE thread_group(unsigned n, bool) : size_(n), rank_(0), block_(false) {}

  LLMC_INLINE void sync(int line = __builtin_LINE()) const {
    if (block_) __syncthreads(line);
    else __syncwarp(details::tile_mask(size_), line);
  }
  LLMC_INLINE unsigned long long thread_rank() const {
    return block_ ? details::block_rank() : (details::block_rank() & (size_ - 1u));
  }
  LLMC_INLINE unsigned long long size() const { return block_ ? details::block_size() : size_; }
  LLMC_INLINE unsigned long long num_threads() const { return size(); }
  LLMC_INLINE bool is_valid() const { return true; }
};
LLMC_INLINE thread_group tiled_partition(const thread_group &parent, unsigned int tilesz, int line = __builtin_LINE()) {
  if (tilesz == 0 || tilesz > 32 || (tilesz & (tilesz - 1u)) || (parent.size() % tilesz) != 0)
    llmc::hooks()->trap(LLMC_T_TRAP,
                        "cg::tiled_partition(group, n) with an n the CPU backend does not provide (it provides "
                        "tiles of 1, 2, 4, 8, 16 or 32 threads that divide the group)", 0, 0, line);
  return thread_group(tilesz, true);
}

// ------------------------------------------------------------------------------------- coalesced_group
// The threads of a warp that are here together (__activemask()), ranked by lane; any size.
class coalesced_group {
  unsigned mask_;
  static LLMC_INLINE unsigned lane() { return details::block_rank() & 31u; }
  LLMC_INLINE unsigned lane_of(unsigned rank) const { // the lane of the rank-th member (rank < size())
    unsigned m = mask_;
    for (unsigned k = 0; k < rank; k++) m &= m - 1u;
    return m ? (unsigned)__builtin_ctz(m) : lane();
  }

public:
  LLMC_INLINE explicit coalesced_group(unsigned mask) : mask_(mask) {}
  LLMC_INLINE unsigned int size() const { return (unsigned)__builtin_popcount(mask_); }
  LLMC_INLINE unsigned int num_threads() const { return size(); }
  LLMC_INLINE unsigned int thread_rank() const { return (unsigned)__builtin_popcount(mask_ & ((1u << lane()) - 1u)); }
  LLMC_INLINE unsigned int meta_group_rank() const { return 0; }
  LLMC_INLINE unsigned int meta_group_size() const { return 1; }
  LLMC_INLINE bool is_valid() const { return mask_ != 0; }
  LLMC_INLINE void sync(int line = __builtin_LINE()) const { __syncwarp(mask_, line); }
  template <class T> LLMC_INLINE T shfl(T var, unsigned int src_rank, int line = __builtin_LINE()) const {
    return __shfl_sync(mask_, var, (int)lane_of(src_rank % size()), 32, line);
  }
  template <class T> LLMC_INLINE T shfl_down(T var, unsigned int delta, int line = __builtin_LINE()) const {
    unsigned r = thread_rank() + delta;
    return __shfl_sync(mask_, var, (int)lane_of(r < size() ? r : thread_rank()), 32, line);
  }
  template <class T> LLMC_INLINE T shfl_up(T var, unsigned int delta, int line = __builtin_LINE()) const {
    unsigned r = thread_rank();
    return __shfl_sync(mask_, var, (int)lane_of(r >= delta ? r - delta : r), 32, line);
  }
  LLMC_INLINE int any(int predicate, int line = __builtin_LINE()) const { return __any_sync(mask_, predicate, line); }
  LLMC_INLINE int all(int predicate, int line = __builtin_LINE()) const { return __all_sync(mask_, predicate, line); }
  // bit k is the member of rank k
  LLMC_INLINE unsigned int ballot(int predicate, int line = __builtin_LINE()) const {
    unsigned lanes = __ballot_sync(mask_, predicate, line), out = 0, k = 0;
    for (unsigned m = mask_; m; m &= m - 1u, k++)
      if (lanes >> __builtin_ctz(m) & 1u) out |= 1u << k;
    return out;
  }
};
LLMC_INLINE coalesced_group coalesced_threads(int line = __builtin_LINE()) {
  return coalesced_group(__activemask(line));
}

// ------------------------------------------------------------------------------------------- grid_group
class grid_group {
public:
  static LLMC_INLINE unsigned long long thread_rank() {
    return (unsigned long long)block_rank() * details::block_size() + details::block_rank();
  }
  static LLMC_INLINE unsigned long long size() {
    return (unsigned long long)num_blocks() * details::block_size();
  }
  static LLMC_INLINE unsigned long long num_threads() { return size(); }
  static LLMC_INLINE unsigned long long block_rank() {
    return blockIdx.x + (unsigned long long)gridDim.x * (blockIdx.y + (unsigned long long)gridDim.y * blockIdx.z);
  }
  static LLMC_INLINE unsigned long long num_blocks() {
    return (unsigned long long)gridDim.x * gridDim.y * gridDim.z;
  }
  static LLMC_INLINE dim3 block_index() { return dim3(blockIdx.x, blockIdx.y, blockIdx.z); }
  static LLMC_INLINE dim3 dim_blocks() { return dim3(gridDim.x, gridDim.y, gridDim.z); }
  static LLMC_INLINE dim3 group_dim() { return dim3(gridDim.x * blockDim.x, gridDim.y * blockDim.y, gridDim.z * blockDim.z); }
  // Valid only in a cooperative launch, which RawKernel never makes (on the GPU either).
  static LLMC_INLINE bool is_valid() { return false; }
  // The CPU backend runs blocks one after another, so no block can wait for a later one.
  static void sync() LLMC_CG_UNSUPPORTED(
      "this_grid().sync(): grid-wide synchronisation is not supported by the CPU backend, which runs the blocks "
      "of a grid one after another; split the kernel in two launches instead (the launch boundary is the grid "
      "barrier)");
};
LLMC_INLINE grid_group this_grid() { return grid_group(); }

template <class G> LLMC_INLINE void sync(const G &g, int line = __builtin_LINE()) { g.sync(line); }
void sync(const grid_group &) LLMC_CG_UNSUPPORTED(
    "cg::sync(grid): grid-wide synchronisation is not supported by the CPU backend, which runs the blocks of a "
    "grid one after another; split the kernel in two launches instead (the launch boundary is the grid barrier)");

// --------------------------------------------------------------------- reductions and scans over a tile
template <class T> struct plus {
  LLMC_INLINE T operator()(const T &a, const T &b) const { return a + b; }
};
template <class T> struct less { // reduce: the minimum
  LLMC_INLINE T operator()(const T &a, const T &b) const { return b < a ? b : a; }
};
template <class T> struct greater { // reduce: the maximum
  LLMC_INLINE T operator()(const T &a, const T &b) const { return a < b ? b : a; }
};
template <class T> struct bit_and {
  LLMC_INLINE T operator()(const T &a, const T &b) const { return a & b; }
};
template <class T> struct bit_or {
  LLMC_INLINE T operator()(const T &a, const T &b) const { return a | b; }
};
template <class T> struct bit_xor {
  LLMC_INLINE T operator()(const T &a, const T &b) const { return a ^ b; }
};

// Every thread of the tile gets op over the tile's values (a butterfly of shfl_xor, as on the GPU).
template <unsigned int N, class P, class T, class Op>
LLMC_INLINE T reduce(const thread_block_tile<N, P> &g, T val, Op op, int line = __builtin_LINE()) {
  for (unsigned int offset = N / 2; offset > 0; offset /= 2) val = op(val, g.shfl_xor(val, offset, line));
  return val;
}
// Any size: each member's value in rank order, combined in that order (every thread gets the result).
template <class T, class Op>
LLMC_INLINE T reduce(const coalesced_group &g, T val, Op op, int line = __builtin_LINE()) {
  T result = g.shfl(val, 0, line);
  for (unsigned int r = 1; r < g.size(); r++) result = op(result, g.shfl(val, r, line));
  return result;
}
template <unsigned int N, class P, class T, class Op>
LLMC_INLINE T inclusive_scan(const thread_block_tile<N, P> &g, T val, Op op, int line = __builtin_LINE()) {
  for (unsigned int offset = 1; offset < N; offset *= 2) {
    T other = g.shfl_up(val, offset, line);
    if (g.thread_rank() >= offset) val = op(other, val);
  }
  return val;
}
template <unsigned int N, class P, class T>
LLMC_INLINE T inclusive_scan(const thread_block_tile<N, P> &g, T val, int line = __builtin_LINE()) {
  return inclusive_scan(g, val, plus<T>(), line);
}
// Thread 0 gets T() (CUDA leaves it undefined for operations other than plus).
template <unsigned int N, class P, class T, class Op>
LLMC_INLINE T exclusive_scan(const thread_block_tile<N, P> &g, T val, Op op, int line = __builtin_LINE()) {
  T inclusive = inclusive_scan(g, val, op, line);
  T previous = g.shfl_up(inclusive, 1, line);
  return g.thread_rank() == 0 ? T() : previous;
}
template <unsigned int N, class P, class T>
LLMC_INLINE T exclusive_scan(const thread_block_tile<N, P> &g, T val, int line = __builtin_LINE()) {
  return exclusive_scan(g, val, plus<T>(), line);
}
} // namespace cooperative_groups

#undef LLMC_CG_UNSUPPORTED
#endif
