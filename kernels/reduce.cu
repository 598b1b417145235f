// Reductions over one run of dims (sum / max / min; argmax) and softmax / log-softmax along the
// last dim. Host code presents the input as contiguous [outer, r, inner]: `reduce_rows` handles
// inner == 1 (a block per row), `reduce_cols` inner > 1 (a thread per output, reading across
// inner for coalescing). CPU twin: src/backend/cpu/reduce.rs — sums accumulate in f64 like it, and
// max/min propagate NaN like it.
#include "common.cuh"

enum { R_SUM, R_MAX, R_MIN };  // ReduceOp order in src/tensor/reduce.rs

__device__ __forceinline__ double warp_sum_d(double v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// max/min where NaN wins, as the CPU fold `if b > a || b.is_nan() { b } else { a }`.
__device__ __forceinline__ float nan_max(float a, float b) { return (b > a || b != b || a != a) ? (a != a ? a : b) : a; }
__device__ __forceinline__ float nan_min(float a, float b) { return (b < a || b != b || a != a) ? (a != a ? a : b) : a; }

template <int OP> __device__ __forceinline__ float combine(float a, float b) {
    return OP == R_MAX ? nan_max(a, b) : nan_min(a, b);
}
template <int OP> __device__ __forceinline__ float warp_combine(float v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = combine<OP>(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

template <typename T>
__device__ void sum_rows(int64_t rows, int64_t r, const T* x, T* out) {
    __shared__ double scratch[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * r;
        double acc = 0.0;
        for (int64_t j = threadIdx.x; j < r; j += blockDim.x) acc += (double)to_f32(xr[j]);
        acc = warp_sum_d(acc);
        if (lane == 0) scratch[warp] = acc;
        __syncthreads();
        if (warp == 0) {
            acc = lane < nwarps ? scratch[lane] : 0.0;
            acc = warp_sum_d(acc);
            if (lane == 0) out[row] = from_f32<T>((float)acc);
        }
        __syncthreads();
    }
}

template <typename T, int OP>
__device__ void minmax_rows(int64_t rows, int64_t r, const T* x, T* out) {
    __shared__ float scratch[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const float init = OP == R_MAX ? -LDM_INF : LDM_INF;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * r;
        float acc = init;
        for (int64_t j = threadIdx.x; j < r; j += blockDim.x) acc = combine<OP>(acc, to_f32(xr[j]));
        acc = warp_combine<OP>(acc);
        if (lane == 0) scratch[warp] = acc;
        __syncthreads();
        if (warp == 0) {
            acc = lane < nwarps ? scratch[lane] : init;
            acc = warp_combine<OP>(acc);
            if (lane == 0) out[row] = from_f32<T>(acc);
        }
        __syncthreads();
    }
}

template <typename T>
__device__ void reduce_cols_loop(int64_t outer, int64_t r, int64_t inner, int op, const T* x, T* out) {
    GRID_STRIDE(i, outer * inner) {
        const T* xc = x + (i / inner) * r * inner + (i % inner);
        if (op == R_SUM) {
            double acc = 0.0;
            for (int64_t j = 0; j < r; ++j) acc += (double)to_f32(xc[j * inner]);
            out[i] = from_f32<T>((float)acc);
        } else {
            float acc = op == R_MAX ? -LDM_INF : LDM_INF;
            for (int64_t j = 0; j < r; ++j) {
                float v = to_f32(xc[j * inner]);
                acc = op == R_MAX ? nan_max(acc, v) : nan_min(acc, v);
            }
            out[i] = from_f32<T>(acc);
        }
    }
}

// First index of the largest value (ties → the earliest), as the CPU twin.
template <typename T>
__device__ void argmax_loop(int64_t outer, int64_t r, int64_t inner, const T* x, int64_t* out) {
    GRID_STRIDE(i, outer * inner) {
        const T* xc = x + (i / inner) * r * inner + (i % inner);
        int64_t best = 0;
        float bv = r > 0 ? to_f32(xc[0]) : 0.0f;
        for (int64_t j = 1; j < r; ++j) {
            float v = to_f32(xc[j * inner]);
            if (v > bv) { bv = v; best = j; }
        }
        out[i] = best;
    }
}

// Max-subtracted softmax of each row of `cols` values; three passes over the row (max, Σexp,
// write), the row staying in L1/L2 between them.
template <typename T>
__device__ void softmax_rows(int64_t rows, int64_t cols, int log_out, const T* x, T* y) {
    __shared__ float scratch[32];
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* xr = x + row * cols;
        T* yr = y + row * cols;
        float m = -LDM_INF;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, to_f32(xr[j]));
        m = block_max(m, scratch);
        float s = 0.0f;
        for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) s += expf(to_f32(xr[j]) - m);
        s = block_sum(s, scratch);
        if (log_out) {
            float ls = logf(s);
            for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = from_f32<T>(to_f32(xr[j]) - m - ls);
        } else {
            float inv = 1.0f / s;
            for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) yr[j] = from_f32<T>(expf(to_f32(xr[j]) - m) * inv);
        }
    }
}

#define REDUCE_OPS(T, S) \
extern "C" __global__ void reduce_rows_##S(int64_t rows, int64_t r, int32_t op, const T* x, T* out) { \
    if (op == R_SUM) sum_rows<T>(rows, r, x, out); \
    else if (op == R_MAX) minmax_rows<T, R_MAX>(rows, r, x, out); \
    else minmax_rows<T, R_MIN>(rows, r, x, out); \
} \
extern "C" __global__ void reduce_cols_##S(int64_t outer, int64_t r, int64_t inner, int32_t op, const T* x, T* out) { \
    reduce_cols_loop<T>(outer, r, inner, op, x, out); \
} \
extern "C" __global__ void argmax_##S(int64_t outer, int64_t r, int64_t inner, const T* x, int64_t* out) { \
    argmax_loop<T>(outer, r, inner, x, out); \
} \
extern "C" __global__ void softmax_##S(int64_t rows, int64_t cols, int32_t log_out, const T* x, T* y) { \
    softmax_rows<T>(rows, cols, log_out, x, y); \
}
REDUCE_OPS(float, f32)
REDUCE_OPS(f16, f16)
REDUCE_OPS(bf16, bf16)
