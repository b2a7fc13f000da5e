// The linear layers' bias terms, fused with what sits next to them (the qkv bias rides in cuBLASLt's epilogue).
//
//   bias_gelu_forward_kernel:      pre[r, c] += bias[c];  out[r, c] = gelu(pre[r, c])    (the MLP's fc + GELU)
//   gelu_backward_inplace_kernel:  d[i] = gelu'(pre[i]) * d[i]                           (overwrites: no zeroing)
//   bias_backward_kernel:          dbias[c] += sum_r dout[r, c]                           (accumulates)
//   (and _vec4 variants: float4 loads)
//
// GELU is GPT-2's tanh approximation, computed as gelu.cu explains: with s = sqrt(2/pi), k = 0.044715,
//   u = s (x + k x^3),  p = sigmoid(2u) = 0.5 (1 + tanh u),  gelu(x) = x p,
//   gelu'(x) = p + 2 x p (1 - p) s (1 + 3 k x^2).
// Rows are [rows, OC] C-contiguous, N = rows * OC elements. Elementwise kernels are grid-stride loops; the
// _vec4 variants need OC % 4 == 0 and 16-byte aligned arrays (a float4 never straddles two rows then).

#define FG_S 0.7978845608028654f
#define FG_K 0.044715f

__device__ __forceinline__ float fg_sigmoid2u(float x) {
    float u = FG_S * (x + FG_K * x * x * x);
    return 1.0f / (1.0f + expf(-2.0f * u));
}

__device__ __forceinline__ float fg_gelu(float x) {
    return x * fg_sigmoid2u(x);
}

__device__ __forceinline__ float fg_gelu_grad(float x) {
    float p = fg_sigmoid2u(x);
    float pq = p * (1.0f - p);
    float tail = pq == 0.0f ? 0.0f : 2.0f * x * pq * FG_S * (1.0f + 3.0f * FG_K * x * x);   // no 0 * inf
    return p + tail;
}

extern "C" __global__ void bias_gelu_forward_kernel(float* pre, float* out, const float* bias, int N, int OC) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        float x = pre[i] + bias[i % OC];
        pre[i] = x;
        out[i] = fg_gelu(x);
    }
}

extern "C" __global__ void bias_gelu_forward_vec4_kernel(float* pre, float* out, const float* bias, int N, int OC) {
    int stride = gridDim.x * blockDim.x;
    int OC4 = OC / 4;
    float4* p4 = reinterpret_cast<float4*>(pre);
    float4* o4 = reinterpret_cast<float4*>(out);
    const float4* b4 = reinterpret_cast<const float4*>(bias);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N / 4; i += stride) {
        float4 x = p4[i];
        float4 b = b4[i % OC4];
        x.x += b.x; x.y += b.y; x.z += b.z; x.w += b.w;
        p4[i] = x;
        o4[i] = make_float4(fg_gelu(x.x), fg_gelu(x.y), fg_gelu(x.z), fg_gelu(x.w));
    }
}

extern "C" __global__ void gelu_backward_inplace_kernel(float* d, const float* pre, int N) {
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        d[i] = fg_gelu_grad(pre[i]) * d[i];
    }
}

extern "C" __global__ void gelu_backward_inplace_vec4_kernel(float* d, const float* pre, int N) {
    int stride = gridDim.x * blockDim.x;
    float4* d4 = reinterpret_cast<float4*>(d);
    const float4* p4 = reinterpret_cast<const float4*>(pre);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N / 4; i += stride) {
        float4 x = p4[i];
        float4 g = d4[i];
        g.x *= fg_gelu_grad(x.x); g.y *= fg_gelu_grad(x.y); g.z *= fg_gelu_grad(x.z); g.w *= fg_gelu_grad(x.w);
        d4[i] = g;
    }
    int tail = 4 * (N / 4) + blockIdx.x * blockDim.x + threadIdx.x;   // N % 4 leftovers
    if (tail < N) d[tail] = fg_gelu_grad(pre[tail]) * d[tail];
}

// dbias[c] += sum over the M rows of dout[r, c]. Block (32, Y): threadIdx.x picks the column (a warp reads
// 128 consecutive bytes of a row), threadIdx.y and blockIdx.y stride over the rows; the Y partial sums of a
// column meet in shared memory and the block adds their total with one atomicAdd per column.
extern "C" __global__ void bias_backward_kernel(float* dbias, const float* dout, int M, int N) {
    __shared__ float part[32][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (c < N) {
        for (int r = blockIdx.y * blockDim.y + threadIdx.y; r < M; r += gridDim.y * blockDim.y) {
            s += dout[(size_t)r * N + c];
        }
    }
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c < N) {
        float total = 0.0f;
        for (int y = 0; y < blockDim.y; y++) total += part[y][threadIdx.x];
        atomicAdd(&dbias[c], total);
    }
}

// The same sum four columns per thread (OC % 4 == 0, 16-byte aligned dout): a warp reads 512 consecutive
// bytes of a row, and each thread issues four rows' loads before adding them, so four loads are in flight
// where the scalar kernel waits for one at a time (it ran at ~500 GB/s, a sixth of the memory's rate).
// blockDim.y <= 8.
extern "C" __global__ void bias_backward_vec4_kernel(float* dbias, const float* dout, int M, int N) {
    __shared__ float4 part[8][32];
    const int N4 = N / 4, c4 = blockIdx.x * 32 + threadIdx.x;
    const int step = gridDim.y * blockDim.y;
    float4 s = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (c4 < N4) {
        const float4* d4 = reinterpret_cast<const float4*>(dout) + c4;
        int r = blockIdx.y * blockDim.y + threadIdx.y;
        for (; r + 3 * step < M; r += 4 * step) {
            float4 v[4];
#pragma unroll
            for (int u = 0; u < 4; u++) v[u] = d4[(size_t)(r + u * step) * N4];
#pragma unroll
            for (int u = 0; u < 4; u++) { s.x += v[u].x; s.y += v[u].y; s.z += v[u].z; s.w += v[u].w; }
        }
        for (; r < M; r += step) {
            float4 v = d4[(size_t)r * N4];
            s.x += v.x; s.y += v.y; s.z += v.z; s.w += v.w;
        }
    }
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && c4 < N4) {
        float4 total = part[0][threadIdx.x];
        for (int y = 1; y < blockDim.y; y++) {
            float4 p = part[y][threadIdx.x];
            total.x += p.x; total.y += p.y; total.z += p.z; total.w += p.w;
        }
        atomicAdd(&dbias[4 * c4 + 0], total.x);
        atomicAdd(&dbias[4 * c4 + 1], total.y);
        atomicAdd(&dbias[4 * c4 + 2], total.z);
        atomicAdd(&dbias[4 * c4 + 3], total.w);
    }
}
