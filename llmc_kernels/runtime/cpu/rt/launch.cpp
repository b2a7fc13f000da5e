// llmc_run: one launch, from Python's call to the error record it reads back.
//
// The launch runs on fiber stacks (slot 0, "the runner", walks the grid; slots 1..n are the block's
// threads), so even the fast path's threads have a guard page and a context at their stack's base.
// Errors (checked-pointer faults, deadlocks, traps, signals) jump straight back here with siglongjmp:
// the fibers are simply abandoned, as a GPU abandons a faulted grid.
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "rt.h"

namespace rt {

Launch g;
Fiber *g_cur;
Fiber *g_runner;
sigjmp_buf g_escape;

void Text::add(const char *fmt, ...) {
  if (len + 1 >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + len, cap - len, fmt, ap);
  va_end(ap);
  if (n > 0) len = len + (unsigned)n >= cap ? cap - 1 : len + (unsigned)n;
}

// ------------------------------------------------------------------------------------------- errors
void fill_where(llmc_error *e) {
  if (g_cur) {
    const llmc_ctx &c = g_cur->c;
    e->has_thread = 1;
    e->thread[0] = (int)c.tid.x, e->thread[1] = (int)c.tid.y, e->thread[2] = (int)c.tid.z;
    e->block[0] = (int)c.bid.x, e->block[1] = (int)c.bid.y, e->block[2] = (int)c.bid.z;
  }
  e->blocks_done = (int64_t)g.blocks_done;
  e->blocks_total = (int64_t)g.nblocks;
}

void escape(int kind, int sub, int line, const char *fmt, ...) {
  llmc_error *e = g.err;
  e->kind = kind;
  e->sub = sub;
  e->line = line;
  fill_where(e);
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->text, sizeof e->text, fmt, ap);
    va_end(ap);
  }
  siglongjmp(g_escape, 1);
}

// ------------------------------------------------------------------------------------ shared memory
// Static __shared__ declarations get offsets in one arena, in the order a launch first meets them; every
// block reuses that layout. Each block starts with the arena and the dynamic buffer poisoned: 0x7FFFA5A5 is a
// NaN as a float (and as a double), 2147460517 as an int, so reading what no thread wrote shows up.
struct SharedAlloc {
  const void *key;
  uint64_t off, size;
  const char *name;
};
static SharedAlloc g_sh[256];
static unsigned g_nsh;
static uint64_t g_sh_used;
static char g_sh_arena[SHARED_LIMIT] __attribute__((aligned(64)));
static char *g_dyn;
static uint64_t g_dyn_cap;
static uint64_t g_generation;

static void poison(char *p, uint64_t n) {
  static const unsigned char pat[4] = {0xA5, 0xA5, 0xFF, 0x7F}; // 0x7FFFA5A5, little-endian
  uint32_t w;
  memcpy(&w, pat, 4);
  uint64_t i = 0;
  for (; i + 4 <= n; i += 4) memcpy(p + i, &w, 4);
  for (; i < n; i++) p[i] = (char)pat[i & 3];
}

static void *h_shared_static(const void *key, uint64_t size, uint64_t align, const char *name, int line) {
  for (unsigned i = 0; i < g_nsh; i++)
    if (g_sh[i].key == key) return g_sh_arena + g_sh[i].off;
  uint64_t off = (g_sh_used + align - 1) & ~(align - 1);
  uint64_t dyn = g.d->shared_bytes;
  if (off + size + dyn > SHARED_LIMIT || g_nsh == sizeof g_sh / sizeof g_sh[0])
    escape(LLMC_E_TRAP, LLMC_T_SHARED_LIMIT, line,
           "__shared__ '%s' (%llu bytes) does not fit: this block's __shared__ arrays need %llu bytes plus %llu bytes "
           "of dynamic shared memory (shared_mem), but a block gets at most %d bytes (48 KiB); on a GPU the "
           "launch would fail", name, (unsigned long long)size, (unsigned long long)(off + size),
           (unsigned long long)dyn, SHARED_LIMIT);
  g_sh[g_nsh].key = key;
  g_sh[g_nsh].off = off;
  g_sh[g_nsh].size = size;
  g_sh[g_nsh].name = name;
  g_nsh++;
  g_sh_used = off + size;
  poison(g_sh_arena + off, size);
  return g_sh_arena + off;
}

const char *shared_name_at(const void *p, const char **kind_out, uint64_t *size_out) {
  const char *c = (const char *)p;
  for (unsigned i = 0; i < g_nsh; i++) {
    const char *lo = g_sh_arena + g_sh[i].off;
    if (c >= lo && c < lo + g_sh[i].size) {
      if (kind_out) *kind_out = "__shared__";
      if (size_out) *size_out = g_sh[i].size;
      return g_sh[i].name;
    }
  }
  return 0;
}

const char *shared_array_at(const void *p, uintptr_t *lo) {
  const char *c = (const char *)p;
  for (unsigned i = 0; i < g_nsh; i++) {
    const char *a = g_sh_arena + g_sh[i].off;
    if (c >= a && c < a + g_sh[i].size) {
      *lo = (uintptr_t)a;
      return g_sh[i].name;
    }
  }
  *lo = (uintptr_t)g_dyn; // dynamic shared memory
  return 0;
}

int64_t shared_offset(const void *p) {
  const char *c = (const char *)p;
  if (c >= g_sh_arena && c < g_sh_arena + g_sh_used) return c - g_sh_arena;
  if (g_dyn && c >= g_dyn && c < g_dyn + g.d->shared_bytes) return SHARED_LIMIT + (c - g_dyn);
  return -1;
}

int global_region_of(const void *p, uintptr_t *lo) {
  const char *c = (const char *)p;
  for (int i = 0; i < g.d->nregions; i++) {
    const llmc_region &r = g.d->regions[i];
    if (r.lo && c >= r.lo && c < r.lo + r.span) {
      if (lo) *lo = (uintptr_t)r.lo;
      return r.id;
    }
  }
  return -1;
}

// --------------------------------------------------------------------------------------------- hooks
static void h_oob(const void *addr, uint64_t size, uint64_t align, const llmc_region *r, int is_const, int line) {
  llmc_error *e = g.err;
  e->region = r->id;
  e->offset = (int64_t)((uintptr_t)addr - (uintptr_t)r->lo);
  e->size = (int64_t)size;
  e->align = (int64_t)align;
  e->addr = (uint64_t)(uintptr_t)addr;
  e->is_const = is_const;
  e->extent = (int64_t)r->span;
  bool inside = r->span >= size && (uint64_t)e->offset <= r->span - size;
  if (r->id != LLMC_R_NULL && inside && ((uintptr_t)addr & (align - 1)))
    escape(LLMC_E_TRAP, LLMC_T_MISALIGNED, line,
           "misaligned access: a %llu-byte value at address %p, which is %llu bytes past a %llu-byte boundary; the "
           "GPU requires %llu-byte alignment for this type (is the offset a multiple of its size?)",
           (unsigned long long)size, addr, (unsigned long long)((uintptr_t)addr & (align - 1)),
           (unsigned long long)align, (unsigned long long)align);
  const char *name = r->id == LLMC_R_STATIC_SHARED ? shared_name_at(r->lo, 0, 0) : 0;
  escape(LLMC_E_OOB, 0, line, "%s", name ? name : "");
}

static void h_oob_array(long long index, long long n, const void *base, const char *what, int line) {
  llmc_error *e = g.err;
  e->index = index;
  if (base) {
    e->extent = n;
    const char *name = shared_name_at(base, 0, 0);
    escape(LLMC_E_OOB_ARRAY, 0, line, "__shared__ array '%s'", name ? name : "?");
  }
  // from UBSan: a local (or struct member) array; its bound is the first [N] of the type's name
  const char *b = what ? strchr(what, '[') : 0;
  e->extent = b ? atoll(b + 1) : -1;
  char type[160];
  snprintf(type, sizeof type, "%s", what ? what : "?");
  size_t k = strlen(type);
  if (k >= 2 && type[0] == '\'' && type[k - 1] == '\'') {
    memmove(type, type + 1, k - 2);
    type[k - 2] = 0;
  }
  escape(LLMC_E_OOB_ARRAY, 0, line, "the local array (type %s)", type);
}


static void h_trap(int kind, const char *text, long long a, long long b, int line) {
  llmc_error *e = g.err;
  e->index = a;
  e->extent = b;
  switch (kind) {
  case LLMC_T_DIV_ZERO:
    escape(LLMC_E_TRAP, kind, line, "integer division by zero (%lld / 0 in %s arithmetic)", a, text);
  case LLMC_T_DIV_OVERFLOW:
    escape(LLMC_E_TRAP, kind, line, "integer division overflow (%lld / %lld in %s arithmetic)", a, b, text);
  case LLMC_T_ASSERT:
    escape(LLMC_E_TRAP, kind, line, "assertion failed: %s", text);
  default:
    escape(LLMC_E_TRAP, kind, line, "the kernel called %s", text);
  }
}

// printf: appended to one buffer (1 MiB, like CUDA's default printf FIFO); Python prints it afterwards.
static char g_out[1 << 20];
static uint64_t g_out_len;
static int g_out_truncated;

static void h_vprintf(const char *fmt, va_list ap) {
  uint64_t room = sizeof g_out - g_out_len;
  if (room <= 1) {
    g_out_truncated = 1;
    return;
  }
  int n = vsnprintf(g_out + g_out_len, room, fmt, ap);
  if (n < 0) return;
  if ((uint64_t)n >= room) {
    g_out_truncated = 1;
    g_out_len = sizeof g_out - 1;
  } else {
    g_out_len += (uint64_t)n;
  }
}

// A raw address (e.g. `&x[i]` stored in a pointer variable) becomes checked again if it lies in one of the
// launch's regions; one-past-the-end counts, as C allows forming that pointer.
static void h_find_region(const void *p, llmc_region *out) {
  const char *c = (const char *)p;
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < g.d->nregions; i++) {
      const llmc_region &r = g.d->regions[i];
      if (r.lo && c >= r.lo && (c < r.lo + r.span || (pass == 1 && c == r.lo + r.span))) {
        *out = r;
        return;
      }
    }
    const llmc_region &dyn = g.L.dyn_shared;
    if (dyn.lo && c >= dyn.lo && (c < dyn.lo + dyn.span || (pass == 1 && c == dyn.lo + dyn.span))) {
      *out = dyn;
      return;
    }
    for (unsigned i = 0; i < g_nsh; i++) {
      char *lo = g_sh_arena + g_sh[i].off;
      if (c >= lo && (c < lo + g_sh[i].size || (pass == 1 && c == lo + g_sh[i].size))) {
        out->lo = lo;
        out->span = g_sh[i].size;
        out->id = LLMC_R_STATIC_SHARED;
        out->elem_size = 0;
        out->flags = g.L.trace;
        out->base_offset = 0;
        return;
      }
    }
  }
  out->lo = 0;
  out->span = ~(uint64_t)0;
  out->id = LLMC_R_UNCHECKED;
  out->elem_size = 0;
  out->flags = 0;
  out->base_offset = 0;
}

// barriers and warp operations go straight to the scheduler (sched.cpp): they are the hot path
static const llmc_hooks k_hooks = {h_oob, h_oob_array, h_shared_static, hook_sync, hook_warp, hook_activemask,
                                   h_trap, h_vprintf, h_find_region, h_access, h_fence};

// ------------------------------------------------------------------------------------------ schedule
static uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// A seeded permutation of [0, n) in O(1) memory: an invertible mix on m bits (multiply by an odd number,
// add, xor-shift), walked until it lands below n (at most a few steps, as 2^m < 2n).
struct Perm {
  uint64_t n, mask, mul[3], add[3];
  unsigned shift;
  void init(uint64_t count, uint64_t seed) {
    n = count;
    unsigned m = 1;
    while ((1ull << m) < n && m < 63) m++;
    mask = (1ull << m) - 1;
    shift = m / 2 + 1;
    for (int r = 0; r < 3; r++) {
      mul[r] = (splitmix(seed + 2 * r) | 1) & mask;
      add[r] = splitmix(seed + 2 * r + 1) & mask;
    }
  }
  uint64_t mix(uint64_t x) const {
    for (int r = 0; r < 3; r++) {
      x = (x * mul[r] + add[r]) & mask;
      x ^= x >> shift;
    }
    return x;
  }
  uint64_t at(uint64_t k) const {
    uint64_t x = mix(k);
    while (x >= n) x = mix(x);
    return x;
  }
};
static Perm g_block_perm;

static uint64_t block_at(uint64_t k) {
  switch (g.d->schedule) {
  case 1: return g.nblocks - 1 - k;
  case 2: return g_block_perm.at(k);
  default: return k;
  }
}

static void thread_order(uint64_t block) {
  const unsigned n = g.nthreads;
  for (unsigned k = 0; k < n; k++) g.order[k] = g.d->schedule == 1 ? n - 1 - k : k;
  if (g.d->schedule != 2) return;
  uint64_t s = splitmix(g.d->seed ^ splitmix(block + 0x51ED));
  for (unsigned k = n - 1; k > 0; k--) { // Fisher-Yates
    s = splitmix(s);
    unsigned j = (unsigned)(s % (k + 1));
    unsigned t = g.order[k];
    g.order[k] = g.order[j];
    g.order[j] = t;
  }
}

static void runner_main() {
  const llmc_launch_desc *d = g.d;
  llmc_block_run run = {&g_runner->c, g.tids, g.order, g.nthreads};
  const uint64_t gx = d->grid[0], gy = d->grid[1];
  for (uint64_t k = 0; k < g.nblocks; k++) {
    uint64_t b = block_at(k);
    g_runner->c.bid.x = (unsigned)(b % gx);
    g_runner->c.bid.y = (unsigned)((b / gx) % gy);
    g_runner->c.bid.z = (unsigned)(b / (gx * gy));
    if (d->schedule == 2) thread_order(b);
    poison(g_sh_arena, g_sh_used);
    if (d->shared_bytes) poison(g_dyn, d->shared_bytes);
    if (g_tracing) access_block_begin(b);
    if (g.fibers)
      run_block_fibers();
    else
      d->fast_block(d->args, &run);
    if (g_tracing) access_block_end();
    g.blocks_done++;
  }
  if (g_tracing) access_launch_end(); // across blocks: may report a race (and not come back)
  fiber_leave(g_runner);
  __builtin_trap(); // never resumed
}

static void fail_setup(llmc_error *e, const char *what) {
  e->kind = LLMC_E_INTERNAL;
  e->sub = LLMC_T_INTERNAL;
  snprintf(e->text, sizeof e->text, "%s", what);
}

} // namespace rt

using namespace rt;

RT_EXPORT int llmc_runtime_abi(void) { return LLMC_ABI; }

RT_EXPORT int llmc_run(const llmc_launch_desc *d, llmc_error *e) {
  memset(e, 0, sizeof *e);
  memset(&g, 0, sizeof g);
  g.d = d;
  g.err = e;
  g.nthreads = d->block[0] * d->block[1] * d->block[2];
  g.nwarps = (g.nthreads + 31) / 32;
  g.nblocks = (uint64_t)d->grid[0] * d->grid[1] * d->grid[2];
  g.fibers = d->use_fibers != 0;
  if (g.nthreads == 0 || g.nthreads > MAX_THREADS || g.nblocks == 0) {
    fail_setup(e, "bad launch configuration");
    return e->kind;
  }
  if (!fibers_reserve(g.fibers ? g.nthreads + 1 : 1)) {
    fail_setup(e, "could not allocate the fibers' stacks (mmap failed)");
    return e->kind;
  }
  if (d->shared_bytes > g_dyn_cap) {
    free(g_dyn);
    g_dyn = (char *)aligned_alloc(64, (d->shared_bytes + 63) & ~(uint64_t)63);
    g_dyn_cap = g_dyn ? d->shared_bytes : 0;
    if (!g_dyn) {
      fail_setup(e, "could not allocate dynamic shared memory");
      return e->kind;
    }
  }
  g.L.hooks = &k_hooks;
  g.L.dyn_shared.lo = d->shared_bytes ? g_dyn : 0;
  g.L.dyn_shared.span = d->shared_bytes;
  g.L.dyn_shared.id = LLMC_R_DYN_SHARED;
  g.L.dyn_shared.elem_size = 1;
  g.L.generation = ++g_generation;
  g.L.trace = (int32_t)(d->trace & LLMC_TRACE_ACCESSES);
  g.L.dyn_shared.flags = g.L.trace;
  g_nsh = 0;
  g_sh_used = 0;
  g_out_len = 0;
  g_out_truncated = 0;
  g_out[0] = 0;

  const unsigned bx = d->block[0], by = d->block[1];
  for (unsigned l = 0; l < g.nthreads; l++) {
    g.tids[l].x = l % bx;
    g.tids[l].y = (l / bx) % by;
    g.tids[l].z = l / (bx * by);
  }
  thread_order(0);
  if (d->schedule == 2) g_block_perm.init(g.nblocks, splitmix(d->seed));
  unsigned slots = g.fibers ? g.nthreads + 1 : 1;
  for (unsigned i = 0; i < slots; i++) {
    llmc_ctx &c = fiber_slot(i)->c;
    c.bdim.x = d->block[0], c.bdim.y = d->block[1], c.bdim.z = d->block[2];
    c.gdim.x = d->grid[0], c.gdim.y = d->grid[1], c.gdim.z = d->grid[2];
    c.tid.x = c.tid.y = c.tid.z = 0;
    c.L = &g.L;
  }
  g_runner = fiber_slot(0);
  fiber_prepare(g_runner, runner_main);
  g_cur = 0;
  if (!faults_install(d->timeout_s)) {
    fail_setup(e, "could not start the time-limit watchdog thread");
    return e->kind;
  }
  access_launch_begin(g.L.trace ? d->trace : 0);
  if (sigsetjmp(g_escape, 1) == 0) {
    g_in_launch = 1;
    fiber_enter(g_runner); // returns when the runner has walked the whole grid
  }
  faults_restore();
  access_release(); // the shadow state lives for one launch
  g_cur = 0;
  e->blocks_done = (int64_t)g.blocks_done;
  e->blocks_total = (int64_t)g.nblocks;
  return e->kind;
}

// The launch's printf output (valid until the next launch).
RT_EXPORT const char *llmc_output(uint64_t *len, int *truncated) {
  *len = g_out_len;
  *truncated = g_out_truncated;
  return g_out;
}
