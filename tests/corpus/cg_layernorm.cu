// Layer norm forward with one warp per row, written the way llm.c's dev/cuda kernels write it with
// cooperative groups: the lanes of a 32-thread tile stride over the row, cg::reduce combines their partial
// sums, and lane 0 writes the row's statistics with streaming stores.
#include <cooperative_groups.h>
#include <cooperative_groups/reduce.h>
namespace cg = cooperative_groups;

extern "C" __global__ void layernorm_forward(float* __restrict__ out, float* __restrict__ mean,
                                             float* __restrict__ rstd, const float* __restrict__ inp,
                                             const float* __restrict__ weight, const float* __restrict__ bias,
                                             int N, int C) {
    cg::thread_block block = cg::this_thread_block();
    cg::thread_block_tile<32> warp = cg::tiled_partition<32>(block);
    int row = blockIdx.x * warp.meta_group_size() + warp.meta_group_rank();
    if (row >= N) return;                           // a whole warp leaves together

    const float* x = inp + (size_t)row * C;
    float sum = 0.0f;
    for (int i = warp.thread_rank(); i < C; i += warp.size()) sum += x[i];
    float m = cg::reduce(warp, sum, cg::plus<float>{}) / C;

    float sq = 0.0f;
    for (int i = warp.thread_rank(); i < C; i += warp.size()) {
        float d = __ldcs(x + i) - m;
        sq += d * d;
    }
    float s = rsqrtf(cg::reduce(warp, sq, cg::plus<float>{}) / C + 1e-5f);
    if (warp.thread_rank() == 0) {
        __stcs(mean + row, m);
        __stcs(rstd + row, s);
    }
    float* o = out + (size_t)row * C;
    for (int c = warp.thread_rank(); c < C; c += warp.size()) {
        __stcs(o + c, s * (x[c] - m) * weight[c] + bias[c]);
    }
}
