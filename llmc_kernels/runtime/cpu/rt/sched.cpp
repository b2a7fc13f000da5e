// The threads of one block as cooperative fibers, with CUDA's barrier and warp semantics.
//
// Fibers run in the schedule's order (forward, reverse, shuffled). A fiber runs until it waits (barrier,
// warp operation) or returns, then hands over to the next runnable fiber in that order. A barrier releases
// when every thread of the block waits at the same __syncthreads and none has returned; the released
// block then restarts from the first fiber in the order, so "reverse" really runs the last thread first
// in every phase. A warp operation completes when every lane named in its mask waits at one with the same
// mask. When nothing can run but threads still wait, that is a deadlock: census.cpp says why.
#include <string.h>

#include "access.h"
#include "rt.h"

namespace rt {

static_assert(sizeof(Fiber) <= 512, "a Fiber must fit before the fallback's ucontext in the slot's first page");

static void fiber_main();

void run_block_fibers() {
  const unsigned n = g.nthreads;
  for (unsigned l = 0; l < n; l++) {
    Fiber *f = fiber_slot(l + 1);
    f->c.tid = g.tids[l];
    f->c.bid = g_runner->c.bid;
    f->state = F_RUN;
    f->linear = l;
    f->lane = l & 31u;
    f->warp = l >> 5;
    f->line = 0;
    fiber_prepare(f, fiber_main);
    g.by_linear[l] = f;
  }
  for (unsigned k = 0; k < n; k++) {
    Fiber *f = g.by_linear[g.order[k]];
    f->pos = k;
    g.run[k] = f;
  }
  for (unsigned w = 0; w < g.nwarps; w++) {
    unsigned lanes = n - w * 32 >= 32 ? 32 : n - w * 32;
    g.warps[w].arrived = 0;
    g.warps[w].at_activemask = 0;
    g.warps[w].exists = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
  }
  g.live = n;
  g.done = 0;
  g.at_barrier = 0;
  g.barrier_mixed = false;
  fiber_switch(g_runner, g.run[0]); // back here when the block's last fiber returns
}

// Hand over to the next runnable fiber after `self` in the run order; report a deadlock if there is none.
static void switch_next(Fiber *self) {
  const unsigned n = g.nthreads;
  unsigned q = self->pos;
  for (unsigned k = 1; k <= n; k++) {
    if (++q == n) q = 0;
    Fiber *f = g.run[q];
    if (f->state == F_RUN) {
      if (f != self) fiber_switch(self, f);
      return;
    }
  }
  report_deadlock();
}

static void fiber_main() {
  Fiber *self = g_cur;
  g.d->thread_entry(g.d->args);
  if (g_tracing) access_finalize();
  self->state = F_DONE;
  g.live--;
  g.done++;
  warp_settle(self->warp);
  if (g.live == 0) fiber_switch(self, g_runner); // never resumed: the next block prepares it afresh
  switch_next(self);
  // A returned fiber is never made runnable again, so switch_next cannot come back here.
  __builtin_trap();
}

int hook_sync(int op, int pred, int line) {
  Fiber *self = g_cur;
  if (!g.fibers) escape(LLMC_E_INTERNAL, LLMC_T_INTERNAL, line, "a barrier ran on the fast path");
  if (g_tracing) access_finalize();
  self->state = F_BAR;
  self->line = line;
  self->op = op;
  self->pred = pred;
  if (g.at_barrier == 0) {
    g.barrier_line = line;
    g.barrier_mixed = false;
  } else if (line != g.barrier_line) {
    g.barrier_mixed = true; // threads at two different __syncthreads(): never released (census reports it)
  }
  g.at_barrier++;
  warp_settle(self->warp);
  // Release only when the whole block is here at one barrier. A thread that returned never arrives: real
  // GPUs may count it as arrived, but CUDA leaves that undefined, so we report it (census) instead.
  if (g.at_barrier == g.live && g.done == 0 && !g.barrier_mixed) {
    if (g_tracing) access_epoch_end(); // everything before this barrier happens before everything after it
    int count = 0;
    for (unsigned k = 0; k < g.nthreads; k++) {
      Fiber *f = g.run[k];
      count += f->pred;
      f->state = F_RUN;
    }
    g.barrier_result = count;
    g.at_barrier = 0;
    if (g.run[0] != self) fiber_switch(self, g.run[0]);
  } else {
    switch_next(self);
  }
  switch (op) {
  case LLMC_B_COUNT: return g.barrier_result;
  case LLMC_B_AND: return g.barrier_result == (int)g.nthreads;
  case LLMC_B_OR: return g.barrier_result != 0;
  default: return 0;
  }
}

static int op_class(int kind) {
  return kind < LLMC_W_BALLOT ? 1 : kind < LLMC_W_SYNCWARP ? 2 : kind < LLMC_W_ACTIVEMASK ? 3 : 4;
}

// Where a shuffle of lane `lane` reads from, as CUDA defines it for each variant (width splits the warp
// into segments; a source outside the lane's segment means "keep your own value").
static unsigned shfl_source(const Fiber *f) {
  unsigned width = (unsigned)f->width;
  if (width == 0 || width > 32 || (width & (width - 1))) width = 32;
  unsigned lane = f->lane, seg = lane & ~(width - 1), arg = (unsigned)f->arg;
  switch (f->op) {
  case LLMC_W_SHFL_IDX: return seg + (arg & (width - 1));
  case LLMC_W_SHFL_UP: return (int)(lane - seg) - (int)arg < 0 ? lane : lane - arg;
  case LLMC_W_SHFL_DOWN: return (lane - seg) + arg >= width ? lane : lane + arg;
  default: { // xor: lanes of earlier segments are readable, later ones are not
    unsigned src = lane ^ arg;
    return src >= seg + width ? lane : src;
  }
  }
}

// Every lane in `mask` waits with the same mask and the same kind of operation: complete it.
static bool try_complete(unsigned w, unsigned mask, int cls) {
  Warp &W = g.warps[w];
  if ((W.arrived & mask) != mask) return false;
  Fiber *lanes[32];
  for (unsigned j = 0; j < 32; j++) {
    lanes[j] = 0;
    if (!(mask >> j & 1)) continue;
    Fiber *f = g.by_linear[w * 32 + j];
    if (f->state != F_WARP || f->mask != mask || op_class(f->op) != cls) return false;
    lanes[j] = f;
  }
  if (g_tracing) access_warp_sync(w, mask); // the lanes of mask are ordered here (not by lockstep)
  unsigned ballot = 0;
  for (unsigned j = 0; j < 32; j++)
    if (lanes[j] && lanes[j]->value) ballot |= 1u << j;
  for (unsigned j = 0; j < 32; j++) {
    Fiber *f = lanes[j];
    if (!f) continue;
    switch (f->op) {
    case LLMC_W_BALLOT: f->result = ballot; break;
    case LLMC_W_ANY: f->result = ballot != 0; break;
    case LLMC_W_ALL: f->result = ballot == mask; break;
    case LLMC_W_SYNCWARP: f->result = 0; break;
    default: {
      unsigned src = shfl_source(f);
      // Reading a lane that does not take part is undefined in CUDA; we give the lane its own value.
      f->result = (src < 32 && lanes[src]) ? lanes[src]->value : f->value;
    }
    }
    f->state = F_RUN;
  }
  W.arrived &= ~mask;
  return true;
}

// __activemask(): when no lane of the warp can run any more, the lanes waiting at one __activemask() call
// (same line) learn each other; lanes elsewhere (returned, at a barrier or shuffle) are not active there.
void warp_settle(unsigned w) {
  Warp &W = g.warps[w];
  if (!W.at_activemask) return;
  Fiber *lanes[32];
  for (unsigned j = 0; j < 32; j++) {
    unsigned l = w * 32 + j;
    lanes[j] = l < g.nthreads ? g.by_linear[l] : 0;
    if (lanes[j] && lanes[j]->state == F_RUN) return; // it may still come here
  }
  while (W.at_activemask) {
    unsigned first = (unsigned)__builtin_ctz(W.at_activemask), group = 0;
    int line = lanes[first]->line;
    for (unsigned j = 0; j < 32; j++)
      if ((W.at_activemask >> j & 1) && lanes[j]->line == line) group |= 1u << j;
    for (unsigned j = 0; j < 32; j++)
      if (group >> j & 1) {
        lanes[j]->result = group;
        lanes[j]->state = F_RUN;
      }
    W.at_activemask &= ~group;
  }
}

uint64_t hook_warp(int kind, unsigned mask, uint64_t value, int arg, int width, int line) {
  Fiber *self = g_cur;
  if (!g.fibers) escape(LLMC_E_INTERNAL, LLMC_T_INTERNAL, line, "a warp operation ran on the fast path");
  if (g_tracing) access_finalize();
  if (kind == LLMC_W_ACTIVEMASK) {
    self->state = F_WARP;
    self->op = kind;
    self->line = line;
    g.warps[self->warp].at_activemask |= 1u << self->lane;
    warp_settle(self->warp);
    if (self->state != F_RUN) switch_next(self);
    return self->result;
  }
  if (!(mask >> self->lane & 1))
    escape(LLMC_E_TRAP, LLMC_T_BAD_MASK, line,
           "the mask 0x%08x of this warp operation does not include the calling thread (lane %u of warp %u): "
           "every thread that calls a *_sync function must be named in its mask", mask, self->lane, self->warp);
  self->state = F_WARP;
  self->op = kind;
  self->mask = mask;
  self->value = value;
  self->arg = arg;
  self->width = width;
  self->line = line;
  g.warps[self->warp].arrived |= 1u << self->lane;
  if (!try_complete(self->warp, mask, op_class(kind))) {
    warp_settle(self->warp);
    switch_next(self);
  }
  return self->result;
}

unsigned hook_activemask() { // kept for the hook table; __activemask() goes through hook_warp
  unsigned w = g_cur ? g_cur->warp : 0, lanes = g.nthreads - w * 32;
  return lanes >= 32 ? 0xffffffffu : (1u << lanes) - 1u;
}

} // namespace rt
