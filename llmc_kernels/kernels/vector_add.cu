// Chapter 00's first kernel, out = a + b over N floats: the package's own, so every op of the contract has
// a wrapper (tests/test_opspec_complete.py). Grid-stride loop (any grid is correct); the _vec4 variant moves
// one float4 per thread per iteration and finishes the N % 4 tail with scalar accesses (16-byte aligned
// arrays: the wrapper checks).

extern "C" __global__ void vector_add_kernel(float* out, const float* a, const float* b, int N) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        out[i] = a[i] + b[i];
    }
}

extern "C" __global__ void vector_add_vec4_kernel(float* out, const float* a, const float* b, int N) {
    int tid = blockIdx.x * blockDim.x + threadIdx.x;
    int stride = gridDim.x * blockDim.x;
    int N4 = N / 4;
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int i = tid; i < N4; i += stride) {
        float4 x = a4[i];
        float4 y = b4[i];
        out4[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    }
    int tail = 4 * N4 + tid;   // the last N % 4 (< 4) elements: one each for the first threads
    if (tail < N) {
        out[tail] = a[tail] + b[tail];
    }
}
