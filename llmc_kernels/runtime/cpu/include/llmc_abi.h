/* The contract between the CPU backend's runtime library (rt/) and every compiled kernel library.
 *
 * Plain C so that both sides (and Python's ctypes, see launch.py) agree on the layout. Bump LLMC_ABI on
 * any change: it is part of the compile-cache key and checked when a kernel library is loaded.
 *
 * How kernel code finds "its" CUDA thread: every CUDA thread runs on a stack slot of LLMC_STACK_BYTES,
 * aligned to that size, whose lowest bytes hold its llmc_ctx. Masking the stack pointer gives the context,
 * with no thread-local storage and no global, so kernel code stays cheap and position-independent.
 */
#ifndef LLMC_ABI_H
#define LLMC_ABI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define LLMC_ABI 4
#define LLMC_STACK_BYTES (256u * 1024u) /* per CUDA thread; a power of two, a multiple of any page size */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct llmc_dim { unsigned x, y, z; } llmc_dim;

/* A range of memory a checked pointer may touch: a kernel argument, dynamic shared memory, a __shared__
 * array. id >= 0 is the argument's position; negative ids are the LLMC_R_* kinds below. */
typedef struct llmc_region {
  char *lo;
  uint64_t span; /* bytes */
  int32_t id;
  int32_t elem_size; /* bytes per element as the kernel declares it (float4: 16), for messages */
  int32_t flags;     /* LLMC_TRACE_ACCESSES: accesses through pointers made from it report to the runtime */
  int32_t base_offset; /* bytes from the start of its NumPy allocation, mod 256: a GPU allocation starts
                          256-byte aligned, so the memory counters place sectors as a GPU would */
} llmc_region;

/* What a launch records (llmc_launch_desc.trace, llmc_region.flags): every load, store and atomic of
 * global and shared memory goes to the runtime's access-event layer (rt/access.cpp), whose consumers are
 * the race detector (LLMC_TRACE_RACES) and, later, the memory counters. 0: the uninstrumented fast path. */
enum { LLMC_TRACE_ACCESSES = 1, LLMC_TRACE_RACES = 2, LLMC_TRACE_COUNTERS = 8 };
/* llmc_region.flags: the array is a const parameter that no other argument overlaps, so nothing in the launch
 * can write it (short of const_cast): the race detector skips loads through const pointers to it, which
 * are most of a kernel's accesses (the memory counters, which count every load, never set it) */
enum { LLMC_REGION_READONLY = 4 };

/* How an access uses memory (the translator tells loads from stores by the tokens around a subscript). */
enum { LLMC_A_LOAD = 1, LLMC_A_STORE = 2, LLMC_A_UPDATE = 3 /* +=, ++: a load then a store */,
       LLMC_A_ATOMIC = 4, LLMC_A_ADDR = 5 /* &p[i]: no access */ };

enum {
  LLMC_R_UNCHECKED = -1,     /* a pointer we could not associate (a local array, a string literal) */
  LLMC_R_DYN_SHARED = -2,    /* extern __shared__ (the launch's shared_mem bytes) */
  LLMC_R_NULL = -3,          /* nullptr, or a pointer never initialised */
  LLMC_R_STATIC_SHARED = -4  /* a __shared__ array, found by address in the launch's table */
};

/* Warp operations (the hook's `kind`): shuffles, votes and __syncwarp, each a rendezvous of its lanes. */
enum {
  LLMC_W_SHFL_IDX = 1, LLMC_W_SHFL_UP, LLMC_W_SHFL_DOWN, LLMC_W_SHFL_XOR,
  LLMC_W_BALLOT = 10, LLMC_W_ANY, LLMC_W_ALL,
  LLMC_W_SYNCWARP = 20,
  LLMC_W_ACTIVEMASK = 30 /* not a barrier: waits only until no lane of the warp can run on (convergence) */
};

/* __syncthreads_count/_and/_or (the hook's `op`; 0 is a plain barrier). */
enum { LLMC_B_PLAIN = 0, LLMC_B_COUNT, LLMC_B_AND, LLMC_B_OR };

/* Traps (the hook's `kind`; also llmc_error.sub). */
enum {
  LLMC_T_DIV_ZERO = 1, LLMC_T_DIV_OVERFLOW, LLMC_T_STACK_OVERFLOW, LLMC_T_BAD_ADDRESS, LLMC_T_TRAP,
  LLMC_T_ASSERT, LLMC_T_BAD_MASK, LLMC_T_SHARED_LIMIT, LLMC_T_MISALIGNED, LLMC_T_ILLEGAL, LLMC_T_INTERNAL
};

/* Runtime functions that kernel code calls; none returns when it reports an error. */
typedef struct llmc_hooks {
  /* a checked pointer stepped outside its region (or is misaligned): addr, access size, alignment */
  void (*oob)(const void *addr, uint64_t size, uint64_t align, const llmc_region *r, int is_const, int line);
  /* a fixed-size array (__shared__ or local) indexed outside [0, n); what: "__shared__" or the array type */
  void (*oob_array)(long long index, long long n, const void *base, const char *what, int line);
  /* storage of one static __shared__ declaration (key: unique per declaration), poisoned per block */
  void *(*shared_static)(const void *key, uint64_t size, uint64_t align, const char *name, int line);
  /* __syncthreads and friends; returns the reduction for LLMC_B_COUNT/AND/OR */
  int (*sync)(int op, int pred, int line);
  /* a warp operation of the calling thread; returns its result (the shuffled value's bits, or a vote) */
  uint64_t (*warp)(int kind, unsigned mask, uint64_t value, int arg, int width, int line);
  unsigned (*activemask)(void);
  void (*trap)(int kind, const char *text, long long a, long long b, int line);
  void (*vprintf)(const char *fmt, va_list ap);
  /* the region holding p (a raw address turned back into a checked pointer), else LLMC_R_UNCHECKED */
  void (*find_region)(const void *p, llmc_region *out);
  /* an access of `size` bytes at addr (LLMC_A_*), from the learner's line; only while the launch traces */
  void (*access)(const void *addr, uint32_t size, int kind, int line);
  /* __threadfence(): a later atomic of this thread releases what it did before (race detector) */
  void (*fence)(int line);
} llmc_hooks;

typedef struct llmc_launch {
  const llmc_hooks *hooks;
  llmc_region dyn_shared;
  uint64_t generation; /* unique per launch: lets static __shared__ lookups cache their storage */
  int32_t trace;       /* LLMC_TRACE_* of this launch: __shared__ arrays and raw atomics read it */
  int32_t pad_;
} llmc_launch;

/* Lives at the base of each stack slot (see above). Kernel code reads the first four fields. */
typedef struct llmc_ctx {
  llmc_dim tid, bid, bdim, gdim;
  llmc_launch *L;
} llmc_ctx;

/* The fast path: one block's threads called one after another, no fibers (kernels without barriers). */
typedef struct llmc_block_run {
  llmc_ctx *ctx;
  const llmc_dim *tids;   /* linear thread id -> threadIdx */
  const unsigned *order;  /* the schedule: which linear id runs k-th */
  unsigned n;
} llmc_block_run;

typedef void (*llmc_thread_fn)(void **args);
typedef void (*llmc_block_fn)(void **args, llmc_block_run *run);

/* What Python asks the runtime to run (launch.py mirrors this with ctypes). */
typedef struct llmc_launch_desc {
  llmc_thread_fn thread_entry; /* runs one CUDA thread to completion (on a fiber) */
  llmc_block_fn fast_block;    /* runs a whole block as a loop (kernels without barriers/warp ops) */
  void **args;                 /* per parameter: an llmc_region* (pointers) or the value's bytes */
  const llmc_region *regions;  /* the pointer arguments, for re-association and messages */
  int32_t nregions;
  int32_t use_fibers;
  uint32_t grid[3], block[3];
  uint64_t shared_bytes;
  int32_t schedule; /* 0 forward, 1 reverse, 2 shuffle */
  int32_t pad_;
  uint64_t seed;
  double timeout_s;
  uint32_t trace; /* LLMC_TRACE_* */
  uint32_t pad2_;
} llmc_launch_desc;

enum { LLMC_E_OK = 0, LLMC_E_OOB, LLMC_E_OOB_ARRAY, LLMC_E_DEADLOCK, LLMC_E_TIMEOUT, LLMC_E_TRAP,
       LLMC_E_INTERRUPT, LLMC_E_INTERNAL, LLMC_E_RACE };

/* A data race (or a read of never-written shared memory) found by the race detector: one pair of
 * accesses, in canonical order (the write first for read-after-write, the read first for write-after-read). */
enum { LLMC_RACE_NONE = 0, LLMC_RACE_WW, LLMC_RACE_RAW, LLMC_RACE_WAR, LLMC_RACE_UNINIT };
typedef struct llmc_race_access {
  int32_t thread[3], block[3];
  int32_t lane, warp;
  int32_t line;    /* file line (#line-mapped) */
  int32_t op;      /* LLMC_A_* */
} llmc_race_access;
typedef struct llmc_race {
  int32_t kind;        /* LLMC_RACE_* */
  int32_t shared;      /* 1: shared memory, 0: global */
  int32_t region;      /* argument position, LLMC_R_DYN_SHARED or LLMC_R_STATIC_SHARED */
  int32_t same_value;  /* a write-write race where both stored the same bytes */
  int64_t offset;      /* bytes from the region's start */
  int64_t size;        /* bytes of the first access */
  int64_t elem_size;   /* the argument's element size (0: unknown) */
  int64_t pairs;       /* racing pairs found (for a warning: same-value pairs) */
  int32_t nthreads;    /* accesses b describes (1 for an uninitialised read) */
  int32_t pad_;
  llmc_race_access a, b;
  char name[64];       /* a __shared__ array's name */
} llmc_race;

/* The memory counters of one launch (LLMC_TRACE_COUNTERS; rt/counters.cpp, llmc_counters_result): Nsight
 * Compute's definitions, see llmc_kernels/profiling/counters.py. */
typedef struct llmc_counters {
  uint64_t global_load_requests, global_load_sectors, global_store_requests, global_store_sectors;
  uint64_t shared_load_requests, shared_load_wavefronts, shared_store_requests, shared_store_wavefronts;
  uint64_t atomics, barriers, bytes_requested, unique_bytes;
  uint64_t global_load_ideal, global_store_ideal, shared_load_ideal, shared_store_ideal;
  uint64_t global_load_bytes, global_store_bytes;
} llmc_counters;
/* One access of the source (a line, its array, global or shared, load/store/atomic), over all its requests. */
typedef struct llmc_site_counters {
  int32_t line, region, space, kind; /* kind: 0 load, 1 store, 2 atomic */
  int64_t size, requests, units, ideal;
  int64_t stride; /* elements between consecutive lanes in the fullest request, when constant (else 0) */
  int64_t lanes;  /* lanes of that request */
} llmc_site_counters;

/* What went wrong, filled by the runtime; Python turns it into a KernelError subclass. */
typedef struct llmc_error {
  int32_t kind, sub, line, has_thread;
  int32_t thread[3], block[3];
  int32_t region, is_const;
  int64_t offset;  /* bytes from the region's start (negative: before it) */
  int64_t size;    /* bytes accessed */
  int64_t align;
  int64_t index;   /* array index (LLMC_E_OOB_ARRAY), or a trap's operand */
  int64_t extent;  /* array length (LLMC_E_OOB_ARRAY), or a trap's second operand */
  uint64_t addr;
  int64_t blocks_done, blocks_total;
  char text[4096]; /* the runtime's own words (deadlock census, trap details); "line N" are file lines */
  llmc_race race;    /* LLMC_E_RACE */
  llmc_race warning; /* a same-value write-write race (kind != NONE even when the launch succeeded) */
} llmc_error;

#ifdef __cplusplus
}
#endif
#endif
