// GELU, tanh approximation (GPT-2's), elementwise over N floats.
//
//   u        = s * (x + k x^3)                  s = sqrt(2/pi), k = 0.044715
//   gelu(x)  = 0.5 x (1 + tanh(u))
//   gelu'(x) = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) s (1 + 3 k x^2)
//   backward: dinp += gelu'(inp) * dout
//
// Computed through the identity 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)) =: p, which gives
//   gelu(x)  = x p
//   gelu'(x) = p + 2 x p (1 - p) s (1 + 3 k x^2)          (since 1 - tanh^2 = 4 p (1 - p))
// Same function, one expf instead of tanhf, and no cancellation in 1 + tanh(u) for very negative x.
//
// Kernels are grid-stride loops (any grid is correct). The _vec4 variants move one float4 per thread per
// iteration (16-byte transactions, a quarter of the memory instructions) and finish the N % 4 tail
// elements with scalar accesses; they need every array 16-byte aligned (the wrapper checks, and falls
// back to the scalar kernels for views that are not).

#define GELU_SCALING_FACTOR 0.7978845608028654f   // sqrt(2/pi)
#define GELU_CUBE 0.044715f

// p = sigmoid(2u); exp overflowing to inf for very negative x gives p = 0, as it should
__device__ float gelu_sigmoid(float x) {
    float u = GELU_SCALING_FACTOR * (x + GELU_CUBE * x * x * x);
    return 1.0f / (1.0f + expf(-2.0f * u));
}

__device__ float gelu(float x) {
    return x * gelu_sigmoid(x);
}

__device__ float gelu_grad(float x) {
    float p = gelu_sigmoid(x);
    float pq = p * (1.0f - p);
    // once the sigmoid has saturated (|x| > ~10) the second term is exactly 0; skip it so that x*x
    // overflowing to inf (|x| > 1.8e19) does not turn 0 * inf into NaN
    float tail = pq == 0.0f ? 0.0f : 2.0f * x * pq * GELU_SCALING_FACTOR * (1.0f + 3.0f * GELU_CUBE * x * x);
    return p + tail;
}

extern "C" __global__ void gelu_forward_kernel(float* out, const float* inp, int N) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        out[i] = gelu(inp[i]);
    }
}

extern "C" __global__ void gelu_forward_vec4_kernel(float* out, const float* inp, int N) {
    int tid = blockIdx.x * blockDim.x + threadIdx.x;
    int stride = gridDim.x * blockDim.x;
    int N4 = N / 4;
    const float4* in4 = reinterpret_cast<const float4*>(inp);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int i = tid; i < N4; i += stride) {
        float4 x = in4[i];
        out4[i] = make_float4(gelu(x.x), gelu(x.y), gelu(x.z), gelu(x.w));
    }
    int tail = 4 * N4 + tid;   // the last N % 4 (< 4) elements: one each for the first threads
    if (tail < N) {
        out[tail] = gelu(inp[tail]);
    }
}

extern "C" __global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, int N) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        dinp[i] += gelu_grad(inp[i]) * dout[i];
    }
}

extern "C" __global__ void gelu_backward_vec4_kernel(float* dinp, const float* inp, const float* dout, int N) {
    int tid = blockIdx.x * blockDim.x + threadIdx.x;
    int stride = gridDim.x * blockDim.x;
    int N4 = N / 4;
    const float4* in4 = reinterpret_cast<const float4*>(inp);
    const float4* dout4 = reinterpret_cast<const float4*>(dout);
    float4* dinp4 = reinterpret_cast<float4*>(dinp);
    for (int i = tid; i < N4; i += stride) {
        float4 x = in4[i];
        float4 d = dout4[i];
        float4 acc = dinp4[i];
        acc.x += gelu_grad(x.x) * d.x;
        acc.y += gelu_grad(x.y) * d.y;
        acc.z += gelu_grad(x.z) * d.z;
        acc.w += gelu_grad(x.w) * d.w;
        dinp4[i] = acc;
    }
    int tail = 4 * N4 + tid;
    if (tail < N) {
        dinp[tail] += gelu_grad(inp[tail]) * dout[tail];
    }
}
