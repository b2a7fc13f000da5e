// Warp-level primitives with explicit masks: a full-warp sum with shuffles down, sums over each half warp
// (16-lane masks and width), a broadcast, an inclusive scan within groups of 8 lanes with shfl_up, and
// votes (ballot, any, all, popc). One row of 8 results per warp.
extern "C" __global__ void warp_ops(float* warp_out, float* lane_out, const float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x % warpSize;
    int warp = i / warpSize;
    float v = i < n ? x[i] : 0.0f;

    float total = v;
    for (int offset = 16; offset > 0; offset /= 2) total += __shfl_down_sync(0xffffffffu, total, offset);

    unsigned half_mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
    float half_sum = v;
    for (int offset = 8; offset > 0; offset /= 2) half_sum += __shfl_xor_sync(half_mask, half_sum, offset, 16);

    float first = __shfl_sync(0xffffffffu, v, 0);
    float scan = v;
    for (int offset = 1; offset < 8; offset *= 2) {
        float up = __shfl_up_sync(0xffffffffu, scan, offset, 8);
        if (lane % 8 >= offset) scan += up;
    }
    unsigned positive = __ballot_sync(0xffffffffu, v > 0.0f);
    int any_big = __any_sync(0xffffffffu, v > 0.9f);
    int all_small = __all_sync(0xffffffffu, fabsf(v) < 0.99f);

    if (i < n) {
        lane_out[2 * i] = half_sum;
        lane_out[2 * i + 1] = scan;
    }
    if (lane == 0) {
        float* w = warp_out + 8 * warp;
        w[0] = total;
        w[1] = first;
        w[2] = (float)__popc(positive);
        w[3] = (float)(positive & 0xffu);
        w[4] = (float)any_big;
        w[5] = (float)all_small;
        w[6] = (float)__ffs(positive);
        w[7] = (float)__clz(positive);
    }
}
