// avg_pool2d and max_pool2d (no padding, floor output size) forward and backward, and
// torch.gather along one dim with its adjoint. CPU twins: src/backend/cpu/spatial.rs and
// src/tensor/indexing.rs. Backward passes accumulate in f32 (atomics where windows overlap).
#include "common.cuh"

struct PoolGeom {
    int64_t planes, ih, iw, oh, ow, kh, kw, sh, sw;
};

// The window's sum as the CPU forms it: each kernel row summed left to right, rows added in order.
template <typename T>
__device__ void avg_pool_loop(PoolGeom g, const T* x, T* y) {
    const float inv = 1.0f / (float)(g.kh * g.kw);
    GRID_STRIDE(i, g.planes * g.oh * g.ow) {
        int64_t j = i % g.ow, r = (i / g.ow) % g.oh, p = i / (g.ow * g.oh);
        const T* xp = x + p * g.ih * g.iw;
        float acc = 0.0f;
        for (int64_t a = 0; a < g.kh; ++a) {
            float rs = 0.0f;
            for (int64_t c = 0; c < g.kw; ++c) rs += to_f32(xp[(r * g.sh + a) * g.iw + j * g.sw + c]);
            acc += rs;
        }
        y[i] = from_f32<T>(acc * inv);
    }
}

// gx[p, y, x] = Σ over the windows that cover (y, x) of g·(1/area): a gather, no atomics.
template <typename T>
__device__ void avg_pool_bwd_loop(PoolGeom g, const T* gy, T* gx) {
    const float inv = 1.0f / (float)(g.kh * g.kw);
    GRID_STRIDE(i, g.planes * g.ih * g.iw) {
        int64_t xx = i % g.iw, yy = (i / g.iw) % g.ih, p = i / (g.iw * g.ih);
        float acc = 0.0f;
        for (int64_t a = 0; a < g.kh; ++a) {
            int64_t t = yy - a;
            if (t < 0 || t % g.sh != 0 || t / g.sh >= g.oh) continue;
            for (int64_t c = 0; c < g.kw; ++c) {
                int64_t u = xx - c;
                if (u < 0 || u % g.sw != 0 || u / g.sw >= g.ow) continue;
                acc += to_f32(gy[(p * g.oh + t / g.sh) * g.ow + u / g.sw]) * inv;
            }
        }
        gx[i] = from_f32<T>(acc);
    }
}

// Window argmax by torch's rule: scan row-major, take a value when it is > max or NaN.
template <typename T>
__device__ __forceinline__ int64_t window_argmax(const T* xp, const PoolGeom& g, int64_t r, int64_t j, float& m) {
    int64_t best = (r * g.sh) * g.iw + j * g.sw;
    m = -LDM_INF;
    for (int64_t a = 0; a < g.kh; ++a) {
        int64_t row = (r * g.sh + a) * g.iw + j * g.sw;
        for (int64_t c = 0; c < g.kw; ++c) {
            float v = to_f32(xp[row + c]);
            if (v > m || v != v) { m = v; best = row + c; }
        }
    }
    return best;
}

template <typename T>
__device__ void max_pool_loop(PoolGeom g, const T* x, T* y) {
    GRID_STRIDE(i, g.planes * g.oh * g.ow) {
        int64_t j = i % g.ow, r = (i / g.ow) % g.oh, p = i / (g.ow * g.oh);
        float m;
        window_argmax(x + p * g.ih * g.iw, g, r, j, m);
        y[i] = from_f32<T>(m);
    }
}

template <typename T>
__device__ void max_pool_bwd_loop(PoolGeom g, const T* x, const T* gy, float* acc) {
    GRID_STRIDE(i, g.planes * g.oh * g.ow) {
        int64_t j = i % g.ow, r = (i / g.ow) % g.oh, p = i / (g.ow * g.oh);
        float m;
        int64_t at = window_argmax(x + p * g.ih * g.iw, g, r, j, m);
        atomicAdd(&acc[p * g.ih * g.iw + at], to_f32(gy[i]));
    }
}

// torch.gather: out[c] = x[c with c_d replaced by idx[c]]; `is` carries idx's shape (contiguous)
// and x's strides.
__device__ __forceinline__ int64_t gather_offset(const Strided& is, int32_t d, int64_t i, int64_t id) {
    int64_t off = 0;
    for (int k = MAX_DIMS - 1; k >= 0; --k) {
        if (k < is.rank) {
            int64_t n = is.shape[k];
            int64_t c = (k == d) ? id : i % n;
            off += c * is.strides[k];
            i /= n;
        }
    }
    return off;
}

template <typename T>
__device__ void gather_loop(int64_t n, Strided is, int32_t d, const int64_t* ids, const T* x, T* y) {
    GRID_STRIDE(i, n) y[i] = x[gather_offset(is, d, i, ids[i])];
}

template <typename T>
__device__ void gather_bwd_loop(int64_t n, Strided is, int32_t d, const int64_t* ids, const T* g, float* acc) {
    GRID_STRIDE(i, n) atomicAdd(&acc[gather_offset(is, d, i, ids[i])], to_f32(g[i]));
}

#define POOL_OPS(T, S) \
extern "C" __global__ void avg_pool2d_##S(PoolGeom g, const T* x, T* y) { avg_pool_loop<T>(g, x, y); } \
extern "C" __global__ void avg_pool2d_bwd_##S(PoolGeom g, const T* gy, T* gx) { avg_pool_bwd_loop<T>(g, gy, gx); } \
extern "C" __global__ void max_pool2d_##S(PoolGeom g, const T* x, T* y) { max_pool_loop<T>(g, x, y); } \
extern "C" __global__ void max_pool2d_bwd_##S(PoolGeom g, const T* x, const T* gy, float* acc) { max_pool_bwd_loop<T>(g, x, gy, acc); } \
extern "C" __global__ void gather_bwd_##S(int64_t n, Strided is, int32_t d, const int64_t* ids, const T* g, float* acc) { \
    gather_bwd_loop<T>(n, is, d, ids, g, acc); \
}
#define GATHER_OP(T, S) \
extern "C" __global__ void gather_##S(int64_t n, Strided is, int32_t d, const int64_t* ids, const T* x, T* y) { \
    gather_loop<T>(n, is, d, ids, x, y); \
}
POOL_OPS(float, f32)
POOL_OPS(f16, f16)
POOL_OPS(bf16, bf16)
GATHER_OP(float, f32)
GATHER_OP(f16, f16)
GATHER_OP(bf16, bf16)
GATHER_OP(int64_t, i64)
GATHER_OP(uint8_t, u8)
