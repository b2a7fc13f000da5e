// The deadlock report: when no fiber of a block can run but some still wait, say who waits where and
// who can never arrive (returned, at another barrier, a lane that does not exist), so the learner sees
// the cause, not just "it hangs". The census covers the whole block, so the message is the same
// whatever the schedule.
#include <string.h>

#include "rt.h"

namespace rt {

static const char *warp_op_name(int kind) {
  switch (kind) {
  case LLMC_W_SHFL_IDX: return "__shfl_sync";
  case LLMC_W_SHFL_UP: return "__shfl_up_sync";
  case LLMC_W_SHFL_DOWN: return "__shfl_down_sync";
  case LLMC_W_SHFL_XOR: return "__shfl_xor_sync";
  case LLMC_W_BALLOT: return "__ballot_sync";
  case LLMC_W_ANY: return "__any_sync";
  case LLMC_W_ALL: return "__all_sync";
  case LLMC_W_ACTIVEMASK: return "__activemask";
  default: return "__syncwarp";
  }
}

static const char *barrier_name(int op) {
  switch (op) {
  case LLMC_B_COUNT: return "__syncthreads_count()";
  case LLMC_B_AND: return "__syncthreads_and()";
  case LLMC_B_OR: return "__syncthreads_or()";
  default: return "__syncthreads()";
  }
}

// "threadIdx.x 96..127" (1-D blocks) or "threadIdx (0,1,0)..(31,1,0)", at most four runs.
static void add_threads(Text &t, const unsigned *ids, unsigned n) {
  const bool one_d = g.d->block[1] == 1 && g.d->block[2] == 1;
  t.add(one_d ? "threadIdx.x " : "threadIdx ");
  unsigned runs = 0;
  for (unsigned i = 0; i < n;) {
    unsigned j = i;
    while (j + 1 < n && ids[j + 1] == ids[j] + 1) j++;
    if (runs == 4) {
      t.add(", ...");
      break;
    }
    if (runs) t.add(", ");
    const llmc_dim &a = g.tids[ids[i]], &b = g.tids[ids[j]];
    if (one_d)
      i == j ? t.add("%u", a.x) : t.add("%u..%u", a.x, b.x);
    else
      i == j ? t.add("(%u,%u,%u)", a.x, a.y, a.z) : t.add("(%u,%u,%u)..(%u,%u,%u)", a.x, a.y, a.z, b.x, b.y, b.z);
    runs++;
    i = j + 1;
  }
}

static void add_group(Text &t, const unsigned *ids, unsigned n) {
  t.add("%u thread%s (", n, n == 1 ? "" : "s");
  add_threads(t, ids, n);
  t.add(")");
}

// "16..31" or "0, 4..7" for the set bits of a lane mask.
static void add_lanes(Text &t, unsigned bits) {
  bool first = true;
  for (unsigned j = 0; j < 32; j++) {
    if (!(bits >> j & 1)) continue;
    unsigned k = j;
    while (k + 1 < 32 && (bits >> (k + 1) & 1)) k++;
    t.add(first ? "" : ", ");
    k == j ? t.add("%u", j) : t.add("%u..%u", j, k);
    first = false;
    j = k;
  }
}

static unsigned s_ids[MAX_THREADS];

// Threads (linear ids, in order) that satisfy pred; returns how many.
template <class P> static unsigned select(P pred) {
  unsigned n = 0;
  for (unsigned l = 0; l < g.nthreads; l++)
    if (pred(g.by_linear[l])) s_ids[n++] = l;
  return n;
}

static void barrier_census(Text &t, Fiber *first) {
  // distinct barrier lines, in the order of the lowest thread waiting at each
  int lines[8];
  unsigned nlines = 0;
  for (unsigned l = 0; l < g.nthreads && nlines < 8; l++) {
    Fiber *f = g.by_linear[l];
    if (f->state != F_BAR) continue;
    bool seen = false;
    for (unsigned k = 0; k < nlines; k++) seen |= lines[k] == f->line;
    if (!seen) lines[nlines++] = f->line;
  }
  if (nlines > 1) {
    t.add("deadlock: the threads of the block wait at different barriers: ");
    for (unsigned k = 0; k < nlines; k++) {
      int line = lines[k];
      unsigned n = select([line](Fiber *f) { return f->state == F_BAR && f->line == line; });
      if (k) t.add(k + 1 == nlines ? " and " : ", ");
      add_group(t, s_ids, n);
      t.add(" at line %d", line);
    }
    t.add(". A barrier inside a branch that only some threads take never completes: every thread of the block "
          "must reach the same %s (move it out of the if/else).", barrier_name(first->op));
    return;
  }
  unsigned waiting = select([](Fiber *f) { return f->state == F_BAR; });
  t.add("deadlock: %u of the block's %u threads wait at %s on line %d, but ", waiting, g.nthreads,
        barrier_name(first->op), first->line);
  unsigned returned = select([](Fiber *f) { return f->state == F_DONE; });
  if (returned) {
    add_group(t, s_ids, returned);
    t.add(" returned without reaching it");
  }
  unsigned in_warp = select([](Fiber *f) { return f->state == F_WARP; });
  if (in_warp) {
    Fiber *w = g.by_linear[s_ids[0]];
    t.add(returned ? ", and " : "");
    add_group(t, s_ids, in_warp);
    t.add(" wait at %s on line %d", warp_op_name(w->op), w->line);
  }
  t.add(", so the barrier can never complete. Every thread of a block must reach every __syncthreads(): "
        "instead of returning early, put the work under if (i < n) { ... } and keep the barrier outside it.");
}

static void warp_census(Text &t, Fiber *first) {
  const unsigned w = first->warp, mask = first->mask;
  const int line = first->line, op = first->op;
  unsigned n = select([&](Fiber *f) {
    return f->warp == w && f->state == F_WARP && f->mask == mask && f->line == line && f->op == op;
  });
  t.add("deadlock: %s(0x%08x, ...) on line %d: ", warp_op_name(op), mask, line);
  add_group(t, s_ids, n);
  t.add(" of warp %u wait there for every lane named in the mask, but", w);
  const Warp &W = g.warps[w];
  unsigned missing_absent = mask & ~W.exists;
  bool any = false;
  if (missing_absent) {
    t.add(" lanes ");
    add_lanes(t, missing_absent);
    t.add(" do not exist: the block has %u threads, so warp %u has only %u lanes (name only existing lanes in "
          "the mask, or use a block size that is a multiple of 32)", g.nthreads, w, __builtin_popcount(W.exists));
    any = true;
  }
  unsigned returned = select([&](Fiber *f) { return f->warp == w && (mask >> f->lane & 1) && f->state == F_DONE; });
  if (returned) {
    t.add(any ? "; " : " ");
    add_group(t, s_ids, returned);
    t.add(" returned without reaching it");
    any = true;
  }
  unsigned at_bar = select([&](Fiber *f) { return f->warp == w && (mask >> f->lane & 1) && f->state == F_BAR; });
  if (at_bar) {
    t.add(any ? "; " : " ");
    add_group(t, s_ids, at_bar);
    t.add(" wait at %s on line %d", barrier_name(g.by_linear[s_ids[0]]->op), g.by_linear[s_ids[0]]->line);
    any = true;
  }
  unsigned other = select([&](Fiber *f) {
    return f->warp == w && (mask >> f->lane & 1) && f->state == F_WARP &&
           !(f->mask == mask && f->line == line && f->op == op);
  });
  if (other) {
    Fiber *o = g.by_linear[s_ids[0]];
    t.add(any ? "; " : " ");
    add_group(t, s_ids, other);
    t.add(" wait at %s(0x%08x, ...) on line %d", warp_op_name(o->op), o->mask, o->line);
    any = true;
  }
  if (!any) t.add(" not all of them arrive");
  t.add(". Every lane named in the mask of a *_sync function must call the same function with the same mask.");
}

void report_deadlock() {
  Fiber *first = 0;
  for (unsigned l = 0; l < g.nthreads && !first; l++)
    if (g.by_linear[l]->state == F_BAR) first = g.by_linear[l];
  bool barrier = first != 0;
  for (unsigned l = 0; l < g.nthreads && !first; l++)
    if (g.by_linear[l]->state == F_WARP) first = g.by_linear[l];
  if (!first) escape(LLMC_E_INTERNAL, LLMC_T_INTERNAL, 0, "the scheduler found nothing to run in a finished block");
  static char buf[sizeof(((llmc_error *)0)->text)];
  Text t = {buf, sizeof buf, 0};
  buf[0] = 0;
  if (barrier)
    barrier_census(t, first);
  else
    warp_census(t, first);
  g_cur = first; // the error names this thread (and its line)
  escape(LLMC_E_DEADLOCK, 0, first->line, "%s", buf);
}

} // namespace rt
