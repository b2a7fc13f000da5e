// Softmax over the vocabulary: probs[r, :] = softmax(logits[r, :V]), columns V..Vp-1 of probs get 0.
//
//   m = max_c x_c,   s = sum_c exp(x_c - m),   p_c = exp(x_c - m) / s        (c < V)
//
// One block per row. Each thread keeps an *online* pair (m, s) over its strided columns (one pass reads
// every logit once): on a new element x, if x > m the old sum is rescaled by exp(m - x) before adding 1,
// else exp(x - m) is added. Two pairs combine the same way:
//   m = max(m1, m2),   s = s1 exp(m1 - m) + s2 exp(m2 - m).
// The pairs of a block meet through warp shuffles, then shared memory across warps. A second pass writes
// the probabilities. Block size: a power of two <= 32 or a multiple of 32 (the wrapper picks it).

#define FULL_MASK 0xffffffffu

// Lanes of this warp that exist: the whole warp, or the first blockDim.x lanes of a smaller block.
__device__ __forceinline__ unsigned live_mask() {
    return blockDim.x >= 32 ? FULL_MASK : ((1u << blockDim.x) - 1u);
}

__device__ __forceinline__ void online_add(float& m, float& s, float x) {
    if (x > m) { s = s * expf(m - x) + 1.0f; m = x; }
    else       { s += expf(x - m); }
}

__device__ __forceinline__ void online_combine(float& m, float& s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    s = s * expf(m - mn) + s2 * expf(m2 - mn);   // m starts at -FLT_MAX (not -inf): never inf - inf
    m = mn;
}

// Reduce the (m, s) pairs of the whole block; every thread gets the block's pair. shm holds 64 floats.
__device__ void block_online_reduce(float& m, float& s, float* shm) {
    int lanes = blockDim.x < 32 ? blockDim.x : 32;
    unsigned mask = live_mask();
    for (int off = lanes / 2; off > 0; off /= 2) {
        float m2 = __shfl_xor_sync(mask, m, off);
        float s2 = __shfl_xor_sync(mask, s, off);
        online_combine(m, s, m2, s2);
    }
    if (blockDim.x > 32) {                       // uniform: the whole block takes this branch or none
        int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
        if (lane == 0) { shm[warp] = m; shm[32 + warp] = s; }
        __syncthreads();
        m = lane < nwarps ? shm[lane] : -FLT_MAX;
        s = lane < nwarps ? shm[32 + lane] : 0.0f;
        for (int off = 16; off > 0; off /= 2) {  // every warp reduces the warp totals: no second barrier
            float m2 = __shfl_xor_sync(FULL_MASK, m, off);
            float s2 = __shfl_xor_sync(FULL_MASK, s, off);
            online_combine(m, s, m2, s2);
        }
    }
}

// grid = N = B*T rows, block = see above. vec = 1 when rows start 16-byte aligned (Vp % 4 == 0 and an
// aligned base), so columns can be read and written as float4: four floats per memory instruction.
extern "C" __global__ void softmax_forward_kernel(float* probs, const float* logits, int N, int V, int Vp,
                                                  int vec) {
    __shared__ float shm[64];
    int row = blockIdx.x;
    const float* x = logits + (size_t)row * Vp;
    float* p = probs + (size_t)row * Vp;

    // pass 1: online statistics. Threads walk the row from its end, so the row's beginning is the most
    // recently read (still in L2) when pass 2 starts there.
    float m = -FLT_MAX, s = 0.0f;
    int V4 = vec ? V / 4 : 0;                    // whole float4 groups below V; the rest one by one
    for (int c = V - 1 - (int)threadIdx.x; c >= 4 * V4; c -= blockDim.x) online_add(m, s, x[c]);
    for (int i = V4 - 1 - (int)threadIdx.x; i >= 0; i -= blockDim.x) {
        float4 v = reinterpret_cast<const float4*>(x)[i];
        online_add(m, s, v.x); online_add(m, s, v.y); online_add(m, s, v.z); online_add(m, s, v.w);
    }
    block_online_reduce(m, s, shm);
    float inv = 1.0f / s;

    // pass 2: probabilities, and 0 in the padded columns.
    if (vec) {
        for (int i = threadIdx.x; i < Vp / 4; i += blockDim.x) {
            float4 v = reinterpret_cast<const float4*>(x)[i];
            int c = 4 * i;
            float4 o;
            o.x = c + 0 < V ? expf(v.x - m) * inv : 0.0f;
            o.y = c + 1 < V ? expf(v.y - m) * inv : 0.0f;
            o.z = c + 2 < V ? expf(v.z - m) * inv : 0.0f;
            o.w = c + 3 < V ? expf(v.w - m) * inv : 0.0f;
            reinterpret_cast<float4*>(p)[i] = o;
        }
    } else {
        for (int c = threadIdx.x; c < Vp; c += blockDim.x) p[c] = c < V ? expf(x[c] - m) * inv : 0.0f;
    }
}
