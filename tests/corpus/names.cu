// Valid CUDA that a token-level translator can mistake for something else: variables named like types
// (half, dim3, float2), a template parameter T next to a kernel parameter T (llm.c's B, T, C), types
// spelled with decltype and with dependent names (typename Box::value_type), a typedef in an inner scope
// that hides a variable, and (half) * x, a product and not a cast.
template <typename T>
struct Box {
    typedef T value_type;
};

template <typename Container>
__device__ void store(typename Container::value_type* p, int i, typename Container::value_type v) {
    p[i] = v;
}

template <typename T>
__device__ T twice(T x) { return x + x; }

__device__ float scale(float half, const float* p) { return half * *p; }

extern "C" __global__ void names(float* out, const float* inp, int B, int T, int C) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= B * T * C) return;
    int b = idx / (T * C);
    float half = 0.5f;
    int dim3 = 3;
    int float2 = 2;
    decltype(inp) row = inp + b * T * C;
    decltype(half)* dst = out;
    float y = half * inp[idx] + dim3 * (half) * inp[idx] + float2 * scale(half, row + idx - b * T * C);
    {
        typedef int half;                   // hides the variable until the closing brace
        half k = 2;
        y *= k;
    }
    {
        int T = 4;                          // hides the parameter
        y += T * half;
    }
    typename Box<float>::value_type* alias = dst;
    store<Box<float>>(alias, idx, twice(y) - half * T);
}
