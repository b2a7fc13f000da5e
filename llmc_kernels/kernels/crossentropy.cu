// Cross-entropy of the softmax probabilities, and its backward fused with the softmax's.
//
// forward:   losses[r] = -log(probs[r, targets[r]])
// backward:  with p = softmax(logits) and loss = -log p_y,  d loss / d logit_c = p_c - [c == y], so
//            dlogits[r, c] += (probs[r, c] - [c == targets[r]]) * dlosses[r]      (c < V; c >= V untouched)
//
// A target outside [0, V) cannot be reported from a GPU kernel, so it poisons its row with NaN instead
// (never an out-of-bounds read).

// One thread per row: N = B*T rows; grid = ceil(N / block).
extern "C" __global__ void crossentropy_forward_kernel(float* losses, const float* probs, const int* targets,
                                                       int N, int Vp) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= N) return;
    int y = targets[r];
    losses[r] = (y >= 0 && y < Vp) ? -logf(probs[(size_t)r * Vp + y]) : NAN;
}

// One block per row (grid = N), its threads stride over the columns: each thread reads its row's dloss
// and target once. vec = 1 when rows start 16-byte aligned (float4 accesses, with V's ragged end done
// one by one).
extern "C" __global__ void crossentropy_softmax_backward_kernel(float* dlogits, const float* dlosses,
                                                                const float* probs, const int* targets,
                                                                int N, int V, int Vp, int vec) {
    int r = blockIdx.x;
    float* d = dlogits + (size_t)r * Vp;
    const float* p = probs + (size_t)r * Vp;
    int y = targets[r];
    float dloss = (y >= 0 && y < V) ? dlosses[r] : NAN;
    int V4 = vec ? V / 4 : 0;
    for (int i = threadIdx.x; i < V4; i += blockDim.x) {
        float4 pv = reinterpret_cast<const float4*>(p)[i];
        float4 dv = reinterpret_cast<float4*>(d)[i];
        int c = 4 * i;
        dv.x += (pv.x - (c + 0 == y ? 1.0f : 0.0f)) * dloss;
        dv.y += (pv.y - (c + 1 == y ? 1.0f : 0.0f)) * dloss;
        dv.z += (pv.z - (c + 2 == y ? 1.0f : 0.0f)) * dloss;
        dv.w += (pv.w - (c + 3 == y ? 1.0f : 0.0f)) * dloss;
        reinterpret_cast<float4*>(d)[i] = dv;
    }
    for (int c = 4 * V4 + threadIdx.x; c < V; c += blockDim.x) {
        d[c] += (p[c] - (c == y ? 1.0f : 0.0f)) * dloss;
    }
}
