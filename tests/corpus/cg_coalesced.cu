// Stream compaction with warp-aggregated atomics, a cooperative-groups idiom: the threads that take the
// branch form a coalesced group; its first member reserves room for all of them with one atomicAdd, the
// others learn the base through a shuffle and write at base + their rank. The output order depends on the
// order in which warps reach the atomic, so only the set of values is defined.
#include <cooperative_groups.h>
#include <cooperative_groups/reduce.h>
namespace cg = cooperative_groups;

extern "C" __global__ void compact_positive(int* out, int* count, int* warp_sums, const int* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && in[i] > 0) {
        cg::coalesced_group active = cg::coalesced_threads();
        int base = 0;
        if (active.thread_rank() == 0) base = atomicAdd(count, (int)active.size());
        base = active.shfl(base, 0);
        out[base + active.thread_rank()] = in[i];
        warp_sums[i] = cg::reduce(active, in[i], cg::plus<int>());
    }
}
