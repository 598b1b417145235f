// group_norm (optionally fused with SiLU) and layer_norm, forward and backward. Statistics are
// two-pass in f32 (mean, then Σ(x−μ)²: no cancellation when |μ| ≫ σ), biased variance like torch.
// CPU twin: src/backend/cpu/norm.rs. Null weight/bias pointers mean "no affine".
//
// group_norm: x [N, C, S] contiguous; a unit (n, group) is cpg·S contiguous values. The forward
// spreads each unit over many blocks (gn_partial, below); the backward has one block per unit,
// recomputes the statistics from x and leaves (mean, rstd) per unit in `stats` for the
// per-channel dγ/dβ kernel.
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

// group_norm forward in three launches, so that a unit (n, group) is spread over many blocks: one
// block per unit left an H100 with 32–64 busy SMs of 132 and took ~190 µs a call in SD1.5.
//   1. gn_partial: block (u, s) takes the s-th chunk of unit u and writes (count, mean, M2) of it,
//      two-pass over the chunk (a few KB, the second pass from cache)
//   2. gn_merge: a thread per unit merges its chunks (Chan et al.'s pairwise update, no
//      cancellation) into (mean, rstd), kept in `stats`
//   3. gn_apply: the affine normalisation (+ SiLU), 16 bytes per thread per step where rows allow
template <typename T>
__device__ void gn_partial(int64_t count, int splits, const T* x, float* part) {
    LDM_SHARED(float, scratch, 32);
    const int64_t u = blockIdx.x, s = blockIdx.y;
    const int64_t chunk = (count + splits - 1) / splits;
    const int64_t beg = s * chunk, end = beg + chunk < count ? beg + chunk : count;
    const T* xu = x + u * count;
    float sum = 0.0f;
    for (int64_t j = beg + threadIdx.x; j < end; j += blockDim.x) sum += to_f32(xu[j]);
    const float n = end > beg ? (float)(end - beg) : 0.0f;
    const float mean = n > 0.0f ? block_sum(sum, scratch) / n : block_sum(0.0f, scratch);
    float m2 = 0.0f;
    for (int64_t j = beg + threadIdx.x; j < end; j += blockDim.x) {
        float d = to_f32(xu[j]) - mean;
        m2 += d * d;
    }
    m2 = block_sum(m2, scratch);
    if (threadIdx.x == 0) {
        float* p = part + 3 * (u * splits + s);
        p[0] = n;
        p[1] = mean;
        p[2] = m2;
    }
}

__device__ void gn_merge(int64_t units, int splits, const float* part, float eps, float* stats) {
    GRID_STRIDE(u, units) {
        float n = 0.0f, mean = 0.0f, m2 = 0.0f;
        for (int s = 0; s < splits; ++s) {
            const float* p = part + 3 * (u * splits + s);
            if (p[0] == 0.0f) continue;
            float total = n + p[0], delta = p[1] - mean;
            mean += delta * (p[0] / total);
            m2 += p[2] + delta * delta * (n * p[0] / total);
            n = total;
        }
        stats[2 * u] = mean;
        stats[2 * u + 1] = rsqrtf(m2 / n + eps);
    }
}

// The normalisation of channel c of unit u: (x − mean)·rstd·w[c] + b[c], then SiLU if asked —
// one definition for the NCHW and the channels-last apply, so the two agree to the bit.
struct GnChannel {
    float mean, scale, shift;
    template <typename T>
    __device__ __forceinline__ GnChannel(const float* stats, int64_t u, int64_t c, const T* w, const T* b)
        : mean(stats[2 * u]), scale(stats[2 * u + 1] * (w ? to_f32(w[c]) : 1.0f)), shift(b ? to_f32(b[c]) : 0.0f) {}
    template <typename T>
    __device__ __forceinline__ T operator()(T x, int silu) const {
        float z = (to_f32(x) - mean) * scale + shift;
        if (silu) z *= sigmoidf_(z);
        return from_f32<T>(z);
    }
};

// V values per step: 16 bytes (the host picks V > 1 only when S % V = 0 and both pointers are
// 16-byte aligned), else 1.
template <typename T, int V>
__device__ void gn_apply(int64_t total, int64_t C, int64_t S, int64_t cpg, int silu, const T* x, const T* w, const T* b,
                         const float* stats, T* y) {
    GRID_STRIDE(v, total / V) {
        const int64_t e = v * V, nc = e / S, c = nc % C, u = nc / cpg;
        const GnChannel norm(stats, u, c, w, b);
        T in[V], out[V];
        if constexpr (V > 1) *reinterpret_cast<uint4*>(in) = *reinterpret_cast<const uint4*>(x + e);
        else in[0] = x[e];
        #pragma unroll
        for (int i = 0; i < V; ++i) out[i] = norm(in[i], silu);
        if constexpr (V > 1) *reinterpret_cast<uint4*>(y + e) = *reinterpret_cast<const uint4*>(out);
        else y[e] = out[0];
    }
}

template <typename T>
__device__ void gn_bwd(int64_t N, int64_t C, int64_t S, int64_t G, float eps, int silu, const T* x, const T* dy,
                       const T* w, const T* b, T* dx, float* stats) {
    LDM_SHARED(float, scratch, 32);
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
    LDM_SHARED(float, scratch, 32);
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
    LDM_SHARED(float, scratch, 32);
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
    LDM_SHARED(float, scratch, 32);
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

// gn_apply written channels-last: y[n, p, c] (= [N, S, C]) from x[n, c, p], through
// transpose_tile (common.cuh) so the reads (along p) and the writes (along c) are both coalesced —
// the layout the channels-last conv that follows (GroupNorm → SiLU → conv opens every ResBlock)
// reads without a transpose of its own. The same arithmetic as gn_apply, element for element.
// Block 32×8, grid (⌈S/32⌉, ⌈C/32⌉, N).
template <typename T>
__device__ void gn_apply_nhwc(int64_t C, int64_t S, int64_t cpg, int silu, const T* x, const T* w, const T* b, const float* stats, T* y) {
    const int64_t n = blockIdx.z;
    transpose_tile<T>(C, S, x, y, [&](int64_t c, T v) -> T { return GnChannel(stats, (n * C + c) / cpg, c, w, b)(v, silu); });
}

extern "C" __global__ void group_norm_merge(int64_t units, int32_t splits, const float* part, float eps, float* stats) {
    gn_merge(units, splits, part, eps, stats);
}

#define NORM_OPS(T, S) \
extern "C" __global__ void group_norm_partial_##S(int64_t count, int32_t splits, const T* x, float* part) { \
    gn_partial<T>(count, splits, x, part); \
} \
extern "C" __global__ void group_norm_apply_##S(int64_t total, int64_t C, int64_t Sp, int64_t cpg, int32_t silu, \
                                                const T* x, const T* w, const T* b, const float* stats, T* y) { \
    gn_apply<T, 1>(total, C, Sp, cpg, silu, x, w, b, stats, y); \
} \
extern "C" __global__ void group_norm_apply_nhwc_##S(int64_t C, int64_t Sp, int64_t cpg, int32_t silu, \
                                                     const T* x, const T* w, const T* b, const float* stats, T* y) { \
    gn_apply_nhwc<T>(C, Sp, cpg, silu, x, w, b, stats, y); \
} \
extern "C" __global__ void group_norm_apply_vec_##S(int64_t total, int64_t C, int64_t Sp, int64_t cpg, int32_t silu, \
                                                    const T* x, const T* w, const T* b, const float* stats, T* y) { \
    gn_apply<T, 16 / sizeof(T)>(total, C, Sp, cpg, silu, x, w, b, stats, y); \
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
