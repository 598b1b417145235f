// Kernel lab, GEMM variant 5 (tools/kernel_lab/README.md): variant 3's cp.async ring (tc_ring.cuh)
// feeding Hopper's warpgroup MMA instead of mma.sync. The 128×128 block tile is two warpgroups of
// 128 threads, each owning 64 rows; per 16-wide k step a warpgroup issues one
// wgmma.mma_async.m64n128k16 that reads both operands straight from the ring's shared memory
// through matrix descriptors — no fragment loads at all (variant 3 issued 24 shared loads and 16
// mma.sync per warp per k step) — and keeps the 64×128 f32 accumulators in registers (64 per
// thread). The ring's slices are already the K-major 64-byte-swizzle layout wgmma reads (rows of
// 64 bytes, chunk c of row r at c ^ ((r >> 1) & 3)), given 512-byte-aligned 8-row atoms: the ring
// is declared 1024-byte aligned.
// The main loop (wgmma.cuh wgmma_ring_mainloop) is shared with conv variant 5.
// sm_90a only (wgmma has no sm_80 or plain sm_90 form): build.rs compiles files named *_sm90a.cu
// for compute_90a, and the host launches this only on a compute-capability-9.0 device.
// Same signature, grid (128×128 tiles) and block (256 threads) as gemm_tc_wide_vv.
// Emulated by tools/kernel_emu/gemm_tc_test.cpp on every vv case (the emulator decodes the
// descriptors per the PTX ISA; see ldm_emu.h).
#include "../../kernels/gemm_tc.cuh"
#include "wgmma.cuh"

template <typename T>
__device__ void gemm_tc_wide_wgmma(const TcGemmDims& d, const T* A, const Strided& ab, const T* B, const Strided& bb, const T* bias, T* C) {
    const int64_t z = blockIdx.z;
    const int m0 = blockIdx.x * RING_BM, n0 = blockIdx.y * RING_BN;
    const DenseKIssuer<T> a{A + strided_offset(ab, z), d.a_rs, d.m, m0, d.k};
    const DenseKIssuer<T> b{B + strided_offset(bb, z), d.b_cs, d.n, n0, d.k};
    float acc[64];
    wgmma_ring_mainloop<T>(0, d.k, a, b, acc);
    wgmma_store_pairs(d.m, d.n, m0, n0, acc, batch_pair_store<T>(d, bias, C));
}

#define GEMM_TC_WGMMA(T, S) \
extern "C" __global__ void __launch_bounds__(RING_THREADS) gemm_tc_wide_v5_vv_##S(TcGemmDims d, const T* A, Strided ab, const T* B, Strided bb, \
        const T* bias, T* C) { gemm_tc_wide_wgmma<T>(d, A, ab, B, bb, bias, C); }
GEMM_TC_WGMMA(f16, f16)
GEMM_TC_WGMMA(bf16, bf16)
