// Kernel lab, GEMM variants 3 and 4 (tools/kernel_lab/README.md): the shipped 128×128 tile
// (kernels/gemm_tc.cu gemm_tc_wide_vv, tc_tile.cuh tc_wide_mainloop) fed by tc_ring.cuh's
// 3-stage cp.async ring instead of the register prefetch of one slice (variant 3), and the same
// with its fragments read by ldmatrix (variant 4). Same signature, grid and block as
// gemm_tc_wide_vv, so the host and the bench launch them the same way. Emulated by
// tools/kernel_emu/gemm_tc_test.cpp (the emulator lands each copy only at the cp.async.wait that
// covers it, so reading a stage too early fails there).
#include "../../kernels/gemm_tc.cuh"
#include "tc_ring.cuh"

// LDSM: variant 4 reads the fragments with ldmatrix, variant 3 with 32-bit loads.
template <typename T, bool LDSM>
__device__ void gemm_tc_wide_ring(const TcGemmDims& d, const T* A, const Strided& ab, const T* B, const Strided& bb, const T* bias, T* C) {
    const int64_t z = blockIdx.z;
    const int m0 = blockIdx.x * RING_BM, n0 = blockIdx.y * RING_BN;
    const DenseKIssuer<T> a{A + strided_offset(ab, z), d.a_rs, d.m, m0, d.k};
    const DenseKIssuer<T> b{B + strided_offset(bb, z), d.b_cs, d.n, n0, d.k};
    float acc[4][4][4];
    ring_mainloop<T, LDSM>(0, d.k, a, b, acc);
    tc_wide_store_pairs(d.m, d.n, m0, n0, acc, batch_pair_store<T>(d, bias, C));  // the shipped epilogue
}

#define GEMM_TC_RING(T, S) \
extern "C" __global__ void __launch_bounds__(RING_THREADS) gemm_tc_wide_v3_vv_##S(TcGemmDims d, const T* A, Strided ab, const T* B, Strided bb, const T* bias, T* C) { \
    gemm_tc_wide_ring<T, false>(d, A, ab, B, bb, bias, C); } \
extern "C" __global__ void __launch_bounds__(RING_THREADS) gemm_tc_wide_v4_vv_##S(TcGemmDims d, const T* A, Strided ab, const T* B, Strided bb, const T* bias, T* C) { \
    gemm_tc_wide_ring<T, true>(d, A, ab, B, bb, bias, C); }
GEMM_TC_RING(f16, f16)
GEMM_TC_RING(bf16, bf16)
