// The access-event layer (see access.h): records each traced access, cuts the record into epochs, keeps the
// warp clocks, and hands every epoch to the consumers. Nothing here runs unless the launch traces.
#include <string.h>

#include "access.h"
#include "rt.h"

namespace rt {

bool g_tracing;

static std::vector<Access> g_ev;       // this epoch's accesses
// At most this many accesses between two barriers of a block (~1.5 GB of records): past it a loop that never
// ends would exhaust the machine's memory before its time limit; the launch stops with a clear error instead.
static const size_t EPOCH_ACCESSES = (size_t)1 << 25;
static std::vector<uint32_t> g_vct;    // warp-clock snapshots, 32 per snapshot
static uint32_t g_seq[MAX_THREADS];    // per thread: accesses so far in this epoch
static uint32_t g_lane_vc[MAX_THREADS];
static uint8_t g_fenced[MAX_THREADS];
static int64_t g_pending = -1;         // a store whose value is not captured yet
static uint32_t g_epoch;
static uint64_t g_block;
static Consumer *g_cons[2];
static int g_ncons;

static unsigned current_thread() {
  if (g.fibers) return g_cur->linear;
  const llmc_ctx &c = g_runner->c; // the fast path runs every thread of the block on the runner
  return c.tid.x + g.d->block[0] * (c.tid.y + g.d->block[1] * c.tid.z);
}

// A store's value is in memory once the statement has run, that is by the thread's next access, barrier,
// warp operation or return: fibers switch only at those, so nothing else can have written it meanwhile.
void access_finalize() {
  if (g_pending < 0) return;
  Access &a = g_ev[(size_t)g_pending];
  g_pending = -1;
  if (a.size <= 8) {
    uint64_t v = 0;
    memcpy(&v, (const void *)a.addr, a.size);
    a.value = v;
  } else { // FNV-1a: equal bytes, equal value
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < a.size; i++) h = (h ^ ((const unsigned char *)a.addr)[i]) * 1099511628211ull;
    a.value = h;
  }
}

void h_access(const void *addr, uint32_t size, int kind, int line) {
  access_finalize();
  Access a;
  a.addr = (uintptr_t)addr;
  a.size = size;
  a.kind = (uint8_t)kind;
  a.line = line;
  a.value = 0;
  int64_t off = shared_offset(addr);
  if (off >= 0) {
    a.space = SP_SHARED;
    a.region = off < SHARED_LIMIT ? LLMC_R_STATIC_SHARED : LLMC_R_DYN_SHARED;
    a.offset = (uint64_t)off;
  } else {
    a.space = SP_GLOBAL;
    uintptr_t lo = 0;
    a.region = global_region_of(addr, &lo);
    if (a.region < 0) return; // a raw pointer into local memory (an atomic on a local variable): not shared
    a.offset = a.addr - lo;
  }
  unsigned t = current_thread();
  a.thread = (uint16_t)t;
  a.seq = g_seq[t]++;
  a.vc = g_lane_vc[t];
  if (g_ev.size() >= EPOCH_ACCESSES)
    escape(LLMC_E_TRAP, LLMC_T_TRAP, line,
           "more than %zu memory accesses of one block between two barriers, more than the race detector and "
           "the memory counters can record: a loop that never ends? If the work is real, run it with "
           "runtime.launch_options(races=False) (not under llmc_kernels.profile), or at smaller sizes",
           EPOCH_ACCESSES);
  g_ev.push_back(a);
  if (kind == LLMC_A_STORE) g_pending = (int64_t)g_ev.size() - 1;
  if (kind == LLMC_A_ATOMIC)
    for (int i = 0; i < g_ncons; i++)
      if (g_cons[i]->atomic) g_cons[i]->atomic(a, g_block, g_epoch, g_fenced[t] != 0);
}

void h_fence(int) {
  access_finalize();
  g_fenced[current_thread()] = 1;
}

// Lanes in `mask` of warp `warp` met at a warp operation: each ticks its own clock and all learn the join.
void access_warp_sync(unsigned warp, unsigned mask) {
  uint32_t J[32] = {0};
  for (unsigned j = 0; j < 32; j++) {
    if (!(mask >> j & 1)) continue;
    const uint32_t *v = &g_vct[32 * (size_t)g_lane_vc[warp * 32 + j]];
    for (unsigned m = 0; m < 32; m++) J[m] = v[m] > J[m] ? v[m] : J[m];
  }
  for (unsigned j = 0; j < 32; j++)
    if (mask >> j & 1) J[j]++;
  uint32_t id = (uint32_t)(g_vct.size() / 32);
  g_vct.insert(g_vct.end(), J, J + 32);
  for (unsigned j = 0; j < 32; j++)
    if (mask >> j & 1) g_lane_vc[warp * 32 + j] = id;
}

static void reset_epoch() {
  g_ev.clear();
  g_pending = -1;
  g_vct.assign(32, 0);
  memset(g_seq, 0, sizeof(uint32_t) * g.nthreads);
  memset(g_lane_vc, 0, sizeof(uint32_t) * g.nthreads);
}

static void flush(bool last) {
  access_finalize();
  Epoch e = {g_block, g_epoch, last, g_ev.data(), g_ev.size(), g_vct.data()};
  for (int i = 0; i < g_ncons; i++) g_cons[i]->epoch(e);
  reset_epoch();
  g_epoch++;
}

void access_epoch_end() { flush(false); }

void access_launch_begin(unsigned trace) {
  g_tracing = trace != 0;
  g_ncons = 0;
  if (!g_tracing) return;
  if (trace & LLMC_TRACE_RACES) g_cons[g_ncons++] = &race_detector;
  if (trace & LLMC_TRACE_COUNTERS) g_cons[g_ncons++] = &memory_counters;
  for (int i = 0; i < g_ncons; i++) g_cons[i]->launch_begin();
}

void access_block_begin(uint64_t block) {
  g_block = block;
  g_epoch = 0;
  memset(g_fenced, 0, g.nthreads);
  reset_epoch();
}

void access_block_end() { flush(true); }

void access_launch_end() {
  for (int i = 0; i < g_ncons; i++) g_cons[i]->launch_end();
}

// Per launch, then freed: the epoch buffers shrink back and each consumer drops its shadow state.
void access_release() {
  if (!g_tracing) return;
  for (int i = 0; i < g_ncons; i++) g_cons[i]->release();
  std::vector<Access>().swap(g_ev);
  std::vector<uint32_t>().swap(g_vct);
  g_ncons = 0;
  g_tracing = false;
}

} // namespace rt
