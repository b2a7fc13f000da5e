// Residual connection, elementwise over N floats.
//
//   forward:  out = inp1 + inp2
//   backward: dinp1 += dout, dinp2 += dout          (the sum's gradient flows to both branches)
//
// Pure bandwidth: 12 bytes moved per element forward, 20 backward, one add each. Grid-stride loops (any
// grid is correct); the _vec4 variants move one float4 per thread per iteration and finish the N % 4
// tail with scalar accesses; they need 16-byte aligned arrays (the wrapper checks).

extern "C" __global__ void residual_forward_kernel(float* out, const float* inp1, const float* inp2, int N) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        out[i] = inp1[i] + inp2[i];
    }
}

extern "C" __global__ void residual_forward_vec4_kernel(float* out, const float* inp1, const float* inp2, int N) {
    int tid = blockIdx.x * blockDim.x + threadIdx.x;
    int stride = gridDim.x * blockDim.x;
    int N4 = N / 4;
    const float4* a4 = reinterpret_cast<const float4*>(inp1);
    const float4* b4 = reinterpret_cast<const float4*>(inp2);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int i = tid; i < N4; i += stride) {
        float4 a = a4[i];
        float4 b = b4[i];
        out4[i] = make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
    }
    int tail = 4 * N4 + tid;   // the last N % 4 (< 4) elements: one each for the first threads
    if (tail < N) {
        out[tail] = inp1[tail] + inp2[tail];
    }
}

extern "C" __global__ void residual_backward_kernel(float* dinp1, float* dinp2, const float* dout, int N) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        float d = dout[i];
        dinp1[i] += d;
        dinp2[i] += d;
    }
}

extern "C" __global__ void residual_backward_vec4_kernel(float* dinp1, float* dinp2, const float* dout, int N) {
    int tid = blockIdx.x * blockDim.x + threadIdx.x;
    int stride = gridDim.x * blockDim.x;
    int N4 = N / 4;
    const float4* d4 = reinterpret_cast<const float4*>(dout);
    float4* a4 = reinterpret_cast<float4*>(dinp1);
    float4* b4 = reinterpret_cast<float4*>(dinp2);
    for (int i = tid; i < N4; i += stride) {
        float4 d = d4[i];
        float4 a = a4[i];
        float4 b = b4[i];
        a4[i] = make_float4(a.x + d.x, a.y + d.y, a.z + d.z, a.w + d.w);
        b4[i] = make_float4(b.x + d.x, b.y + d.y, b.z + d.z, b.w + d.w);
    }
    int tail = 4 * N4 + tid;
    if (tail < N) {
        float d = dout[tail];
        dinp1[tail] += d;
        dinp2[tail] += d;
    }
}
