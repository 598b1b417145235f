// Fused optimiser updates, in place on f32 master weights, one pass per parameter tensor. The
// arithmetic is the CPU twin's (src/backend/cpu/fused.rs) operation for operation, which follows
// torch.optim.AdamW's single-tensor path; the scalars arrive precomputed in f32 as torch forms them.
// Gradients may be f32, f16 or bf16 (mixed precision keeps f32 weights and state).
// Products and sums are written with __fmul_rn / __fadd_rn so nvcc does not contract them into
// FMAs: each rounds as the CPU's separate operations do, and with IEEE sqrt and division (nvcc's
// defaults) an update is bit-identical to the CPU twin's.
#include "common.cuh"

struct AdamWStep {
    float grad_scale, decay, w1, b2, w2, step_size, bc2_sqrt, eps;
};

// torch's lerp: a + w·(b − a) for w < 0.5, else b − (b − a)·(1 − w).
__device__ __forceinline__ float lerp_torch(float a, float b, float w) {
    return fabsf(w) < 0.5f ? __fadd_rn(a, __fmul_rn(w, b - a)) : b - __fmul_rn(b - a, 1.0f - w);
}

template <typename G>
__device__ void adamw_loop(int64_t n, float* w, const G* g, float* m, float* v, AdamWStep s) {
    GRID_STRIDE(j, n) {
        float gj = __fmul_rn(to_f32(g[j]), s.grad_scale);
        float wj = __fmul_rn(w[j], s.decay);
        float mj = lerp_torch(m[j], gj, s.w1);
        float vj = __fadd_rn(__fmul_rn(v[j], s.b2), __fmul_rn(__fmul_rn(s.w2, gj), gj));
        float denom = __fadd_rn(sqrtf(vj) / s.bc2_sqrt, s.eps);
        w[j] = __fadd_rn(wj, __fmul_rn(-s.step_size, mj) / denom);
        m[j] = mj;
        v[j] = vj;
    }
}

// shadow ← shadow − (1 − d)·(shadow − param)   (CompVis LitEma)
template <typename P>
__device__ void ema_loop(int64_t n, float* shadow, const P* p, float one_minus) {
    GRID_STRIDE(j, n) {
        float s = shadow[j];
        shadow[j] = s - __fmul_rn(one_minus, s - to_f32(p[j]));
    }
}

#define OPTIM_OPS(G, S) \
extern "C" __global__ void adamw_f32_grad_##S(int64_t n, float* w, const G* g, float* m, float* v, AdamWStep s) { \
    adamw_loop<G>(n, w, g, m, v, s); \
} \
extern "C" __global__ void ema_f32_from_##S(int64_t n, float* shadow, const G* p, float one_minus) { \
    ema_loop<G>(n, shadow, p, one_minus); \
}
OPTIM_OPS(float, f32)
OPTIM_OPS(f16, f16)
OPTIM_OPS(bf16, bf16)
