// out[c, t] = inp[t, c]: a [T, C] matrix turned into [C, T] (chapter 04b's exercise, the package's own).
//
// One 32 x 32 tile per block of 32 x 32 threads. Reading a tile row by row is coalesced (threadIdx.x runs
// along a row of inp); the tile goes through shared memory so that the writes run along rows of out too.
// The tile is 33 floats wide: column j of the tile then lies in 32 different banks, so the transposed reads
// from shared memory are conflict-free.
#define TP_TILE 32

extern "C" __global__ void transpose_kernel(float* out, const float* inp, int T, int C) {
    __shared__ float tile[TP_TILE][TP_TILE + 1];
    int c = blockIdx.x * TP_TILE + threadIdx.x;   // column of inp read by this thread
    int t = blockIdx.y * TP_TILE + threadIdx.y;   // row of inp read by this thread
    if (t < T && c < C) tile[threadIdx.y][threadIdx.x] = inp[(size_t)t * C + c];
    __syncthreads();
    int t_out = blockIdx.y * TP_TILE + threadIdx.x;   // column of out written by this thread
    int c_out = blockIdx.x * TP_TILE + threadIdx.y;   // row of out
    if (c_out < C && t_out < T) out[(size_t)c_out * T + t_out] = tile[threadIdx.x][threadIdx.y];
}
