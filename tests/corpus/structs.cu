// Structs and device functions: a small vector type with constructors and operators, an array of structs
// viewed through reinterpret_cast, a reference and a pointer (->) to an element, helpers that are
// __forceinline__ and that take structs by value and by reference.
struct Vec3 {
    float x, y, z;
    __device__ Vec3() : x(0.0f), y(0.0f), z(0.0f) {}
    __device__ Vec3(float a, float b, float c) : x(a), y(b), z(c) {}
    __device__ Vec3 operator+(const Vec3& o) const { return Vec3(x + o.x, y + o.y, z + o.z); }
    __device__ Vec3 operator*(float s) const { return Vec3(x * s, y * s, z * s); }
    __device__ float dot(const Vec3& o) const { return x * o.x + y * o.y + z * o.z; }
};

struct Particle {      // 32 bytes: 8 floats in the NumPy array, the last one holding an int
    Vec3 pos;
    Vec3 vel;
    float energy;
    int id;
};

struct Params {
    float dt, damping;
    Vec3 gravity;
};

__device__ __forceinline__ Vec3 accelerate(Vec3 v, const Params& p) { return v * p.damping + p.gravity * p.dt; }

__device__ void advance(Particle* q, const Params& p) {
    q->vel = accelerate(q->vel, p);
    q->pos = q->pos + q->vel * p.dt;
}

extern "C" __global__ void step(float* particles, int n, float dt, float damping) {
    Particle* ps = reinterpret_cast<Particle*>(particles);
    Params prm = {dt, damping, Vec3(0.0f, -9.8f, 0.0f)};
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Particle& p = ps[i];
    advance(&p, prm);
    p.energy = 0.5f * p.vel.dot(p.vel);
    p.id = i;
}
