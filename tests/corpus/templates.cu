// Templates as CUDA libraries write them: traits with dependent member types, function templates with
// non-type parameters, a trailing decltype return type, a kernel body instantiated for two element types
// through extern "C" wrappers (RawKernel finds kernels by their unmangled names).
template <typename T> struct Traits;
template <> struct Traits<float> { typedef float value_type; typedef double accum_type; };
template <> struct Traits<double> { using value_type = double; using accum_type = double; };

template <typename A, typename B>
__device__ auto mul(A a, B b) -> decltype(a * b) { return a * b; }

template <typename T, int BLOCK>
__device__ void axpy_body(T* __restrict__ y, const T* __restrict__ x, T a, int n) {
    typedef typename Traits<T>::value_type V;
    int i = blockIdx.x * BLOCK + threadIdx.x;
    if (i < n) {
        V* p = y + i;
        *p = mul(a, x[i]) + *p;
    }
}

// Each block sums its products in shared memory (in the accumulator type), then adds to *out.
template <typename T, int BLOCK>
__device__ void dot_body(typename Traits<T>::accum_type* out, const T* x, const T* y, int n) {
    typedef typename Traits<T>::accum_type Acc;
    __shared__ Acc partial[BLOCK];
    Acc s = 0;
    for (int i = blockIdx.x * BLOCK + threadIdx.x; i < n; i += BLOCK * gridDim.x) s += (Acc)x[i] * y[i];
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int stride = BLOCK / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(out, partial[0]);
}

template <int N>
__device__ float horner(const float (&c)[N], float x) {
    float r = c[N - 1];
    for (int k = N - 2; k >= 0; --k) r = r * x + c[k];
    return r;
}

extern "C" __global__ void axpy_f32(float* y, const float* x, float a, int n) { axpy_body<float, 128>(y, x, a, n); }
extern "C" __global__ void axpy_f64(double* y, const double* x, double a, int n) { axpy_body<double, 128>(y, x, a, n); }
extern "C" __global__ void dot_f32(double* out, const float* x, const float* y, int n) { dot_body<float, 64>(out, x, y, n); }
extern "C" __global__ void poly3(float* out, const float* x, int n) {
    const float c[3] = {1.0f, -2.0f, 0.5f};          // 1 - 2x + x^2/2
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = horner<3>(c, x[i]);
}
