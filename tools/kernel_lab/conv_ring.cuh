// Kernel lab: the channels-last conv's input window as an issuer of tc_ring.cuh's cp.async ring,
// shared by conv variants 4 (conv_tc_v4.cu, mma.sync) and 5 (conv_tc_wgmma_sm90a.cu, wgmma).
#pragma once
#include "../../kernels/conv_tc.cuh"
#include "tc_ring.cuh"

// The window operand as a ring issuer: rows m0 … of the implicit A, k = (kh, kw, ci).
template <typename T>
struct WindowNhwcIssuer {
    WindowNhwcOperand<T, RING_THREADS> rows;  // decodes each of the thread's two rows once
    __device__ __forceinline__ void issue(T* stage, int k0) const {
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int v = threadIdx.x + RING_THREADS * h, kk = (v & 3) * 8;
            const T* src = rows.vector_at(h, k0 + kk);
            cp_async16(stage + ring_swz(v >> 2, kk), src ? (const void*)src : (const void*)rows.x, src != nullptr);
        }
    }
};

// One block's operands of the channels-last forward on the ring: rows m0 … of the window of x
// (issuer a) and output channels n0 … of the weights [K_out, KH, KW, C] (issuer b), over k in
// [kbeg, kend) — all of k, or block z's chunk (chunk > 0, a multiple of 32) for split-K.
template <typename T>
struct ConvRingTile {
    int M, K, m0, n0, kbeg, kend;
    WindowNhwcIssuer<T> a;
    DenseKIssuer<T> b;
    __device__ ConvRingTile(const TcConvGeom& g, int flip, const T* x, const T* wk, int chunk)
        : M(g.n * g.ho * g.wo), K(g.c * g.kh * g.kw), m0(blockIdx.x * RING_BM), n0(blockIdx.y * RING_BN),
          kbeg(chunk > 0 ? blockIdx.z * chunk : 0), kend(chunk > 0 ? min(K, kbeg + chunk) : K),
          a{WindowNhwcOperand<T, RING_THREADS>(x, g, flip, M, m0)}, b{wk, K, g.k, n0, kend} {}
};

// Split-K's epilogue: value (m = (n, p), co) added into the f32 NCHW workspace.
struct NchwAtomicAdd {
    float* ws;
    int P, K;
    __device__ __forceinline__ void operator()(int m, int co, float v) const {
        int n = m / P, p = m - n * P;
        atomicAdd(ws + ((int64_t)n * K + co) * P + p, v);
    }
};

