// Causal multi-head self-attention, llm.c style (the T x T matrices preatt and att are materialised).
//
// inp[B,T,3C] holds q | k | v at each (b, t); head h uses columns h*hs .. h*hs+hs-1 of each, hs = C/NH.
// A "row" is one (b, h, t): its entries of preatt/att/datt/dpreatt [B,NH,T,T] start at row * T.
//
// forward, scale = 1/sqrt(hs):
//   preatt[t2] = scale * q_t . k_t2                                 t2 <= t   (t2 > t: not written)
//   att[t2]    = exp(preatt[t2] - m) / sum_{t3<=t} exp(preatt[t3] - m)   t2 <= t,   0 for t2 > t
//   out[t]     = sum_{t2<=t} att[t2] v_t2
// backward (each buffer accumulates; the softmax step reads the whole datt after its +=, the q.k step the
// whole dpreatt after its +=, as llm.c's train_gpt2.c):
//   datt[t2]    += dout_t . v_t2                dv_t2 += att[t, t2] dout_t
//   dpreatt[t2] += att[t2] (datt[t2] - sum_{t3<=t} att[t3] datt[t3])
//   dq_t        += scale sum_{t2<=t} dpreatt[t, t2] k_t2
//   dk_t2       += scale sum_{t>=t2} dpreatt[t, t2] q_t
//
// Row kernels give each row a group of G lanes (G = 1, 2, ..., 32, a power of two): on a GPU G = 32, a warp
// per row, whose lanes take t2 = lane, lane + G, ... and meet through shuffles; on the CPU backend G = 1,
// a thread per row, where no shuffle runs at all. The block size is a multiple of 32, so every warp is
// whole and a group never straddles two warps. Groups past the last row still run the shuffles (the mask
// names the whole warp) but touch no memory.

#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float group_sum(float v, int G) {
    for (int off = G / 2; off > 0; off /= 2) v += __shfl_xor_sync(FULL_MASK, v, off);
    return v;
}

__device__ __forceinline__ void online_add(float& m, float& s, float x) {
    if (x > m) { s = s * expf(m - x) + 1.0f; m = x; }
    else       { s += expf(x - m); }
}

__device__ __forceinline__ void group_online_reduce(float& m, float& s, int G) {
    for (int off = G / 2; off > 0; off /= 2) {
        float m2 = __shfl_xor_sync(FULL_MASK, m, off);
        float s2 = __shfl_xor_sync(FULL_MASK, s, off);
        float mn = fmaxf(m, m2);
        s = s * expf(m - mn) + s2 * expf(m2 - mn);   // m starts at -FLT_MAX, never -inf: no inf - inf
        m = mn;
    }
}

// a . b over n floats; vec: both 16-byte aligned and n % 4 == 0 (hs % 4 == 0 and C % 4 == 0)
__device__ __forceinline__ float dot(const float* a, const float* b, int n, int vec) {
    float acc = 0.0f;
    if (vec) {
        const float4* a4 = reinterpret_cast<const float4*>(a);
        const float4* b4 = reinterpret_cast<const float4*>(b);
        for (int i = 0; i < n / 4; i++) {
            float4 x = a4[i], y = b4[i];
            acc += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
        }
    } else {
        for (int i = 0; i < n; i++) acc += a[i] * b[i];
    }
    return acc;
}

struct Row {            // which (b, h, t) a group works on, and whether it is real
    long long r;
    int b, h, t;
    bool valid;
};

__device__ __forceinline__ Row row_of_group(int G, int B, int NH, int T) {
    long long gid = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / G;
    Row w;
    w.valid = gid < (long long)B * NH * T;
    w.r = w.valid ? gid : 0;
    w.t = (int)(w.r % T);
    w.h = (int)((w.r / T) % NH);
    w.b = (int)(w.r / ((long long)T * NH));
    return w;
}

// ---------------------------------------------------------------------------------------------- forward

// Scores and softmax of one row per group, in one kernel: lane j computes preatt[t2] for its t2's, keeping
// an online (max, sum); the group merges the pairs, then each lane normalises the entries it wrote itself
// (so no lane reads another's writes). grid = ceil(B*NH*T*G / block).
extern "C" __global__ void attention_scores_softmax_kernel(float* preatt, float* att, const float* inp,
                                                           int B, int T, int C, int NH, int G, int vec) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int lane = threadIdx.x % G;
    Row w = row_of_group(G, B, NH, T);
    int last = w.valid ? w.t : -1;                       // an invalid group loops over nothing
    size_t C3 = (size_t)3 * C;
    const float* q = inp + ((size_t)w.b * T + w.t) * C3 + w.h * hs;
    const float* k0 = inp + (size_t)w.b * T * C3 + C + w.h * hs;   // k of t2 = 0
    float* pre = preatt + w.r * T;
    float* a = att + w.r * T;

    float m = -FLT_MAX, s = 0.0f;
    for (int t2 = lane; t2 <= last; t2 += G) {
        float x = scale * dot(q, k0 + t2 * C3, hs, vec);
        pre[t2] = x;
        online_add(m, s, x);
    }
    group_online_reduce(m, s, G);
    if (!w.valid) return;                                // after the last shuffle: safe to leave
    float inv = 1.0f / s;
    for (int t2 = lane; t2 < T; t2 += G) a[t2] = t2 <= w.t ? expf(pre[t2] - m) * inv : 0.0f;
}

// The softmax alone, for the path where a batched matmul (cuBLAS) computed the scaled scores of all
// t2 < T into `scores` (rows of length T; only t2 <= t are read): copies them into preatt's causal part
// and writes att. nrows rows, row r has t = r % T (so any whole number of (b, h) blocks works).
extern "C" __global__ void attention_softmax_forward_kernel(float* preatt, float* att, const float* scores,
                                                            int nrows, int T, int G) {
    int lane = threadIdx.x % G;
    long long gid = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / G;
    bool valid = gid < nrows;
    long long r = valid ? gid : 0;
    int t = (int)(r % T), last = valid ? t : -1;
    const float* x = scores + r * T;
    float* pre = preatt + r * T;
    float* a = att + r * T;
    float m = -FLT_MAX, s = 0.0f;
    for (int t2 = lane; t2 <= last; t2 += G) {
        float v = x[t2];
        pre[t2] = v;
        online_add(m, s, v);
    }
    group_online_reduce(m, s, G);
    if (!valid) return;
    float inv = 1.0f / s;
    for (int t2 = lane; t2 < T; t2 += G) a[t2] = t2 <= t ? expf(pre[t2] - m) * inv : 0.0f;
}

// out[b,t,h*hs+i] = sum_{t2<=t} att[b,h,t,t2] v[b,t2,h,i]: one thread per output element, in out's own
// order, so a warp reads one att entry (broadcast) and 32 consecutive v's (coalesced) per step.
extern "C" __global__ void attention_value_kernel(float* out, const float* att, const float* inp,
                                                  int B, int T, int C, int NH) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * T * C) return;
    int hs = C / NH;
    int c = (int)(idx % C);
    long long bt = idx / C;
    int t = (int)(bt % T), b = (int)(bt / T), h = c / hs;
    size_t C3 = (size_t)3 * C;
    const float* a = att + (((size_t)b * NH + h) * T + t) * T;
    const float* v = inp + (size_t)b * T * C3 + 2 * C + c;          // v of t2 = 0, this column
    float acc = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) acc += a[t2] * v[t2 * C3];
    out[idx] = acc;
}

// --------------------------------------------------------------------------------------------- backward

// Everything of one row (b, h, t) that needs only that row: datt, dpreatt, and the query gradient dq_t.
//  1. lanes over t2: datt[t2] += dout_t . v_t2, while summing att[t2] * datt[t2] (the new total);
//  2. the group sums that dot; lanes over t2 (the same t2's they wrote): dpreatt[t2] += att (datt - dot);
//  3. __syncwarp publishes the row's dpreatt to the group; now lanes over i < hs: dq_t[i] += scale *
//     sum_t2 dpreatt[t2] k_t2[i] (one dpreatt broadcast, coalesced k reads). dq_t belongs to this row only.
// dk and dv sum over rows t >= t2: attention_backward_kv_kernel does them, after this kernel.
extern "C" __global__ void attention_backward_rows_kernel(float* dinp, float* dpreatt, float* datt,
                                                          const float* dout, const float* inp,
                                                          const float* att, int B, int T, int C, int NH,
                                                          int G, int vec) {
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int lane = threadIdx.x % G;
    Row w = row_of_group(G, B, NH, T);
    int last = w.valid ? w.t : -1;
    size_t C3 = (size_t)3 * C;
    const float* dy = dout + ((size_t)w.b * T + w.t) * C + w.h * hs;
    const float* base = inp + (size_t)w.b * T * C3 + w.h * hs;       // q of t2 = 0; k at +C, v at +2C
    const float* a = att + w.r * T;
    float* dA = datt + w.r * T;
    float* dP = dpreatt + w.r * T;

    float adot = 0.0f;
    for (int t2 = lane; t2 <= last; t2 += G) {
        float d = dA[t2] + dot(dy, base + t2 * C3 + 2 * C, hs, vec);
        dA[t2] = d;
        adot += a[t2] * d;
    }
    adot = group_sum(adot, G);
    for (int t2 = lane; t2 <= last; t2 += G) dP[t2] += a[t2] * (dA[t2] - adot);
    __syncwarp();                                        // every lane of the group sees the whole dP row

    float* dq = dinp + ((size_t)w.b * T + w.t) * C3 + w.h * hs;
    const float* k = base + C;
    for (int i = lane; i < hs && w.valid; i += G) {
        float acc = 0.0f;
        for (int t2 = 0; t2 <= w.t; t2++) acc += dP[t2] * k[t2 * C3 + i];
        dq[i] += scale * acc;
    }
}

// dk and dv of key/value position t2, one thread per element (b, t2, h, i), summing over the rows t >= t2
// that attended to it (column t2 of att and dpreatt): no two threads write the same element, no atomics.
//   dk[t2,i] += scale sum_{t>=t2} dpreatt[t,t2] q_t[i],   dv[t2,i] += sum_{t>=t2} att[t,t2] dout_t[i]
extern "C" __global__ void attention_backward_kv_kernel(float* dinp, const float* dpreatt, const float* dout,
                                                        const float* inp, const float* att,
                                                        int B, int T, int C, int NH) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * T * C) return;
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    int c = (int)(idx % C);
    long long bt = idx / C;
    int t2 = (int)(bt % T), b = (int)(bt / T), h = c / hs;
    size_t C3 = (size_t)3 * C;
    size_t col = (((size_t)b * NH + h) * T) * T + t2;               // entry (t = 0, t2) of this (b, h)
    const float* q = inp + (size_t)b * T * C3 + c;                  // q of t = 0, this column
    const float* dy = dout + (size_t)b * T * C + c;
    float dk = 0.0f, dv = 0.0f;
    for (int t = t2; t < T; t++) {
        size_t e = col + (size_t)t * T;
        dk += dpreatt[e] * q[t * C3];
        dv += att[e] * dy[(size_t)t * C];
    }
    float* d = dinp + ((size_t)b * T + t2) * C3 + c;
    d[C] += scale * dk;
    d[2 * C] += dv;
}

// The softmax part of the backward, for the path where batched matmuls do the rest. On entry dS holds
// dout_t . v_t2 for every t2 < T (row-major [rows, T]); on exit it holds the row's total dpreatt for
// t2 <= t and 0 beyond, and attm holds att with its masked entries 0: the operands of the matmuls
// dq += scale dS k,  dk += scale dS^T q,  dv += attm^T dout  (no masked entry of any buffer is read).
extern "C" __global__ void attention_softmax_backward_kernel(float* dpreatt, float* datt, float* dS,
                                                             float* attm, const float* att, int nrows, int T,
                                                             int G) {
    int lane = threadIdx.x % G;
    long long gid = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / G;
    bool valid = gid < nrows;
    long long r = valid ? gid : 0;
    int t = (int)(r % T), last = valid ? t : -1;
    const float* a = att + r * T;
    float* dA = datt + r * T;
    float* dP = dpreatt + r * T;
    float* g = dS + r * T;
    float* am = attm + r * T;
    float adot = 0.0f;
    for (int t2 = lane; t2 <= last; t2 += G) {
        float d = dA[t2] + g[t2];
        dA[t2] = d;
        adot += a[t2] * d;
    }
    adot = group_sum(adot, G);
    if (!valid) return;
    for (int t2 = lane; t2 < T; t2 += G) {
        if (t2 <= t) {
            float p = dP[t2] + a[t2] * (dA[t2] - adot);
            dP[t2] = p;
            g[t2] = p;
            am[t2] = a[t2];
        } else {
            g[t2] = 0.0f;
            am[t2] = 0.0f;
        }
    }
}
