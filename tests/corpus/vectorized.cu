// Vectorised memory access: float4 loads and stores through reinterpret_cast for the bulk of an array
// whose length is not a multiple of 4 (with a scalar tail), __ldg reads, __restrict__ pointers, int2 index
// pairs and a C-style cast to float2.
extern "C" __global__ void scale_shift4(float* __restrict__ y, const float* __restrict__ x, float a, float b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int n4 = n / 4;
    if (i < n4) {
        float4 v = __ldg(reinterpret_cast<const float4*>(x) + i);
        v.x = fmaf(a, v.x, b);
        v.y = fmaf(a, v.y, b);
        v.z = fmaf(a, v.z, b);
        v.w = fmaf(a, v.w, b);
        reinterpret_cast<float4*>(y)[i] = v;
    }
    int tail = n - 4 * n4;
    if (i < tail) y[4 * n4 + i] = fmaf(a, __ldg(&x[4 * n4 + i]), b);
}

// out[i] = table[row, col] + (p.x - p.y) for the (row, col) pair i and the float2 pair i
extern "C" __global__ void gather_pairs(float* out, const float* table, const int* rc, const float* pairs,
                                        int n, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int2 ij = reinterpret_cast<const int2*>(rc)[i];
    float2 p = ((const float2*)pairs)[i];
    out[i] = __ldg(table + ij.x * C + ij.y) + (p.x - p.y);
}
