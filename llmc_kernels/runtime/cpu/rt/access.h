// The access-event layer: what a traced launch (llmc_launch_desc.trace) tells its analyses.
//
// Every load, store, update (+=, ++) and atomic of global or shared memory that a CUDA thread makes through
// a checked pointer, a __shared__ array or an atomic function becomes one Access, recorded in execution
// order. The layer cuts the record into epochs: one epoch is what one block does between two
// __syncthreads() (or from its start, or to its end), so within an epoch only a thread's own program order
// and warp synchronisation order accesses. At the end of each epoch every consumer sees that epoch's
// accesses at once, which makes an analysis independent of the order in which the CPU happened to run the
// fibers (forward, reverse, shuffled): the same set of accesses arrives under every schedule.
//
// Consumers: the race detector (race.cpp) and the memory counters (counters.cpp), for which a warp-level
// request is the accesses of one warp's lanes executing the same line for the same n-th time in one epoch.
#ifndef LLMC_RT_ACCESS_H
#define LLMC_RT_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include <vector>

namespace rt {

enum Space : uint8_t { SP_GLOBAL = 0, SP_SHARED = 1 };

struct Access {
  uintptr_t addr;
  uint64_t offset;  // bytes from the start of the argument's array; shared: of the block's shared memory
                    // (static __shared__ arrays from 0, dynamic shared memory from SHARED_LIMIT)
  uint64_t value;   // LLMC_A_STORE: the bytes stored (up to 8; a hash of 16), read right after the store
  uint32_t size;    // bytes
  int32_t line;     // the learner's line (a #line-mapped file line): the access's site
  uint32_t seq;     // this thread's access number within the epoch: its program order
  uint32_t vc;      // the thread's warp-clock snapshot at the access (Epoch::vct)
  int32_t region;   // argument position (global), LLMC_R_STATIC_SHARED or LLMC_R_DYN_SHARED
  uint16_t thread;  // linear thread id within the block (x + y*bx + z*bx*by); lane = thread & 31
  uint8_t kind;     // LLMC_A_LOAD, LLMC_A_STORE, LLMC_A_UPDATE (load then store), LLMC_A_ATOMIC
  uint8_t space;    // Space
};

struct Epoch {
  uint64_t block;        // linear block id (x + y*gx + z*gx*gy)
  uint32_t index;        // __syncthreads() passed so far by this block
  bool last;             // the block's last epoch
  const Access *ev;      // the epoch's accesses, each thread's in its program order
  size_t n;
  // Warp clocks (vector clocks of the lanes of each warp, joined at every __syncwarp, shuffle or vote):
  // snapshot s is vct[32*s .. 32*s+31]; snapshot 0 is all zeros. An access x happens before an access y of
  // another lane of the same warp in this epoch iff vct[32*y.vc + lane(x)] > vct[32*x.vc + lane(x)].
  const uint32_t *vct;
};

// An analysis fed by the layer. Callbacks may report an error (escape(): the launch stops there).
struct Consumer {
  void (*launch_begin)();
  void (*epoch)(const Epoch &e);
  // an atomic as it happens (execution order matters for release/acquire); fenced: the thread executed a
  // __threadfence() before it
  void (*atomic)(const Access &a, uint64_t block, uint32_t epoch, bool fenced);
  void (*launch_end)();  // after the last block (not after an error); may report one
  void (*release)();     // free this launch's state (always called, also after an error)
};

// access.cpp: the recording side (called by the hooks, the scheduler and the launch loop)
extern bool g_tracing;
void access_launch_begin(unsigned trace);
void access_block_begin(uint64_t block);
void access_block_end();
void access_launch_end();
void access_release();
void access_finalize();                        // capture the value of the running thread's last store
void access_epoch_end();                       // a barrier released the block
void access_warp_sync(unsigned warp, unsigned mask);
void h_access(const void *addr, uint32_t size, int kind, int line);
void h_fence(int line);

// race.cpp
extern Consumer race_detector;
// counters.cpp
extern Consumer memory_counters;

} // namespace rt

#endif
