// 3xTF32 operands for cuBLAS: a float32 matrix x [rows, cols] written three times, each copy either the
// "hi" or the "lo" part of every element, so that ONE TF32 product over a three times longer reduction sums
//     x_lo y_hi + x_hi y_lo + x_hi y_hi   (= x y up to x_lo y_lo, 2^-22 of it)
// i.e. a product as accurate as fp32 FMA on TF32 tensor cores (the "3xTF32" trick, as the flash attention's
// fa_split in flash_attention.cu; ops/linear.py says where the fast model uses it and what it measures).
//
//   x = hi + lo: hi by Veltkamp's splitting, c = x (2^13 + 1), hi = c - (c - x): x rounded to 11 significant
//   bits, a TF32 value; lo = x - hi, exact, rounded to TF32 too (add half of its lowest kept bit, clear the 13
//   dropped ones). Both are exact TF32 values, so cuBLAS's TF32 kernels read them unchanged, whichever way
//   they convert. A NaN, an inf, or |x| > ~4e34 gives a NaN hi: the product is NaN, never quietly finite.
//   The _rn intrinsics keep the compiler from contracting the split into FMAs, which would break it.
//
// Layout of out (``parts``: bit s set = copy s is lo, else hi):
//   stacked = 0: out [rows, 3 cols], row r = (copy 0 of x[r, :], copy 1, copy 2): the A of a product whose
//                reduction runs along x's rows (a row-major A[M, K], or a transposed B stored [N, K]);
//   stacked = 1: out [3 rows, cols], the three copies one after the other: the B of a product whose
//                reduction runs down x's columns (a row-major B[K, N]).
// Launch: a grid-stride loop over rows * cols elements, 256 threads, any grid.

__device__ __forceinline__ void tf32_split(float x, float& hi, float& lo) {
    const float c = __fmul_rn(x, 8193.0f);
    hi = __fsub_rn(c, __fsub_rn(c, x));
    lo = __uint_as_float((__float_as_uint(__fsub_rn(x, hi)) + 0x1000u) & 0xffffe000u);
}

extern "C" __global__ void tf32_split3_kernel(float* out, const float* x, int rows, int cols, int parts,
                                              int stacked) {
    const long long n = (long long)rows * cols;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float hi, lo;
        tf32_split(x[i], hi, lo);
        const long long r = i / cols, c = i - r * cols;
#pragma unroll
        for (int s = 0; s < 3; s++) {
            const long long at = stacked ? s * n + i : (r * 3 + s) * cols + c;
            out[at] = ((parts >> s) & 1) ? lo : hi;
        }
    }
}
