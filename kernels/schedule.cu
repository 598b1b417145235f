// The fused noise-schedule ops, each one pass over the latents. CPU twin: src/backend/cpu/fused.rs.
//   q_sample:     x_t[b] = a[b]·x0[b] + s[b]·ε[b]  — a batch of timesteps, per-sample coefficients
//                 (√ᾱ_t, √(1−ᾱ_t)) read from a device array.
//   guided_step:  m = mu + g·(mc − mu)  (classifier-free guidance; m = mu without mc), then
//                 out = cx·x + cm·m + ch1·h1 + ch2·h2 + ch3·h3 + cn·noise — every DDIM / PLMS /
//                 Euler update is linear in the latents, the (guided) model output, the model
//                 outputs of earlier steps and fresh noise. m is written too when asked (the
//                 history PLMS keeps). Absent operands are null pointers.
// Written with __fmul_rn / __fadd_rn (no FMA contraction) so each result rounds exactly as the
// CPU twin's separate multiply and add do: the same latents on both devices, bit for bit.
#include "common.cuh"

struct StepCoeffs {
    float g, cx, cm, ch1, ch2, ch3, cn;
};

template <typename T>
__device__ void q_sample_loop(int64_t per, int64_t batch, const T* x0, const T* eps, const float* a, const float* s, T* out) {
    GRID_STRIDE(i, per * batch) {
        int64_t b = i / per;
        out[i] = from_f32<T>(__fadd_rn(__fmul_rn(a[b], to_f32(x0[i])), __fmul_rn(s[b], to_f32(eps[i]))));
    }
}

template <typename T>
__device__ void guided_step_loop(int64_t n, const T* x, const T* mu, const T* mc, const T* h1, const T* h2, const T* h3,
                                 const T* noise, StepCoeffs c, T* out, T* m_out) {
    GRID_STRIDE(i, n) {
        float u = to_f32(mu[i]);
        float m = mc ? __fadd_rn(u, __fmul_rn(c.g, to_f32(mc[i]) - u)) : u;
        float v = __fadd_rn(__fmul_rn(c.cx, to_f32(x[i])), __fmul_rn(c.cm, m));
        if (h1) v = __fadd_rn(v, __fmul_rn(c.ch1, to_f32(h1[i])));
        if (h2) v = __fadd_rn(v, __fmul_rn(c.ch2, to_f32(h2[i])));
        if (h3) v = __fadd_rn(v, __fmul_rn(c.ch3, to_f32(h3[i])));
        if (noise) v = __fadd_rn(v, __fmul_rn(c.cn, to_f32(noise[i])));
        out[i] = from_f32<T>(v);
        if (m_out) m_out[i] = from_f32<T>(m);
    }
}

#define SCHEDULE_OPS(T, S) \
extern "C" __global__ void q_sample_##S(int64_t per, int64_t batch, const T* x0, const T* eps, const float* a, \
                                        const float* s, T* out) { \
    q_sample_loop<T>(per, batch, x0, eps, a, s, out); \
} \
extern "C" __global__ void guided_step_##S(int64_t n, const T* x, const T* mu, const T* mc, const T* h1, const T* h2, \
                                           const T* h3, const T* noise, StepCoeffs c, T* out, T* m_out) { \
    guided_step_loop<T>(n, x, mu, mc, h1, h2, h3, noise, c, out, m_out); \
}
SCHEDULE_OPS(float, f32)
SCHEDULE_OPS(f16, f16)
SCHEDULE_OPS(bf16, bf16)
