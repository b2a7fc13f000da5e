// AdamW (Loshchilov & Hutter), one step t >= 1, elementwise over num_params parameters, as llm.c does it:
//
//   m     = beta1 * m + (1 - beta1) * g               first moment (running mean of the gradient)
//   v     = beta2 * v + (1 - beta2) * g^2             second moment (running mean of its square)
//   m_hat = m / (1 - beta1^t)                          bias correction: m and v start at 0
//   v_hat = v / (1 - beta2^t)
//   p    -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p)
//
// The decay is decoupled (added to the update, not to the gradient) and applies to every parameter.
// m and v are stored uncorrected. The two corrections are the same for every parameter, so the wrapper
// computes them once on the host (in double precision) and passes beta1_correction = 1 - beta1^t and
// beta2_correction = 1 - beta2^t.
//
// One thread per parameter in a grid-stride loop: 16 bytes read and 12 written per parameter, coalesced.
// The _vec4 variant takes four parameters per thread per iteration with float4 loads and stores (a quarter
// of the memory instructions; the num_params % 4 tail with scalar accesses); it needs all four arrays
// 16-byte aligned (the wrapper checks).

struct AdamW {
    float lr, beta1, beta2, beta1_correction, beta2_correction, eps, weight_decay;

    // updates m and v in place and returns the new parameter
    __device__ float step(float p, float g, float& m, float& v) const {
        m = beta1 * m + (1.0f - beta1) * g;
        v = beta2 * v + (1.0f - beta2) * g * g;
        float m_hat = m / beta1_correction;
        float v_hat = v / beta2_correction;
        return p - lr * (m_hat / (sqrtf(v_hat) + eps) + weight_decay * p);
    }
};

extern "C" __global__ void adamw_kernel(float* params, const float* grads, float* m, float* v, int num_params,
                                        float lr, float beta1, float beta2, float beta1_correction,
                                        float beta2_correction, float eps, float weight_decay) {
    AdamW opt = {lr, beta1, beta2, beta1_correction, beta2_correction, eps, weight_decay};
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < num_params; i += stride) {
        float mi = m[i];
        float vi = v[i];
        params[i] = opt.step(params[i], grads[i], mi, vi);
        m[i] = mi;
        v[i] = vi;
    }
}

extern "C" __global__ void adamw_vec4_kernel(float* params, const float* grads, float* m, float* v,
                                             int num_params, float lr, float beta1, float beta2,
                                             float beta1_correction, float beta2_correction, float eps,
                                             float weight_decay) {
    AdamW opt = {lr, beta1, beta2, beta1_correction, beta2_correction, eps, weight_decay};
    int tid = blockIdx.x * blockDim.x + threadIdx.x;
    int stride = gridDim.x * blockDim.x;
    int n4 = num_params / 4;
    float4* p4 = reinterpret_cast<float4*>(params);
    const float4* g4 = reinterpret_cast<const float4*>(grads);
    float4* m4 = reinterpret_cast<float4*>(m);
    float4* v4 = reinterpret_cast<float4*>(v);
    for (int i = tid; i < n4; i += stride) {
        float4 p = p4[i];
        float4 g = g4[i];
        float4 mi = m4[i];
        float4 vi = v4[i];
        p.x = opt.step(p.x, g.x, mi.x, vi.x);
        p.y = opt.step(p.y, g.y, mi.y, vi.y);
        p.z = opt.step(p.z, g.z, mi.z, vi.z);
        p.w = opt.step(p.w, g.w, mi.w, vi.w);
        p4[i] = p;
        m4[i] = mi;
        v4[i] = vi;
    }
    int tail = 4 * n4 + tid;   // the last num_params % 4 (< 4) parameters: one each for the first threads
    if (tail < num_params) {
        float mi = m[tail];
        float vi = v[tail];
        params[tail] = opt.step(params[tail], grads[tail], mi, vi);
        m[tail] = mi;
        v[tail] = vi;
    }
}
