// Fast-math intrinsics and the usual math functions as activation kernels use them; each thread writes
// eight results for its input. The GPU's intrinsics are approximate: compare with a tolerance.
#define SQRT_2_OVER_PI 0.7978845608028654f

__device__ __forceinline__ float gelu_tanh(float x) {
    float cube = 0.044715f * x * x * x;
    return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + cube)));
}

extern "C" __global__ void fast_math(float* out, const float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = x[i];
    float* o = out + 8 * i;
    o[0] = gelu_tanh(v);
    o[1] = __expf(v);
    o[2] = __fdividef(v, 1.0f + fabsf(v));
    o[3] = rsqrtf(1.0f + v * v);
    o[4] = __frcp_rn(2.5f + v);
    o[5] = fmaf(v, v, -1.0f);
    o[6] = __logf(1.0f + v * v) + log1pf(fabsf(v));
    o[7] = __saturatef(v) + __sinf(v) * __cosf(v) + sqrtf(fabsf(v)) + copysignf(1.0f, v);
}
