// Dynamic shared memory carved into arrays of several types from one extern __shared__ buffer (doubles
// first for their alignment, then floats, then ints), a per-block histogram with shared atomics, and a
// block-wide tree reduction in double precision. shared_mem = blockDim.x * (8 + 4) + nbins * 4 bytes.
extern "C" __global__ void stats(double* block_sums, float* centered, int* counts, const float* in, int n,
                                 int nbins) {
    extern __shared__ __align__(16) unsigned char smem[];
    double* acc = reinterpret_cast<double*>(smem);
    float* vals = reinterpret_cast<float*>(acc + blockDim.x);
    int* hist = (int*)(vals + blockDim.x);

    int t = threadIdx.x;
    int i = blockIdx.x * blockDim.x + t;
    for (int b = t; b < nbins; b += blockDim.x) hist[b] = 0;
    float v = i < n ? in[i] : 0.0f;
    vals[t] = v;
    acc[t] = v;
    __syncthreads();
    if (i < n) {
        int bin = min(max((int)(v * nbins), 0), nbins - 1);     // in[] lies in [0, 1)
        atomicAdd(&hist[bin], 1);
    }
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (t < stride) acc[t] += acc[t + stride];
        __syncthreads();
    }
    float block_mean = (float)(acc[0] / blockDim.x);
    if (i < n) centered[i] = vals[t] - block_mean;
    if (t == 0) block_sums[blockIdx.x] = acc[0];
    for (int b = t; b < nbins; b += blockDim.x) atomicAdd(counts + b, hist[b]);
}
