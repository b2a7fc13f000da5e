// LayerNorm over the last axis: N = B*T rows of C channels.
//
//   forward, per row x:
//     mean  = (1/C) sum_i x_i
//     var   = (1/C) sum_i (x_i - mean)^2          biased; two passes, so no E[x^2]-E[x]^2 cancellation
//     rstd  = 1 / sqrt(var + 1e-5)
//     n_i   = (x_i - mean) * rstd                  the normalized input
//     out_i = n_i * weight_i + bias_i              (mean and rstd are saved for the backward)
//
//   backward, per row, with g_i = weight_i * dout_i (the gradient reaching n_i):
//     dbias_i   += dout_i                          (summed over all rows)
//     dweight_i += n_i * dout_i                    (summed over all rows)
//     dinp_i    += rstd * (g_i - mean_j(g_j) - n_i * mean_j(g_j * n_j))
//   the last line is d/dx of n through both the mean and the rstd; the two means are row reductions.
//
// A group of `lanes` threads per row (a power of two, 1..32, chosen by the wrapper): the lanes stride over
// the row (lane, lane+lanes, ...: coalesced loads) and combine partial sums with butterfly shuffles inside
// the group, so no shared memory and no barrier is needed for a row. GPT-2 (C = 768) uses a full warp per
// row; narrow rows use fewer lanes (8 for C = 64), so each lane still has ~8 elements and a warp works on
// several rows at once with fewer shuffle steps. A row's 4*C bytes are read again in the later passes;
// they are still in L1/L2 (8 rows of GPT-2 are 24 KiB), so DRAM sees each row once.
//
// Warp shuffles need all 32 lanes of the warp, so every lane of a warp makes the same number of trips
// through the row loop: the trip count follows the warp's first group, and a group whose row is past
// the end computes on zeros and writes nothing.

#define LN_EPS 1e-5f

// Sum over the `lanes` threads of one group (xor butterfly: log2(lanes) steps; lanes = 1: no step); every
// lane of the group gets the total. xor with offsets < lanes never leaves the group, as groups are
// aligned to multiples of lanes within the warp.
__device__ float group_sum(float v, int lanes) {
    for (int offset = lanes / 2; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

// Block: a multiple of 32 threads; grid-stride over rows, so any grid is correct.
extern "C" __global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                                    const float* weight, const float* bias, int N, int C,
                                                    int lanes) {
    int lane = threadIdx.x % lanes;
    int groups_per_block = blockDim.x / lanes;
    int group = blockIdx.x * groups_per_block + threadIdx.x / lanes;
    int warp_first = group - (threadIdx.x % 32) / lanes;          // the warp's first group
    int stride = gridDim.x * groups_per_block;
    for (int first = warp_first; first < N; first += stride) {
        int row = group + (first - warp_first);
        int n = row < N ? C : 0;                                  // past the end: an empty row
        size_t off = (size_t)(row < N ? row : 0) * C;
        const float* x = inp + off;
        // pass 1: mean
        float sum = 0.0f;
        for (int i = lane; i < n; i += lanes) {
            sum += x[i];
        }
        float m = group_sum(sum, lanes) / C;
        // pass 2: variance about the mean (the row is cached now)
        float sq = 0.0f;
        for (int i = lane; i < n; i += lanes) {
            float d = x[i] - m;
            sq += d * d;
        }
        float s = 1.0f / sqrtf(group_sum(sq, lanes) / C + LN_EPS);
        // pass 3: normalize, scale, shift
        float* o = out + off;
        for (int i = lane; i < n; i += lanes) {
            o[i] = (x[i] - m) * s * weight[i] + bias[i];
        }
        if (lane == 0 && row < N) {
            mean[row] = m;
            rstd[row] = s;
        }
    }
}

// One row of the backward, for one group of `lanes` threads: dinp += ..., and the row's dbias/dweight
// terms added into acc_dbias/acc_dweight (this block's shared-memory partial sums, or the global
// gradients). n = C for a real row, 0 for a group past the end (it only joins the shuffles).
__device__ void layernorm_backward_row(float* dinp, float* acc_dbias, float* acc_dweight, const float* dout,
                                       const float* inp, const float* weight, float m, float s, int n, int C,
                                       int lane, int lanes) {
    // pass 1: the two row means mean(g) and mean(g * n)
    float g_sum = 0.0f;
    float gn_sum = 0.0f;
    for (int i = lane; i < n; i += lanes) {
        float nrm = (inp[i] - m) * s;
        float g = weight[i] * dout[i];
        g_sum += g;
        gn_sum += g * nrm;
    }
    float g_mean = group_sum(g_sum, lanes) / C;
    float gn_mean = group_sum(gn_sum, lanes) / C;
    // pass 2: the input gradient, and this row's share of the parameter gradients
    for (int i = lane; i < n; i += lanes) {
        float nrm = (inp[i] - m) * s;
        float d = dout[i];
        float g = weight[i] * d;
        atomicAdd(&acc_dbias[i], d);
        atomicAdd(&acc_dweight[i], nrm * d);
        dinp[i] += s * (g - g_mean - nrm * gn_mean);
    }
}

// Backward with per-block partial sums: dynamic shared memory holds [dbias | dweight] (2*C floats).
// Groups of the block add their rows into it with shared-memory atomics (cheap, on-chip), then the block
// adds its partials to the global gradients: 2*C global atomics per block instead of per row. The grid
// is at most what is resident on the GPU, so each block handles many rows.
extern "C" __global__ void layernorm_backward_kernel(float* dinp, float* dweight, float* dbias, const float* dout,
                                                     const float* inp, const float* weight, const float* mean,
                                                     const float* rstd, int N, int C, int lanes) {
    extern __shared__ float partial[];
    float* dbias_part = partial;
    float* dweight_part = partial + C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        dbias_part[i] = 0.0f;
        dweight_part[i] = 0.0f;
    }
    __syncthreads();   // partials zeroed before any group adds into them
    int lane = threadIdx.x % lanes;
    int groups_per_block = blockDim.x / lanes;
    int group = blockIdx.x * groups_per_block + threadIdx.x / lanes;
    int warp_first = group - (threadIdx.x % 32) / lanes;
    int stride = gridDim.x * groups_per_block;
    for (int first = warp_first; first < N; first += stride) {
        int row = group + (first - warp_first);
        int r = row < N ? row : 0;
        size_t off = (size_t)r * C;
        layernorm_backward_row(dinp + off, dbias_part, dweight_part, dout + off, inp + off, weight, mean[r],
                               rstd[r], row < N ? C : 0, C, lane, lanes);
    }
    __syncthreads();   // every group's rows are in the partials
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        atomicAdd(&dbias[i], dbias_part[i]);
        atomicAdd(&dweight[i], dweight_part[i]);
    }
}

// Fallback for rows too wide for the partials to fit in shared memory (2*C*4 bytes > 48 KiB, C > 6144):
// the same rows, adding straight into the global gradients.
extern "C" __global__ void layernorm_backward_global_kernel(float* dinp, float* dweight, float* dbias,
                                                            const float* dout, const float* inp,
                                                            const float* weight, const float* mean,
                                                            const float* rstd, int N, int C, int lanes) {
    int lane = threadIdx.x % lanes;
    int groups_per_block = blockDim.x / lanes;
    int group = blockIdx.x * groups_per_block + threadIdx.x / lanes;
    int warp_first = group - (threadIdx.x % 32) / lanes;
    int stride = gridDim.x * groups_per_block;
    for (int first = warp_first; first < N; first += stride) {
        int row = group + (first - warp_first);
        int r = row < N ? row : 0;
        size_t off = (size_t)r * C;
        layernorm_backward_row(dinp + off, dbias, dweight, dout + off, inp + off, weight, mean[r], rstd[r],
                               row < N ? C : 0, C, lane, lanes);
    }
}
