// Kernel lab, conv variant 5 (tools/kernel_lab/README.md): conv variant 4 (the shipped
// channels-last 128×128 forward on the cp.async ring, and its split-K twin) with the ring feeding
// Hopper's wgmma instead of mma.sync — GEMM variant 5's main loop (wgmma.cuh
// wgmma_ring_mainloop), the input window and the weights as the ring's issuers (conv_ring.cuh,
// DenseKIssuer), the shipped epilogues (NCHW with bias and residual; f32 atomics for split-K,
// finished by the tile's last block, conv_tc.cuh conv_split_finish_tile). Same signatures, grids
// and blocks as variant 4.
// sm_90a only: build.rs compiles *_sm90a.cu for compute_90a; other GPUs refuse the module.
// Emulated by tools/kernel_emu/conv_tc_test.cpp on every channels-last case.
#include "conv_ring.cuh"
#include "wgmma.cuh"

template <typename T>
__device__ void conv_fwd_nhwc_v5(TcConvGeom g, int flip, const T* x, const T* wk, const T* bias, const T* res, T* y) {
    const ConvRingTile<T> t(g, flip, x, wk, 0);
    float acc[64];
    wgmma_ring_mainloop<T>(t.kbeg, t.kend, t.a, t.b, acc);
    wgmma_store(t.M, g.k, t.m0, t.n0, acc, NchwStore<T>{g.ho * g.wo, g.k, bias, res, y});
}

// Block z sums k in [z·chunk, (z+1)·chunk) (chunk a multiple of 32) into the zeroed f32 ws (NCHW);
// the tile's last block finishes it.
template <typename T>
__device__ void conv_fwd_nhwc_split_v5(TcConvGeom g, int flip, const T* x, const T* wk, float* ws, int* tickets, int chunk, const T* bias,
                                       const T* res, T* y) {
    const ConvRingTile<T> t(g, flip, x, wk, chunk);
    float acc[64];
    wgmma_ring_mainloop<T>(t.kbeg, t.kend, t.a, t.b, acc);
    wgmma_store(t.M, g.k, t.m0, t.n0, acc, NchwAtomicAdd{ws, g.ho * g.wo, g.k});
    conv_split_finish_tile<T, RING_BM, RING_BN>(g, ws, tickets, bias, res, y);
}

#define CONV_TC_V5(T, S) \
extern "C" __global__ void __launch_bounds__(RING_THREADS) conv_tc_fwd_nhwc_split_v5_##S(TcConvGeom g, int flip, const T* x, const T* wk, \
        float* ws, int* tickets, int chunk, const T* bias, const T* res, T* y) { \
    conv_fwd_nhwc_split_v5<T>(g, flip, x, wk, ws, tickets, chunk, bias, res, y); } \
extern "C" __global__ void __launch_bounds__(RING_THREADS) conv_tc_fwd_nhwc_v5_##S(TcConvGeom g, int flip, const T* x, const T* wk, const T* bias, \
        const T* res, T* y) { conv_fwd_nhwc_v5<T>(g, flip, x, wk, bias, res, y); }
CONV_TC_V5(f16, f16)
CONV_TC_V5(bf16, bf16)
