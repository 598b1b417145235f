// Kernel lab, GEMM variant 5 (tools/kernel_lab/README.md): variant 3's cp.async ring (tc_ring.cuh)
// feeding Hopper's warpgroup MMA instead of mma.sync. The 128×128 block tile is two warpgroups of
// 128 threads, each owning 64 rows; per 16-wide k step a warpgroup issues one
// wgmma.mma_async.m64n128k16 that reads both operands straight from the ring's shared memory
// through matrix descriptors — no fragment loads at all (variant 3 issued 24 shared loads and 16
// mma.sync per warp per k step) — and keeps the 64×128 f32 accumulators in registers (64 per
// thread). The ring's slices are already the K-major 64-byte-swizzle layout wgmma reads (rows of
// 64 bytes, chunk c of row r at c ^ ((r >> 1) & 3)), given 512-byte-aligned 8-row atoms: the ring
// is declared 1024-byte aligned.
// Per slice: cp.async.wait (this thread's copies of the slice landed) → fence.proxy.async (make
// them visible to wgmma's async-proxy reads) → barrier → issue the slice two ahead → wgmma.fence,
// two wgmma (k 0–15, 16–31: the descriptor start moves 32 bytes), commit, wait for them (the
// stage they read is refilled only after the next barrier).
// sm_90a only (wgmma has no sm_80 or plain sm_90 form): build.rs compiles files named *_sm90a.cu
// for compute_90a, and the host launches this only on a compute-capability-9.0 device.
// Same signature, grid (128×128 tiles) and block (256 threads) as gemm_tc_wide_vv.
// Emulated by tools/kernel_emu/gemm_tc_test.cpp on every vv case (the emulator decodes the
// descriptors per the PTX ISA; see ldm_emu.h).
#include "tc_ring.cuh"
#include "wgmma.cuh"

template <typename T>
__device__ void gemm_tc_wide_wgmma(const TcGemmDimsLab& d, const T* A, const Strided& ab, const T* B, const Strided& bb, const T* bias, T* C) {
    constexpr int SLICE = RING_BM * RING_BK;  // halves per operand slice (8 KB)
    LDM_SHARED_ALIGNED(T, As, RING_STAGES * SLICE, 1024);
    LDM_SHARED_ALIGNED(T, Bs, RING_STAGES * SLICE, 1024);
#ifdef LDM_KERNEL_EMU
    if ((smem_addr(As) | smem_addr(Bs)) & 511) ldm_emu::fail("wgmma ring: stages not 512-byte aligned");
#endif
    const int64_t z = blockIdx.z;
    const T* x = A + strided_offset(ab, z);
    const T* w = B + strided_offset(bb, z);
    T* y = C + z * (int64_t)d.m * d.n;
    const T* r = d.res ? reinterpret_cast<const T*>(d.res) + z * (int64_t)d.m * d.n : nullptr;
    const int m0 = blockIdx.x * RING_BM, n0 = blockIdx.y * RING_BN;
    const DenseKIssuer<T> a{x, d.a_rs, d.m, m0, d.k};
    const DenseKIssuer<T> b{w, d.b_cs, d.n, n0, d.k};
    const int wg = threadIdx.x >> 7;  // warpgroup: rows 64·wg … of the tile
    const int slices = (d.k + RING_BK - 1) / RING_BK;
    float acc[64];
    #pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.0f;

    #pragma unroll
    for (int s = 0; s < RING_STAGES - 1; ++s) {
        if (s < slices) {
            a.issue(As + s * SLICE, s * RING_BK);
            b.issue(Bs + s * SLICE, s * RING_BK);
        }
        cp_async_commit();
    }
    for (int i = 0; i < slices; ++i) {
        cp_async_wait<RING_STAGES - 2>();
        fence_proxy_async();
        __syncthreads();
        const int next = i + RING_STAGES - 1;
        if (next < slices) {
            a.issue(As + (next % RING_STAGES) * SLICE, next * RING_BK);
            b.issue(Bs + (next % RING_STAGES) * SLICE, next * RING_BK);
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

    // accumulator 4j + e: row 16·warp + g (+8 for e ≥ 2) of the warpgroup's 64, column 8j + 2t + (e & 1)
    const RowMajorPairStore<T> pair{y, d.n, bias, r};
    const int lane = threadIdx.x & 31, wq = (threadIdx.x & 127) >> 5, g = lane >> 2, t = lane & 3;
    #pragma unroll
    for (int j = 0; j < 16; ++j)
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int m = m0 + wg * 64 + wq * 16 + g + 8 * h, n = n0 + 8 * j + 2 * t;
            if (m < d.m && n < d.n) pair(m, n, acc[4 * j + 2 * h], acc[4 * j + 2 * h + 1]);
        }
}

#define GEMM_TC_WGMMA(T, S) \
extern "C" __global__ void __launch_bounds__(RING_THREADS) gemm_tc_wide_v5_vv_##S(TcGemmDimsLab d, const T* A, Strided ab, const T* B, Strided bb, \
        const T* bias, T* C) { gemm_tc_wide_wgmma<T>(d, A, ab, B, bb, bias, C); }
GEMM_TC_WGMMA(f16, f16)
GEMM_TC_WGMMA(bf16, bf16)
