// group_norm (optionally fused with SiLU) and layer_norm, forward and backward. Statistics are
// two-pass in f32 (mean, then Σ(x−μ)²: no cancellation when |μ| ≫ σ), biased variance like torch.
// CPU twin: src/backend/cpu/norm.rs. Null weight/bias pointers mean "no affine".
//
// group_norm: x [N, C, S] contiguous; one block per (n, group) unit of cpg·S contiguous values.
// The backward kernel recomputes the statistics from x and leaves (mean, rstd) per unit in
// `stats` for the per-channel dγ/dβ kernel.
#include "common.cuh"

// y = silu(z) → dy/dz.
__device__ __forceinline__ float silu_grad(float z) {
    float s = sigmoidf_(z);
    return s * (1.0f + z * (1.0f - s));
}

template <typename T>
__device__ __forceinline__ void unit_stats(const T* xu, int64_t count, float eps, float* scratch, float& mean, float& rstd) {
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < count; j += blockDim.x) s += to_f32(xu[j]);
    mean = block_sum(s, scratch) / (float)count;
    float v = 0.0f;
    for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
        float d = to_f32(xu[j]) - mean;
        v += d * d;
    }
    float var = block_sum(v, scratch) / (float)count;
    rstd = rsqrtf(var + eps);
}

template <typename T>
__device__ void gn_fwd(int64_t N, int64_t C, int64_t S, int64_t G, float eps, int silu, const T* x, const T* w, const T* b, T* y) {
    __shared__ float scratch[32];
    int64_t cpg = C / G, count = cpg * S;
    for (int64_t u = blockIdx.x; u < N * G; u += gridDim.x) {
        int64_t c0 = (u % G) * cpg;
        const T* xu = x + u * count;
        T* yu = y + u * count;
        float mean, rstd;
        unit_stats(xu, count, eps, scratch, mean, rstd);
        for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
            int64_t c = c0 + j / S;
            float z = (to_f32(xu[j]) - mean) * rstd;
            if (w) z *= to_f32(w[c]);
            if (b) z += to_f32(b[c]);
            if (silu) z *= sigmoidf_(z);
            yu[j] = from_f32<T>(z);
        }
    }
}

template <typename T>
__device__ void gn_bwd(int64_t N, int64_t C, int64_t S, int64_t G, float eps, int silu, const T* x, const T* dy,
                       const T* w, const T* b, T* dx, float* stats) {
    __shared__ float scratch[32];
    int64_t cpg = C / G, count = cpg * S;
    for (int64_t u = blockIdx.x; u < N * G; u += gridDim.x) {
        int64_t c0 = (u % G) * cpg;
        const T* xu = x + u * count;
        const T* gu = dy + u * count;
        T* du = dx + u * count;
        float mean, rstd;
        unit_stats(xu, count, eps, scratch, mean, rstd);
        if (threadIdx.x == 0) { stats[2 * u] = mean; stats[2 * u + 1] = rstd; }
        // dx̂ = dz·γ; dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))
        float a = 0.0f, bsum = 0.0f;
        for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
            int64_t c = c0 + j / S;
            float xh = (to_f32(xu[j]) - mean) * rstd;
            float wc = w ? to_f32(w[c]) : 1.0f;
            float g = to_f32(gu[j]);
            if (silu) g *= silu_grad(xh * wc + (b ? to_f32(b[c]) : 0.0f));
            float dxh = g * wc;
            a += dxh;
            bsum += dxh * xh;
        }
        float ma = block_sum(a, scratch) / (float)count;
        float mb = block_sum(bsum, scratch) / (float)count;
        for (int64_t j = threadIdx.x; j < count; j += blockDim.x) {
            int64_t c = c0 + j / S;
            float xh = (to_f32(xu[j]) - mean) * rstd;
            float wc = w ? to_f32(w[c]) : 1.0f;
            float g = to_f32(gu[j]);
            if (silu) g *= silu_grad(xh * wc + (b ? to_f32(b[c]) : 0.0f));
            du[j] = from_f32<T>(rstd * (g * wc - ma - xh * mb));
        }
    }
}

// One block per channel, parameter gradients accumulated and written in f32: dγ_c = Σ_{n,s} dz·x̂, dβ_c = Σ_{n,s} dz.
template <typename T>
__device__ void gn_dwdb(int64_t N, int64_t C, int64_t S, int64_t G, int silu, const T* x, const T* dy, const T* w,
                        const T* b, const float* stats, float* dw, float* db) {
    __shared__ float scratch[32];
    int64_t cpg = C / G;
    for (int64_t c = blockIdx.x; c < C; c += gridDim.x) {
        int64_t g = c / cpg;
        float wc = w ? to_f32(w[c]) : 1.0f, bc = b ? to_f32(b[c]) : 0.0f;
        float sw = 0.0f, sb = 0.0f;
        for (int64_t k = threadIdx.x; k < N * S; k += blockDim.x) {
            int64_t n = k / S, s = k % S;
            int64_t idx = (n * C + c) * S + s;
            float mean = stats[2 * (n * G + g)], rstd = stats[2 * (n * G + g) + 1];
            float xh = (to_f32(x[idx]) - mean) * rstd;
            float gv = to_f32(dy[idx]);
            if (silu) gv *= silu_grad(xh * wc + bc);
            sw += gv * xh;
            sb += gv;
        }
        sw = block_sum(sw, scratch);
        sb = block_sum(sb, scratch);
        if (threadIdx.x == 0) {
            if (dw) dw[c] = sw;
            if (db) db[c] = sb;
        }
    }
}

template <typename T>
__device__ void ln_fwd(int64_t rows, int64_t D, float eps, const T* x, const T* w, const T* b, T* y) {
    __shared__ float scratch[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * D;
        T* yr = y + r * D;
        float mean, rstd;
        unit_stats(xr, D, eps, scratch, mean, rstd);
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
            float z = (to_f32(xr[j]) - mean) * rstd;
            if (w) z *= to_f32(w[j]);
            if (b) z += to_f32(b[j]);
            yr[j] = from_f32<T>(z);
        }
    }
}

template <typename T>
__device__ void ln_bwd(int64_t rows, int64_t D, float eps, const T* x, const T* dy, const T* w, T* dx, float* stats) {
    __shared__ float scratch[32];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const T* xr = x + r * D;
        const T* gr = dy + r * D;
        T* dr = dx + r * D;
        float mean, rstd;
        unit_stats(xr, D, eps, scratch, mean, rstd);
        if (threadIdx.x == 0) { stats[2 * r] = mean; stats[2 * r + 1] = rstd; }
        float a = 0.0f, bsum = 0.0f;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
            float xh = (to_f32(xr[j]) - mean) * rstd;
            float dxh = to_f32(gr[j]) * (w ? to_f32(w[j]) : 1.0f);
            a += dxh;
            bsum += dxh * xh;
        }
        float ma = block_sum(a, scratch) / (float)D;
        float mb = block_sum(bsum, scratch) / (float)D;
        for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
            float xh = (to_f32(xr[j]) - mean) * rstd;
            float dxh = to_f32(gr[j]) * (w ? to_f32(w[j]) : 1.0f);
            dr[j] = from_f32<T>(rstd * (dxh - ma - xh * mb));
        }
    }
}

// A thread per column, reading across columns (coalesced) down all rows.
template <typename T>
__device__ void ln_dwdb(int64_t rows, int64_t D, const T* x, const T* dy, const float* stats, float* dw, float* db) {
    GRID_STRIDE(j, D) {
        float sw = 0.0f, sb = 0.0f;
        for (int64_t r = 0; r < rows; ++r) {
            float xh = (to_f32(x[r * D + j]) - stats[2 * r]) * stats[2 * r + 1];
            float g = to_f32(dy[r * D + j]);
            sw += g * xh;
            sb += g;
        }
        if (dw) dw[j] = sw;
        if (db) db[j] = sb;
    }
}

#define NORM_OPS(T, S) \
extern "C" __global__ void group_norm_fwd_##S(int64_t N, int64_t C, int64_t Sp, int64_t G, float eps, int32_t silu, \
                                              const T* x, const T* w, const T* b, T* y) { \
    gn_fwd<T>(N, C, Sp, G, eps, silu, x, w, b, y); \
} \
extern "C" __global__ void group_norm_bwd_##S(int64_t N, int64_t C, int64_t Sp, int64_t G, float eps, int32_t silu, \
                                              const T* x, const T* dy, const T* w, const T* b, T* dx, float* stats) { \
    gn_bwd<T>(N, C, Sp, G, eps, silu, x, dy, w, b, dx, stats); \
} \
extern "C" __global__ void group_norm_dwdb_##S(int64_t N, int64_t C, int64_t Sp, int64_t G, int32_t silu, const T* x, \
                                               const T* dy, const T* w, const T* b, const float* stats, float* dw, float* db) { \
    gn_dwdb<T>(N, C, Sp, G, silu, x, dy, w, b, stats, dw, db); \
} \
extern "C" __global__ void layer_norm_fwd_##S(int64_t rows, int64_t D, float eps, const T* x, const T* w, const T* b, T* y) { \
    ln_fwd<T>(rows, D, eps, x, w, b, y); \
} \
extern "C" __global__ void layer_norm_bwd_##S(int64_t rows, int64_t D, float eps, const T* x, const T* dy, const T* w, \
                                              T* dx, float* stats) { \
    ln_bwd<T>(rows, D, eps, x, dy, w, dx, stats); \
} \
extern "C" __global__ void layer_norm_dwdb_##S(int64_t rows, int64_t D, const T* x, const T* dy, const float* stats, \
                                               float* dw, float* db) { \
    ln_dwdb<T>(rows, D, x, dy, stats, dw, db); \
}
NORM_OPS(float, f32)
NORM_OPS(f16, f16)
NORM_OPS(bf16, bf16)
