// Shared helpers for every kernel file: f32/f16/bf16 load/store through f32, the strided layouts
// that host code passes by value, and warp/block reductions. Kernels compute in f32 and store in
// the tensor's dtype (ARCHITECTURE.md: "CUDA stores f16/bf16 and accumulates in f32").
#pragma once
#include <cuda_fp16.h>
#include <cuda_bf16.h>
// NVRTC (the run-time fallback when the build had no nvcc) has no C library headers.
#ifdef __CUDACC_RTC__
typedef long long int64_t;
typedef int int32_t;
typedef unsigned char uint8_t;
#define INT64_MAX 9223372036854775807LL
#define INT64_MIN (-INT64_MAX - 1LL)
#else
#include <stdint.h>
#endif
#define LDM_INF __int_as_float(0x7f800000)

typedef __nv_bfloat16 bf16;
typedef __half f16;

// Host code collapses adjacent dims that are contiguous in every operand before launching, so most
// launches see rank 1 and take the unit-stride path; 6 covers every view the models make.
#define MAX_DIMS 6

// One strided operand read over a row-major output index space. Strides and offset are in
// elements; a broadcast dim has stride 0.
struct Strided {
    int32_t rank;
    int32_t contiguous;  // 1 when offset + i is the element (no index arithmetic needed)
    int64_t offset;
    int64_t shape[MAX_DIMS];
    int64_t strides[MAX_DIMS];
};

__device__ __forceinline__ int64_t strided_offset(const Strided& s, int64_t i) {
    if (s.contiguous) return s.offset + i;
    int64_t off = s.offset;
    #pragma unroll
    for (int d = MAX_DIMS - 1; d >= 0; --d) {
        if (d < s.rank) {
            int64_t n = s.shape[d];
            off += (i % n) * s.strides[d];
            i /= n;
        }
    }
    return off;
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(f16 x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f32(int64_t x) { return (float)x; }
__device__ __forceinline__ float to_f32(uint8_t x) { return (float)x; }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ f16 from_f32<f16>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }
// Float → integer casts truncate toward zero and saturate like Rust's `as` (the CPU twin).
template <> __device__ __forceinline__ int64_t from_f32<int64_t>(float x) {
    if (x != x) return 0;
    if (x >= 9.2233720368547758e18f) return INT64_MAX;
    if (x <= -9.2233720368547758e18f) return INT64_MIN;
    return (int64_t)x;
}
template <> __device__ __forceinline__ uint8_t from_f32<uint8_t>(float x) {
    if (!(x > 0.0f)) return 0;
    if (x >= 255.0f) return 255;
    return (uint8_t)x;
}

// Grid-stride loop over [0, n): launches use a capped grid, so one launch covers any size.
#define GRID_STRIDE(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

__device__ __forceinline__ float warp_sum(float v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_min(float v) {
    #pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reductions for blocks of up to 1024 threads (a multiple of 32). Every thread gets the
// result. `scratch` holds 32 floats of shared memory; the trailing barrier lets callers reuse it.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = (lane < nwarps) ? scratch[lane] : 0.0f;
    v = warp_sum(v);
    __syncthreads();
    return v;
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = (lane < nwarps) ? scratch[lane] : -LDM_INF;
    v = warp_max(v);
    __syncthreads();
    return v;
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }
