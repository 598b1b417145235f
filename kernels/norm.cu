// group_norm (optionally fused with SiLU) and layer_norm, forward and backward. Statistics are
// two-pass in f32 (mean, then Σ(x−μ)²: no cancellation when |μ| ≫ σ), biased variance like torch.
// CPU twin: src/backend/cpu/norm.rs. Null weight/bias pointers mean "no affine".
//
// group_norm: x [N, C, S] contiguous; a unit (n, group) is cpg·S contiguous values. The forward
// spreads each unit over many blocks in two launches (gn_partial, then an apply that merges the
// partials; below); the backward has one block per unit, recomputes the statistics from x and
// leaves (mean, rstd) per unit in `stats` for the per-channel dγ/dβ kernel.
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

// group_norm forward in two launches, so that a unit (n, group) is spread over many blocks: one
// block per unit left an H100 with 32–64 busy SMs of 132 and took ~190 µs a call in SD1.5.
//   1. gn_partial: block (u, s) takes the s-th chunk of unit u and writes (count, mean, M2) of it,
//      two-pass over the chunk (a few KB, the second pass from cache), 16 bytes per load where the
//      unit's values are 16-byte aligned
//   2. gn_apply (NCHW) or gn_apply_nhwc (channels-last): every block first merges the partials of
//      the unit(s) it writes (gn_unit_stats: a warp per unit) into (mean, rstd) in shared memory,
//      then applies the affine normalisation (+ SiLU)
// The merge was a launch of its own between the two (a thread per unit): at the SD sizes the call
// is latency-bound, and that tiny dependent launch cost as much as either of the others.
//
// Optional shift: a value per (n, channel), at shift[n·shift_rs + c], added to x (in f32, not
// rounded to T) before the statistics and the normalisation — group_norm(x + shift). The UNet
// ResBlock normalises h + emb; with the shift fused, h + emb is never written (a launch and a
// write + read of the activation per ResBlock). Null: no shift, and the arithmetic is unchanged.

// The shift of unit u's first channel (u·cpg = n·C + c0), its channel j at [j / S]; null without.
template <typename T>
__device__ __forceinline__ const T* gn_unit_shift(const T* shift, int64_t shift_rs, int64_t u, int64_t cpg, int64_t C) {
    if (!shift) return nullptr;
    const int64_t first = u * cpg;
    return shift + first / C * shift_rs + first % C;
}

// j / S, by 32-bit division where the unit fits (it always does at the models' sizes).
__device__ __forceinline__ int64_t gn_channel_in_unit(int64_t j, int64_t S, bool narrow) {
    return narrow ? (int64_t)((uint32_t)j / (uint32_t)S) : j / S;
}

// 16 bytes of T (V = 16 / sizeof(T)) or one T (V = 1), aligned to its size: one load or store.
template <typename T, int V>
struct alignas(sizeof(T) * V) GnVec {
    T v[V];
};

// f(index, value) for this thread's share of xu[beg, end): 16 bytes a load when `vec` (beg
// 16-byte aligned, end − beg whole vectors), else one value.
template <typename T, typename F>
__device__ __forceinline__ void gn_visit(const T* xu, int64_t beg, int64_t end, bool vec, F f) {
    constexpr int V = 16 / sizeof(T);
    if (vec) {
        for (int64_t j = beg + (int64_t)threadIdx.x * V; j < end; j += (int64_t)blockDim.x * V) {
            const GnVec<T, V> p = *reinterpret_cast<const GnVec<T, V>*>(xu + j);
            #pragma unroll
            for (int i = 0; i < V; ++i) f(j + i, to_f32(p.v[i]));
        }
    } else {
        for (int64_t j = beg + threadIdx.x; j < end; j += blockDim.x) f(j, to_f32(xu[j]));
    }
}

template <typename T>
__device__ void gn_partial(int64_t count, int64_t C, int64_t S, int64_t cpg, int splits, const T* x, const T* shift, int64_t shift_rs,
                           float* part) {
    LDM_SHARED(float, scratch, 32);
    constexpr int V = 16 / sizeof(T);
    const int64_t u = blockIdx.x, s = blockIdx.y;
    const T* xu = x + u * count;
    const T* sh = gn_unit_shift(shift, shift_rs, u, cpg, C);
    const bool narrow = count <= 0xffffffffll;
    auto value = [&](int64_t j, float v) { return sh ? v + to_f32(sh[gn_channel_in_unit(j, S, narrow)]) : v; };
    // 16-byte loads when every unit starts 16-byte aligned; chunks are then whole vectors (rounding
    // the chunk up may leave the last chunks empty: their count is 0 and the merge skips them)
    const bool vec = count % V == 0 && packable(x);
    const int64_t step = vec ? V : 1;
    const int64_t chunk = ((count + splits - 1) / splits + step - 1) / step * step;
    const int64_t beg = s * chunk < count ? s * chunk : count, end = beg + chunk < count ? beg + chunk : count;
    float sum = 0.0f, m2 = 0.0f;
    gn_visit(xu, beg, end, vec, [&](int64_t j, float v) { sum += value(j, v); });
    const float n = (float)(end - beg);
    const float mean = block_sum(sum, scratch) / (n > 0.0f ? n : 1.0f);
    gn_visit(xu, beg, end, vec, [&](int64_t j, float v) { float d = value(j, v) - mean; m2 += d * d; });  // from cache
    m2 = block_sum(m2, scratch);
    if (threadIdx.x == 0) {
        float* p = part + 3 * (u * splits + s);
        p[0] = n;
        p[1] = mean;
        p[2] = m2;
    }
}

// (count, mean, M2 = Σ(x−mean)²) of a set of values.
struct GnMoments {
    float n, mean, m2;
};
// The moments of a ∪ b by Chan et al.'s pairwise update (no cancellation); an empty side (a chunk
// past the end of its unit) leaves the other as it is.
__device__ __forceinline__ GnMoments gn_combine(GnMoments a, GnMoments b) {
    if (b.n == 0.0f) return a;
    if (a.n == 0.0f) return b;
    const float n = a.n + b.n, f = b.n / n, delta = b.mean - a.mean;
    return {n, a.mean + delta * f, a.m2 + b.m2 + delta * delta * (a.n * f)};
}

struct GnStats {
    float mean, rstd;
};

// (mean, rstd) of unit u from its `splits` partials, by one whole warp (called by all 32 lanes):
// lane l merges partials l, l + 32, … in order, then a butterfly merges the lanes. Both partners
// combine a pair lower lane first, so every lane ends with the same bits (a caller may take any).
// The NCHW and the channels-last apply both call this on the same partials: same (mean, rstd).
__device__ __forceinline__ GnStats gn_unit_stats(const float* part, int64_t u, int splits, float eps) {
    const int lane = threadIdx.x & 31;
    GnMoments m = {0.0f, 0.0f, 0.0f};
    for (int s = lane; s < splits; s += 32) {
        const float* p = part + 3 * (u * splits + s);
        m = gn_combine(m, {p[0], p[1], p[2]});
    }
    #pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const GnMoments other = {__shfl_xor_sync(0xffffffffu, m.n, o), __shfl_xor_sync(0xffffffffu, m.mean, o),
                                 __shfl_xor_sync(0xffffffffu, m.m2, o)};
        m = (lane & o) ? gn_combine(other, m) : gn_combine(m, other);
    }
    return {m.mean, rsqrtf(m.m2 / m.n + eps)};
}

// The normalisation of channel c: (x + pre − mean)·rstd·w[c] + b[c], then SiLU if asked — one
// definition for the NCHW and the channels-last apply, so the two agree to the bit. `pre` is the
// channel's shift (0 without one: x + 0 is x, so the unshifted arithmetic is what it was).
struct GnChannel {
    float mean, scale, shift, pre;
    GnChannel() = default;
    template <typename T>
    __device__ __forceinline__ GnChannel(GnStats st, int64_t c, const T* w, const T* b, float pre)
        : mean(st.mean), scale(st.rstd * (w ? to_f32(w[c]) : 1.0f)), shift(b ? to_f32(b[c]) : 0.0f), pre(pre) {}
    template <typename T>
    __device__ __forceinline__ T operator()(T x, int silu) const {
        float z = (to_f32(x) + pre - mean) * scale + shift;
        if (silu) z *= sigmoidf_(z);
        return from_f32<T>(z);
    }
};

// NCHW: grid (units, blocks per unit), 256 threads; block (u, k) normalises the k-th slice of unit
// u, V values per load and store: 16 bytes where the host found S % V = 0 and both pointers
// 16-byte aligned (a vector then stays within a channel), else 1. Each thread keeps K vectors in
// flight, and the first K are loaded before the merge so that their latency overlaps it.
template <typename T, int V>
__device__ void gn_apply(int64_t count, int64_t C, int64_t S, int64_t cpg, int splits, int silu, float eps, const float* part,
                         const T* x, const T* shift, int64_t shift_rs, const T* w, const T* b, T* y) {
    constexpr int K = 4;
    LDM_SHARED(GnStats, st, 1);
    const int64_t u = blockIdx.x, vectors = count / V, per = (vectors + gridDim.y - 1) / gridDim.y;
    const int64_t beg = blockIdx.y * per, end = beg + per < vectors ? beg + per : vectors;
    const int64_t c0 = u * cpg % C;
    const bool narrow = count <= 0xffffffffll;  // the channel of a value by 32-bit division
    const T* sh = gn_unit_shift(shift, shift_rs, u, cpg, C);
    const GnVec<T, V>* xu = reinterpret_cast<const GnVec<T, V>*>(x + u * count);
    GnVec<T, V>* yu = reinterpret_cast<GnVec<T, V>*>(y + u * count);
    GnVec<T, V> in[K];
    int64_t v0 = beg + threadIdx.x;
    auto load = [&] {
        #pragma unroll
        for (int k = 0; k < K; ++k)
            if (v0 + k * blockDim.x < end) in[k] = xu[v0 + k * blockDim.x];
    };
    load();
    if (threadIdx.x < 32) {
        const GnStats s = gn_unit_stats(part, u, splits, eps);
        if (threadIdx.x == 0) st[0] = s;
    }
    __syncthreads();
    const GnStats s = st[0];
    for (;;) {
        #pragma unroll
        for (int k = 0; k < K; ++k) {
            const int64_t v = v0 + k * blockDim.x, j = v * V;
            if (v >= end) break;
            const int64_t cu = gn_channel_in_unit(j, S, narrow);
            const GnChannel norm(s, c0 + cu, w, b, sh ? to_f32(sh[cu]) : 0.0f);
            GnVec<T, V> out;
            #pragma unroll
            for (int i = 0; i < V; ++i) out.v[i] = norm(in[k].v[i], silu);
            yu[v] = out;
        }
        v0 += K * blockDim.x;
        if (v0 >= end) break;
        load();
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

// gn_apply written channels-last: y[n, p, c] (= [N, S, C]) from x[n, c, p], through a 32×32
// shared tile (as transpose_tile in common.cuh) so the reads (along p) and the writes (along c)
// are both coalesced — the layout the channels-last conv that follows (GroupNorm → SiLU → conv
// opens every ResBlock) reads without a transpose of its own. The same arithmetic as gn_apply,
// element for element. Block 32×8, grid (⌈S/(32·tiles)⌉, ⌈C/32⌉, N): block (p, q, n) writes
// channels [32q, 32q + 32) of `tiles` 32-pixel tiles, so that large images do not merge the same
// partials in thousands of blocks; the tile after the current one is loaded before its store.
// Each channel's GnChannel is made once per block, into shared memory (not 12 registers a thread).
// x_nhwc (null: none): x itself written channels-last too, from the same loads — a ResBlock's 1×1
// skip conv reads x channels-last, and this copy saves it a transpose (a launch, a read of x).
template <typename T>
__device__ void gn_apply_nhwc(int64_t C, int64_t S, int64_t cpg, int splits, int tiles, int silu, float eps, const float* part,
                              const T* x, const T* shift, int64_t shift_rs, const T* w, const T* b, T* y, T* x_nhwc) {
    LDM_SHARED(T, tile, 32 * 33);  // 33: a column read does not hit one bank 32 times
    LDM_SHARED(T, raw, 32 * 33);   // x's tile, for x_nhwc
    LDM_SHARED(GnStats, st, 32);
    LDM_SHARED(GnChannel, norm, 32);
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int64_t n = blockIdx.z, c0 = (int64_t)blockIdx.y * 32;
    const int rows = C - c0 < 32 ? (int)(C - c0) : 32;  // channels in this tile
    const int64_t all = (S + 31) / 32;
    int64_t t = (int64_t)blockIdx.x * tiles;
    const int64_t t_end = t + tiles < all ? t + tiles : all;
    const T* xt = x + (n * C + c0 + ty) * S + tx;  // row ty of the tile, pixel tx
    const int64_t out0 = (n * S + ty) * C + c0 + tx;  // pixel ty of the tile, channel tx (y, x_nhwc)
    T* yt = y + out0;
    T in[4];
    auto load = [&] {
        #pragma unroll
        for (int i = 0; i < 4; ++i)
            if (ty + 8 * i < rows && 32 * t + tx < S) in[i] = xt[32 * t + 8 * i * S];
    };
    load();
    // the channel tile meets units u0..u1 (several when cpg < 32): a warp per unit
    const int64_t u0 = (n * C + c0) / cpg, u1 = (n * C + c0 + rows - 1) / cpg;
    for (int64_t k = ty; k <= u1 - u0; k += 8) {
        const GnStats s = gn_unit_stats(part, u0 + k, splits, eps);
        if (tx == 0) st[k] = s;
    }
    __syncthreads();
    if (ty == 0 && tx < rows)
        norm[tx] = GnChannel(st[(n * C + c0 + tx) / cpg - u0], c0 + tx, w, b, shift ? to_f32(shift[n * shift_rs + c0 + tx]) : 0.0f);
    __syncthreads();
    for (;;) {
        #pragma unroll
        for (int i = 0; i < 4; ++i)
            if (ty + 8 * i < rows && 32 * t + tx < S) {
                tile[(ty + 8 * i) * 33 + tx] = norm[ty + 8 * i](in[i], silu);
                if (x_nhwc) raw[(ty + 8 * i) * 33 + tx] = in[i];
            }
        __syncthreads();
        #pragma unroll
        for (int i = 0; i < 4; ++i)
            if (32 * t + ty + 8 * i < S && tx < rows) {
                yt[(32 * t + 8 * i) * C] = tile[tx * 33 + ty + 8 * i];
                if (x_nhwc) x_nhwc[out0 + (32 * t + 8 * i) * C] = raw[tx * 33 + ty + 8 * i];
            }
        if (++t >= t_end) break;
        load();
        __syncthreads();  // the tile is written again
    }
}

#define NORM_OPS(T, S) \
extern "C" __global__ void group_norm_partial_##S(int64_t count, int64_t C, int64_t Sp, int64_t cpg, int32_t splits, const T* x, \
                                                  const T* shift, int64_t shift_rs, float* part) { \
    gn_partial<T>(count, C, Sp, cpg, splits, x, shift, shift_rs, part); \
} \
extern "C" __global__ void group_norm_apply_##S(int64_t count, int64_t C, int64_t Sp, int64_t cpg, int32_t splits, int32_t silu, \
                                                float eps, const float* part, const T* x, const T* shift, int64_t shift_rs, \
                                                const T* w, const T* b, T* y) { \
    gn_apply<T, 1>(count, C, Sp, cpg, splits, silu, eps, part, x, shift, shift_rs, w, b, y); \
} \
extern "C" __global__ void group_norm_apply_vec_##S(int64_t count, int64_t C, int64_t Sp, int64_t cpg, int32_t splits, int32_t silu, \
                                                    float eps, const float* part, const T* x, const T* shift, int64_t shift_rs, \
                                                    const T* w, const T* b, T* y) { \
    gn_apply<T, 16 / sizeof(T)>(count, C, Sp, cpg, splits, silu, eps, part, x, shift, shift_rs, w, b, y); \
} \
extern "C" __global__ void group_norm_apply_nhwc_##S(int64_t C, int64_t Sp, int64_t cpg, int32_t splits, int32_t tiles, int32_t silu, \
                                                     float eps, const float* part, const T* x, const T* shift, int64_t shift_rs, \
                                                     const T* w, const T* b, T* y, T* x_nhwc) { \
    gn_apply_nhwc<T>(C, Sp, cpg, splits, tiles, silu, eps, part, x, shift, shift_rs, w, b, y, x_nhwc); \
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
