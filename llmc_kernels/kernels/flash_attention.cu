// Flash attention (causal, GPT-2's multi-head self-attention) on tensor cores: the T x T score and
// probability matrices are never written to memory, only 64 x 64 tiles of them live in registers.
//
//   inp [B, T, 3C] holds q | k | v per position; head h uses columns h*hs .. h*hs+hs-1 of each third.
//   forward, per (b, h) and query row i (s = 1/sqrt(hs)):
//     S_ij = s q_i . k_j (j <= i),   P_ij = exp(S_ij - L_i),   L_i = log sum_j exp(S_ij),   out_i = sum_j P_ij v_j
//   Online softmax (Milakov & Gimelshein; Dao et al., FlashAttention): the keys arrive in tiles; a row keeps
//   its running maximum m and sum l, and rescales what it has when a larger maximum appears:
//     m' = max(m, max_j S_ij),  l' = l e^(m - m') + sum_j e^(S_ij - m'),  o' = o e^(m - m') + sum_j e^(S_ij - m') v_j
//   and out_i = o / l at the end. We work in base 2 (exp2 is one instruction): scores are scaled by
//   s*log2(e), and lse[b,h,i] = m + log2(l) is stored in those units for the backward.
//
//   backward (dout = dO, out = O from the forward), per (b, h):
//     delta_i = dO_i . O_i                    (= sum_j P_ij dP_ij; flash_attention_delta_kernel)
//     P_ij    = exp2(S2_ij - lse_i)           recomputed from q, k and the saved lse (S2 in base-2 units)
//     dV_j   += sum_i P_ij dO_i               dP_ij = dO_i . v_j
//     dS_ij   = P_ij (dP_ij - delta_i)        the softmax backward
//     dQ_i   += s sum_j dS_ij k_j             dK_j += s sum_i dS_ij q_i
//   Every gradient ACCUMULATES into dinp (SPEC convention); dQ from several key blocks meets with atomicAdd.
//
// Tensor cores: mma.sync.m16n8k8 with TF32 inputs (fp32 with a 10-bit mantissa) and fp32 accumulation, one
// warp per 16 x 8 output tile, fragments held in registers as the PTX ISA lays them out (g = lane / 4,
// t = lane % 4):  A (16 x 8, row major)  a0 = A[g][t]  a1 = A[g+8][t]  a2 = A[g][t+4]  a3 = A[g+8][t+4]
//                 B (8 x 8)              b0 = B[t][g]  b1 = B[t+4][g]
//                 C (16 x 8)             c0 = C[g][2t] c1 = C[g][2t+1]  c2 = C[g+8][2t]  c3 = C[g+8][2t+1]
// A product's k index may be relabelled (the sum over k does not care about order) as long as A and B agree.
// Relabelling "column t" as k = 2t and "column t+4" as k = 2t+1 makes a C fragment (c0, c2, c1, c3) an A
// fragment: P = softmax(S) goes straight from the score accumulators into P V without touching memory.
// A .tf32 operand is read from the top 19 bits of its 32-bit register, the low 13 mantissa bits ignored: an
// fp32 value in a register is a TF32 operand, truncated, as cuBLAS's and PyTorch's TF32 products feed it
// (FA_PRECISE = 0, --precision tf32: no conversion instruction at all). FA_PRECISE = 1 (--precision fp32)
// splits every operand x = hi + lo and sums lo*hi + hi*lo + hi*hi (the "3xTF32" trick), accurate like fp32
// FMA (see fa_split).
// On the CPU backend (and on GPUs older than sm_80, which have no TF32 mma) fa_mma is emulated from the
// same fragments, so the CPU tests exercise every index of the real kernel.
//
// Two designs of the same two kernels, chosen at compile time by FA_VERSION (the wrapper passes it; both keep
// the launch geometry the wrapper computes from FA_FWD_WM, the arguments and the results):
//
// FA_VERSION 1 (the first kernels, kept so bench/flash_attention.py can time both in one process): the
// forward gives each block 64 query rows (4 warps x 16) and walks key tiles up to the diagonal (64 keys; 32
// when precise, stored split into hi and lo in the same shared memory); the backward gives each block 64 keys
// (4 warps x 16), keeps their dK, dV in registers and walks 32-query tiles from the diagonal down. Shared-memory
// rows are FA_HS + 4 floats apart so that every fragment read hits 32 different banks. Its tile loads are a
// loop of one global load then its stores, trip count unknown to the compiler (blockDim.x): ptxas keeps one
// load in flight per thread, so a 64-row tile costs ~16 dependent L2 round trips (~600 cycles each) per
// thread; with 3-4 blocks per SM that latency, not the tensor cores, set the time (H100: 31 TFLOP/s forward,
// 42 backward, a fraction of what mma.sync can give: 3xTF32 in version 2 runs ~100 TFLOP/s of TF32 products).
//
// FA_VERSION 2 (default): the same math and fragments, built around the memory pipeline:
//  - tiles are copied global -> shared with cp.async (sm_80+, 16 B per instruction, zero-filled past T or hs),
//    every copy of a tile issued at once, and issued early: the forward loads V(j) while it computes
//    S = Q K(j)^T and K(j+1) while it computes P V(j) (FlashAttention-2's order, one buffer each); the backward
//    loads the next step's Q and dO while it computes dQ and sends its atomics. Older GPUs and the cpu backend
//    take the same code path with plain loads (the barriers are the same, so the cpu backend's race detector
//    checks the pipelined order).
//  - fragment reads are 8 bytes wide where the operand allows it (LDS.64: K as the B of S = Q K^T, Q and dO as
//    the B of S^T and dP^T, K as the A of S^T, dS as the A of dQ), by relabelling k (dims kd*8+2t, kd*8+2t+1
//    are the mma's k = t, t+4). Bytes per mma are what they were (a B fragment is 256 B of shared memory per
//    mma, 2 of the SM's 128 B/clock), instructions per fragment halve.
//  - rows are FA2_LD = 8 (mod 32) floats apart, and the column of a C fragment that holds key (or query)
//    8n + j is the B-fragment lane pi(j) = j ^ (j >> 2) (0 1 2 3 5 4 7 6): with that permutation every read
//    above, 4-byte or 8-byte, and the P V / dV / dK / dQ reads of rows pi(2t), pi(2t+1), hit 32 distinct banks.
//  - work above the diagonal is skipped per 8-key (8-query) tile, not only per block.
//  - precise (3xTF32): the forward's K and V tiles and the backward's Q and dO tiles are split into hi and lo
//    once per tile in shared memory (right after they land), not per fragment by every warp; the backward's
//    steps are 16 queries then (hi and lo of Q and dO fit in 48 KiB beside K and dS).
//  - the backward computes S^T and dP^T in one loop (8 independent accumulator chains instead of 4 twice), and
//    sends its dQ partial sums as red.global.add.v2.f32 on sm_90 (two adjacent dims per instruction: half the
//    atomic instructions), plain atomicAdd elsewhere.
// Tuning macros (the wrapper passes ops.flash_attention.TUNING; bench/flash_attention.py --tune times others):
//  FA_FWD_MINB, FA_BWD_MINB  __launch_bounds__'s minimum blocks per SM, i.e. a register cap. Left free, ptxas
//      takes 168 (forward, TF32) and 234 (backward) registers; capped at 128 the forward spills ~128 bytes but
//      runs 4 blocks/SM; capped at 168 the backward runs 3 blocks/SM without spilling.
//  FA_FWD_WM  16-row m-tiles per forward warp: with 2 every B fragment read feeds two mmas (1 clock of shared
//      memory per mma instead of 2) and the K/V tiles serve twice the rows (half the L2 traffic), for ~230
//      registers (2 blocks/SM).
//  FA_FWD_WARPS  warps per forward block (4 or 8): 8 shares each K/V tile between 128 rows (half the L2 -> SM
//      traffic: the forward reads 13056 block-tiles x 32 KB = 428 MB at B=8, T=1024, ~80 us of L2 bandwidth)
//      at one warp's registers; its cpu/sm_75 emulation has its own scratch (fa_mma_fwd).
//  FA_BWD_DQ2  dQ's products in two accumulator sets (8 chains instead of 4).
// Measured on one H100 (bench/flash_attention.py, bench/RESULTS.md, B=8 T=1024, us per call, v1 -> v2):
// TF32 forward 416 -> 193 (FA_FWD_MINB=4; 202 uncapped; FA_FWD_WM=2: 270, occupancy lost outweighs the
// halved shared-memory traffic), backward 763 -> 536 (FA_BWD_MINB=1; 569 at 3 blocks/SM); fp32 (3xTF32)
// forward 671 -> 390 (FA_FWD_MINB=3), backward 1297 -> 1291. PyTorch's SDPA on the same GPU: 508 / 1492 (TF32),
// 516 / 1402 (fp32). Not yet measured: FA_FWD_WARPS=8, FA_BWD_DQ2, and the interleaved S^T / dP^T loop (in the
// default code since the measurement; a reordering of the same instructions).
// Both versions stay within 48 KiB of static shared memory for FA_HS <= 64, the cpu backend's mma emulation
// scratch included (the backward's 46080 + 3072 bytes is exactly 48 KiB).

#ifndef FA_HS
#define FA_HS 64            // head size rounded up to a multiple of 8 (the wrapper passes -DFA_HS=...)
#endif
#ifndef FA_PRECISE
#define FA_PRECISE 1        // 1: 3xTF32 products (fp32 accuracy); 0: TF32
#endif
#ifndef FA_VERSION
#define FA_VERSION 2        // 1: the first kernels; 2: pipelined (see above)
#endif
#ifndef FA_EMULATE_MMA
#if defined(LLMC_CPU_BACKEND) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800)
#define FA_EMULATE_MMA 1
#else
#define FA_EMULATE_MMA 0
#endif
#endif
#ifndef FA_ASYNC            // cp.async tile copies: sm_80+ only, never on the cpu backend
#if !defined(LLMC_CPU_BACKEND) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define FA_ASYNC 1
#else
#define FA_ASYNC 0
#endif
#endif

#ifndef FA_FWD_WARPS
#define FA_FWD_WARPS 4      // version 2's forward: warps per block (4 or 8)
#endif
#ifndef FA_FWD_MINB
#define FA_FWD_MINB 1       // __launch_bounds__'s minimum blocks per SM: caps registers at 64K / (128 x it)
#endif
#ifndef FA_BWD_MINB
#define FA_BWD_MINB 1
#endif

#define FA_WARPS 4
#define FA_THREADS 128
#if FA_VERSION == 1
#define FA_FWD_THREADS FA_THREADS
#else
#define FA_FWD_THREADS (32 * FA_FWD_WARPS)
#endif
#define FA_KD (FA_HS / 8)           // 8-wide steps along the head dimension
#define FA_FULL 0xffffffffu
#define FA_LN2 0.6931471805599453f

// ------------------------------------------------------------------------------------------ TF32 + mma

// 3xTF32 split: x = hi + lo with hi and lo both TF32 values rounded to nearest, so that the three products
// lo*hi + hi*lo + hi*hi are as accurate as fp32 FMA (|lo| <= 2^-11 |x|; the dropped lo*lo <= 2^-22).
// hi by Veltkamp's splitting, c = x (2^13 + 1), hi = c - (c - x): x rounded to 11 significant bits, and
// NaN-safe (a NaN or inf x, or one beyond 4e34, gives a NaN hi: the product is NaN). lo = x - hi is exact,
// then rounded by adding half of its lowest kept bit and clearing the 13 dropped ones (a NaN there changes
// nothing: hi carries it). Six instructions; the same split through cvt.rna.tf32.f32, which costs four on
// its own (an inf/NaN test, an add, an AND, a select), took nine, and with more conversions than mma
// instructions in these kernels that was where the time went. Passing lo unrounded (the hardware then
// truncates it) would save two more but doubles lo's error, which the fast-vs-plain model test sees in
// Adam's moments. The _rn intrinsics keep the compiler from fusing the split into FMAs, which breaks it.
__device__ __forceinline__ void fa_split(float x, unsigned& hi, unsigned& lo) {
#if FA_PRECISE
    const float c = __fmul_rn(x, 8193.0f);
    const float h = __fsub_rn(c, __fsub_rn(c, x));
    hi = __float_as_uint(h);
    lo = (__float_as_uint(__fsub_rn(x, h)) + 0x1000u) & 0xffffe000u;
#else
    hi = __float_as_uint(x);
    lo = 0u;
#endif
}

struct FaA { unsigned hi[4]; unsigned lo[4]; };   // an A fragment (lo only used when FA_PRECISE)
struct FaB { unsigned hi[2]; unsigned lo[2]; };   // a B fragment

__device__ __forceinline__ FaA fa_a(float a0, float a1, float a2, float a3) {
    FaA f;
    fa_split(a0, f.hi[0], f.lo[0]);
    fa_split(a1, f.hi[1], f.lo[1]);
    fa_split(a2, f.hi[2], f.lo[2]);
    fa_split(a3, f.hi[3], f.lo[3]);
    return f;
}

__device__ __forceinline__ FaB fa_b(float b0, float b1) {
    FaB f;
    fa_split(b0, f.hi[0], f.lo[0]);
    fa_split(b1, f.hi[1], f.lo[1]);
    return f;
}

#if FA_EMULATE_MMA
// d += A B for one m16n8k8 tile from the fragments (f: this warp's 32 x 6 floats of shared scratch). Each lane
// publishes its fragment registers; lane (g, t) then reads row g and g+8 of A (held by lanes 4g..4g+3) and
// columns 2t, 2t+1 of B (held by lanes 8t..8t+7) and does its 4 outputs' 8 products. Operands truncated to
// TF32 as the tensor cores read them.
__device__ __forceinline__ void fa_emulate_mma(float* f, float (&d)[4], unsigned a0, unsigned a1, unsigned a2,
                                               unsigned a3, unsigned b0, unsigned b1) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const unsigned keep = 0xffffe000u;
    f[lane * 6 + 0] = __uint_as_float(a0 & keep);
    f[lane * 6 + 1] = __uint_as_float(a1 & keep);
    f[lane * 6 + 2] = __uint_as_float(a2 & keep);
    f[lane * 6 + 3] = __uint_as_float(a3 & keep);
    f[lane * 6 + 4] = __uint_as_float(b0 & keep);
    f[lane * 6 + 5] = __uint_as_float(b1 & keep);
    __syncwarp();
    for (int k = 0; k < 8; k++) {
        int half = k >> 2, kl = k & 3;               // k < 4: a0/a1 and b0; k >= 4: a2/a3 and b1
        float ag = f[(g * 4 + kl) * 6 + 2 * half];
        float ag8 = f[(g * 4 + kl) * 6 + 2 * half + 1];
        float bn0 = f[((2 * t) * 4 + kl) * 6 + 4 + half];
        float bn1 = f[((2 * t + 1) * 4 + kl) * 6 + 4 + half];
        d[0] += ag * bn0;
        d[1] += ag * bn1;
        d[2] += ag8 * bn0;
        d[3] += ag8 * bn1;
    }
    __syncwarp();
}
#endif

// d += A B for one m16n8k8 tile, TF32 inputs, fp32 accumulation (emulated: 3 KiB of scratch for 4 warps).
__device__ __forceinline__ void fa_mma_tf32(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                            unsigned b0, unsigned b1) {
#if FA_EMULATE_MMA
    __shared__ float fa_frag[FA_WARPS * 32 * 6];
    fa_emulate_mma(fa_frag + (threadIdx.x >> 5) * 32 * 6, d, a0, a1, a2, a3, b0, b1);
#else
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#endif
}

// The same for version 2's forward, whose blocks have FA_FWD_WARPS warps: its own emulation scratch, so that
// the backward's stays 3 KiB (the backward uses 45 of its 48).
__device__ __forceinline__ void fa_mma_tf32_fwd(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                                unsigned b0, unsigned b1) {
#if FA_EMULATE_MMA
    __shared__ float fa_frag_fwd[FA_FWD_WARPS * 32 * 6];
    fa_emulate_mma(fa_frag_fwd + (threadIdx.x >> 5) * 32 * 6, d, a0, a1, a2, a3, b0, b1);
#else
    fa_mma_tf32(d, a0, a1, a2, a3, b0, b1);
#endif
}

// d += A B with the small terms first (3xTF32) or plain TF32.
__device__ __forceinline__ void fa_mma(float (&d)[4], const FaA& a, const FaB& b) {
#if FA_PRECISE
    fa_mma_tf32(d, a.lo[0], a.lo[1], a.lo[2], a.lo[3], b.hi[0], b.hi[1]);
    fa_mma_tf32(d, a.hi[0], a.hi[1], a.hi[2], a.hi[3], b.lo[0], b.lo[1]);
#endif
    fa_mma_tf32(d, a.hi[0], a.hi[1], a.hi[2], a.hi[3], b.hi[0], b.hi[1]);
}

__device__ __forceinline__ void fa_mma_fwd(float (&d)[4], const FaA& a, const FaB& b) {
#if FA_PRECISE
    fa_mma_tf32_fwd(d, a.lo[0], a.lo[1], a.lo[2], a.lo[3], b.hi[0], b.hi[1]);
    fa_mma_tf32_fwd(d, a.hi[0], a.hi[1], a.hi[2], a.hi[3], b.lo[0], b.lo[1]);
#endif
    fa_mma_tf32_fwd(d, a.hi[0], a.hi[1], a.hi[2], a.hi[3], b.hi[0], b.hi[1]);
}

// ========================================================================================== FA_VERSION 1
#if FA_VERSION == 1

#define FA_BR 64                    // forward: query rows per block
#define FA_BC 64                    // keys per block (backward)
#if FA_PRECISE
#define FA_BK 32                    // forward: keys per tile, stored split (hi rows, then lo rows)
#else
#define FA_BK 64                    // forward: keys per tile
#endif
#define FA_BQ 32                    // backward: query rows per step
#define FA_LD (FA_HS + 4)           // row stride of [rows][FA_HS] tiles in shared memory
#define FA_LDS (FA_BQ + 4)          // row stride of the backward's [keys][queries] dS tile

// ------------------------------------------------------------------------------------------ tile loads

// dst[r * FA_LD + d] = mul * src[(row0 + r) * stride + d] for row0 + r < T and d < hs, else 0
// (r < rows, d < FA_HS). vec = 1: hs % 4 == 0 and every row 16-byte aligned, so float4 loads.
// split = 1 (the precise forward's key tiles): each value stored as fa_split's hi at dst[i] and lo at
// dst[FA_BK * FA_LD + i], so the four warps read ready operands instead of each splitting the whole tile.
__device__ __forceinline__ void fa_store(float* dst, int i, float v, int split) {
    if (split) {
        unsigned hi, lo;
        fa_split(v, hi, lo);
        dst[i] = __uint_as_float(hi);
        dst[FA_BK * FA_LD + i] = __uint_as_float(lo);
    } else {
        dst[i] = v;
    }
}

__device__ void fa_load_tile(float* dst, const float* src, int row0, int rows, int T, int stride, int hs,
                             float mul, int vec, int split = 0) {
    if (vec) {
        const int d4 = FA_HS / 4;
        for (int i = threadIdx.x; i < rows * d4; i += blockDim.x) {
            int r = i / d4;
            int d = (i - r * d4) * 4;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (row0 + r < T && d < hs) {
                v = reinterpret_cast<const float4*>(src + (size_t)(row0 + r) * stride + d)[0];
            }
            int o = r * FA_LD + d;
            fa_store(dst, o, v.x * mul, split);
            fa_store(dst, o + 1, v.y * mul, split);
            fa_store(dst, o + 2, v.z * mul, split);
            fa_store(dst, o + 3, v.w * mul, split);
        }
    } else {
        for (int i = threadIdx.x; i < rows * FA_HS; i += blockDim.x) {
            int r = i / FA_HS;
            int d = i - r * FA_HS;
            fa_store(dst, r * FA_LD + d,
                     (row0 + r < T && d < hs) ? src[(size_t)(row0 + r) * stride + d] * mul : 0.0f, split);
        }
    }
}

// The B fragment (p[i0], p[i1]) of a key tile the forward loaded (split when FA_PRECISE).
__device__ __forceinline__ FaB fa_b_key_tile(const float* p, int i0, int i1) {
    FaB f;
    f.hi[0] = __float_as_uint(p[i0]);
    f.hi[1] = __float_as_uint(p[i1]);
#if FA_PRECISE
    f.lo[0] = __float_as_uint(p[FA_BK * FA_LD + i0]);
    f.lo[1] = __float_as_uint(p[FA_BK * FA_LD + i1]);
#else
    f.lo[0] = 0u;
    f.lo[1] = 0u;
#endif
    return f;
}

// ------------------------------------------------------------------------------------------ v1 forward

// grid (ceil(T / 64), B * NH), 128 threads. out [B,T,C] and lse [B,NH,T] are written (not accumulated).
// scale_log2 = log2(e) / sqrt(hs).
__device__ __forceinline__ void fa1_forward(float* out, float* lse, const float* inp, int B, int T, int C, int NH,
                                            float scale_log2, int vec) {
    __shared__ float Ks[FA_BR * FA_LD];      // the query tile first, then each key tile (FA_BK rows, x2 split)
    __shared__ float Vs[FA_BR * FA_LD];      // FA_BR * FA_LD = FA_BK * FA_LD * (1 + FA_PRECISE)
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int hs = C / NH, C3 = 3 * C;
    const int bh = blockIdx.y, b = bh / NH, h = bh - b * NH;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * FA_BR;    // the longest rows (most keys) start first
    const float* base = inp + (size_t)b * T * C3 + h * hs;  // q at +0, k at +C, v at +2C of each row

    // this warp's 16 query rows, scaled into base-2 score units, as A fragments
    fa_load_tile(Ks, base, q0, FA_BR, T, C3, hs, scale_log2, vec);
    __syncthreads();
    const int r = warp * 16 + g;
    FaA qa[FA_KD];
#pragma unroll
    for (int kd = 0; kd < FA_KD; kd++) {
        const float* q = Ks + r * FA_LD + kd * 8 + t;
        qa[kd] = fa_a(q[0], q[8 * FA_LD], q[4], q[8 * FA_LD + 4]);
    }
    __syncthreads();

    const int row_a = q0 + r, row_b = row_a + 8;            // this thread's two rows (c0,c1 and c2,c3)
    float o[FA_KD][4];
#pragma unroll
    for (int kd = 0; kd < FA_KD; kd++) {
        o[kd][0] = 0.0f; o[kd][1] = 0.0f; o[kd][2] = 0.0f; o[kd][3] = 0.0f;
    }
    float m_a = -1e30f, m_b = -1e30f, l_a = 0.0f, l_b = 0.0f;  // finite start: exp2(m - m') never sees inf - inf
    const int last = min(T, q0 + FA_BR) - 1;                 // the last key any row of this block attends to
    for (int k0 = 0; k0 <= last; k0 += FA_BK) {
        fa_load_tile(Ks, base + C, k0, FA_BK, T, C3, hs, 1.0f, vec, FA_PRECISE);
        fa_load_tile(Vs, base + 2 * C, k0, FA_BK, T, C3, hs, 1.0f, vec, FA_PRECISE);
        __syncthreads();
        // S = Q K^T for 16 rows x FA_BK keys: B[k = dim][n = key] = K[key][dim]
        float s[FA_BK / 8][4];
#pragma unroll
        for (int n = 0; n < FA_BK / 8; n++) {
            s[n][0] = 0.0f; s[n][1] = 0.0f; s[n][2] = 0.0f; s[n][3] = 0.0f;
        }
#pragma unroll
        for (int kd = 0; kd < FA_KD; kd++) {
#pragma unroll
            for (int n = 0; n < FA_BK / 8; n++) {
                const int kr = (n * 8 + g) * FA_LD + kd * 8 + t;
                fa_mma(s[n], qa[kd], fa_b_key_tile(Ks, kr, kr + 4));
            }
        }
        // causal mask (key > row) and keys past T, only on tiles that reach them
        if (k0 + FA_BK - 1 > q0 + warp * 16 || k0 + FA_BK > T) {
#pragma unroll
            for (int n = 0; n < FA_BK / 8; n++) {
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int key = k0 + n * 8 + 2 * t + (c & 1);
                    int row = c < 2 ? row_a : row_b;
                    if (key > row || key >= T) s[n][c] = -INFINITY;
                }
            }
        }
        // online softmax: the rows' new maxima (a row's FA_BK scores sit in the 4 lanes of its group)
        float mx_a = m_a, mx_b = m_b;
#pragma unroll
        for (int n = 0; n < FA_BK / 8; n++) {
            mx_a = fmaxf(mx_a, fmaxf(s[n][0], s[n][1]));
            mx_b = fmaxf(mx_b, fmaxf(s[n][2], s[n][3]));
        }
        mx_a = fmaxf(mx_a, __shfl_xor_sync(FA_FULL, mx_a, 1));
        mx_a = fmaxf(mx_a, __shfl_xor_sync(FA_FULL, mx_a, 2));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(FA_FULL, mx_b, 1));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(FA_FULL, mx_b, 2));
        const float alpha_a = exp2f(m_a - mx_a), alpha_b = exp2f(m_b - mx_b);
        m_a = mx_a;
        m_b = mx_b;
        l_a *= alpha_a;
        l_b *= alpha_b;
#pragma unroll
        for (int kd = 0; kd < FA_KD; kd++) {
            o[kd][0] *= alpha_a; o[kd][1] *= alpha_a; o[kd][2] *= alpha_b; o[kd][3] *= alpha_b;
        }
#pragma unroll
        for (int n = 0; n < FA_BK / 8; n++) {
            s[n][0] = exp2f(s[n][0] - m_a);
            s[n][1] = exp2f(s[n][1] - m_a);
            s[n][2] = exp2f(s[n][2] - m_b);
            s[n][3] = exp2f(s[n][3] - m_b);
            l_a += s[n][0] + s[n][1];                       // this lane's part; the group sums at the end
            l_b += s[n][2] + s[n][3];
        }
        // O += P V, k = the 8 keys of score tile n relabelled (2t, 2t+1): P's accumulators are A fragments
#pragma unroll
        for (int n = 0; n < FA_BK / 8; n++) {
            FaA pa = fa_a(s[n][0], s[n][2], s[n][1], s[n][3]);
            const int v = (n * 8 + 2 * t) * FA_LD + g;
#pragma unroll
            for (int kd = 0; kd < FA_KD; kd++) {
                fa_mma(o[kd], pa, fa_b_key_tile(Vs, v + kd * 8, v + FA_LD + kd * 8));
            }
        }
        __syncthreads();                                    // the next tile overwrites Ks and Vs
    }
    l_a += __shfl_xor_sync(FA_FULL, l_a, 1);
    l_a += __shfl_xor_sync(FA_FULL, l_a, 2);
    l_b += __shfl_xor_sync(FA_FULL, l_b, 1);
    l_b += __shfl_xor_sync(FA_FULL, l_b, 2);
    float* o_base = out + (size_t)b * T * C + h * hs;
#pragma unroll
    for (int kd = 0; kd < FA_KD; kd++) {
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int dim = kd * 8 + 2 * t + (c & 1);
            int row = c < 2 ? row_a : row_b;
            if (row < T && dim < hs) o_base[(size_t)row * C + dim] = o[kd][c] / (c < 2 ? l_a : l_b);
        }
    }
    if (t == 0) {
        if (row_a < T) lse[(size_t)bh * T + row_a] = m_a + log2f(l_a);
        if (row_b < T) lse[(size_t)bh * T + row_b] = m_b + log2f(l_b);
    }
}

// ------------------------------------------------------------------------------------------ v1 backward

// grid (ceil(T / 64), B * NH), 128 threads. dinp [B,T,3C] += (dq | dk | dv); dq with atomicAdd (several key
// blocks add to one query row), dk and dv with plain += (each belongs to one thread of one block).
// scale = 1/sqrt(hs), scale_log2 = scale * log2(e); lse from the forward, delta from the delta kernel.
__device__ __forceinline__ void fa1_backward(float* dinp, const float* dout, const float* inp, const float* lse,
                                             const float* delta, int B, int T, int C, int NH, float scale_log2,
                                             float scale, int vec) {
    __shared__ float Ks[FA_BC * FA_LD];      // this block's keys: A of S^T, B of dQ
    __shared__ float Qs[FA_BQ * FA_LD];      // the step's queries, scaled into base-2 score units
    __shared__ float dOs[FA_BQ * FA_LD];
    __shared__ float dSs[FA_BC * FA_LDS];    // dS^T [key][query], for dQ = dS K
    __shared__ float Ls[FA_BQ];
    __shared__ float Ds[FA_BQ];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int hs = C / NH, C3 = 3 * C;
    const int bh = blockIdx.y, b = bh / NH, h = bh - b * NH;
    const int k0 = blockIdx.x * FA_BC;                      // the first blocks have the most queries
    const float* base = inp + (size_t)b * T * C3 + h * hs;
    const float* dbase = dout + (size_t)b * T * C + h * hs;
    float* dbase_inp = dinp + (size_t)b * T * C3 + h * hs;

    fa_load_tile(Ks, base + C, k0, FA_BC, T, C3, hs, 1.0f, vec);
    const int kr = warp * 16 + g;                           // this thread's key rows kr and kr + 8
    const int key_a = k0 + kr, key_b = key_a + 8;
    // v of the warp's 16 keys: the A operand of dP^T = V dO^T, kept in registers (as fp32, split on use)
    float vr[FA_KD][4];
#pragma unroll
    for (int kd = 0; kd < FA_KD; kd++) {
        int d0 = kd * 8 + t, d1 = d0 + 4;
        const float* va = base + 2 * C + (size_t)key_a * C3;
        const float* vb = base + 2 * C + (size_t)key_b * C3;
        vr[kd][0] = (key_a < T && d0 < hs) ? va[d0] : 0.0f;
        vr[kd][1] = (key_b < T && d0 < hs) ? vb[d0] : 0.0f;
        vr[kd][2] = (key_a < T && d1 < hs) ? va[d1] : 0.0f;
        vr[kd][3] = (key_b < T && d1 < hs) ? vb[d1] : 0.0f;
    }
    float dk[FA_KD][4], dv[FA_KD][4];
#pragma unroll
    for (int kd = 0; kd < FA_KD; kd++) {
#pragma unroll
        for (int c = 0; c < 4; c++) { dk[kd][c] = 0.0f; dv[kd][c] = 0.0f; }
    }

    for (int i0 = k0; i0 < T; i0 += FA_BQ) {
        fa_load_tile(Qs, base, i0, FA_BQ, T, C3, hs, scale_log2, vec);
        fa_load_tile(dOs, dbase, i0, FA_BQ, T, C, hs, 1.0f, vec);
        if (threadIdx.x < FA_BQ) {
            int q = i0 + threadIdx.x;
            Ls[threadIdx.x] = q < T ? lse[(size_t)bh * T + q] : 0.0f;
            Ds[threadIdx.x] = q < T ? delta[(size_t)bh * T + q] : 0.0f;
        }
        __syncthreads();
        // S^T = K Q^T (16 keys x 32 queries per warp) in base-2 units; B[k = dim][n = query] = Q[query][dim]
        float st[FA_BQ / 8][4];
#pragma unroll
        for (int n = 0; n < FA_BQ / 8; n++) {
            st[n][0] = 0.0f; st[n][1] = 0.0f; st[n][2] = 0.0f; st[n][3] = 0.0f;
        }
#pragma unroll
        for (int kd = 0; kd < FA_KD; kd++) {
            const float* ka = Ks + kr * FA_LD + kd * 8 + t;
            FaA a = fa_a(ka[0], ka[8 * FA_LD], ka[4], ka[8 * FA_LD + 4]);
#pragma unroll
            for (int n = 0; n < FA_BQ / 8; n++) {
                const float* q = Qs + (n * 8 + g) * FA_LD + kd * 8 + t;
                fa_mma(st[n], a, fa_b(q[0], q[4]));
            }
        }
        // P^T = exp2(S^T - lse[query]); 0 where key > query, or past T
#pragma unroll
        for (int n = 0; n < FA_BQ / 8; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) {
                int qi = n * 8 + 2 * t + (c & 1);
                int query = i0 + qi;
                int key = c < 2 ? key_a : key_b;
                st[n][c] = (key <= query && query < T) ? exp2f(st[n][c] - Ls[qi]) : 0.0f;
            }
        }
        // dV += P^T dO: k = the queries of tile n relabelled (2t, 2t+1)
#pragma unroll
        for (int n = 0; n < FA_BQ / 8; n++) {
            FaA pa = fa_a(st[n][0], st[n][2], st[n][1], st[n][3]);
            const float* d = dOs + (n * 8 + 2 * t) * FA_LD + g;
#pragma unroll
            for (int kd = 0; kd < FA_KD; kd++) {
                fa_mma(dv[kd], pa, fa_b(d[kd * 8], d[FA_LD + kd * 8]));
            }
        }
        // dP^T = V dO^T; then dS^T = P^T (dP^T - delta[query]), in place
        float ds[FA_BQ / 8][4];
#pragma unroll
        for (int n = 0; n < FA_BQ / 8; n++) {
            ds[n][0] = 0.0f; ds[n][1] = 0.0f; ds[n][2] = 0.0f; ds[n][3] = 0.0f;
        }
#pragma unroll
        for (int kd = 0; kd < FA_KD; kd++) {
            FaA a = fa_a(vr[kd][0], vr[kd][1], vr[kd][2], vr[kd][3]);
#pragma unroll
            for (int n = 0; n < FA_BQ / 8; n++) {
                const float* d = dOs + (n * 8 + g) * FA_LD + kd * 8 + t;
                fa_mma(ds[n], a, fa_b(d[0], d[4]));
            }
        }
#pragma unroll
        for (int n = 0; n < FA_BQ / 8; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) {
                ds[n][c] = st[n][c] * (ds[n][c] - Ds[n * 8 + 2 * t + (c & 1)]);
            }
        }
        // dK += dS^T Q (Q scaled by scale*log2(e): times ln 2 at the end gives scale * dS^T Q)
#pragma unroll
        for (int n = 0; n < FA_BQ / 8; n++) {
            FaA sa = fa_a(ds[n][0], ds[n][2], ds[n][1], ds[n][3]);
            const float* q = Qs + (n * 8 + 2 * t) * FA_LD + g;
#pragma unroll
            for (int kd = 0; kd < FA_KD; kd++) {
                fa_mma(dk[kd], sa, fa_b(q[kd * 8], q[FA_LD + kd * 8]));
            }
        }
        // dS^T to shared memory: dQ needs it with the queries as rows
#pragma unroll
        for (int n = 0; n < FA_BQ / 8; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) {
                dSs[(kr + (c >> 1) * 8) * FA_LDS + n * 8 + 2 * t + (c & 1)] = ds[n][c];
            }
        }
        __syncthreads();
        // dQ = dS K (32 queries x FA_HS): warp w takes query rows 16*(w/2).. and dim tiles kd = w%2, w%2+2, ...
        // k = the 64 keys, relabelled (2t, 2t+1) within each 8 so that both operands read conflict-free
        {
            const int mt = warp >> 1;
            float dq[(FA_KD + 1) / 2][4];
#pragma unroll
            for (int j = 0; j < (FA_KD + 1) / 2; j++) {
                dq[j][0] = 0.0f; dq[j][1] = 0.0f; dq[j][2] = 0.0f; dq[j][3] = 0.0f;
            }
#pragma unroll
            for (int kk = 0; kk < FA_BC / 8; kk++) {
                const float* sp = dSs + (kk * 8 + 2 * t) * FA_LDS + mt * 16 + g;
                FaA a = fa_a(sp[0], sp[8], sp[FA_LDS], sp[FA_LDS + 8]);
                const float* kp = Ks + (kk * 8 + 2 * t) * FA_LD + g;
#pragma unroll
                for (int j = 0; j < (FA_KD + 1) / 2; j++) {
                    int kd = (warp & 1) + 2 * j;
                    if (kd < FA_KD) fa_mma(dq[j], a, fa_b(kp[kd * 8], kp[FA_LD + kd * 8]));
                }
            }
#pragma unroll
            for (int j = 0; j < (FA_KD + 1) / 2; j++) {
                int kd = (warp & 1) + 2 * j;
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    int dim = kd * 8 + 2 * t + (c & 1);
                    int query = i0 + mt * 16 + g + (c >> 1) * 8;
                    if (kd < FA_KD && dim < hs && query < T) {
                        atomicAdd(dbase_inp + (size_t)query * C3 + dim, dq[j][c] * scale);
                    }
                }
            }
        }
        __syncthreads();                                    // the next step overwrites Qs, dOs, dSs
    }
#pragma unroll
    for (int kd = 0; kd < FA_KD; kd++) {
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int dim = kd * 8 + 2 * t + (c & 1);
            int key = c < 2 ? key_a : key_b;
            if (key < T && dim < hs) {
                float* row = dbase_inp + (size_t)key * C3;
                row[C + dim] += dk[kd][c] * FA_LN2;
                row[2 * C + dim] += dv[kd][c];
            }
        }
    }
}

#else  // FA_VERSION 2
// ========================================================================================== FA_VERSION 2

#ifndef FA_FWD_WM
#define FA_FWD_WM 1                 // forward: 16-row m-tiles per warp (block rows = 16 * FA_FWD_WM * FA_FWD_WARPS)
#endif
#if FA_PRECISE
#define FA2_BK 32                   // forward: keys per tile (K and V as hi and lo: 4 x 32 rows)
#define FA2_BQ 16                   // backward: queries per step (Q and dO as hi and lo: 4 x 16 rows)
#else
#ifdef FA_FWD_BK
#define FA2_BK FA_FWD_BK
#else
#define FA2_BK 64
#endif
#define FA2_BQ 32
#endif
#define FA2_BR (16 * FA_FWD_WM * FA_FWD_WARPS)  // forward: query rows per block
#define FA2_BC 64                   // backward: keys per block
#define FA2_LD (FA_HS + ((8 - FA_HS) & 31))  // row stride of [rows][FA_HS] tiles: 8 (mod 32) floats (72 for 64)
#define FA2_LDT (FA2_BC + 8)        // backward: row stride of the [query][key] dS tile (72)
#define FA2_NQ (FA2_BQ / 8)         // backward: 8-query tiles per step
#define FA2_MT (FA2_BQ / 16)        // backward dQ: 16-query m-tiles per step
#define FA2_WPM (FA_WARPS / FA2_MT) // backward dQ: warps per m-tile
#define FA2_KPW ((FA_KD + FA2_WPM - 1) / FA2_WPM)  // backward dQ: dim tiles per warp
#ifndef FA_BWD_DQ2
#define FA_BWD_DQ2 0                // backward: dQ's products in two accumulator sets (even, odd key tiles)
#endif
#ifndef FA_BWD_NODQ
#define FA_BWD_NODQ 0               // timing diagnostic only (bench/flash_attention.py --tune): dQ never added
#endif
#if !defined(LLMC_CPU_BACKEND) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define FA2_RED2 1                  // red.global.add.v2.f32 (sm_90)
#else
#define FA2_RED2 0
#endif

// The B-fragment lane that holds key (query) 8n + j of a tile, and the C-fragment column that holds it:
// pi(j) = j ^ (j >> 2) = 0 1 2 3 5 4 7 6 (its own inverse). Lane g of a B fragment reads row 8n + pi(g), so C
// column 2t (+1) is key 8n + pi(2t) (pi(2t+1)). Rows 8 (mod 32) floats apart then put the 4 rows of each
// 8-byte half-warp read (pi(0..3), pi(4..7)) and of each 4-byte read of rows pi(2t) or pi(2t+1) (t = 0..3)
// in 4 different 8-bank groups: no bank conflicts anywhere (with the identity, rows 2t would clash).
__device__ __forceinline__ int fa2_pi(int j) { return j ^ (j >> 2); }

// ------------------------------------------------------------------------------------------ v2 tile copies

#if FA_ASYNC
// 16 bytes global -> shared without a register, or 16 zero bytes when !full (src then is not read).
__device__ __forceinline__ void fa2_cp16(float* dst, const float* src, bool full) {
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(full ? 16 : 0)
                 : "memory");
}
#endif

__device__ __forceinline__ void fa2_commit() {
#if FA_ASYNC
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// This thread's copies have landed (a __syncthreads() after it makes everyone's visible to everyone).
__device__ __forceinline__ void fa2_wait() {
#if FA_ASYNC
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

// dst[r * FA2_LD + d] = src[(row0 + r) * stride + d] for row0 + r < T and d < hs, else 0 (r < rows, d < FA_HS).
// vec = 1 (hs % 4 == 0, rows 16-byte aligned): 16-byte pieces, cp.async where FA_ASYNC (the caller commits and
// waits), else plain float4 loads and stores. `rows` is a constant at every call, so the loop unrolls and all
// of a thread's copies are in flight together.
__device__ __forceinline__ void fa2_copy(float* dst, const float* src, int row0, int rows, int T, int stride, int hs,
                                         int vec, int nthreads) {
    if (vec) {
        const int n4 = rows * (FA_HS / 4);
#pragma unroll
        for (int j = 0; j < (n4 + nthreads - 1) / nthreads; j++) {
            const int i = j * nthreads + threadIdx.x;
            if (n4 % nthreads == 0 || i < n4) {
                const int r = i / (FA_HS / 4), d = (i - r * (FA_HS / 4)) * 4;
                const bool full = row0 + r < T && d < hs;
                const float* s = full ? src + (size_t)(row0 + r) * stride + d : src;
                float* p = dst + r * FA2_LD + d;
#if FA_ASYNC
                fa2_cp16(p, s, full);
#else
                reinterpret_cast<float4*>(p)[0] =
                    full ? reinterpret_cast<const float4*>(s)[0] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#endif
            }
        }
    } else {
        for (int i = threadIdx.x; i < rows * FA_HS; i += nthreads) {
            const int r = i / FA_HS, d = i - r * FA_HS;
            dst[r * FA2_LD + d] = (row0 + r < T && d < hs) ? src[(size_t)(row0 + r) * stride + d] : 0.0f;
        }
    }
}

// Precise: a tile copied raw into hi (rows 0 .. rows-1) becomes fa_split's hi there and lo at the same place
// of lo; once per tile, so that no warp splits a shared operand.
__device__ __forceinline__ void fa2_split_tile(float* hi, float* lo, int rows, int nthreads) {
    const int n4 = rows * (FA_HS / 4);
#pragma unroll
    for (int j = 0; j < (n4 + nthreads - 1) / nthreads; j++) {
        const int i = j * nthreads + threadIdx.x;
        if (n4 % nthreads == 0 || i < n4) {
            const int r = i / (FA_HS / 4), o = r * FA2_LD + (i - r * (FA_HS / 4)) * 4;
            const float4 v = reinterpret_cast<const float4*>(hi + o)[0];
            unsigned h0, h1, h2, h3, l0, l1, l2, l3;
            fa_split(v.x, h0, l0);
            fa_split(v.y, h1, l1);
            fa_split(v.z, h2, l2);
            fa_split(v.w, h3, l3);
            reinterpret_cast<float4*>(hi + o)[0] =
                make_float4(__uint_as_float(h0), __uint_as_float(h1), __uint_as_float(h2), __uint_as_float(h3));
            reinterpret_cast<float4*>(lo + o)[0] =
                make_float4(__uint_as_float(l0), __uint_as_float(l1), __uint_as_float(l2), __uint_as_float(l3));
        }
    }
}

// A B fragment (p[i], p[i + 1]) of a tile in shared memory, one 8-byte read (two when precise: lo at p + lo_at).
__device__ __forceinline__ FaB fa2_b_pair(const float* p, int i, int lo_at) {
    FaB f;
    const float2 x = reinterpret_cast<const float2*>(p + i)[0];
    f.hi[0] = __float_as_uint(x.x);
    f.hi[1] = __float_as_uint(x.y);
#if FA_PRECISE
    const float2 y = reinterpret_cast<const float2*>(p + lo_at + i)[0];
    f.lo[0] = __float_as_uint(y.x);
    f.lo[1] = __float_as_uint(y.y);
#else
    f.lo[0] = 0u;
    f.lo[1] = 0u;
#endif
    return f;
}

// A B fragment (p[i0], p[i1]) of a tile in shared memory (split when precise: lo at p + lo_at).
__device__ __forceinline__ FaB fa2_b_two(const float* p, int i0, int i1, int lo_at) {
    FaB f;
    f.hi[0] = __float_as_uint(p[i0]);
    f.hi[1] = __float_as_uint(p[i1]);
#if FA_PRECISE
    f.lo[0] = __float_as_uint(p[lo_at + i0]);
    f.lo[1] = __float_as_uint(p[lo_at + i1]);
#else
    f.lo[0] = 0u;
    f.lo[1] = 0u;
#endif
    return f;
}

// ------------------------------------------------------------------------------------------ v2 forward

// q[row][d] * mul, 0 past T or hs
__device__ __forceinline__ float fa2_q(const float* base, int row, int d, int T, int stride, int hs, float mul) {
    return (row < T && d < hs) ? base[(size_t)row * stride + d] * mul : 0.0f;
}

// grid (ceil(T / FA2_BR), B * NH), 128 threads; as fa1_forward. Per key tile (FA2_BK keys):
//   wait K(j); sync | issue V(j) | [split K] | S = Q K(j)^T, online softmax | wait V(j); sync | issue K(j+1) |
//   [split V] | O += P V(j)
// Each warp owns FA_FWD_WM m-tiles of 16 rows (rows warp*16*WM + 16 mi ..); its Q fragments (pre-scaled into
// base-2 score units) stay in registers for the whole key walk. Shared-memory bytes per mma: 256 / FA_FWD_WM
// (one B fragment, hi only when TF32), read as 8 bytes (K) or 4 (V) per lane, conflict-free.
__device__ __forceinline__ void fa2_forward(float* out, float* lse, const float* inp, int B, int T, int C, int NH,
                                            float scale_log2, int vec) {
    __shared__ __align__(16) float Ks[FA2_BK * FA2_LD * (1 + FA_PRECISE)];  // K tile (hi rows, then lo rows)
    __shared__ __align__(16) float Vs[FA2_BK * FA2_LD * (1 + FA_PRECISE)];  // V tile (likewise)
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int pg = fa2_pi(g), p0 = fa2_pi(2 * t), p1 = fa2_pi(2 * t + 1);
    const int hs = C / NH, C3 = 3 * C;
    const int bh = blockIdx.y, b = bh / NH, h = bh - b * NH;
    const int q0 = (gridDim.x - 1 - blockIdx.x) * FA2_BR;  // the longest rows (most keys) start first
    const float* base = inp + (size_t)b * T * C3 + h * hs;  // q at +0, k at +C, v at +2C of each row
    const int last = min(T, q0 + FA2_BR) - 1;               // the last key any row of this block attends to

    fa2_copy(Ks, base + C, 0, FA2_BK, T, C3, hs, vec, FA_FWD_THREADS);     // K(0) in flight while Q is read
    fa2_commit();

    // Q fragments of the warp's m-tiles, k relabelled: k = t is dim kd*8 + 2t, k = t + 4 is dim kd*8 + 2t + 1
    const int row0 = q0 + warp * 16 * FA_FWD_WM;            // the warp's first row
    int top[FA_FWD_WM];                                     // the last real row of each m-tile
    FaA qa[FA_FWD_WM][FA_KD];
#pragma unroll
    for (int mi = 0; mi < FA_FWD_WM; mi++) {
        const int ra = row0 + 16 * mi + g, rb = ra + 8;
        top[mi] = min(row0 + 16 * mi + 15, T - 1);
#pragma unroll
        for (int kd = 0; kd < FA_KD; kd++) {
            const int d = kd * 8 + 2 * t;
            qa[mi][kd] = fa_a(fa2_q(base, ra, d, T, C3, hs, scale_log2), fa2_q(base, rb, d, T, C3, hs, scale_log2),
                              fa2_q(base, ra, d + 1, T, C3, hs, scale_log2),
                              fa2_q(base, rb, d + 1, T, C3, hs, scale_log2));
        }
    }
    float o[FA_FWD_WM][FA_KD][4];
    float m[FA_FWD_WM][2], l[FA_FWD_WM][2];  // finite start: exp2(m - m') never sees inf - inf
#pragma unroll
    for (int mi = 0; mi < FA_FWD_WM; mi++) {
#pragma unroll
        for (int kd = 0; kd < FA_KD; kd++) {
            o[mi][kd][0] = 0.0f; o[mi][kd][1] = 0.0f; o[mi][kd][2] = 0.0f; o[mi][kd][3] = 0.0f;
        }
        m[mi][0] = -1e30f; m[mi][1] = -1e30f; l[mi][0] = 0.0f; l[mi][1] = 0.0f;
    }

    for (int k0 = 0; k0 <= last; k0 += FA2_BK) {
        fa2_wait();
        __syncthreads();                                    // K(k0) landed; every warp is past the last P V
        fa2_copy(Vs, base + 2 * C, k0, FA2_BK, T, C3, hs, vec, FA_FWD_THREADS);
        fa2_commit();
#if FA_PRECISE
        fa2_split_tile(Ks, Ks + FA2_BK * FA2_LD, FA2_BK, FA_FWD_THREADS);
        __syncthreads();
#endif
        // S = Q K^T: B[k][n = key pi(g)] = K[key][dim]; 8-key tiles past an m-tile's last row are skipped
        float s[FA_FWD_WM][FA2_BK / 8][4];
#pragma unroll
        for (int mi = 0; mi < FA_FWD_WM; mi++) {
#pragma unroll
            for (int n = 0; n < FA2_BK / 8; n++) {
                s[mi][n][0] = 0.0f; s[mi][n][1] = 0.0f; s[mi][n][2] = 0.0f; s[mi][n][3] = 0.0f;
            }
        }
#pragma unroll
        for (int kd = 0; kd < FA_KD; kd++) {
#pragma unroll
            for (int n = 0; n < FA2_BK / 8; n++) {
                if (k0 + n * 8 <= top[FA_FWD_WM - 1]) {
                    const FaB kb = fa2_b_pair(Ks, (n * 8 + pg) * FA2_LD + kd * 8 + 2 * t, FA2_BK * FA2_LD);
#pragma unroll
                    for (int mi = 0; mi < FA_FWD_WM; mi++) {
                        if (k0 + n * 8 <= top[mi]) fa_mma_fwd(s[mi][n], qa[mi][kd], kb);
                    }
                }
            }
        }
#pragma unroll
        for (int mi = 0; mi < FA_FWD_WM; mi++) {
            const int ra = row0 + 16 * mi + g, rb = ra + 8;
            // causal mask (key > row) and keys past T, only on tiles that reach them
            if (k0 + FA2_BK - 1 > row0 + 16 * mi || k0 + FA2_BK > T) {
#pragma unroll
                for (int n = 0; n < FA2_BK / 8; n++) {
#pragma unroll
                    for (int c = 0; c < 4; c++) {
                        const int key = k0 + n * 8 + ((c & 1) ? p1 : p0);
                        const int row = c < 2 ? ra : rb;
                        if (key > row || key >= T) s[mi][n][c] = -INFINITY;
                    }
                }
            }
            // online softmax: the rows' new maxima (a row's scores sit in the 4 lanes of its group)
            float mx_a = m[mi][0], mx_b = m[mi][1];
#pragma unroll
            for (int n = 0; n < FA2_BK / 8; n++) {
                mx_a = fmaxf(mx_a, fmaxf(s[mi][n][0], s[mi][n][1]));
                mx_b = fmaxf(mx_b, fmaxf(s[mi][n][2], s[mi][n][3]));
            }
            mx_a = fmaxf(mx_a, __shfl_xor_sync(FA_FULL, mx_a, 1));
            mx_a = fmaxf(mx_a, __shfl_xor_sync(FA_FULL, mx_a, 2));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(FA_FULL, mx_b, 1));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(FA_FULL, mx_b, 2));
            const float alpha_a = exp2f(m[mi][0] - mx_a), alpha_b = exp2f(m[mi][1] - mx_b);
            m[mi][0] = mx_a;
            m[mi][1] = mx_b;
            l[mi][0] *= alpha_a;
            l[mi][1] *= alpha_b;
#pragma unroll
            for (int kd = 0; kd < FA_KD; kd++) {
                o[mi][kd][0] *= alpha_a; o[mi][kd][1] *= alpha_a; o[mi][kd][2] *= alpha_b; o[mi][kd][3] *= alpha_b;
            }
#pragma unroll
            for (int n = 0; n < FA2_BK / 8; n++) {
                s[mi][n][0] = exp2f(s[mi][n][0] - mx_a);
                s[mi][n][1] = exp2f(s[mi][n][1] - mx_a);
                s[mi][n][2] = exp2f(s[mi][n][2] - mx_b);
                s[mi][n][3] = exp2f(s[mi][n][3] - mx_b);
                l[mi][0] += s[mi][n][0] + s[mi][n][1];      // this lane's part; the group sums at the end
                l[mi][1] += s[mi][n][2] + s[mi][n][3];
            }
        }
        fa2_wait();
        __syncthreads();                                    // V(k0) landed; every warp is past S (Ks free)
        if (k0 + FA2_BK <= last) fa2_copy(Ks, base + C, k0 + FA2_BK, FA2_BK, T, C3, hs, vec, FA_FWD_THREADS);
        fa2_commit();
#if FA_PRECISE
        fa2_split_tile(Vs, Vs + FA2_BK * FA2_LD, FA2_BK, FA_FWD_THREADS);
        __syncthreads();
#endif
        // O += P V: k = the keys pi(2t), pi(2t+1) of tile n (C columns 2t, 2t+1): P's accumulators are A fragments
#pragma unroll
        for (int n = 0; n < FA2_BK / 8; n++) {
            if (k0 + n * 8 <= top[FA_FWD_WM - 1]) {
                FaA pa[FA_FWD_WM];
#pragma unroll
                for (int mi = 0; mi < FA_FWD_WM; mi++) {
                    pa[mi] = fa_a(s[mi][n][0], s[mi][n][2], s[mi][n][1], s[mi][n][3]);
                }
                const int v0 = (n * 8 + p0) * FA2_LD + g, v1 = (n * 8 + p1) * FA2_LD + g;
#pragma unroll
                for (int kd = 0; kd < FA_KD; kd++) {
                    const FaB vb = fa2_b_two(Vs, v0 + kd * 8, v1 + kd * 8, FA2_BK * FA2_LD);
#pragma unroll
                    for (int mi = 0; mi < FA_FWD_WM; mi++) {
                        if (k0 + n * 8 <= top[mi]) fa_mma_fwd(o[mi][kd], pa[mi], vb);
                    }
                }
            }
        }
    }
    float* o_base = out + (size_t)b * T * C + h * hs;
#pragma unroll
    for (int mi = 0; mi < FA_FWD_WM; mi++) {
        float l_a = l[mi][0], l_b = l[mi][1];
        l_a += __shfl_xor_sync(FA_FULL, l_a, 1);
        l_a += __shfl_xor_sync(FA_FULL, l_a, 2);
        l_b += __shfl_xor_sync(FA_FULL, l_b, 1);
        l_b += __shfl_xor_sync(FA_FULL, l_b, 2);
        const int ra = row0 + 16 * mi + g, rb = ra + 8;
#pragma unroll
        for (int kd = 0; kd < FA_KD; kd++) {
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int dim = kd * 8 + 2 * t + (c & 1);
                const int row = c < 2 ? ra : rb;
                if (row < T && dim < hs) o_base[(size_t)row * C + dim] = o[mi][kd][c] / (c < 2 ? l_a : l_b);
            }
        }
        if (t == 0) {
            if (ra < T) lse[(size_t)bh * T + ra] = m[mi][0] + log2f(l_a);
            if (rb < T) lse[(size_t)bh * T + rb] = m[mi][1] + log2f(l_b);
        }
    }
}

// ------------------------------------------------------------------------------------------ v2 backward

// lse and delta of the queries a thread's S^T columns hold in a step from i0: i0 + 8n + pi(2t) (e = 0) and
// pi(2t + 1) (e = 1); 0 past T.
struct Fa2Rows { float l[FA2_NQ][2]; float d[FA2_NQ][2]; };

__device__ __forceinline__ Fa2Rows fa2_rows(const float* lse, const float* delta, size_t off, int T, int i0, int p0,
                                            int p1) {
    Fa2Rows r;
#pragma unroll
    for (int n = 0; n < FA2_NQ; n++) {
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int q = i0 + n * 8 + (e ? p1 : p0);
            r.l[n][e] = q < T ? lse[off + q] : 0.0f;
            r.d[n][e] = q < T ? delta[off + q] : 0.0f;
        }
    }
    return r;
}

// p[0] += x, p[1] += y atomically (pair: p is 8-byte aligned)
__device__ __forceinline__ void fa2_add2(float* p, float x, float y, bool pair) {
#if FA2_RED2
    if (pair) {
        asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(p), "f"(x), "f"(y) : "memory");
        return;
    }
#endif
    atomicAdd(p, x);
    atomicAdd(p + 1, y);
}

// grid (ceil(T / 64), B * NH), 128 threads; as fa1_backward. Per step (FA2_BQ queries from the diagonal down):
//   wait Q, dO; sync | [split Q, dO] | S^T, P^T, dP^T, dS^T, dV += P^T dO, dK += dS^T Q (registers) |
//   dS -> shared; sync | issue the next Q, dO; load its lse, delta | dQ = dS K, atomics
// Warp w owns keys k0 + 16w .. +15: its V (A of dP^T = V dO^T) in registers; K in shared memory serves as the
// A of S^T (8-byte reads) and the B of dQ. Q is unscaled in shared memory (a raw copy): S^T is scaled after the
// product and dK = scale dS^T Q at the end.
__device__ __forceinline__ void fa2_backward(float* dinp, const float* dout, const float* inp, const float* lse,
                                             const float* delta, int B, int T, int C, int NH, float scale_log2,
                                             float scale, int vec) {
    __shared__ __align__(16) float Ks[FA2_BC * FA2_LD];                    // this block's keys
    __shared__ __align__(16) float Qs[FA2_BQ * FA2_LD * (1 + FA_PRECISE)];  // the step's queries (hi, lo)
    __shared__ __align__(16) float dOs[FA2_BQ * FA2_LD * (1 + FA_PRECISE)];
    __shared__ __align__(16) float dSt[FA2_BQ * FA2_LDT];  // dS [query][key]: key 8a + j in column 8a + pi(j)
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int pg = fa2_pi(g), p0 = fa2_pi(2 * t), p1 = fa2_pi(2 * t + 1);
    const int hs = C / NH, C3 = 3 * C;
    const int bh = blockIdx.y, b = bh / NH, h = bh - b * NH;
    const int k0 = blockIdx.x * FA2_BC;                     // the first blocks have the most queries
    const float* base = inp + (size_t)b * T * C3 + h * hs;
    const float* dbase = dout + (size_t)b * T * C + h * hs;
    float* dbase_inp = dinp + (size_t)b * T * C3 + h * hs;
#if FA2_RED2
    const bool pair = vec && (reinterpret_cast<size_t>(dinp) & 7) == 0;
#else
    const bool pair = false;
#endif

    fa2_copy(Ks, base + C, k0, FA2_BC, T, C3, hs, vec, FA_THREADS);
    fa2_copy(Qs, base, k0, FA2_BQ, T, C3, hs, vec, FA_THREADS);
    fa2_copy(dOs, dbase, k0, FA2_BQ, T, C, hs, vec, FA_THREADS);
    fa2_commit();
    const int kr = warp * 16 + g;                           // this thread's key rows kr and kr + 8
    const int key_a = k0 + kr, key_b = key_a + 8;
    const int kmin = k0 + warp * 16;                        // the warp's first key
    // V of the warp's 16 keys: the A operand of dP^T = V dO^T (k relabelled: dims kd*8 + 2t, kd*8 + 2t + 1)
    FaA va[FA_KD];
#pragma unroll
    for (int kd = 0; kd < FA_KD; kd++) {
        const int d = kd * 8 + 2 * t;
        va[kd] = fa_a(fa2_q(base + 2 * C, key_a, d, T, C3, hs, 1.0f), fa2_q(base + 2 * C, key_b, d, T, C3, hs, 1.0f),
                      fa2_q(base + 2 * C, key_a, d + 1, T, C3, hs, 1.0f),
                      fa2_q(base + 2 * C, key_b, d + 1, T, C3, hs, 1.0f));
    }
    float dk[FA_KD][4], dv[FA_KD][4];
#pragma unroll
    for (int kd = 0; kd < FA_KD; kd++) {
#pragma unroll
        for (int c = 0; c < 4; c++) { dk[kd][c] = 0.0f; dv[kd][c] = 0.0f; }
    }
    Fa2Rows rs = fa2_rows(lse, delta, (size_t)bh * T, T, k0, p0, p1);

    for (int i0 = k0; i0 < T; i0 += FA2_BQ) {
        fa2_wait();
        __syncthreads();                                    // Q, dO landed; every warp is past the last dQ
#if FA_PRECISE
        fa2_split_tile(Qs, Qs + FA2_BQ * FA2_LD, FA2_BQ, FA_THREADS);
        fa2_split_tile(dOs, dOs + FA2_BQ * FA2_LD, FA2_BQ, FA_THREADS);
        __syncthreads();
#endif
        // S^T = K Q^T (16 keys x FA2_BQ queries per warp; B[k = dim][n = query pi(g)]) and dP^T = V dO^T,
        // interleaved: 2 FA2_NQ independent accumulator chains for the tensor pipe. 8-query tiles that are all
        // before the warp's first key are skipped (P^T = 0 there)
        float st[FA2_NQ][4], ds[FA2_NQ][4];
#pragma unroll
        for (int n = 0; n < FA2_NQ; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) { st[n][c] = 0.0f; ds[n][c] = 0.0f; }
        }
#pragma unroll
        for (int kd = 0; kd < FA_KD; kd++) {
            const float2 ka = reinterpret_cast<const float2*>(Ks + kr * FA2_LD + kd * 8 + 2 * t)[0];
            const float2 kb = reinterpret_cast<const float2*>(Ks + (kr + 8) * FA2_LD + kd * 8 + 2 * t)[0];
            const FaA a = fa_a(ka.x, kb.x, ka.y, kb.y);
#pragma unroll
            for (int n = 0; n < FA2_NQ; n++) {
                if (i0 + n * 8 + 7 >= kmin) {
                    const int at = (n * 8 + pg) * FA2_LD + kd * 8 + 2 * t;
                    fa_mma(st[n], a, fa2_b_pair(Qs, at, FA2_BQ * FA2_LD));
                    fa_mma(ds[n], va[kd], fa2_b_pair(dOs, at, FA2_BQ * FA2_LD));
                }
            }
        }
        // P^T = exp2(s log2(e) S^T - lse[query]); 0 where key > query, or past T; dS^T = P^T (dP^T - delta[query])
#pragma unroll
        for (int n = 0; n < FA2_NQ; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int query = i0 + n * 8 + ((c & 1) ? p1 : p0);
                const int key = c < 2 ? key_a : key_b;
                st[n][c] = (key <= query && query < T) ? exp2f(st[n][c] * scale_log2 - rs.l[n][c & 1]) : 0.0f;
            }
        }
#pragma unroll
        for (int n = 0; n < FA2_NQ; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) ds[n][c] = st[n][c] * (ds[n][c] - rs.d[n][c & 1]);
        }
        // dV += P^T dO and dK += dS^T Q: k = the queries pi(2t), pi(2t+1) of tile n (C columns 2t, 2t+1)
#pragma unroll
        for (int n = 0; n < FA2_NQ; n++) {
            if (i0 + n * 8 + 7 >= kmin) {
                const FaA pa = fa_a(st[n][0], st[n][2], st[n][1], st[n][3]);
                const FaA sa = fa_a(ds[n][0], ds[n][2], ds[n][1], ds[n][3]);
                const int r0 = (n * 8 + p0) * FA2_LD + g, r1 = (n * 8 + p1) * FA2_LD + g;
#pragma unroll
                for (int kd = 0; kd < FA_KD; kd++) {
                    fa_mma(dv[kd], pa, fa2_b_two(dOs, r0 + kd * 8, r1 + kd * 8, FA2_BQ * FA2_LD));
                    fa_mma(dk[kd], sa, fa2_b_two(Qs, r0 + kd * 8, r1 + kd * 8, FA2_BQ * FA2_LD));
                }
            }
        }
        // dS to shared memory for dQ = dS K (the queries as rows)
#pragma unroll
        for (int n = 0; n < FA2_NQ; n++) {
#pragma unroll
            for (int c = 0; c < 4; c++) {
                dSt[(n * 8 + ((c & 1) ? p1 : p0)) * FA2_LDT + warp * 16 + (c >> 1) * 8 + pg] = ds[n][c];
            }
        }
        __syncthreads();                                    // dS complete; Qs and dOs are read no more
        const int i1 = i0 + FA2_BQ;
        if (i1 < T) {
            fa2_copy(Qs, base, i1, FA2_BQ, T, C3, hs, vec, FA_THREADS);
            fa2_copy(dOs, dbase, i1, FA2_BQ, T, C, hs, vec, FA_THREADS);
        }
        fa2_commit();
        rs = fa2_rows(lse, delta, (size_t)bh * T, T, i1, p0, p1);
        // dQ = dS K (FA2_BQ queries x FA_HS): warp w takes m-tile w / FA2_WPM and dim tiles w % FA2_WPM + FA2_WPM j;
        // k = the keys 8kk + pi(2t), pi(2t+1), in dS columns 8kk + 2t, 2t + 1: one 8-byte read per A row
        {
            const int mt = warp / FA2_WPM, w = warp % FA2_WPM;
            float dq[FA2_KPW][4], dq2[FA_BWD_DQ2 ? FA2_KPW : 1][4];  // dq2: the odd kk (FA_BWD_DQ2)
#pragma unroll
            for (int j = 0; j < FA2_KPW; j++) {
                dq[j][0] = 0.0f; dq[j][1] = 0.0f; dq[j][2] = 0.0f; dq[j][3] = 0.0f;
                dq2[FA_BWD_DQ2 ? j : 0][0] = 0.0f; dq2[FA_BWD_DQ2 ? j : 0][1] = 0.0f;
                dq2[FA_BWD_DQ2 ? j : 0][2] = 0.0f; dq2[FA_BWD_DQ2 ? j : 0][3] = 0.0f;
            }
#pragma unroll
            for (int kk = 0; kk < FA2_BC / 8; kk++) {
                const float2 sa = reinterpret_cast<const float2*>(dSt + (mt * 16 + g) * FA2_LDT + kk * 8 + 2 * t)[0];
                const float2 sb =
                    reinterpret_cast<const float2*>(dSt + (mt * 16 + g + 8) * FA2_LDT + kk * 8 + 2 * t)[0];
                const FaA a = fa_a(sa.x, sb.x, sa.y, sb.y);
                const int b0 = (kk * 8 + p0) * FA2_LD + g, b1 = (kk * 8 + p1) * FA2_LD + g;
#pragma unroll
                for (int j = 0; j < FA2_KPW; j++) {
                    const int kd = w + FA2_WPM * j;
                    if (kd < FA_KD) {
                        fa_mma((FA_BWD_DQ2 && (kk & 1)) ? dq2[FA_BWD_DQ2 ? j : 0] : dq[j], a,
                               fa_b(Ks[b0 + kd * 8], Ks[b1 + kd * 8]));
                    }
                }
            }
#if FA_BWD_DQ2
#pragma unroll
            for (int j = 0; j < FA2_KPW; j++) {
                dq[j][0] += dq2[j][0]; dq[j][1] += dq2[j][1]; dq[j][2] += dq2[j][2]; dq[j][3] += dq2[j][3];
            }
#endif
#pragma unroll
            for (int j = 0; j < FA2_KPW; j++) {
                const int kd = w + FA2_WPM * j, dim = kd * 8 + 2 * t;
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int query = i0 + mt * 16 + g + 8 * hf;
                    if (kd < FA_KD && dim < hs && query < T && !FA_BWD_NODQ) {
                        float* p = dbase_inp + (size_t)query * C3 + dim;
                        if (dim + 1 < hs) {
                            fa2_add2(p, dq[j][2 * hf] * scale, dq[j][2 * hf + 1] * scale, pair);
                        } else {
                            atomicAdd(p, dq[j][2 * hf] * scale);
                        }
                    }
                }
            }
        }
    }
#pragma unroll
    for (int kd = 0; kd < FA_KD; kd++) {
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const int dim = kd * 8 + 2 * t + (c & 1);
            const int key = c < 2 ? key_a : key_b;
            if (key < T && dim < hs) {
                float* row = dbase_inp + (size_t)key * C3;
                row[C + dim] += dk[kd][c] * scale;
                row[2 * C + dim] += dv[kd][c];
            }
        }
    }
}

#endif  // FA_VERSION

// ------------------------------------------------------------------------------------------ kernels

// forward: grid (ceil(T / rows), B * NH), FA_FWD_THREADS threads; rows = 64 (version 1) or
// 16 * FA_FWD_WM * FA_FWD_WARPS (version 2).
// out [B,T,C] and lse [B,NH,T] are written (not accumulated). scale_log2 = log2(e) / sqrt(hs).
extern "C" __global__ void __launch_bounds__(FA_FWD_THREADS, FA_FWD_MINB)
flash_attention_forward_kernel(float* out, float* lse, const float* inp, int B, int T, int C, int NH,
                               float scale_log2, int vec) {
#if FA_VERSION == 1
    fa1_forward(out, lse, inp, B, T, C, NH, scale_log2, vec);
#else
    fa2_forward(out, lse, inp, B, T, C, NH, scale_log2, vec);
#endif
}

// delta[b,h,t] = dout[b,t,h-th head] . out[b,t,h-th head]: one group of `lanes` threads per (b,t,h), groups
// of a warp on consecutive heads of one position (contiguous memory). Grid-stride over rows; every lane of a
// warp makes the same trips so the shuffles always see the whole warp.
extern "C" __global__ void flash_attention_delta_kernel(float* delta, const float* out, const float* dout,
                                                        int B, int T, int C, int NH, int lanes) {
    const int hs = C / NH, N = B * T * NH;
    const int lane = threadIdx.x % lanes;
    const int groups = blockDim.x / lanes;
    const int group = blockIdx.x * groups + threadIdx.x / lanes;
    const int warp_first = group - (threadIdx.x % 32) / lanes;
    const int stride = gridDim.x * groups;
    for (int first = warp_first; first < N; first += stride) {
        int row = group + (first - warp_first);             // (b*T + t)*NH + h
        int n = row < N ? hs : 0;
        int rr = row < N ? row : 0;
        int bt = rr / NH, h = rr - bt * NH;
        size_t off = (size_t)bt * C + h * hs;
        float acc = 0.0f;
        for (int d = lane; d < n; d += lanes) acc += out[off + d] * dout[off + d];
        for (int k = lanes / 2; k > 0; k >>= 1) acc += __shfl_xor_sync(FA_FULL, acc, k);
        if (lane == 0 && row < N) {
            int b = bt / T, tt = bt - b * T;
            delta[((size_t)b * NH + h) * T + tt] = acc;
        }
    }
}

// backward: grid (ceil(T / 64), B * NH), 128 threads. dinp [B,T,3C] += (dq | dk | dv); dq with atomicAdd
// (several key blocks add to one query row), dk and dv with plain += (each belongs to one thread of one block).
// scale = 1/sqrt(hs), scale_log2 = scale * log2(e); lse from the forward, delta from the delta kernel.
extern "C" __global__ void __launch_bounds__(FA_THREADS, FA_BWD_MINB)
flash_attention_backward_kernel(float* dinp, const float* dout, const float* inp, const float* lse,
                                const float* delta, int B, int T, int C, int NH, float scale_log2,
                                float scale, int vec) {
#if FA_VERSION == 1
    fa1_backward(dinp, dout, inp, lse, delta, B, T, C, NH, scale_log2, scale, vec);
#else
    fa2_backward(dinp, dout, inp, lse, delta, B, T, C, NH, scale_log2, scale, vec);
#endif
}
