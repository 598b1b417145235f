// Shared helpers for every kernel file: f32/f16/bf16 load/store through f32, the strided layouts
// that host code passes by value, and warp/block reductions. Kernels compute in f32 and store in
// the tensor's dtype (ARCHITECTURE.md: "CUDA stores f16/bf16 and accumulates in f32").
#pragma once
#ifdef LDM_KERNEL_EMU
// Compiled as host C++ by the kernel emulator (tools/kernel_emu/ldm_emu.h), no GPU needed.
#include "ldm_emu.h"
#else
#include <cuda_fp16.h>
#include <cuda_bf16.h>
// A statically sized __shared__ array; the emulator gives every thread of a block the same one.
#define LDM_SHARED(T, name, count) __shared__ __align__(16) T name[count]
#define LDM_SHARED_ALIGNED(T, name, count, align) __shared__ __align__(align) T name[count]
#endif
// NVRTC (the run-time fallback when the build had no nvcc) has no C library headers.
#ifdef __CUDACC_RTC__
typedef long long int64_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef unsigned long long uintptr_t;
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
    // 1 when offset + i is the element (no index arithmetic needed); 2 when not, but every index
    // of the launch fits in 32 bits (the host knows the element count): the index arithmetic then
    // divides in 32 bits, several times cheaper than 64-bit division, which the GPU emulates
    int32_t contiguous;
    int64_t offset;
    int64_t shape[MAX_DIMS];
    int64_t strides[MAX_DIMS];
};

__device__ __forceinline__ int64_t strided_offset(const Strided& s, int64_t i) {
    if (s.contiguous == 1) return s.offset + i;
    int64_t off = s.offset;
    if (s.contiguous == 2) {
        uint32_t u = (uint32_t)i;
        #pragma unroll
        for (int d = MAX_DIMS - 1; d >= 0; --d) {
            if (d < s.rank) {
                uint32_t n = (uint32_t)s.shape[d], q = u / n;
                off += (int64_t)(u - q * n) * s.strides[d];
                u = q;
            }
        }
        return off;
    }
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

// 16 bytes of T: the unit of the vectorised elementwise paths (one 128-bit load or store per
// thread moves 4 floats or 8 halves; a 2-byte load per thread leaves half the bandwidth unused).
template <typename T>
struct alignas(16) Pack {
    T v[16 / sizeof(T)];
};

// Whether operand `s` over pointer `p` can be read as Packs: contiguous and 16-byte aligned.
template <typename T>
__device__ __forceinline__ bool packable(const Strided& s, const T* p) {
    return s.contiguous == 1 && reinterpret_cast<uintptr_t>(p + s.offset) % 16 == 0;
}
template <typename T>
__device__ __forceinline__ bool packable(const T* p) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// y[b, s, r] = f(r, x[b, r, s]) for contiguous [B, R, S] → [B, S, R] through a 32×32 shared tile,
// so that both the reads (along s) and the writes (along r) are coalesced; the generic strided
// copy writes one of them with a stride. f maps each value on its way (the identity for a plain
// transpose, the normalisation for group_norm's channels-last output). Block 32×8, grid
// (⌈S/32⌉, ⌈R/32⌉, B).
template <typename T, typename F>
__device__ __forceinline__ void transpose_tile(int64_t R, int64_t S, const T* x, T* y, F f) {
    LDM_SHARED(T, tile, 32 * 33);  // 33: a column read does not hit one bank 32 times
    const int64_t b = blockIdx.z, r0 = (int64_t)blockIdx.y * 32, s0 = (int64_t)blockIdx.x * 32;
    const T* xb = x + b * R * S;
    T* yb = y + b * R * S;
    for (int i = threadIdx.y; i < 32; i += 8) {
        int64_t r = r0 + i, s = s0 + threadIdx.x;
        if (r < R && s < S) tile[i * 33 + threadIdx.x] = f(r, xb[r * S + s]);
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += 8) {
        int64_t s = s0 + i, r = r0 + threadIdx.x;
        if (s < S && r < R) yb[s * R + r] = tile[threadIdx.x * 33 + i];
    }
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
// The exact (erf) GELU, as torch's F.gelu: one definition for the unary op, GEGLU and the GEMM's
// fused GEGLU epilogue (gemm_tc.cu), so they agree.
__device__ __forceinline__ float gelu_erf_(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067812f)); }

// ---------------------------------------------------------------------------------------------
// Tensor cores (sm_80+): mma.sync.aligned.m16n8k16.row.col with f16 or bf16 inputs and f32
// accumulators. Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), for lane L with
// g = L / 4, t = L % 4, the lower index in the low 16 bits of each register:
//   A 16×16: a0 = A[g][2t, 2t+1], a1 = A[g+8][2t, 2t+1], a2 = A[g][2t+8, 2t+9], a3 = A[g+8][2t+8, 2t+9]
//   B 16×8:  b0 = B[2t, 2t+1][g], b1 = B[2t+8, 2t+9][g]
//   C 16×8:  c0 = C[g][2t], c1 = C[g][2t+1], c2 = C[g+8][2t], c3 = C[g+8][2t+1]
__device__ __forceinline__ uint32_t pack_pair(f16 lo, f16 hi) {
    return (uint32_t)__half_as_ushort(lo) | ((uint32_t)__half_as_ushort(hi) << 16);
}
__device__ __forceinline__ uint32_t pack_pair(bf16 lo, bf16 hi) {
    return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}
template <typename T>
__device__ __forceinline__ uint32_t pack_f32_pair(float lo, float hi) {
    return pack_pair(from_f32<T>(lo), from_f32<T>(hi));
}
// A 16-bit pattern as the half type it encodes.
template <typename T> __device__ __forceinline__ T half_from_bits(unsigned short b);
template <> __device__ __forceinline__ f16 half_from_bits<f16>(unsigned short b) { return __ushort_as_half(b); }
template <> __device__ __forceinline__ bf16 half_from_bits<bf16>(unsigned short b) { return __ushort_as_bfloat16(b); }
// Two adjacent elements (the first at an even index) as one 32-bit register.
template <typename T>
__device__ __forceinline__ uint32_t load_pair(const T* p) {
    return *reinterpret_cast<const uint32_t*>(p);
}

// Asynchronous copies and matrix loads (sm_80+), for kernels that stage operands in shared
// memory through cp.async and read their mma fragments with ldmatrix. The emulator
// (tools/kernel_emu/ldm_emu.h) defines its own, which land a copy only at the wait that covers it.
#ifndef LDM_KERNEL_EMU
// 16 bytes global → shared; `full` false writes 16 zero bytes (src-size 0: nothing is read).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool full) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(full ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }
// Four 8×8 16-bit matrices; lane L gives row L % 8 of matrix L / 8 (16 aligned bytes).
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* row) {
    unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
// The same, each matrix transposed: the B fragment of a product whose k runs down the rows.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* row) {
    unsigned s = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];" : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(s));
}
// 2^x by the special-function unit (ex2.approx.ftz: ≤ 2 ulp, subnormal results flushed to 0),
// which is what a softmax needs; exp2f adds range handling around the same instruction.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
#endif

// d += A·B on one warp's fragments.
template <typename T>
__device__ __forceinline__ void mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2]);
#ifdef LDM_KERNEL_EMU
template <> inline void mma_16816<f16>(float d[4], const uint32_t a[4], const uint32_t b[2]) { emu_mma_m16n8k16<false>(d, a, b); }
template <> inline void mma_16816<bf16>(float d[4], const uint32_t a[4], const uint32_t b[2]) { emu_mma_m16n8k16<true>(d, a, b); }
#else
template <>
__device__ __forceinline__ void mma_16816<f16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <>
__device__ __forceinline__ void mma_16816<bf16>(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif
