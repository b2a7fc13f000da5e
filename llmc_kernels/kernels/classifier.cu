// The fused classifier (as llm.c's fused_classifier): softmax, cross-entropy loss and the logits' gradient
// of one row in one kernel, the gradient written over the logits, so no [B,T,Vp] probs tensor exists.
//
// For row r with target y, logits x (columns < V) and upstream gradient g = dlosses[r]:
//   m = max_c x_c,   s = sum_c exp(x_c - m)                  (online: one read of the row)
//   losses[r] = -log p_y = (m + log s) - x_y                  (no log of a tiny rounded p_y)
//   x_c <- (exp(x_c - m) / s - [c == y]) * g     for c < V,   x_c <- 0 for V <= c < Vp
//
// One block per row; block size a power of two <= 32 or a multiple of 32. The helpers are those of
// softmax.cu (each .cu file compiles alone).

#define FULL_MASK 0xffffffffu

__device__ __forceinline__ unsigned live_mask() {
    return blockDim.x >= 32 ? FULL_MASK : ((1u << blockDim.x) - 1u);
}

__device__ __forceinline__ void online_add(float& m, float& s, float x) {
    if (x > m) { s = s * expf(m - x) + 1.0f; m = x; }
    else       { s += expf(x - m); }
}

__device__ __forceinline__ void online_combine(float& m, float& s, float m2, float s2) {
    float mn = fmaxf(m, m2);
    s = s * expf(m - mn) + s2 * expf(m2 - mn);
    m = mn;
}

__device__ void block_online_reduce(float& m, float& s, float* shm) {
    int lanes = blockDim.x < 32 ? blockDim.x : 32;
    unsigned mask = live_mask();
    for (int off = lanes / 2; off > 0; off /= 2) {
        float m2 = __shfl_xor_sync(mask, m, off);
        float s2 = __shfl_xor_sync(mask, s, off);
        online_combine(m, s, m2, s2);
    }
    if (blockDim.x > 32) {
        int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
        if (lane == 0) { shm[warp] = m; shm[32 + warp] = s; }
        __syncthreads();
        m = lane < nwarps ? shm[lane] : -FLT_MAX;
        s = lane < nwarps ? shm[32 + lane] : 0.0f;
        for (int off = 16; off > 0; off /= 2) {
            float m2 = __shfl_xor_sync(FULL_MASK, m, off);
            float s2 = __shfl_xor_sync(FULL_MASK, s, off);
            online_combine(m, s, m2, s2);
        }
    }
}

// grid = N = B*T rows. dloss is dlosses[r] when has_dlosses, else dloss_default (1/(B*T), a mean loss;
// dlosses is then any valid array and never read). vec = 1 when rows start 16-byte aligned.
extern "C" __global__ void fused_classifier_kernel(float* logits, float* losses, const float* dlosses,
                                                   const int* targets, int N, int V, int Vp,
                                                   int has_dlosses, float dloss_default, int vec) {
    __shared__ float shm[64];
    int r = blockIdx.x;
    float* x = logits + (size_t)r * Vp;
    int y = targets[r];
    bool y_ok = y >= 0 && y < V;                 // a bad target poisons the row with NaN (no bad read)
    float xy = (threadIdx.x == 0 && y_ok) ? x[y] : 0.0f;   // read before anyone overwrites the row

    // pass 1: online (m, s), walking from the row's end so its beginning is freshest in L2 for pass 2
    float m = -FLT_MAX, s = 0.0f;
    int V4 = vec ? V / 4 : 0;
    for (int c = V - 1 - (int)threadIdx.x; c >= 4 * V4; c -= blockDim.x) online_add(m, s, x[c]);
    for (int i = V4 - 1 - (int)threadIdx.x; i >= 0; i -= blockDim.x) {
        float4 v = reinterpret_cast<const float4*>(x)[i];
        online_add(m, s, v.x); online_add(m, s, v.y); online_add(m, s, v.z); online_add(m, s, v.w);
    }
    block_online_reduce(m, s, shm);
    // Every thread has finished reading the logits (x_y included) before any thread writes over them.
    __syncthreads();

    float g = has_dlosses ? dlosses[r] : dloss_default;
    if (!y_ok) g = NAN;
    if (threadIdx.x == 0) losses[r] = y_ok ? (m + logf(s)) - xy : NAN;
    float inv = 1.0f / s;

    // pass 2: the gradient in place
    if (vec) {
        for (int i = threadIdx.x; i < Vp / 4; i += blockDim.x) {
            float4 v = reinterpret_cast<float4*>(x)[i];
            int c = 4 * i;
            v.x = c + 0 < V ? (expf(v.x - m) * inv - (c + 0 == y ? 1.0f : 0.0f)) * g : 0.0f;
            v.y = c + 1 < V ? (expf(v.y - m) * inv - (c + 1 == y ? 1.0f : 0.0f)) * g : 0.0f;
            v.z = c + 2 < V ? (expf(v.z - m) * inv - (c + 2 == y ? 1.0f : 0.0f)) * g : 0.0f;
            v.w = c + 3 < V ? (expf(v.w - m) * inv - (c + 3 == y ? 1.0f : 0.0f)) * g : 0.0f;
            reinterpret_cast<float4*>(x)[i] = v;
        }
    } else {
        for (int c = threadIdx.x; c < Vp; c += blockDim.x) {
            x[c] = c < V ? (expf(x[c] - m) * inv - (c == y ? 1.0f : 0.0f)) * g : 0.0f;
        }
    }
}
