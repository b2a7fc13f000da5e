// The memory counters (llmc_kernels.profile): a consumer of the access-event layer (access.h) that computes,
// for one launch, what Nsight Compute reports for it on a GPU (profiling/counters.py says what each means).
//
// A request is one warp-level memory instruction. The CPU runs a warp's lanes one after another, so the
// request is rebuilt from an epoch's accesses as "the lanes of one warp executing the same line for the same
// n-th time in this epoch", split by access kind. In converged code that is the GPU's
// instruction; each side of a divergent branch forms its own request with only its lanes, as a GPU issues
// each side with a partial mask. Per request:
//   global: sectors = distinct 32-byte segments touched; ideal = ceil(distinct bytes asked / 32);
//   shared: wavefronts = per phase (128 bytes of lanes: 32 lanes of 4 bytes, 16 of 8, 8 of 16), the most
//           distinct 4-byte words in one of the 32 banks, summed over phases; ideal = ceil(bytes / 128).
// An update (+=, ++) is a load request and a store request, as the GPU runs a load and a store; an atomic
// is an atomic request (global memory: Nsight Compute's atom + red). unique_bytes is the union of the bytes
// of global memory touched (a perfect cache's DRAM traffic); barriers the __syncthreads() each block passed.
#include <string.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "access.h"
#include "rt.h"

namespace rt {
namespace {

enum Class { C_LOAD = 0, C_STORE = 1, C_ATOMIC = 2 };

struct SiteKey {
  int32_t line, region;
  uint8_t space, cls;
  bool operator==(const SiteKey &o) const {
    return line == o.line && region == o.region && space == o.space && cls == o.cls;
  }
};
struct SiteHash {
  size_t operator()(const SiteKey &k) const {
    return ((size_t)(uint32_t)k.line * 1000003u) ^ ((size_t)(uint32_t)k.region << 8) ^ (k.space << 2) ^ k.cls;
  }
};

llmc_counters g_tot, g_last;
std::unordered_map<SiteKey, llmc_site_counters, SiteHash> g_sites;
std::vector<llmc_site_counters> g_last_sites;
// Per argument (indexed by its position, the region id of its accesses): where its array would start on a
// GPU -- an allocation of its own, 256-byte aligned as cudaMalloc's are, plus the array's offset in its NumPy
// allocation -- and one bit per byte it touched (unique_bytes).
struct ArgMemory {
  uintptr_t base = 0;
  uint64_t span = 0;
  std::vector<uint64_t> bits;
};
std::vector<ArgMemory> g_args;

void touch(const Access &a) {
  ArgMemory &m = g_args[(size_t)a.region];
  if (m.bits.empty()) m.bits.assign(m.span / 64 + 1, 0);
  for (uint64_t b = a.offset; b < a.offset + a.size && b < m.span; b++) m.bits[b >> 6] |= 1ull << (b & 63);
}
std::vector<std::pair<uint64_t, uint32_t>> g_order;    // (request key, access index)
std::vector<Access> g_gpu;                             // the epoch's accesses at GPU-like addresses

// Where an access would be on a GPU: shared memory at its offset, an argument's array at its GPU-like base.
uintptr_t gpu_address(const Access &a) {
  return a.space == SP_SHARED ? (uintptr_t)a.offset : g_args[(size_t)a.region].base + a.offset;
}

// Lanes' steps within a request, in elements, when they are all the same (else 0).
int64_t lane_stride(const Access *const *lanes, int n) {
  if (n < 2) return 0;
  int64_t step = (int64_t)lanes[1]->addr - (int64_t)lanes[0]->addr;
  int dl = (lanes[1]->thread & 31) - (lanes[0]->thread & 31);
  if (dl <= 0 || step % dl) return 0;
  step /= dl;
  for (int i = 2; i < n; i++) {
    int d = (lanes[i]->thread & 31) - (lanes[i - 1]->thread & 31);
    if (d <= 0 || (int64_t)lanes[i]->addr - (int64_t)lanes[i - 1]->addr != step * d) return 0;
  }
  uint32_t size = lanes[0]->size;
  return step % (int64_t)size == 0 ? step / (int64_t)size : 0;
}

// Sorts v and drops repeats; returns how many distinct values it holds.
uint64_t distinct(std::vector<uint64_t> &v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v.size();
}

// One request: the lanes' accesses (sorted by lane) of one class; adds it to the totals and its site.
std::vector<uint64_t> scratch;

void request(const Access *const *lanes, int n, int cls) {
  const Access &a0 = *lanes[0];
  scratch.clear();
  for (int i = 0; i < n; i++) scratch.push_back(lanes[i]->addr);
  uint64_t asked = distinct(scratch) * a0.size;   // bytes the request needs, each address once
  uint64_t units, ideal;
  if (a0.space == SP_GLOBAL) {
    scratch.clear();
    for (int i = 0; i < n; i++) {
      scratch.push_back(lanes[i]->addr / 32);
      scratch.push_back((lanes[i]->addr + lanes[i]->size - 1) / 32);
    }
    units = distinct(scratch);
    ideal = (asked + 31) / 32;
  } else {
    uint32_t size = a0.size < 4 ? 4 : a0.size;
    unsigned per_phase = 128 / size;
    units = 0;
    for (int p0 = 0; p0 < n;) {                       // lanes of one phase: lane / per_phase equal
      unsigned phase = (lanes[p0]->thread & 31) / per_phase;
      int p1 = p0;
      scratch.clear();
      while (p1 < n && (lanes[p1]->thread & 31) / per_phase == phase) {
        uint64_t w0 = lanes[p1]->addr / 4, words = size / 4;
        for (uint64_t w = w0; w < w0 + words; w++) scratch.push_back((w % 32) << 40 | w);  // (bank, word)
        p1++;
      }
      distinct(scratch);
      uint64_t worst = 0, run = 0, bank = ~0ull;
      for (uint64_t x : scratch) {
        if (x >> 40 != bank) { bank = x >> 40; run = 0; }
        worst = std::max(worst, ++run);
      }
      units += worst;
      p0 = p1;
    }
    ideal = std::max<uint64_t>(1, (asked + 127) / 128);
  }
  uint64_t lane_bytes = (uint64_t)n * a0.size;
  llmc_counters &t = g_tot;
  if (a0.space == SP_GLOBAL) {
    t.bytes_requested += lane_bytes;    // an update asks twice: for its load and for its store
    if (cls == C_LOAD) { t.global_load_requests++; t.global_load_sectors += units; t.global_load_ideal += ideal; t.global_load_bytes += asked; }
    if (cls == C_STORE) { t.global_store_requests++; t.global_store_sectors += units; t.global_store_ideal += ideal; t.global_store_bytes += asked; }
    if (cls == C_ATOMIC) t.atomics++;
  } else {
    if (cls == C_LOAD) { t.shared_load_requests++; t.shared_load_wavefronts += units; t.shared_load_ideal += ideal; }
    if (cls == C_STORE) { t.shared_store_requests++; t.shared_store_wavefronts += units; t.shared_store_ideal += ideal; }
  }
  llmc_site_counters &s = g_sites[SiteKey{a0.line, a0.region, a0.space, (uint8_t)cls}];
  if (s.requests == 0) {
    s.line = a0.line;
    s.region = a0.region;
    s.space = a0.space;
    s.kind = cls;
    s.size = a0.size;
  }
  s.requests++;
  s.units += units;
  s.ideal += ideal;
  if (n > s.lanes) {           // the stride is read off the site's fullest request
    s.lanes = n;
    s.stride = lane_stride(lanes, n);
  }
}

void launch_begin() {
  memset(&g_tot, 0, sizeof g_tot);
  g_sites.clear();
  g_args.clear();
  for (int i = 0; i < g.d->nregions; i++) {
    const llmc_region &r = g.d->regions[i];
    if (!r.lo || r.id < 0) continue;
    if ((size_t)r.id >= g_args.size()) g_args.resize((size_t)r.id + 1);
    g_args[(size_t)r.id].base = ((uintptr_t)(r.id + 1) << 40) + (uint32_t)r.base_offset;
    g_args[(size_t)r.id].span = r.span;
  }
}

void epoch(const Epoch &e) {
  if (!e.last) g_tot.barriers++;
  if (e.n == 0) return;
  // Sort by (space, warp, line, lane, program order): each (warp, line) run then holds every lane's
  // executions of that line in order, and the n-th execution of each lane forms the n-th request.
  g_order.resize(e.n);
  g_gpu.assign(e.ev, e.ev + e.n);
  for (size_t i = 0; i < e.n; i++) {
    Access &a = g_gpu[i];
    if (a.space == SP_GLOBAL) touch(a);
    a.addr = gpu_address(a);
    uint64_t seq = a.seq > 0xFFFFF ? 0xFFFFF : a.seq;
    uint64_t line = (uint64_t)(uint32_t)a.line & 0xFFFFF;
    g_order[i] = {(uint64_t)a.space << 63 | (uint64_t)(a.thread >> 5) << 50 | line << 25 |
                      (uint64_t)(a.thread & 31) << 20 | seq,
                  (uint32_t)i};
  }
  std::sort(g_order.begin(), g_order.end());
  static std::vector<const Access *> lanes[3];
  size_t starts[33], ends[33];
  for (size_t i = 0; i < e.n;) {
    uint64_t run = g_order[i].first >> 25;          // (space, warp, line)
    int nl = 0;                                     // the lanes' sub-runs, in lane order
    size_t j = i;
    while (j < e.n && g_order[j].first >> 25 == run) {
      uint64_t lane = g_order[j].first >> 20;
      starts[nl] = j;
      while (j < e.n && g_order[j].first >> 20 == lane) j++;
      ends[nl++] = j;
    }
    for (size_t nth = 0;; nth++) {
      for (auto &l : lanes) l.clear();
      bool any = false;
      for (int k = 0; k < nl; k++) {
        if (starts[k] + nth >= ends[k]) continue;
        any = true;
        const Access *a = &g_gpu[g_order[starts[k] + nth].second];
        if (a->kind == LLMC_A_ATOMIC) lanes[C_ATOMIC].push_back(a);
        if (a->kind == LLMC_A_LOAD || a->kind == LLMC_A_UPDATE) lanes[C_LOAD].push_back(a);
        if (a->kind == LLMC_A_STORE || a->kind == LLMC_A_UPDATE) lanes[C_STORE].push_back(a);
      }
      if (!any) break;
      for (int c = 0; c < 3; c++)
        if (!lanes[c].empty()) request(lanes[c].data(), (int)lanes[c].size(), c);
    }
    i = j;
  }
}

void on_atomic(const Access &, uint64_t, uint32_t, bool) {}

void launch_end() {
  uint64_t total = 0;
  for (const ArgMemory &m : g_args)
    for (uint64_t w : m.bits) total += (uint64_t)__builtin_popcountll(w);
  g_tot.unique_bytes = total;
  g_last = g_tot;
  g_last_sites.clear();
  for (auto &kv : g_sites) g_last_sites.push_back(kv.second);
}

void release() {
  g_sites.clear();
  std::vector<ArgMemory>().swap(g_args);
  std::vector<std::pair<uint64_t, uint32_t>>().swap(g_order);
  std::vector<Access>().swap(g_gpu);
}

} // namespace

Consumer memory_counters = {launch_begin, epoch, on_atomic, launch_end, release};

} // namespace rt

// The counters of the last launch that traced them (read by launch.py right after llmc_run). Returns the
// number of sites; at most `max_sites` are copied.
RT_EXPORT int llmc_counters_result(llmc_counters *out, llmc_site_counters *sites, int max_sites) {
  *out = rt::g_last;
  int n = (int)rt::g_last_sites.size();
  for (int i = 0; i < n && i < max_sites; i++) sites[i] = rt::g_last_sites[(size_t)i];
  return n;
}
