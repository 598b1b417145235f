// Kernel lab: wgmma (sm_90a) for the GEMM and conv variants 5 (gemm_tc_wgmma_sm90a.cu,
// conv_tc_wgmma_sm90a.cu), with the matrix
// descriptor of a K-major operand stored as tc_ring.cuh's ring slices store it: rows of 32 halves
// (64 bytes) whose 16-byte chunks are XOR-swizzled by (row >> 1) & 3 — the hardware's 64-byte
// swizzle (address bits 4–5 XOR bits 7–8) when each 8-row atom is 512-byte aligned. The emulator
// (tools/kernel_emu/ldm_emu.h) defines the same functions and decodes the descriptors per the PTX
// ISA; this file is for the GPU only.
#pragma once
#include "tc_ring.cuh"

// Descriptor of a K-major, 64-byte-swizzled operand whose row 0 (k offset included: +32 bytes for
// the second 16-wide k step of a 32-wide slice) starts at shared address `saddr`: stride byte
// offset 512 (8 rows × 64 bytes between 8-row groups), leading byte offset 1 (unused when
// swizzled), base offset 0, layout 2 (64-byte swizzle).
__device__ __forceinline__ uint64_t sw64_desc(uint32_t saddr) {
    return (uint64_t)((saddr >> 4) & 0x3fff) | ((uint64_t)1 << 16) | ((uint64_t)(512 >> 4) << 32) | ((uint64_t)2 << 62);
}

#ifndef LDM_KERNEL_EMU
__device__ __forceinline__ uint32_t smem_addr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
// Orders this warpgroup's earlier register accesses (the accumulators) before the next wgmma.
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }
// Shared memory written by the generic proxy (cp.async, stores), made visible to the async proxy
// (wgmma's operand reads); each writing thread, before the barrier.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// Pins the accumulators at this point of the program: the compiler sees them read and written
// here, so no ordinary access to them moves across the wgmma wait before it (CUTLASS's
// warpgroup_fence_operand). No instruction is emitted.
__device__ __forceinline__ void wgmma_fence_operands(float (&d)[64]) {
    #pragma unroll
    for (int i = 0; i < 64; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// d (64×128 f32, in the wgmma accumulator layout) += A (64×16, descriptor da) · B (128×16, db)ᵀ.
template <typename T>
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[64], uint64_t da, uint64_t db);
// One specialisation per half type; the instruction differs only in its type suffix TY.
#define LDM_WGMMA_M64N128K16(T, TY) \
    template <> \
    __device__ __forceinline__ void wgmma_m64n128k16<T>(float (&d)[64], uint64_t da, uint64_t db) { \
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n" \
                     "wgmma.mma_async.sync.aligned.m64n128k16.f32." TY "." TY " " \
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n" \
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]) \
                     : "l"(da), "l"(db), "r"(1)); \
    }
LDM_WGMMA_M64N128K16(f16, "f16")
LDM_WGMMA_M64N128K16(bf16, "bf16")
#else
inline void wgmma_fence_operands(float (&)[64]) {}
template <typename T>
inline void wgmma_m64n128k16(float (&d)[64], uint64_t da, uint64_t db);
template <>
inline void wgmma_m64n128k16<f16>(float (&d)[64], uint64_t da, uint64_t db) { emu_wgmma_m64k16<false, 128>(d, da, db); }
template <>
inline void wgmma_m64n128k16<bf16>(float (&d)[64], uint64_t da, uint64_t db) { emu_wgmma_m64k16<true, 128>(d, da, db); }
#endif

// acc = Σ_{k in [kbeg, kend)} A(m, k)·B(k, n) over a 128×128 block tile: tc_ring.cuh's 3-stage
// cp.async ring (issuers `a`, `b`) feeding wgmma.mma_async.m64n128k16 — two warpgroups of 128
// threads, warpgroup wg owning rows 64·wg … of the tile, both operands read by the tensor cores
// straight from the ring's K-major 64-byte-swizzled slices through matrix descriptors. Per slice:
// cp.async.wait → fence.proxy.async (the copies visible to wgmma's async-proxy reads) → barrier →
// issue the slice two ahead → wgmma.fence, two wgmma (k 0–15, 16–31: the descriptor start moves
// 32 bytes), commit, wait (the stage they read is refilled only after the next barrier).
// Accumulator 4j + e: wgmma_place (below).
template <typename T, class IssA, class IssB>
__device__ __forceinline__ void wgmma_ring_mainloop(int kbeg, int kend, const IssA& a, const IssB& b, float (&acc)[64]) {
    constexpr int SLICE = RING_BM * RING_BK;  // halves per operand slice (8 KB)
    LDM_SHARED_ALIGNED(T, As, RING_STAGES * SLICE, 1024);
    LDM_SHARED_ALIGNED(T, Bs, RING_STAGES * SLICE, 1024);
#ifdef LDM_KERNEL_EMU
    if ((smem_addr(As) | smem_addr(Bs)) & 511) ldm_emu::fail("wgmma ring: stages not 512-byte aligned");
#endif
    const int wg = threadIdx.x >> 7;
    const int slices = kend > kbeg ? (kend - kbeg + RING_BK - 1) / RING_BK : 0;
    #pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.0f;
    #pragma unroll
    for (int s = 0; s < RING_STAGES - 1; ++s) {
        if (s < slices) {
            a.issue(As + s * SLICE, kbeg + s * RING_BK);
            b.issue(Bs + s * SLICE, kbeg + s * RING_BK);
        }
        cp_async_commit();
    }
    for (int i = 0; i < slices; ++i) {
        cp_async_wait<RING_STAGES - 2>();
        fence_proxy_async();
        __syncthreads();
        const int next = i + RING_STAGES - 1;
        if (next < slices) {
            a.issue(As + (next % RING_STAGES) * SLICE, kbeg + next * RING_BK);
            b.issue(Bs + (next % RING_STAGES) * SLICE, kbeg + next * RING_BK);
        }
        cp_async_commit();
        const T* as = As + (i % RING_STAGES) * SLICE + wg * 64 * RING_BK;
        const T* bs = Bs + (i % RING_STAGES) * SLICE;
        wgmma_fence();
        wgmma_fence_operands(acc);
        #pragma unroll
        for (int ks = 0; ks < RING_BK; ks += 16) wgmma_m64n128k16<T>(acc, sw64_desc(smem_addr(as + ks)), sw64_desc(smem_addr(bs + ks)));
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_fence_operands(acc);
    }
    cp_async_wait<0>();
}

// Each adjacent pair of the 128×128 tile at (m0, n0) in wgmma's accumulator layout to
// pair(m, n, v0, v1) (columns n, n + 1 of row m; n + 1 may be N: the callee checks): accumulator
// 4j + e is row 16·warp + g (+8 for e ≥ 2) of the warpgroup's 64, column 8j + 2t + (e & 1).
template <class Pair>
__device__ __forceinline__ void wgmma_store_pairs(int M, int N, int m0, int n0, const float (&acc)[64], const Pair& pair) {
    const int lane = threadIdx.x & 31, wg = threadIdx.x >> 7, wq = (threadIdx.x & 127) >> 5, g = lane >> 2, t = lane & 3;
    #pragma unroll
    for (int j = 0; j < 16; ++j)
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int m = m0 + wg * 64 + wq * 16 + g + 8 * h, n = n0 + 8 * j + 2 * t;
            if (m < M && n < N) pair(m, n, acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
        }
}

// The same, value by value: put(m, n, v) for each inside M×N.
template <class Put>
__device__ __forceinline__ void wgmma_store(int M, int N, int m0, int n0, const float (&acc)[64], const Put& put) {
    wgmma_store_pairs(M, N, m0, n0, acc, [&](int m, int n, float v0, float v1) {
        put(m, n, v0);
        if (n + 1 < N) put(m, n + 1, v1);
    });
}
