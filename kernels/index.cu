// Data movement by index: index_select (rows picked along one dim; embedding is its dim-0 case),
// its adjoint index_add (f32 accumulation with atomics), the 2-D gather through row/column maps
// that upsample_nearest2d and pad2d (zero / reflect) share, and its adjoint scatter_add2d.
// Index maps arrive as int64 arrays on the device; -1 means "zero" (padding). CPU twins:
// src/tensor/indexing.rs and src/backend/cpu/spatial.rs.
#include "common.cuh"

// y[o, j, k] = x[o, ids[j], k] for x [outer, n_src, inner], y [outer, n_idx, inner].
template <typename T>
__device__ void index_select_loop(int64_t outer, int64_t n_src, int64_t n_idx, int64_t inner, const int64_t* ids, const T* x, T* y) {
    GRID_STRIDE(i, outer * n_idx * inner) {
        int64_t k = i % inner, j = (i / inner) % n_idx, o = i / (inner * n_idx);
        y[i] = x[(o * n_src + ids[j]) * inner + k];
    }
}

// acc[o, ids[j], k] += g[o, j, k] (acc f32, zeroed by the caller). Repeated ids add up; the order
// of those additions is not fixed (atomics), so sums of repeats may differ in the last bit.
template <typename T>
__device__ void index_add_loop(int64_t outer, int64_t n_dst, int64_t n_idx, int64_t inner, const int64_t* ids, const T* g, float* acc) {
    GRID_STRIDE(i, outer * n_idx * inner) {
        int64_t k = i % inner, j = (i / inner) % n_idx, o = i / (inner * n_idx);
        atomicAdd(&acc[(o * n_dst + ids[j]) * inner + k], to_f32(g[i]));
    }
}

// y[p, r, c] = x[p, rows[r], cols[c]] (0 where either map is -1).
template <typename T>
__device__ void gather2d_loop(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                              const int64_t* rows, const int64_t* cols, const T* x, T* y) {
    GRID_STRIDE(i, planes * out_h * out_w) {
        int64_t c = i % out_w, r = (i / out_w) % out_h, p = i / (out_w * out_h);
        int64_t sr = rows[r], sc = cols[c];
        y[i] = (sr < 0 || sc < 0) ? from_f32<T>(0.0f) : x[(p * in_h + sr) * in_w + sc];
    }
}

// acc[p, rows[r], cols[c]] += g[p, r, c] (acc f32, zeroed by the caller).
template <typename T>
__device__ void scatter_add2d_loop(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w,
                                   const int64_t* rows, const int64_t* cols, const T* g, float* acc) {
    GRID_STRIDE(i, planes * out_h * out_w) {
        int64_t c = i % out_w, r = (i / out_w) % out_h, p = i / (out_w * out_h);
        int64_t sr = rows[r], sc = cols[c];
        if (sr >= 0 && sc >= 0) atomicAdd(&acc[(p * in_h + sr) * in_w + sc], to_f32(g[i]));
    }
}

#define INDEX_OPS(T, S) \
extern "C" __global__ void index_select_##S(int64_t outer, int64_t n_src, int64_t n_idx, int64_t inner, \
                                            const int64_t* ids, const T* x, T* y) { \
    index_select_loop<T>(outer, n_src, n_idx, inner, ids, x, y); \
} \
extern "C" __global__ void gather2d_##S(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, \
                                        const int64_t* rows, const int64_t* cols, const T* x, T* y) { \
    gather2d_loop<T>(planes, in_h, in_w, out_h, out_w, rows, cols, x, y); \
}
#define ADJOINT_OPS(T, S) \
extern "C" __global__ void index_add_##S(int64_t outer, int64_t n_dst, int64_t n_idx, int64_t inner, \
                                         const int64_t* ids, const T* g, float* acc) { \
    index_add_loop<T>(outer, n_dst, n_idx, inner, ids, g, acc); \
} \
extern "C" __global__ void scatter_add2d_##S(int64_t planes, int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w, \
                                             const int64_t* rows, const int64_t* cols, const T* g, float* acc) { \
    scatter_add2d_loop<T>(planes, in_h, in_w, out_h, out_w, rows, cols, g, acc); \
}
INDEX_OPS(float, f32)
INDEX_OPS(f16, f16)
INDEX_OPS(bf16, bf16)
INDEX_OPS(int64_t, i64)
INDEX_OPS(uint8_t, u8)
ADJOINT_OPS(float, f32)
ADJOINT_OPS(f16, f16)
ADJOINT_OPS(bf16, bf16)
