// The linear layer as a tiled shared-memory SGEMM, forward and backward.
//
// forward:   out[M,N] = inp[M,K] @ weight[N,K]^T + bias[N]       (M = B*T, K = C, N = OC)
// backward:  dinp[M,K]    += dout[M,N] @ weight[N,K]
//            dweight[N,K] += dout[M,N]^T @ inp[M,K]
//            dbias[N]     += sum_m dout[m, :]
//
// All three products are one generic kernel, Cm[M,N] (+)= sum_k A(m,k) B(k,n) (+ bias[n]), for the two
// layouts each operand comes in: "k-contiguous" (A(m,k) = A[m*lda + k], B(k,n) = B[n*ldb + k]) or
// "m/n-contiguous" (A(m,k) = A[k*lda + m], B(k,n) = B[k*ldb + n]). A template parameter picks how a tile
// is read from global memory so the reads are coalesced either way.
//
// Tiling (256 threads, a 128 x 128 tile of Cm per block, K in steps of 8):
// - each step copies a 128 x 8 slab of A and an 8 x 128 slab of B into shared memory, stored k-major
//   (As[k][m], Bs[k][n]), each thread moving one float4 of each (four consecutive floats in memory);
// - each thread owns an 8 x 8 block of Cm in registers (register blocking): per k it reads 8 values of A
//   and 8 of B from shared memory and does 64 FMAs, so every shared-memory read feeds 8 FMAs. Its rows
//   are {ty*4 .. ty*4+3} and {64+ty*4 .. 64+ty*4+3}, its columns likewise with tx: a warp's float4 reads
//   of Bs then cover 64 consecutive floats (no bank conflicts), and its float4 stores to Cm are coalesced;
// - two shared buffers (double buffering): while the block computes on one, the next slab is fetched
//   from global memory into registers and stored into the other, so one barrier per step suffices;
// - the As/Bs rows are padded by 4 floats, so the transposing stores of k-contiguous slabs (threads 2i
//   and 2i+1 write k and k+4 of one row) fall in different banks.
// Any M, N, K work: loads outside the matrices read 0, stores outside are skipped. float4 global accesses
// are used only where the host said the layout allows (vecA/vecB/vecC: leading dimension % 4 == 0 and a
// 16-byte-aligned base) and the four elements are inside the matrix; otherwise one float at a time.
// Split-K (backward only, where the result accumulates anyway): with gridDim.z = S > 1, block z sums only
// its share of the k range and atomicAdds its partial tile into Cm. dweight's product has few tiles (768 x
// 768 is 36 blocks for 132 SMs) but a long K (B*T), so the wrapper splits it until the GPU is full. The
// order of the S additions then varies from run to run (S = 1 is deterministic).

#define BM 128
#define BN 128
#define BK 8
#define LDS (BM + 4)                  // padded row length of As and Bs (BM == BN)
#define TILE_FLOATS (BK * LDS)        // one buffer of As (or of Bs)
#define NTHREADS 256

__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ void st4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }

// Fetch this thread's 4 floats of the slab k0..k0+7 of operand X, whose element (r, k) (r = row of A or
// column of B) lives at X[r*ld + k] (K_CONTIG) or X[k*ld + r]. R = M or N. Out-of-matrix elements are 0.
template <bool K_CONTIG>
__device__ __forceinline__ void fetch(float (&v)[4], const float* X, int ld, int R, int K, int r0, int k0,
                                      int vec) {
    int tid = threadIdx.x;
    if (K_CONTIG) {                   // 128 rows x 8 k: thread -> row tid/2, k (tid%2)*4 .. +3
        int r = r0 + (tid >> 1), k = k0 + (tid & 1) * 4;
        const float* p = X + (size_t)r * ld + k;
        if (vec && r < R && k + 3 < K) {
            float4 f = ld4(p);
            v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
        } else {
            for (int j = 0; j < 4; j++) v[j] = (r < R && k + j < K) ? p[j] : 0.0f;
        }
    } else {                          // 8 k x 128 rows: thread -> k tid/32, rows (tid%32)*4 .. +3
        int k = k0 + (tid >> 5), r = r0 + (tid & 31) * 4;
        const float* p = X + (size_t)k * ld + r;
        if (vec && k < K && r + 3 < R) {
            float4 f = ld4(p);
            v[0] = f.x; v[1] = f.y; v[2] = f.z; v[3] = f.w;
        } else {
            for (int j = 0; j < 4; j++) v[j] = (k < K && r + j < R) ? p[j] : 0.0f;
        }
    }
}

// Store the fetched floats into the k-major shared tile S[k][r] (the same thread-to-element map).
template <bool K_CONTIG>
__device__ __forceinline__ void stash(float* S, const float (&v)[4]) {
    int tid = threadIdx.x;
    if (K_CONTIG) {
        int r = tid >> 1, k = (tid & 1) * 4;
        for (int j = 0; j < 4; j++) S[(k + j) * LDS + r] = v[j];
    } else {
        int k = tid >> 5, r = (tid & 31) * 4;
        st4(S + k * LDS + r, make_float4(v[0], v[1], v[2], v[3]));
    }
}

// Cm[M,N] (row-major, ldc = N) = (accumulate ? Cm : 0) + A B (+ bias). smem: 4 * TILE_FLOATS floats.
template <bool A_KCONTIG, bool B_KCONTIG>
__device__ void gemm_tile(float* Cm, const float* A, const float* Bm, const float* bias, float* smem,
                          int M, int N, int K, int lda, int ldb, int accumulate, int has_bias,
                          int vecA, int vecB, int vecC) {
    float* As = smem;                         // [2][BK][LDS]
    float* Bs = smem + 2 * TILE_FLOATS;       // [2][BK][LDS]
    int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    // this block's k range: slice blockIdx.z of gridDim.z, a whole number of k-steps each
    int kchunk = ((K + gridDim.z - 1) / gridDim.z + BK - 1) / BK * BK;
    int kbeg = blockIdx.z * kchunk;
    int kend = min(K, kbeg + kchunk);           // fetch reads 0 at k >= kend: the slice ends there

    float acc[8][8];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) acc[i][j] = 0.0f;

    float va[4], vb[4];
    fetch<A_KCONTIG>(va, A, lda, M, kend, m0, kbeg, vecA);
    fetch<B_KCONTIG>(vb, Bm, ldb, N, kend, n0, kbeg, vecB);
    stash<A_KCONTIG>(As, va);
    stash<B_KCONTIG>(Bs, vb);
    __syncthreads();

    int buf = 0;
    for (int k0 = kbeg; k0 < kend; k0 += BK) {
        bool more = k0 + BK < kend;
        if (more) {                           // next slab: global -> registers, in flight during the FMAs
            fetch<A_KCONTIG>(va, A, lda, M, kend, m0, k0 + BK, vecA);
            fetch<B_KCONTIG>(vb, Bm, ldb, N, kend, n0, k0 + BK, vecB);
        }
        const float* as = As + buf * TILE_FLOATS;
        const float* bs = Bs + buf * TILE_FLOATS;
#pragma unroll
        for (int k = 0; k < BK; k++) {
            float4 a0 = ld4(as + k * LDS + ty * 4), a1 = ld4(as + k * LDS + 64 + ty * 4);
            float4 b0 = ld4(bs + k * LDS + tx * 4), b1 = ld4(bs + k * LDS + 64 + tx * 4);
            float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
            float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
            for (int i = 0; i < 8; i++)
#pragma unroll
                for (int j = 0; j < 8; j++) acc[i][j] += a[i] * b[j];
        }
        if (more) {                           // the other buffer: nobody reads it during this step
            stash<A_KCONTIG>(As + (buf ^ 1) * TILE_FLOATS, va);
            stash<B_KCONTIG>(Bs + (buf ^ 1) * TILE_FLOATS, vb);
        }
        // the next slab is complete, and every thread is done reading this one before it is overwritten
        __syncthreads();
        buf ^= 1;
    }

    for (int i = 0; i < 8; i++) {
        int m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + i - 4);
        if (m >= M) continue;
        for (int g = 0; g < 2; g++) {
            int n = n0 + g * 64 + tx * 4;
            float* c = Cm + (size_t)m * N + n;
            float v[4];
            for (int j = 0; j < 4; j++) {
                v[j] = acc[i][g * 4 + j];
                if (has_bias && n + j < N) v[j] += bias[n + j];
            }
            if (gridDim.z > 1) {                  // split-K: other slices add into the same elements
                for (int j = 0; j < 4; j++)
                    if (n + j < N) atomicAdd(c + j, v[j]);
            } else if (vecC && n + 3 < N) {
                float4 old = accumulate ? ld4(c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                st4(c, make_float4(old.x + v[0], old.y + v[1], old.z + v[2], old.w + v[3]));
            } else {
                for (int j = 0; j < 4; j++)
                    if (n + j < N) c[j] = (accumulate ? c[j] : 0.0f) + v[j];
            }
        }
    }
}

// grid = (ceil(M/128), ceil(N/128)) (gridDim.z must be 1: out is written, not accumulated), block = 256.
// M = B*T, N = OC, K = C. bias is read only if has_bias.
extern "C" __global__ __launch_bounds__(NTHREADS, 2) void matmul_forward_kernel(
        float* out, const float* inp, const float* weight, const float* bias, int M, int N, int K,
        int has_bias, int vecA, int vecB, int vecC) {
    __shared__ __align__(16) float smem[4 * TILE_FLOATS];
    gemm_tile<true, true>(out, inp, weight, bias, smem, M, N, K, K, K, 0, has_bias, vecA, vecB, vecC);
}

// dinp[M,K] += dout[M,N] @ weight[N,K]: in the generic names the product is [M, C] with reduction over
// OC: A(m,o) = dout[m*OC + o] (k-contiguous), B(o,c) = weight[o*C + c] (n-contiguous).
// grid = (ceil(BT/128), ceil(C/128), split-K slices).
extern "C" __global__ __launch_bounds__(NTHREADS, 2) void matmul_backward_dinp_kernel(
        float* dinp, const float* dout, const float* weight, int BT, int C, int OC,
        int vecA, int vecB, int vecC) {
    __shared__ __align__(16) float smem[4 * TILE_FLOATS];
    gemm_tile<true, false>(dinp, dout, weight, weight, smem, BT, C, OC, OC, C, 1, 0, vecA, vecB, vecC);
}

// dweight[OC,C] += dout^T @ inp: product [OC, C] with reduction over the BT positions:
// A(o,m) = dout[m*OC + o] (o-contiguous), B(m,c) = inp[m*C + c] (c-contiguous). grid = (ceil(OC/128),
// ceil(C/128), split-K slices).
extern "C" __global__ __launch_bounds__(NTHREADS, 2) void matmul_backward_dweight_kernel(
        float* dweight, const float* dout, const float* inp, int BT, int C, int OC,
        int vecA, int vecB, int vecC) {
    __shared__ __align__(16) float smem[4 * TILE_FLOATS];
    gemm_tile<false, false>(dweight, dout, inp, inp, smem, OC, C, BT, OC, C, 1, 0, vecA, vecB, vecC);
}

// dbias[n] += sum_m dout[m, n]. block = (32, BY): threadIdx.x picks one of 32 consecutive columns (a warp
// reads 128 contiguous bytes of a row), threadIdx.y strides over the rows; the BY partial sums of a column
// meet in shared memory. grid = ceil(N/32). Deterministic (no atomics): each column has one owner block.
extern "C" __global__ void matmul_backward_bias_kernel(float* dbias, const float* dout, int M, int N) {
    __shared__ float part[32 * 32];           // [BY <= 32][32]: the wrapper launches BY = 16 (cpu 4)
    int n = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (n < N)
        for (int m = threadIdx.y; m < M; m += blockDim.y) s += dout[(size_t)m * N + n];
    part[threadIdx.y * 32 + threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && n < N) {
        float total = 0.0f;
        for (int y = 0; y < (int)blockDim.y; y++) total += part[y * 32 + threadIdx.x];
        dbias[n] += total;
    }
}
