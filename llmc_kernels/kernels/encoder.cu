// Encoder: the token embedding plus the position embedding.
//
//   forward:  out[b,t,c]          = wte[inp[b,t], c] + wpe[t, c]
//   backward: dwte[inp[b,t], c]  += dout[b,t,c]          a scatter: tokens repeat, so threads collide
//             dwpe[t, c]         += sum_b dout[b,t,c]    a gather: each (t,c) has exactly B terms
//
// out, dout: [B,T,C]; inp: [B,T] int32 token ids in [0, V); wte: [V,C]; wpe: [maxT,C] with T <= maxT.
// All kernels are grid-stride loops (any grid size is correct; the wrapper picks one that fills the GPU)
// indexing with 32-bit ints (the wrapper refuses counts that do not fit).

// One thread per output element. Consecutive threads take consecutive c, so the loads of wte and wpe
// rows and the store of out are coalesced.
extern "C" __global__ void encoder_forward_kernel(float* out, const int* inp, const float* wte,
                                                  const float* wpe, int B, int T, int C) {
    int N = B * T * C;
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        int bt = i / C;
        int c = i - bt * C;
        int t = bt % T;
        int ix = inp[bt];
        out[i] = wte[(size_t)ix * C + c] + wpe[(size_t)t * C + c];
    }
}

// The same with one float4 (4 channels) per thread: a quarter of the load/store instructions and
// 16-byte transactions. Needs C % 4 == 0 and out, wte, wpe 16-byte aligned (the wrapper checks), so
// that every row of every array starts on a float4 boundary.
extern "C" __global__ void encoder_forward_vec4_kernel(float* out, const int* inp, const float* wte,
                                                       const float* wpe, int B, int T, int C) {
    int C4 = C / 4;
    int N4 = B * T * C4;
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N4; i += stride) {
        int bt = i / C4;
        int c4 = i - bt * C4;
        int t = bt % T;
        int ix = inp[bt];
        float4 w = reinterpret_cast<const float4*>(wte + (size_t)ix * C)[c4];
        float4 p = reinterpret_cast<const float4*>(wpe + (size_t)t * C)[c4];
        reinterpret_cast<float4*>(out)[i] = make_float4(w.x + p.x, w.y + p.y, w.z + p.z, w.w + p.w);
    }
}

// Backward, fused: one thread per (t, c) walks the B rows that share this position. It owns dwpe[t,c]
// outright (a plain, deterministic +=, no atomics), and scatters each dout[b,t,c] into the row of token
// inp[b,t] of dwte with atomicAdd, because two (b,t) with the same token write the same dwte element.
// Reads of dout are coalesced across c; dout is read once for both gradients.
extern "C" __global__ void encoder_backward_kernel(float* dwte, float* dwpe, const float* dout,
                                                   const int* inp, int B, int T, int C) {
    int TC = T * C;
    int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < TC; i += stride) {
        int t = i / C;
        int c = i - t * C;
        float sum = 0.0f;
        for (int b = 0; b < B; b++) {
            float d = dout[(size_t)b * TC + i];          // dout[b,t,c]
            int ix = inp[b * T + t];
            atomicAdd(&dwte[(size_t)ix * C + c], d);
            sum += d;
        }
        dwpe[i] += sum;
    }
}
