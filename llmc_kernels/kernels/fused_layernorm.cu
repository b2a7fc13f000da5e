// Residual + bias + LayerNorm in one kernel: where one transformer block ends and the next begins.
//
//   x       = inp1 + inp2 + bias2         the residual stream plus a block's projection and that projection's bias
//   res_out = x                           kept: the next block's residual, and this layernorm's backward input
//   mean    = (1/C) sum_i x_i,   rstd = 1 / sqrt((1/C) sum_i (x_i - mean)^2 + 1e-5)     (saved, as layernorm)
//   out_i   = (x_i - mean) * rstd * weight_i + bias_i
//
// has_inp2 = 0 normalises inp1 alone (the first layer's ln1 of the embeddings) and leaves res_out alone.
// Unfused, the model runs a bias add (1 read, 1 write of [N,C]), residual_forward (2 reads, 1 write) and
// layernorm_forward (1 read, 1 write); here it is 2 reads and 2 writes (the row's second and third reads
// hit the cache: a row is 3 KiB for GPT-2).
//
// A group of `lanes` threads per row (a warp on the GPU, 1 thread on the CPU backend), lanes striding over
// the row, sums combined with xor shuffles inside the group; grid-stride over rows, every lane of a warp
// making the same trips (a group past the end works on an empty row) so shuffles always see the whole warp.
// vec = 1: C % 4 == 0 and all row arrays 16-byte aligned: float4 accesses.

#define LN_EPS 1e-5f

__device__ __forceinline__ float fln_group_sum(float v, int lanes) {
    for (int offset = lanes / 2; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

extern "C" __global__ void residual_layernorm_forward_kernel(float* res_out, float* out, float* mean, float* rstd,
                                                             const float* inp1, const float* inp2,
                                                             const float* bias2, const float* weight,
                                                             const float* bias, int N, int C, int has_inp2,
                                                             int lanes, int vec) {
    int lane = threadIdx.x % lanes;
    int groups_per_block = blockDim.x / lanes;
    int group = blockIdx.x * groups_per_block + threadIdx.x / lanes;
    int warp_first = group - (threadIdx.x % 32) / lanes;
    int stride = gridDim.x * groups_per_block;
    for (int first = warp_first; first < N; first += stride) {
        int row = group + (first - warp_first);
        size_t off = (size_t)(row < N ? row : 0) * C;
        int n = row < N ? C : 0;
        const float* a = inp1 + off;
        const float* x = has_inp2 ? res_out + off : a;     // where the row lives after pass 1
        float sum = 0.0f;
        // pass 1: x = inp1 + inp2 + bias2 (stored), and its sum
        if (vec) {
            int n4 = n / 4;
            for (int i = lane; i < n4; i += lanes) {
                float4 v = reinterpret_cast<const float4*>(a)[i];
                if (has_inp2) {
                    float4 p = reinterpret_cast<const float4*>(inp2 + off)[i];
                    float4 q = reinterpret_cast<const float4*>(bias2)[i];
                    v.x += p.x + q.x; v.y += p.y + q.y; v.z += p.z + q.z; v.w += p.w + q.w;
                    reinterpret_cast<float4*>(res_out + off)[i] = v;
                }
                sum += (v.x + v.y) + (v.z + v.w);
            }
        } else {
            for (int i = lane; i < n; i += lanes) {
                float v = a[i];
                if (has_inp2) {
                    v += inp2[off + i] + bias2[i];
                    res_out[off + i] = v;
                }
                sum += v;
            }
        }
        float m = fln_group_sum(sum, lanes) / C;
        // pass 2: the variance about the mean (this thread reads back only what it wrote itself)
        float sq = 0.0f;
        if (vec) {
            for (int i = lane; i < n / 4; i += lanes) {
                float4 v = reinterpret_cast<const float4*>(x)[i];
                float d0 = v.x - m, d1 = v.y - m, d2 = v.z - m, d3 = v.w - m;
                sq += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3);
            }
        } else {
            for (int i = lane; i < n; i += lanes) {
                float d = x[i] - m;
                sq += d * d;
            }
        }
        float s = 1.0f / sqrtf(fln_group_sum(sq, lanes) / C + LN_EPS);
        // pass 3: normalise, scale, shift
        float* o = out + off;
        if (vec) {
            for (int i = lane; i < n / 4; i += lanes) {
                float4 v = reinterpret_cast<const float4*>(x)[i];
                float4 w = reinterpret_cast<const float4*>(weight)[i];
                float4 bb = reinterpret_cast<const float4*>(bias)[i];
                float4 r;
                r.x = (v.x - m) * s * w.x + bb.x;
                r.y = (v.y - m) * s * w.y + bb.y;
                r.z = (v.z - m) * s * w.z + bb.z;
                r.w = (v.w - m) * s * w.w + bb.w;
                reinterpret_cast<float4*>(o)[i] = r;
            }
        } else {
            for (int i = lane; i < n; i += lanes) {
                o[i] = (x[i] - m) * s * weight[i] + bias[i];
            }
        }
        if (lane == 0 && row < N) {
            mean[row] = m;
            rstd[row] = s;
        }
    }
}
