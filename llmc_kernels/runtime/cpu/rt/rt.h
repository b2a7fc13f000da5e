// Internal declarations of the CPU backend's runtime library (one shared library, built once and cached).
//
// One launch runs at a time (Python holds a lock), on the calling OS thread: blocks one after another, the
// threads of a block as cooperative fibers that switch only at barriers and warp operations (or, for
// kernels without either, as a plain loop). Errors fill the launch's llmc_error and jump back to llmc_run.
#ifndef LLMC_RT_H
#define LLMC_RT_H

#include <setjmp.h>
#include <stdint.h>

#include "../include/llmc_abi.h"

#define RT_EXPORT extern "C" __attribute__((visibility("default")))
#define MAX_THREADS 1024
#define MAX_WARPS (MAX_THREADS / 32)
#define SHARED_LIMIT (48 * 1024)

namespace rt {

enum State { F_RUN, F_BAR, F_WARP, F_DONE };

// A CUDA thread. Lives at the base of its stack slot, so kernel code finds `c` by masking the stack pointer.
struct Fiber {
  llmc_ctx c;
  void *sp;           // saved stack pointer while switched out
  int state;
  unsigned linear;    // x + y*bx + z*bx*by
  unsigned lane, warp;
  unsigned pos;       // place in this block's run order
  int line;           // where it waits
  int op;             // barrier op, or warp-operation kind
  unsigned mask;      // warp operation's mask
  int arg, width, pred;
  uint64_t value, result;
};

struct Warp { unsigned arrived; unsigned exists; unsigned at_activemask; };

struct Launch {
  const llmc_launch_desc *d;
  llmc_error *err;
  llmc_launch L;            // what kernel code sees
  uint64_t nblocks, blocks_done;
  unsigned nthreads, nwarps;
  bool fibers;              // false: the fast path (plain loops)
  // the block in flight (fiber path)
  Fiber *run[MAX_THREADS];  // by position in the run order
  Fiber *by_linear[MAX_THREADS];
  Warp warps[MAX_WARPS];
  unsigned live, done, at_barrier;
  int barrier_line;
  bool barrier_mixed;
  int barrier_result;
  // schedule
  llmc_dim tids[MAX_THREADS];
  unsigned order[MAX_THREADS];
};

extern Launch g;
extern Fiber *g_cur;        // the fiber running now (the runner on the fast path)
extern Fiber *g_runner;     // slot 0: runs the block loop, and the fast path's threads
extern sigjmp_buf g_escape; // back to llmc_run

// fiber.cpp
bool fibers_reserve(unsigned nslots);   // stack slots 0..nslots-1 (0 is the runner)
Fiber *fiber_slot(unsigned i);
void fiber_prepare(Fiber *f, void (*entry)());
void fiber_switch(Fiber *from, Fiber *to);
void fiber_enter(Fiber *f);     // from the caller's stack
void fiber_leave(Fiber *from);  // back to it
bool is_stack_guard(const void *addr);
size_t stack_bytes_usable();

// sched.cpp
void run_block_fibers();
int hook_sync(int op, int pred, int line);
uint64_t hook_warp(int kind, unsigned mask, uint64_t value, int arg, int width, int line);
unsigned hook_activemask();
void warp_settle(unsigned w);   // a lane of warp w stopped running: complete its __activemask() waiters

// census.cpp: the deadlock report (never returns)
[[noreturn]] void report_deadlock();

// launch.cpp: error reporting
void fill_where(llmc_error *e);
[[noreturn]] void escape(int kind, int sub, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
const char *shared_name_at(const void *p, const char **kind_out, uint64_t *size_out);
const char *shared_array_at(const void *p, uintptr_t *lo); // a static __shared__ array's name and start
int64_t shared_offset(const void *p); // shared memory: arena offset, SHARED_LIMIT + dynamic offset; else -1
int global_region_of(const void *p, uintptr_t *lo = 0); // the argument whose array holds p, else -1

// faults.cpp
bool faults_install(double timeout_s);
void faults_restore();
extern volatile int g_in_launch;

// a little string builder for messages
struct Text {
  char *buf;
  unsigned cap, len;
  void add(const char *fmt, ...) __attribute__((format(printf, 2, 3)));
};

} // namespace rt

#endif
