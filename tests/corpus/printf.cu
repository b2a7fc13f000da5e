// printf from a few threads, with integer, float and string conversions (the order of lines between
// threads is not defined: compare them as a set).
extern "C" __global__ void report(const int* values, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n && i % 37 == 0) {
        printf("thread %d block %d: value %d, half %.2f, %s\n", (int)threadIdx.x, (int)blockIdx.x, values[i],
               values[i] * 0.5f, values[i] % 2 ? "odd" : "even");
    }
}
