// Pieces of a training step that must not need the host, so that the whole step can be one CUDA graph.
//
//   mean_loss_kernel:     out[0] = (1/N) sum_i losses[i]   (one block; summed in double), read by the host
//                         after the step instead of a reduction + copy in the middle of it.
//   adamw_device_kernel:  AdamW exactly as kernels/adamw.cu, but the step's numbers come from a small device
//                         array hyper = [lr, beta1, beta2, 1 - beta1^t, 1 - beta2^t, eps, weight_decay]
//                         (7 floats, written by the host before each replay) instead of launch arguments,
//                         which a captured graph would freeze at the values of the step it was captured in.
//     m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//     p -= lr * ((m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) + weight_decay * p)

// one block, blockDim a power of two <= 1024
extern "C" __global__ void mean_loss_kernel(float* out, const float* losses, int N) {
    __shared__ double part[1024];
    double s = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) s += (double)losses[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int width = blockDim.x / 2; width > 0; width >>= 1) {
        if (threadIdx.x < width) part[threadIdx.x] += part[threadIdx.x + width];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = (float)(part[0] / N);
}

__device__ __forceinline__ float adamw_device_step(float p, float g, float& m, float& v, float lr, float beta1,
                                                   float beta2, float c1, float c2, float eps, float wd) {
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g * g;
    float m_hat = m / c1;
    float v_hat = v / c2;
    return p - lr * (m_hat / (sqrtf(v_hat) + eps) + wd * p);
}

// grid-stride; vec = 1: all four arrays 16-byte aligned, a float4 per thread per trip (the N % 4 tail too)
extern "C" __global__ void adamw_device_kernel(float* params, const float* grads, float* m, float* v,
                                               const float* hyper, int N, int vec) {
    const float lr = hyper[0], b1 = hyper[1], b2 = hyper[2], c1 = hyper[3], c2 = hyper[4];
    const float eps = hyper[5], wd = hyper[6];
    int tid = blockIdx.x * blockDim.x + threadIdx.x;
    int stride = gridDim.x * blockDim.x;
    int start = 0;
    if (vec) {
        float4* p4 = reinterpret_cast<float4*>(params);
        const float4* g4 = reinterpret_cast<const float4*>(grads);
        float4* m4 = reinterpret_cast<float4*>(m);
        float4* v4 = reinterpret_cast<float4*>(v);
        for (int i = tid; i < N / 4; i += stride) {
            float4 p = p4[i], g = g4[i], mi = m4[i], vi = v4[i];
            p.x = adamw_device_step(p.x, g.x, mi.x, vi.x, lr, b1, b2, c1, c2, eps, wd);
            p.y = adamw_device_step(p.y, g.y, mi.y, vi.y, lr, b1, b2, c1, c2, eps, wd);
            p.z = adamw_device_step(p.z, g.z, mi.z, vi.z, lr, b1, b2, c1, c2, eps, wd);
            p.w = adamw_device_step(p.w, g.w, mi.w, vi.w, lr, b1, b2, c1, c2, eps, wd);
            p4[i] = p;
            m4[i] = mi;
            v4[i] = vi;
        }
        start = 4 * (N / 4);
    }
    for (int i = start + tid; i < N; i += stride) {
        float mi = m[i], vi = v[i];
        params[i] = adamw_device_step(params[i], grads[i], mi, vi, lr, b1, b2, c1, c2, eps, wd);
        m[i] = mi;
        v[i] = vi;
    }
}
