// Macros as CUDA code in the wild uses them: a grid-stride loop, index arithmetic over llm.c's (B, T, C)
// sizes (T and C are kernel parameters, and T is also a template parameter elsewhere in the file), a float4
// fetch through a cast, and conditional compilation on __CUDA_ARCH__.
#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define IDX(b, t, c) ((b) * T * C + (t) * C + (c))
#define GRID_STRIDE_LOOP(i, n) \
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)
#define FETCH_FLOAT4(x) (reinterpret_cast<const float4*>(&(x))[0])
#define SQUARE(x) ((x) * (x))
#ifdef __CUDA_ARCH__
#define ON_DEVICE 1.0f
#else
#define ON_DEVICE 0.0f
#endif

template <typename T>
__device__ T twice(T x) { return x + x; }

// (B, T, C) -> (B, C, T), doubled
extern "C" __global__ void permute_btc(float* out, const float* inp, int B, int T, int C) {
    GRID_STRIDE_LOOP(idx, B * T * C) {
        int b = idx / (T * C), t = (idx / C) % T, c = idx % C;
        out[(b * C + c) * T + t] = twice(inp[IDX(b, t, c)]) * ON_DEVICE;
    }
}

// sum of squares of each group of four
extern "C" __global__ void sumsq4(float* out, const float* inp, int n4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n4) {
        float4 v = FETCH_FLOAT4(inp[4 * i]);
        out[i] = SQUARE(v.x) + SQUARE(v.y) + SQUARE(v.z) + SQUARE(v.w);
    }
    if (i == 0) out[n4] = (float)CEIL_DIV(n4, 32);
}
