// Softmax over the rows of a matrix, one block per row, with a block-wide reduction built from
// cooperative groups: each warp-sized tile reduces with cg::reduce, tile leaders meet in shared memory,
// and every tile reduces those partials again, so that every thread gets the result.
#include <cooperative_groups.h>
#include <cooperative_groups/reduce.h>
namespace cg = cooperative_groups;

template <class Op>
__device__ float block_reduce(float v, Op op, float identity, float* scratch) {
    cg::thread_block block = cg::this_thread_block();
    auto warp = cg::tiled_partition<32>(block);
    v = cg::reduce(warp, v, op);
    if (warp.thread_rank() == 0) scratch[warp.meta_group_rank()] = v;
    block.sync();
    float partial = warp.thread_rank() < warp.meta_group_size() ? scratch[warp.thread_rank()] : identity;
    float result = cg::reduce(warp, partial, op);
    cg::sync(block);                                // scratch is reused by the next call
    return result;
}

extern "C" __global__ void softmax_forward(float* out, const float* inp, int N, int C) {
    __shared__ float scratch[32];
    const float* x = inp + (size_t)blockIdx.x * C;
    float* y = out + (size_t)blockIdx.x * C;
    float maxval = -INFINITY;
    for (int i = threadIdx.x; i < C; i += blockDim.x) maxval = fmaxf(maxval, x[i]);
    maxval = block_reduce(maxval, cg::greater<float>(), -INFINITY, scratch);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) sum += expf(x[i] - maxval);
    sum = block_reduce(sum, cg::plus<float>(), 0.0f, scratch);
    float norm = 1.0f / sum;
    for (int i = threadIdx.x; i < C; i += blockDim.x) y[i] = expf(x[i] - maxval) * norm;
}
