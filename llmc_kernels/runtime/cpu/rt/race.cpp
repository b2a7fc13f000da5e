// The race detector: a consumer of the access-event layer (access.h) that applies CUDA's memory model to
// one launch.
//
// Two accesses race when they touch a common byte, come from different threads, at least one writes, not
// both are atomics, and neither happens before the other. Happens-before within a launch:
//   - one thread: program order;
//   - one block: a __syncthreads() orders everything before it before everything after it (epochs);
//   - lanes of one warp, within an epoch: only __syncwarp() and warp collectives (shuffles, votes) with
//     both lanes in the mask (warp clocks, access.h) -- lockstep is not assumed;
//   - different blocks: never, except release/acquire: an atomic that follows a __threadfence() in its
//     thread releases what that thread (and, through earlier barriers, its block) did; a later atomic on the
//     same address acquires it for its thread (and, after its next barrier, its block).
// Within a block, each epoch is analysed when it ends, over all of its accesses at once; across blocks,
// each 4-byte granule of global memory keeps, per category (plain write, plain read, atomic), the
// accesses of its lowest and highest block, and the grid is analysed after its last block. Both choices
// are independent of the order in which the CPU ran threads and blocks, so every schedule finds the same
// races. Reads of shared memory that no thread has written since the block started are reported too.
//
// Which pair is reported: the smallest by (kind: write-write, read-after-write, write-after-read; lines;
// buffer; offset; threads). The kind of a read/write pair is read-after-write when the read comes later in
// the program than the write (a later epoch, or later within the epoch by each thread's count of accesses),
// as a learner reading the code line by line would see it, else write-after-read.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <unordered_map>

#include "access.h"
#include "rt.h"

namespace rt {
namespace {

enum { K_WW = LLMC_RACE_WW, K_RAW = LLMC_RACE_RAW, K_WAR = LLMC_RACE_WAR };

inline bool writes(int k) { return k != LLMC_A_LOAD; }
inline bool reads(int k) { return k != LLMC_A_STORE; }
inline uint32_t mkpos(uint32_t epoch, uint32_t seq) {
  return (epoch > 0xFFF ? 0xFFFu : epoch) << 20 | (seq > 0xFFFFF ? 0xFFFFFu : seq);
}
inline uint32_t epoch_of(uint32_t pos) { return pos >> 20; }

// One access as the detector remembers it.
struct Rec {
  uint32_t block1; // block + 1 (0: empty)
  uint16_t thread;
  uint8_t mask;    // bytes of the granule
  uint8_t kind;
  int32_t line;
  uint32_t pos;    // mkpos(epoch, seq)
  uint32_t vc;     // warp clock snapshot (epoch analysis only)
  uint64_t value;
  uintptr_t addr;  // the access's own address and size (for the report)
  uint32_t size;
  int32_t region;
};

struct Side {
  uint64_t block;
  uint32_t thread;
  int32_t line;
  int op;
};

// A racing pair in canonical order, with what a report needs.
struct Pair {
  int kind;
  bool same;
  bool near; // lanes of one warp: a pair across warps or blocks is reported first (its hint is the stronger)
  Side a, b;
  int shared, region;
  uintptr_t addr;
  uint32_t size;
};

struct Best {
  bool any;
  int64_t count;
  Pair p;
};

Best g_race, g_warn, g_uninit;
uint64_t g_checks; // pair checks this launch (bounded: counting stops, finding does not)
const uint64_t CHECK_LIMIT = 50000000;

bool less(const Pair &x, const Pair &y) {
#define LLMC_CMP(A, B) if ((A) != (B)) return (A) < (B);
  LLMC_CMP(x.kind, y.kind)
  LLMC_CMP(x.a.line, y.a.line)
  LLMC_CMP(x.b.line, y.b.line)
  LLMC_CMP(x.near, y.near)
  LLMC_CMP(x.shared, y.shared)
  LLMC_CMP(x.region, y.region)
  LLMC_CMP(x.a.block, y.a.block)
  LLMC_CMP(x.a.thread, y.a.thread)
  LLMC_CMP(x.b.block, y.b.block)
  LLMC_CMP(x.b.thread, y.b.thread)
  return x.addr < y.addr;
#undef LLMC_CMP
}

void consider(Best &best, const Pair &p) {
  best.count++;
  if (!best.any || less(p, best.p)) best.p = p, best.any = true;
}

// x and y (different threads) conflict: classify and put them in canonical order.
Pair pair_of(const Rec &x, const Rec &y, int shared) {
  Pair p;
  const Rec *a = &x, *b = &y;
  if (writes(x.kind) && writes(y.kind)) {
    p.kind = K_WW;
    if (y.line < x.line || (y.line == x.line && (y.block1 < x.block1 || (y.block1 == x.block1 && y.thread < x.thread))))
      a = &y, b = &x;
  } else {
    const Rec *w = writes(x.kind) ? &x : &y, *r = writes(x.kind) ? &y : &x;
    bool later = r->pos > w->pos || (r->pos == w->pos && r->line > w->line);
    p.kind = later ? K_RAW : K_WAR;
    a = later ? w : r;
    b = later ? r : w;
  }
  p.near = x.block1 == y.block1 && x.thread >> 5 == y.thread >> 5;
  p.same = x.kind == LLMC_A_STORE && y.kind == LLMC_A_STORE && x.value == y.value && x.size == y.size;
  p.a = {a->block1 - 1ull, a->thread, a->line, a->kind};
  p.b = {b->block1 - 1ull, b->thread, b->line, b->kind};
  p.shared = shared;
  p.region = a->region;
  p.addr = a->addr;
  p.size = a->size;
  return p;
}

bool conflict(const Rec &x, const Rec &y) {
  return (x.mask & y.mask) && (writes(x.kind) || writes(y.kind)) &&
         !(x.kind == LLMC_A_ATOMIC && y.kind == LLMC_A_ATOMIC);
}

// ------------------------------------------------------------------------------ one epoch of one block
// One granule touched by one access. key = slot << 48 | granule << 10 | thread, where slot 0 is shared
// memory and slot 1 + r argument r, and granule is the 4-byte index within it: sorting by key groups the
// accesses per granule and, within it, per thread; a stable sort keeps each thread's program order.
struct Ent {
  uint64_t key;
  uint32_t e; // event
  uint8_t mask;
};
inline uint64_t granule_of(const Ent &x) { return x.key >> 10; }
inline uint16_t thread_of(const Ent &x) { return (uint16_t)(x.key & 1023u); }
std::vector<Ent> g_ents, g_tmp;

// LSD radix sort by key, 8 bits per pass, passes where every key has the same digit skipped: linear time
// (an epoch can hold millions of accesses; a comparison sort dominated the detector's cost)
void radix_sort(std::vector<Ent> &v) {
  size_t n = v.size();
  if (n < 2) return;
  g_tmp.resize(n);
  uint64_t all_or = 0, all_and = ~0ull;
  for (const Ent &x : v) all_or |= x.key, all_and &= x.key;
  Ent *src = v.data(), *dst = g_tmp.data();
  for (unsigned shift = 0; shift < 64; shift += 8) {
    if ((((all_or ^ all_and) >> shift) & 0xFF) == 0) continue; // this digit is the same everywhere
    size_t count[257] = {0};
    for (size_t i = 0; i < n; i++) count[((src[i].key >> shift) & 0xFF) + 1]++;
    for (int d = 0; d < 256; d++) count[d + 1] += count[d];
    for (size_t i = 0; i < n; i++) dst[count[(src[i].key >> shift) & 0xFF]++] = src[i];
    Ent *t = src;
    src = dst;
    dst = t;
  }
  if (src != v.data()) memcpy(v.data(), src, n * sizeof(Ent));
}
std::vector<Rec> g_reps;
uint8_t g_sh_written[2 * SHARED_LIMIT / 4]; // per shared granule: bytes written in an earlier epoch

// x happens before y: lanes of one warp, ordered by a warp operation between them (same epoch)
bool warp_before(const Epoch &e, const Rec &x, const Rec &y) {
  if (x.thread >> 5 != y.thread >> 5) return false;
  unsigned lx = x.thread & 31u;
  return e.vct[32 * (size_t)y.vc + lx] > e.vct[32 * (size_t)x.vc + lx];
}

struct Cell; // the grid's shadow of one granule
void merge_global(const Rec &r, uint64_t g);

void analyse_group(const Epoch &e, size_t lo, size_t hi) {
  // one representative per (thread, kind, warp clock): further accesses of the same kind by the same
  // thread between the same warp operations conflict exactly when the first does (bytes are OR-ed in)
  g_reps.clear();
  size_t first_of_thread = 0;
  for (size_t i = lo; i < hi; i++) {
    const Ent &en = g_ents[i];
    const Access &a = e.ev[en.e];
    if (i == lo || thread_of(en) != thread_of(g_ents[i - 1])) first_of_thread = g_reps.size();
    bool merged = false;
    for (size_t k = first_of_thread; k < g_reps.size(); k++) {
      Rec &r = g_reps[k];
      if (r.kind == a.kind && r.vc == a.vc) {
        r.mask |= en.mask;
        merged = true;
        break;
      }
    }
    if (merged) continue;
    Rec r = {(uint32_t)(e.block + 1), a.thread, en.mask, a.kind, a.line, mkpos(e.index, a.seq), a.vc, a.value,
             a.addr, a.size, a.region};
    g_reps.push_back(r);
  }
  const Access &a0 = e.ev[g_ents[lo].e];
  const bool shared = a0.space == SP_SHARED;
  const uint64_t g = granule_of(g_ents[lo]);
  bool any_write = false;
  for (const Rec &r : g_reps) any_write |= writes(r.kind);
  // races within the epoch
  if (any_write) {
    for (size_t i = 0; i < g_reps.size(); i++)
      for (size_t j = i + 1; j < g_reps.size(); j++) {
        const Rec &x = g_reps[i], &y = g_reps[j];
        if (x.thread == y.thread || !conflict(x, y)) continue;
        if (++g_checks > CHECK_LIMIT && g_race.any) return;
        if (warp_before(e, x, y) || warp_before(e, y, x)) continue;
        Pair p = pair_of(x, y, shared);
        consider(p.same ? g_warn : g_race, p);
      }
  }
  if (shared) {
    // reads of bytes that no thread wrote since the block started (the same epoch included: a write that
    // is unordered with the read is a race, reported as such, not as an uninitialised read)
    uint64_t sg = g & ((1ull << 38) - 1); // the shared granule
    uint8_t before = g_sh_written[sg];
    uint8_t written_now = 0;
    for (const Rec &r : g_reps) {
      if (writes(r.kind)) written_now |= r.mask;
      if (!reads(r.kind) || !(r.mask & ~before)) continue;
      uint8_t covered = before;
      for (const Rec &w : g_reps)
        if (writes(w.kind) && (w.thread != r.thread || w.pos < r.pos)) covered |= w.mask;
      if (r.mask & ~covered) {
        Pair p = {LLMC_RACE_UNINIT, false, false, {e.block, r.thread, r.line, r.kind}, {e.block, r.thread, r.line, r.kind},
                  1, r.region, r.addr, r.size};
        consider(g_uninit, p);
      }
    }
    g_sh_written[sg] = before | written_now;
  } else {
    for (const Rec &r : g_reps) merge_global(r, g);
  }
}

// ------------------------------------------------------------------------- across blocks (global memory)
// Per granule and category, the accesses of the lowest and the highest block that made one: if any two
// blocks conflict, these do (a pair of distinct blocks exists iff one of the four combinations differs).
struct Slot {
  Rec lo, hi;
};
struct Cell {
  Slot w, r, a; // plain writes (stores, updates), plain reads (loads, updates), atomics
};
const unsigned PAGE_BITS = 9;
std::unordered_map<uint64_t, Cell *> g_pages;
uint64_t g_last_page = ~0ull;
Cell *g_last_cells;

Cell &cell(uint64_t g) {
  uint64_t page = g >> PAGE_BITS;
  if (page != g_last_page) {
    Cell *&c = g_pages[page];
    if (!c) c = (Cell *)calloc(1u << PAGE_BITS, sizeof(Cell));
    if (!c) escape(LLMC_E_INTERNAL, LLMC_T_INTERNAL, 0, "out of memory for the race detector's shadow memory");
    g_last_page = page;
    g_last_cells = c;
  }
  return g_last_cells[g & ((1u << PAGE_BITS) - 1)];
}

// A block's representative: its earliest access (by epoch, then thread), with the bytes of all of them.
void keep(Rec &have, const Rec &r) {
  uint8_t mask = have.mask | r.mask;
  if (r.pos < have.pos || (r.pos == have.pos && r.thread < have.thread)) have = r;
  have.mask = mask;
}

void insert(Slot &s, const Rec &r) {
  if (!s.lo.block1) { s.lo = r; return; }
  if (r.block1 == s.lo.block1) { keep(s.lo, r); return; }
  if (s.hi.block1 && r.block1 == s.hi.block1) { keep(s.hi, r); return; }
  if (!s.hi.block1) {
    if (r.block1 < s.lo.block1) s.hi = s.lo, s.lo = r;
    else s.hi = r;
    return;
  }
  if (r.block1 < s.lo.block1) s.lo = r;
  else if (r.block1 > s.hi.block1) s.hi = r;
}

void merge_global(const Rec &r, uint64_t g) {
  Cell &c = cell(g);
  if (r.kind == LLMC_A_ATOMIC) insert(c.a, r);
  if (r.kind == LLMC_A_STORE || r.kind == LLMC_A_UPDATE) insert(c.w, r);
  if (r.kind == LLMC_A_LOAD || r.kind == LLMC_A_UPDATE) insert(c.r, r);
}

// release/acquire through atomics (the "last block" pattern)
struct Rel {
  uint64_t block;
  uint32_t thread, pos;
};
struct Acq {
  uint32_t thread, pos;
  uintptr_t addr;
  size_t upto; // releases on addr before it
};
std::unordered_map<uintptr_t, std::vector<Rel>> g_rel;
std::unordered_map<uint64_t, std::vector<Acq>> g_acq;

void on_atomic(const Access &a, uint64_t block, uint32_t epoch, bool fenced) {
  uint32_t pos = mkpos(epoch, a.seq);
  auto it = g_rel.find(a.addr);
  if (it != g_rel.end() && !it->second.empty()) g_acq[block].push_back({a.thread, pos, a.addr, it->second.size()});
  if (fenced) g_rel[a.addr].push_back({block, a.thread, pos});
}

// x (block bx) happens before y (block by) through a release in bx acquired by by
bool released_before(const Rec &x, const Rec &y) {
  auto ai = g_acq.find(y.block1 - 1ull);
  if (ai == g_acq.end()) return false;
  for (const Acq &q : ai->second) {
    bool after = y.thread == q.thread ? y.pos > q.pos : epoch_of(y.pos) > epoch_of(q.pos);
    if (!after) continue;
    const std::vector<Rel> &rels = g_rel[q.addr];
    for (size_t k = 0; k < q.upto && k < rels.size(); k++) {
      const Rel &rl = rels[k];
      if (rl.block != x.block1 - 1ull) continue;
      if (x.thread == rl.thread ? x.pos <= rl.pos : epoch_of(x.pos) < epoch_of(rl.pos)) return true;
    }
  }
  return false;
}

void cross(const Rec &x, const Rec &y) {
  if (!x.block1 || !y.block1 || x.block1 == y.block1 || !conflict(x, y)) return;
  if (released_before(x, y) || released_before(y, x)) return;
  Pair p = pair_of(x, y, 0);
  consider(p.same ? g_warn : g_race, p);
}

void analyse_grid() {
  for (auto &kv : g_pages) {
    Cell *cells = kv.second;
    for (unsigned i = 0; i < (1u << PAGE_BITS); i++) {
      const Cell &c = cells[i];
      if (!c.w.lo.block1 && !c.a.lo.block1) continue; // only read: no race
      cross(c.w.lo, c.w.hi);
      const Rec *ws[4] = {&c.w.lo, &c.w.hi, &c.a.lo, &c.a.hi};
      for (const Rec *w : ws) {
        cross(*w, c.r.lo);
        cross(*w, c.r.hi);
      }
      for (int k = 2; k < 4; k++) { // an atomic against a plain write
        cross(*ws[k], c.w.lo);
        cross(*ws[k], c.w.hi);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------- reports
void fill_side(llmc_race_access &s, const Side &d) {
  const llmc_launch_desc *D = g.d;
  uint64_t gx = D->grid[0], gy = D->grid[1], bx = D->block[0], by = D->block[1];
  s.block[0] = (int32_t)(d.block % gx), s.block[1] = (int32_t)((d.block / gx) % gy), s.block[2] = (int32_t)(d.block / (gx * gy));
  s.thread[0] = (int32_t)(d.thread % bx), s.thread[1] = (int32_t)((d.thread / bx) % by),
  s.thread[2] = (int32_t)(d.thread / (bx * by));
  s.lane = (int32_t)(d.thread & 31u);
  s.warp = (int32_t)(d.thread >> 5);
  s.line = d.line;
  s.op = d.op;
}

void fill(llmc_race &out, const Best &b) {
  const Pair &p = b.p;
  memset(&out, 0, sizeof out);
  out.kind = p.kind;
  out.shared = p.shared;
  out.region = p.region;
  out.same_value = p.same;
  out.size = p.size;
  out.pairs = b.count;
  out.nthreads = p.kind == LLMC_RACE_UNINIT ? 1 : 2;
  fill_side(out.a, p.a);
  fill_side(out.b, p.b);
  if (p.region >= 0) {
    for (int i = 0; i < g.d->nregions; i++)
      if (g.d->regions[i].id == p.region) {
        out.offset = (int64_t)(p.addr - (uintptr_t)g.d->regions[i].lo);
        out.elem_size = g.d->regions[i].elem_size;
      }
  } else {
    uintptr_t lo = 0;
    const char *name = shared_array_at((const void *)p.addr, &lo);
    if (name) snprintf(out.name, sizeof out.name, "%s", name);
    out.offset = (int64_t)(p.addr - lo);
  }
}

[[noreturn]] void report(const Best &b) {
  fill(g.err->race, b);
  if (g_warn.any) fill(g.err->warning, g_warn);
  escape(LLMC_E_RACE, b.p.kind, b.p.a.line, 0);
}

// --------------------------------------------------------------------------------------- the consumer
void launch_begin() {
  g_race = g_warn = g_uninit = Best();
  g_checks = 0;
  g_last_page = ~0ull;
}

void epoch(const Epoch &e) {
  if (e.index == 0) memset(g_sh_written, 0, sizeof g_sh_written);
  g_ents.clear();
  for (size_t i = 0; i < e.n; i++) {
    const Access &a = e.ev[i];
    uint64_t slot = a.space == SP_SHARED ? 0 : 1 + (uint64_t)a.region;
    uint64_t end = a.offset + a.size;
    for (uint64_t gr = a.offset & ~(uint64_t)3; gr < end; gr += 4) {
      uint64_t lo = gr > a.offset ? gr : a.offset, hi = gr + 4 < end ? gr + 4 : end;
      uint8_t mask = (uint8_t)(((1u << (hi - lo)) - 1u) << (lo - gr));
      g_ents.push_back({slot << 48 | (gr >> 2) << 10 | a.thread, (uint32_t)i, mask});
    }
  }
  radix_sort(g_ents);
  for (size_t lo = 0; lo < g_ents.size();) {
    size_t hi = lo + 1;
    while (hi < g_ents.size() && granule_of(g_ents[hi]) == granule_of(g_ents[lo])) hi++;
    analyse_group(e, lo, hi);
    lo = hi;
  }
  if (g_race.any) report(g_race);
  if (g_uninit.any) report(g_uninit);
}

void launch_end() {
  analyse_grid();
  if (g_race.any) report(g_race);
  if (g_warn.any) fill(g.err->warning, g_warn);
}

void release() {
  for (auto &kv : g_pages) free(kv.second);
  std::unordered_map<uint64_t, Cell *>().swap(g_pages);
  std::unordered_map<uintptr_t, std::vector<Rel>>().swap(g_rel);
  std::unordered_map<uint64_t, std::vector<Acq>>().swap(g_acq);
  std::vector<Ent>().swap(g_ents);
  std::vector<Ent>().swap(g_tmp);
  std::vector<Rec>().swap(g_reps);
  g_last_page = ~0ull;
}

} // namespace

Consumer race_detector = {launch_begin, epoch, on_atomic, launch_end, release};

} // namespace rt
