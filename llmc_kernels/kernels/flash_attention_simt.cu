// Flash attention without tensor cores: the same causal attention as flash_attention.cu, in plain fp32 FMA,
// for GPUs that have no TF32 mma (compute capability 7.x: V100, T4; flash_attention.cu would emulate its
// mma there through shared memory, three emulated products per product in fp32 precision).
//
//   inp [B, T, 3C] holds q | k | v per position; head h uses columns h*hs .. h*hs+hs-1 of each third.
//   forward, per (b, h) and query row i (s = 1/sqrt(hs)):
//     S_ij = s q_i . k_j (j <= i),   P_ij = exp(S_ij - L_i),   L_i = log sum_j exp(S_ij),   out_i = sum_j P_ij v_j
//   with the online softmax: a row keeps its running maximum m and sum l over the keys seen so far and
//   rescales what it has when a larger maximum appears,
//     m' = max(m, max_j S_ij),  l' = l e^(m - m') + sum_j e^(S_ij - m'),  o' = o e^(m - m') + sum_j e^(S_ij - m') v_j
//   and out_i = o / l at the end. As in flash_attention.cu everything is in base 2 (q is scaled by
//   s*log2(e) as it is loaded, exp2 is one instruction) and lse[b,h,i] = m + log2(l) is stored in those
//   units, so either file's backward reads either file's forward.
//
//   backward (dout = dO, out = O from the forward), per (b, h):
//     P_ij    = exp2(S2_ij - lse_i)           recomputed from q, k and the saved lse (S2 in base-2 units)
//     delta_i = dO_i . O_i                    (= sum_j P_ij dP_ij)
//     dP_ij   = dO_i . v_j                    dS_ij = P_ij (dP_ij - delta_i)    (the softmax backward)
//     dV_j   += sum_i P_ij dO_i               dK_j += s sum_i dS_ij q_i          dQ_i += s sum_j dS_ij k_j
//   Every gradient ACCUMULATES into dinp (SPEC convention).
//
// Layout. Every kernel gives a row (a query row, or a key row in the dK/dV kernel) to TWO neighbouring lanes
// of a warp, each holding half of the row's vectors in registers: lane half h owns the dimensions
// 8m + 4h .. 8m + 4h + 3 (float4 chunks, alternating between the two lanes). A dot product is the lane's
// half plus one __shfl_xor_sync(.., 1); an update (o += p v) needs no exchange at all. Two lanes per row
// rather than one halve the registers (a row of q and of o at hs = 64 would be 128 registers on their own,
// leaving room for only two or three blocks per SM) and halve the rows per block, so the causal triangle
// wastes less of the block's last tile, at the price of one shuffle per 64 FMAs.
// The other side of each product (keys and values in the forward and dQ kernels, queries and dO in the dK/dV
// kernel) streams through shared memory in tiles of 32 rows, stored [row][FA_HS] with no padding: at any
// moment all 32 lanes of a warp read the SAME row, the two halves 16 bytes apart, so every read is a
// broadcast to two 16-byte bank groups, never a conflict, and each LDS.128 feeds 4 FMAs per lane.
// A thread keeps the scores of 16 keys (8 in the backward kernels, which hold more vectors) in registers at
// once: 16 independent FMA chains for the dot products, and one online-softmax rescale per 16 keys.
//
// Blocks: 128 threads = 64 rows (4 warps x 16 rows). Forward and dQ: a block per (64 query rows, b*h),
// walking key tiles up to the diagonal (a warp stops at its own last row); the longest rows are launched
// first. dK/dV: a block per (64 keys, b*h), walking query tiles from the diagonal to T, dK and dV in
// registers. dQ gets its own pass, with the dQ kernel also computing delta (it holds dO_i, and O_i is one
// read away) and writing it for the dK/dV kernel that runs after it: no atomics, so the backward is
// deterministic, for about 40% more FMAs than sharing the products (dq recomputes S and dP: 7 hs FMAs per
// (query, key) pair instead of 5). Shared memory: 16 KiB per block at FA_HS = 64 (T4: 64 KiB per SM, four
// blocks). Registers at FA_HS = 64 as ptxas allocates them for sm_75, with no spills (a test checks that for
// sm_70, sm_75 and sm_90): forward 128, dQ 163, dK/dV 217, so 4, 3 and 2 blocks (16, 12, 8 warps) per T4 SM,
// each warp with 16 independent FMA chains. For a T4 (sm_75: 40 SMs, no TF32), a V100 (sm_70), and, forced
// (LLMC_FORCE_SM75=1), any newer GPU.

#ifndef FA_HS
#define FA_HS 64            // head size rounded up to a multiple of 8 (the wrapper passes -DFA_HS=...)
#endif

#define FAS_THREADS 128
#define FAS_ROWS 64                 // rows per block: 2 lanes each
#define FAS_TILE 32                 // rows of the shared-memory tile the other side streams through
#define FAS_CH 16                   // forward: scores a thread holds at once
#define FAS_CHB 8                   // backward: the same (more vectors in registers there)
#define FAS_HALF (FA_HS / 2)        // dimensions per lane
#define FAS_Q4 (FA_HS / 8)          // float4 chunks per lane
#define FAS_FULL 0xffffffffu
#define FAS_LN2 0.6931471805599453f

#if FA_HS % 8 != 0 || FA_HS > 64
#error "FA_HS must be a multiple of 8, at most 64"
#endif

// ------------------------------------------------------------------------------------------ loads

// x[4m + e] = mul * row[8m + 4h + e]: this lane's half of a row (0 past hs, or everywhere when !valid).
// vec = 1: hs % 4 == 0 and every row 16-byte aligned, so a chunk lies wholly inside or outside hs.
__device__ __forceinline__ void fas_load_half(float (&x)[FAS_HALF], const float* row, int valid, int h, int hs,
                                              float mul, int vec) {
#pragma unroll
    for (int m = 0; m < FAS_Q4; m++) {
        const int d = 8 * m + 4 * h;
        if (vec) {
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (valid && d < hs) v = reinterpret_cast<const float4*>(row + d)[0];
            x[4 * m] = v.x * mul;
            x[4 * m + 1] = v.y * mul;
            x[4 * m + 2] = v.z * mul;
            x[4 * m + 3] = v.w * mul;
        } else {
#pragma unroll
            for (int e = 0; e < 4; e++) x[4 * m + e] = (valid && d + e < hs) ? row[d + e] * mul : 0.0f;
        }
    }
}

// dst[r * FA_HS + d] = mul * src[(row0 + r) * stride + d] for row0 + r < T and d < hs, else 0 (r < FAS_TILE):
// the whole block, consecutive threads on consecutive columns (coalesced).
__device__ void fas_load_tile(float* dst, const float* src, int row0, int T, int stride, int hs, float mul,
                              int vec) {
    if (vec) {
        const int d4 = FA_HS / 4;
        for (int i = threadIdx.x; i < FAS_TILE * d4; i += blockDim.x) {
            const int r = i / d4, d = (i - r * d4) * 4;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (row0 + r < T && d < hs) v = reinterpret_cast<const float4*>(src + (size_t)(row0 + r) * stride + d)[0];
            v.x *= mul; v.y *= mul; v.z *= mul; v.w *= mul;
            reinterpret_cast<float4*>(dst + r * FA_HS + d)[0] = v;
        }
    } else {
        for (int i = threadIdx.x; i < FAS_TILE * FA_HS; i += blockDim.x) {
            const int r = i / FA_HS, d = i - r * FA_HS;
            dst[r * FA_HS + d] = (row0 + r < T && d < hs) ? src[(size_t)(row0 + r) * stride + d] * mul : 0.0f;
        }
    }
}

// The lane's half of a tile row as float4 chunk m (a broadcast read: the whole warp reads the same row).
__device__ __forceinline__ float4 fas_chunk(const float* tile, int r, int m, int h) {
    return reinterpret_cast<const float4*>(tile + r * FA_HS + 8 * m + 4 * h)[0];
}

// x . (this lane's half of tile row r), the lane's part of a dot product
__device__ __forceinline__ float fas_dot(const float (&x)[FAS_HALF], const float* tile, int r, int h) {
    float acc = 0.0f;
#pragma unroll
    for (int m = 0; m < FAS_Q4; m++) {
        const float4 v = fas_chunk(tile, r, m, h);
        acc += x[4 * m] * v.x + x[4 * m + 1] * v.y + x[4 * m + 2] * v.z + x[4 * m + 3] * v.w;
    }
    return acc;
}

// acc += w * (this lane's half of tile row r)
__device__ __forceinline__ void fas_axpy(float (&acc)[FAS_HALF], float w, const float* tile, int r, int h) {
#pragma unroll
    for (int m = 0; m < FAS_Q4; m++) {
        const float4 v = fas_chunk(tile, r, m, h);
        acc[4 * m] += w * v.x;
        acc[4 * m + 1] += w * v.y;
        acc[4 * m + 2] += w * v.z;
        acc[4 * m + 3] += w * v.w;
    }
}

// row[8m + 4h + e] = x[4m + e] * mul (store) or += (add), dims < hs only
__device__ __forceinline__ void fas_store_half(float* row, const float (&x)[FAS_HALF], int h, int hs, float mul,
                                               int add) {
#pragma unroll
    for (int m = 0; m < FAS_Q4; m++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int d = 8 * m + 4 * h + e;
            if (d < hs) row[d] = (add ? row[d] : 0.0f) + x[4 * m + e] * mul;
        }
    }
}

// ------------------------------------------------------------------------------------------ forward

// grid (ceil(T / 64), B * NH), 128 threads. out [B,T,C] and lse [B,NH,T] are written (not accumulated).
// scale_log2 = log2(e) / sqrt(hs). The same arguments as flash_attention_forward_kernel.
extern "C" __global__ void __launch_bounds__(FAS_THREADS)
flash_attention_simt_forward_kernel(float* out, float* lse, const float* inp, int B, int T, int C, int NH,
                                    float scale_log2, int vec) {
    __shared__ __align__(16) float Ks[FAS_TILE * FA_HS];
    __shared__ __align__(16) float Vs[FAS_TILE * FA_HS];
    const int h = threadIdx.x & 1, warp = threadIdx.x >> 5;
    const int hs = C / NH, C3 = 3 * C;
    const int bh = blockIdx.y, b = bh / NH, head = bh - b * NH;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * FAS_ROWS;   // the longest rows (most keys) start first
    const int row = q0 + (threadIdx.x >> 1);
    const float* base = inp + (size_t)b * T * C3 + head * hs;   // q at +0, k at +C, v at +2C of each row

    float q[FAS_HALF], o[FAS_HALF];
    fas_load_half(q, base + (size_t)row * C3, row < T, h, hs, scale_log2, vec);   // scores in base-2 units
#pragma unroll
    for (int d = 0; d < FAS_HALF; d++) o[d] = 0.0f;
    float m = -1e30f, l = 0.0f;                           // finite start: exp2(m - m') never sees inf - inf
    const int last = min(T, q0 + FAS_ROWS) - 1;           // the last key any row of this block attends to
    const int warp_last = min(last, q0 + warp * 16 + 15); // ... and any row of this warp
    for (int k0 = 0; k0 <= last; k0 += FAS_TILE) {
        fas_load_tile(Ks, base + C, k0, T, C3, hs, 1.0f, vec);
        fas_load_tile(Vs, base + 2 * C, k0, T, C3, hs, 1.0f, vec);
        __syncthreads();
        for (int c0 = 0; c0 < FAS_TILE && k0 + c0 <= warp_last; c0 += FAS_CH) {   // warp-uniform bound
            float s[FAS_CH];
#pragma unroll
            for (int j = 0; j < FAS_CH; j++) s[j] = fas_dot(q, Ks, c0 + j, h);
            // the two lanes of a row add their halves; then the causal mask (key > row) and keys past T
            float mx = m;
#pragma unroll
            for (int j = 0; j < FAS_CH; j++) {
                s[j] += __shfl_xor_sync(FAS_FULL, s[j], 1);
                const int key = k0 + c0 + j;
                if (key > row || key >= T) s[j] = -INFINITY;
                mx = fmaxf(mx, s[j]);
            }
            // online softmax: rescale what the row has once per chunk, then add the chunk's keys
            const float alpha = exp2f(m - mx);
            m = mx;
            l *= alpha;
#pragma unroll
            for (int d = 0; d < FAS_HALF; d++) o[d] *= alpha;
#pragma unroll
            for (int j = 0; j < FAS_CH; j++) {
                const float p = exp2f(s[j] - m);          // 0 for masked keys
                l += p;
                fas_axpy(o, p, Vs, c0 + j, h);
            }
        }
        __syncthreads();                                  // the next tile overwrites Ks and Vs
    }
    if (row < T) {
        fas_store_half(out + (size_t)b * T * C + (size_t)row * C + head * hs, o, h, hs, 1.0f / l, 0);
        if (h == 0) lse[(size_t)bh * T + row] = m + log2f(l);
    }
}

// ------------------------------------------------------------------------------------------ backward: dQ

// grid (ceil(T / 64), B * NH), 128 threads; runs BEFORE flash_attention_simt_backward_kernel.
// dinp[.., 0:C] (the q third) += dQ, and delta [B,NH,T] = dO . O per row is written for the dK/dV kernel.
// scale = 1/sqrt(hs), scale_log2 = scale * log2(e); lse from the forward.
extern "C" __global__ void __launch_bounds__(FAS_THREADS)
flash_attention_simt_backward_dq_kernel(float* dinp, float* delta, const float* dout, const float* inp,
                                        const float* out, const float* lse, int B, int T, int C, int NH,
                                        float scale_log2, float scale, int vec) {
    __shared__ __align__(16) float Ks[FAS_TILE * FA_HS];
    __shared__ __align__(16) float Vs[FAS_TILE * FA_HS];
    const int h = threadIdx.x & 1, warp = threadIdx.x >> 5;
    const int hs = C / NH, C3 = 3 * C;
    const int bh = blockIdx.y, b = bh / NH, head = bh - b * NH;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * FAS_ROWS;
    const int row = q0 + (threadIdx.x >> 1);
    const bool valid = row < T;
    const float* base = inp + (size_t)b * T * C3 + head * hs;
    const size_t orow = (size_t)b * T * C + (size_t)row * C + head * hs;   // this row in out / dout

    float q[FAS_HALF], dO[FAS_HALF], dq[FAS_HALF];
    fas_load_half(q, base + (size_t)row * C3, valid, h, hs, scale_log2, vec);
    fas_load_half(dO, dout + orow, valid, h, hs, 1.0f, vec);
    // delta = dO . O, O read once (into dq, which then starts at 0)
    fas_load_half(dq, out + orow, valid, h, hs, 1.0f, vec);
    float delta_i = 0.0f;
#pragma unroll
    for (int d = 0; d < FAS_HALF; d++) {
        delta_i += dO[d] * dq[d];
        dq[d] = 0.0f;
    }
    delta_i += __shfl_xor_sync(FAS_FULL, delta_i, 1);
    const float L = valid ? lse[(size_t)bh * T + row] : 0.0f;
    if (valid && h == 0) delta[(size_t)bh * T + row] = delta_i;

    const int last = min(T, q0 + FAS_ROWS) - 1;
    const int warp_last = min(last, q0 + warp * 16 + 15);
    for (int k0 = 0; k0 <= last; k0 += FAS_TILE) {
        fas_load_tile(Ks, base + C, k0, T, C3, hs, 1.0f, vec);
        fas_load_tile(Vs, base + 2 * C, k0, T, C3, hs, 1.0f, vec);
        __syncthreads();
        for (int c0 = 0; c0 < FAS_TILE && k0 + c0 <= warp_last; c0 += FAS_CHB) {
            float s[FAS_CHB], dp[FAS_CHB];
#pragma unroll
            for (int j = 0; j < FAS_CHB; j++) {
                s[j] = fas_dot(q, Ks, c0 + j, h);
                dp[j] = fas_dot(dO, Vs, c0 + j, h);
            }
            // A barrier for the compiler's sake: without it, it keeps every shared-memory row the dot products
            // read in registers for the updates below (8 rows x 32 floats; on sm_90 that spills kilobytes).
            __syncwarp();
#pragma unroll
            for (int j = 0; j < FAS_CHB; j++) {
                s[j] += __shfl_xor_sync(FAS_FULL, s[j], 1);
                dp[j] += __shfl_xor_sync(FAS_FULL, dp[j], 1);
                const int key = k0 + c0 + j;              // key <= row < T: a real, visible key
                const float p = (key <= row && valid) ? exp2f(s[j] - L) : 0.0f;
                fas_axpy(dq, p * (dp[j] - delta_i), Ks, c0 + j, h);   // dS_ij k_j
            }
        }
        __syncthreads();
    }
    if (valid) fas_store_half(dinp + (size_t)b * T * C3 + (size_t)row * C3 + head * hs, dq, h, hs, scale, 1);
}

// ------------------------------------------------------------------------------------------ backward: dK, dV

// grid (ceil(T / 64), B * NH), 128 threads; after the dQ kernel (which wrote delta). The same arguments as
// flash_attention_backward_kernel. dinp[.., C:2C] += dK, dinp[.., 2C:3C] += dV: each key row's gradients
// belong to one lane pair of one block, so plain +=.
extern "C" __global__ void __launch_bounds__(FAS_THREADS)
flash_attention_simt_backward_kernel(float* dinp, const float* dout, const float* inp, const float* lse,
                                     const float* delta, int B, int T, int C, int NH, float scale_log2,
                                     float scale, int vec) {
    __shared__ __align__(16) float Qs[FAS_TILE * FA_HS];   // the tile's queries, scaled into base-2 units
    __shared__ __align__(16) float dOs[FAS_TILE * FA_HS];
    __shared__ float Ls[FAS_TILE];
    __shared__ float Ds[FAS_TILE];
    const int h = threadIdx.x & 1, warp = threadIdx.x >> 5;
    const int hs = C / NH, C3 = 3 * C;
    const int bh = blockIdx.y, b = bh / NH, head = bh - b * NH;
    const int k0 = blockIdx.x * FAS_ROWS;                 // the first blocks have the most queries
    const int key = k0 + (threadIdx.x >> 1);
    const bool valid = key < T;
    const int warp_first = k0 + warp * 16;                // the first key of this warp
    const float* base = inp + (size_t)b * T * C3 + head * hs;
    const float* dbase = dout + (size_t)b * T * C + head * hs;

    float k[FAS_HALF], v[FAS_HALF], dk[FAS_HALF], dv[FAS_HALF];
    fas_load_half(k, base + C + (size_t)key * C3, valid, h, hs, 1.0f, vec);
    fas_load_half(v, base + 2 * C + (size_t)key * C3, valid, h, hs, 1.0f, vec);
#pragma unroll
    for (int d = 0; d < FAS_HALF; d++) {
        dk[d] = 0.0f;
        dv[d] = 0.0f;
    }
    for (int i0 = k0; i0 < T; i0 += FAS_TILE) {           // queries before k0 see none of these keys
        fas_load_tile(Qs, base, i0, T, C3, hs, scale_log2, vec);
        fas_load_tile(dOs, dbase, i0, T, C, hs, 1.0f, vec);
        if (threadIdx.x < FAS_TILE) {
            const int qi = i0 + threadIdx.x;
            Ls[threadIdx.x] = qi < T ? lse[(size_t)bh * T + qi] : 0.0f;
            Ds[threadIdx.x] = qi < T ? delta[(size_t)bh * T + qi] : 0.0f;
        }
        __syncthreads();
        for (int c0 = 0; c0 < FAS_TILE && i0 + c0 < T; c0 += FAS_CHB) {
            if (i0 + c0 + FAS_CHB - 1 < warp_first) continue;   // warp-uniform: every query before every key
            float s[FAS_CHB], dp[FAS_CHB];
#pragma unroll
            for (int j = 0; j < FAS_CHB; j++) {
                s[j] = fas_dot(k, Qs, c0 + j, h);
                dp[j] = fas_dot(v, dOs, c0 + j, h);
            }
            __syncwarp();                                 // as in the dQ kernel
#pragma unroll
            for (int j = 0; j < FAS_CHB; j++) {
                s[j] += __shfl_xor_sync(FAS_FULL, s[j], 1);
                dp[j] += __shfl_xor_sync(FAS_FULL, dp[j], 1);
                const int query = i0 + c0 + j;
                const float p = (key <= query && query < T) ? exp2f(s[j] - Ls[c0 + j]) : 0.0f;   // key < T too
                fas_axpy(dv, p, dOs, c0 + j, h);
                fas_axpy(dk, p * (dp[j] - Ds[c0 + j]), Qs, c0 + j, h);   // dS_ij q_i (q scaled by s log2 e)
            }
        }
        __syncthreads();                                  // the next tile overwrites Qs, dOs, Ls, Ds
    }
    if (valid) {
        float* row = dinp + (size_t)b * T * C3 + (size_t)key * C3 + head * hs;
        fas_store_half(row + C, dk, h, hs, FAS_LN2, 1);    // ln 2 * (s log2 e) = s: dK = s sum_i dS_ij q_i
        fas_store_half(row + 2 * C, dv, h, hs, 1.0f, 1);
    }
}
