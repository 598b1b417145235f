// Kernel lab, conv variant 4 (tools/kernel_lab/README.md): the shipped channels-last forward on
// the 128×128 tile (kernels/conv_tc.cu conv_fwd_nhwc_wide) fed by tc_ring.cuh's 3-stage cp.async
// ring with ldmatrix fragments — GEMM variant 4's main loop — instead of the register prefetch of
// one slice. The input window's 16-byte vectors (8 channels of one input pixel, conv_tc.cuh
// WindowNhwcOperand::vector_at) are copied by cp.async, padding zero-filled by the copy itself;
// the weights [C_out, KH, KW, C_in] are dense along k. Same signature, grid (128×128 tiles) and
// block (256 threads) as conv_tc_fwd_nhwc_wide, same epilogue (NCHW, bias and residual fused), and
// flip = 1 runs stride-1 backward data as there; and its split-K twin for small images.
// Emulated by tools/kernel_emu/conv_tc_test.cpp on every channels-last case the shipped kernels run.
#include "conv_ring.cuh"

template <typename T>
__device__ void conv_fwd_nhwc_v4(TcConvGeom g, int flip, const T* x, const T* wk, const T* bias, const T* res, T* y) {
    const ConvRingTile<T> t(g, flip, x, wk, 0);
    float acc[4][4][4];
    ring_mainloop<T, true>(t.kbeg, t.kend, t.a, t.b, acc);
    tc_wide_store(t.M, g.k, t.m0, t.n0, acc, NchwStore<T>{g.ho * g.wo, g.k, bias, res, y});
}

// Split-K on the same loop for small images (few output tiles): block z sums k in
// [z·chunk, (z+1)·chunk) (chunk a multiple of 32) into the zeroed f32 workspace ws (NCHW) with
// atomics, as conv_tc.cu conv_fwd_nhwc_split does on the 64×64 tile, and the tile's last block
// adds bias and residual and rounds (conv_tc.cuh conv_split_finish_tile, as the shipped kernel).
template <typename T>
__device__ void conv_fwd_nhwc_split_v4(TcConvGeom g, int flip, const T* x, const T* wk, float* ws, int* tickets, int chunk, const T* bias,
                                       const T* res, T* y) {
    const ConvRingTile<T> t(g, flip, x, wk, chunk);
    float acc[4][4][4];
    ring_mainloop<T, true>(t.kbeg, t.kend, t.a, t.b, acc);
    tc_wide_store(t.M, g.k, t.m0, t.n0, acc, NchwAtomicAdd{ws, g.ho * g.wo, g.k});
    conv_split_finish_tile<T, RING_BM, RING_BN>(g, ws, tickets, bias, res, y);
}

#define CONV_TC_V4(T, S) \
extern "C" __global__ void __launch_bounds__(RING_THREADS) conv_tc_fwd_nhwc_split_v4_##S(TcConvGeom g, int flip, const T* x, const T* wk, \
        float* ws, int* tickets, int chunk, const T* bias, const T* res, T* y) { \
    conv_fwd_nhwc_split_v4<T>(g, flip, x, wk, ws, tickets, chunk, bias, res, y); } \
extern "C" __global__ void __launch_bounds__(RING_THREADS) conv_tc_fwd_nhwc_v4_##S(TcConvGeom g, int flip, const T* x, const T* wk, const T* bias, \
        const T* res, T* y) { conv_fwd_nhwc_v4<T>(g, flip, x, wk, bias, res, y); }
CONV_TC_V4(f16, f16)
CONV_TC_V4(bf16, bf16)
