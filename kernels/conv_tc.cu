// Convolution as implicit GEMM on tensor cores (mma.sync m16n8k16, f16/bf16 inputs, f32
// accumulation), forward and both backward products, NCHW, groups = 1, any kernel size, stride,
// padding and dilation. No column matrix is ever written: each tile of the GEMM's operands is
// gathered from the image straight into shared memory.
//   forward          y[n,co,oh,ow] = Σ_k A(m,k)·B(k,co) (+ bias[co]) (+ residual)
//                    m = (n,oh,ow), k = (ci,kh,kw), A = the input window, B = w[co, k]
//   backward data    dx[n,ci,ih,iw] = Σ_k dy(n,co,oh,ow)·w[co,ci,kh,kw]   m = (n,ih,iw), k = (co,kh,kw),
//                    (oh, ow) the output that tap (kh, kw) reads (ih, iw) from, if any
//   backward weight  dW[co, j] = Σ_k dy[n,co,oh,ow]·x(window)             j = (ci,kh,kw), k = (n,oh,ow);
//                    the long k range is split over gridDim.z and summed with f32 atomics
//                    (conv_bwd_weight_dense below: the same product from 16-byte vectors)
// The tile machinery (64×64 tiles, 4 warps, k slices of 32, the next slice fetched during the
// current one's mma; the 128×128 tile of 8 warps for large channels-last forwards) is
// tc_tile.cuh's, shared with the dense GEMM (gemm_tc.cu).
// CPU twin: src/backend/cpu/conv.rs (tests/device_ops.rs compares them; tools/kernel_emu runs these
// kernels on the CPU, so CI checks their indexing without a GPU).
#include "conv_tc.cuh"

template <typename T>
__device__ void conv_fwd(TcConvGeom g, const T* x, const T* w, const T* bias, const T* res, T* y) {
    const int P = g.ho * g.wo, KK = g.kh * g.kw, K = g.c * KK, M = g.n * P;
    auto get_a = [&](int m, int k) {
        int n = m / P, p = m - n * P, oh = p / g.wo, ow = p - oh * g.wo;
        int ci = k / KK, r = k - ci * KK, kh = r / g.kw, kw = r - kh * g.kw;
        return window(g, x, n, ci, oh, ow, kh, kw);
    };
    auto get_b = [&](int co, int k) { return w[(int64_t)co * K + k]; };
    const NchwStore<T> put{P, g.k, bias, res, y};
    gather_gemm<T, true, false>(M, g.k, 0, K, blockIdx.x * TC_BM, blockIdx.y * TC_BN, get_a, get_b, put);
}

template <typename T>
__device__ void conv_bwd_data(TcConvGeom g, const T* dy, const T* w, const T* bias, T* dx) {
    const int HW = g.h * g.w, KK = g.kh * g.kw, K = g.k * KK, M = g.n * HW;
    auto get_a = [&](int m, int k) {
        int n = m / HW, p = m - n * HW, ih = p / g.w, iw = p - ih * g.w;
        int co = k / KK, r = k - co * KK, kh = r / g.kw, kw = r - kh * g.kw;
        int th = ih + g.ph - kh * g.dh, tw = iw + g.pw - kw * g.dw;  // = (oh·sh, ow·sw) if tap reads here
        if (th < 0 || tw < 0 || th % g.sh != 0 || tw % g.sw != 0) return from_f32<T>(0.0f);
        int oh = th / g.sh, ow = tw / g.sw;
        if (oh >= g.ho || ow >= g.wo) return from_f32<T>(0.0f);
        return dy[((int64_t)(n * g.k + co) * g.ho + oh) * g.wo + ow];
    };
    auto get_b = [&](int ci, int k) {
        int co = k / KK, r = k - co * KK;
        return w[((int64_t)co * g.c + ci) * KK + r];
    };
    auto put = [&](int m, int ci, float v) {
        int n = m / HW, p = m - n * HW;
        if (bias) v += to_f32(bias[ci]);
        dx[((int64_t)n * g.c + ci) * HW + p] = from_f32<T>(v);
    };
    gather_gemm<T, true, false>(M, g.c, 0, K, blockIdx.x * TC_BM, blockIdx.y * TC_BN, get_a, get_b, put);
}

// dw (f32, zeroed by the host) += this block's share of the k range [z·chunk, (z+1)·chunk).
template <typename T>
__device__ void conv_bwd_weight(TcConvGeom g, const T* x, const T* dy, float* dw, int chunk) {
    const int P = g.ho * g.wo, KK = g.kh * g.kw, J = g.c * KK, K = g.n * P;
    auto get_a = [&](int co, int k) {
        int n = k / P, p = k - n * P;
        return dy[((int64_t)n * g.k + co) * P + p];
    };
    auto get_b = [&](int j, int k) {
        int n = k / P, p = k - n * P, oh = p / g.wo, ow = p - oh * g.wo;
        int ci = j / KK, r = j - ci * KK, kh = r / g.kw, kw = r - kh * g.kw;
        return window(g, x, n, ci, oh, ow, kh, kw);
    };
    auto put = [&](int co, int j, float v) { atomicAdd(dw + (int64_t)co * J + j, v); };
    int kbeg = blockIdx.z * chunk, kend = min(K, kbeg + chunk);
    gather_gemm<T, false, false>(g.k, J, kbeg, kend, blockIdx.x * TC_BM, blockIdx.y * TC_BN, get_a, get_b, put);
}

// The k range [kbeg, kend) of the channels-last forward's output tile: windows of x_nhwc
// [N, H, W, C] times wk [K_out, KH, KW, C] (both C % 8 = 0, 16-byte aligned), each value to `put`.
template <typename T, class Put>
__device__ __forceinline__ void conv_nhwc_tile(const TcConvGeom& g, int flip, const T* x, const T* wk, int kbeg, int kend, const Put& put) {
    const int M = g.n * g.ho * g.wo, K = g.c * g.kh * g.kw;
    const int m0 = blockIdx.x * TC_BM, n0 = blockIdx.y * TC_BN;
    WindowNhwcOperand<T> a(x, g, flip, M, m0);
    DenseKOperand<T> b{wk, K, g.k, n0, kend};
    tc_gemm_tile<T>(M, g.k, kbeg, kend, m0, n0, a, b, put);
}

// Forward into NCHW y, bias and residual fused (NchwStore). With flip = 1 and stride 1 this is
// backward data: dx = Σ dy(window at padding dh·(KH−1) − ph)·w[co, ci, KH−1−kh, KW−1−kw], x = dy
// in NHWC, wk = w permuted to [C_in, KH, KW, C_out], g's roles swapped by the host (conv_tc.rs).
template <typename T>
__device__ void conv_fwd_nhwc(TcConvGeom g, int flip, const T* x, const T* wk, const T* bias, const T* res, T* y) {
    const NchwStore<T> put{g.ho * g.wo, g.k, bias, res, y};
    conv_nhwc_tile<T>(g, flip, x, wk, 0, g.c * g.kh * g.kw, put);
}

// The forward on the 128×128 tile (tc_tile.cuh, 256 threads) for grids with many output tiles
// (SD's 64² level and the VAE's large images): the GEMM's 128×128 tile ran the Linear products
// 1.07–1.60× faster than the 64×64 tile on the H100 at ≥ 192 blocks. Same operands, same epilogue.
template <typename T>
__device__ void conv_fwd_nhwc_wide(TcConvGeom g, int flip, const T* x, const T* wk, const T* bias, const T* res, T* y) {
    const int M = g.n * g.ho * g.wo, K = g.c * g.kh * g.kw;
    const int m0 = blockIdx.x * TCW_BM, n0 = blockIdx.y * TCW_BN;
    WindowNhwcOperand<T, TCW_THREADS> a(x, g, flip, M, m0);
    DenseKOperand<T, TCW_THREADS> b{wk, K, g.k, n0, K};
    float acc[4][4][4];
    tc_wide_mainloop<T>(0, K, a, b, acc);
    tc_wide_store(M, g.k, m0, n0, acc, NchwStore<T>{g.ho * g.wo, g.k, bias, res, y});
}

// Split-K forward for small images (few output tiles: SD's 16² and 8² levels give 40–160 blocks
// for 132 SMs): block z sums k in [z·chunk, (z+1)·chunk) into the zeroed f32 workspace ws (NCHW)
// with atomics; the tile's last block (conv_fwd_nhwc_split_finished) then adds bias and residual
// and rounds once to T.
template <typename T>
__device__ void conv_fwd_nhwc_split(TcConvGeom g, int flip, const T* x, const T* wk, float* ws, int chunk) {
    const int P = g.ho * g.wo, kbeg = blockIdx.z * chunk;
    auto put = [&](int m, int co, float v) {
        int n = m / P, p = m - n * P;
        atomicAdd(ws + ((int64_t)n * g.k + co) * P + p, v);
    };
    conv_nhwc_tile<T>(g, flip, x, wk, kbeg, min(g.c * g.kh * g.kw, kbeg + chunk), put);
}

// The split-K forward with its finish in the kernel: the tile's last block finishes it
// (conv_tc.cuh conv_split_finish_tile, which the kernel lab's split variants share).
template <typename T>
__device__ void conv_fwd_nhwc_split_finished(TcConvGeom g, int flip, const T* x, const T* wk, float* ws, int* tickets, int chunk, const T* bias,
                                             const T* res, T* y) {
    conv_fwd_nhwc_split<T>(g, flip, x, wk, ws, chunk);
    conv_split_finish_tile<T, TC_BM, TC_BN>(g, ws, tickets, bias, res, y);
}

// ---------------------------------------------------------------------------------------------
// Backward weight without element gathers: dW[co, j] = Σ_m dy[m, co]·X(m, j) over pixels
// m = (n, oh, ow), the k range of the GEMM, split over gridDim.z as in conv_bwd_weight.
//   A (rows co): dy in NCHW is dense along m within an image: 16-byte loads (PlaneKOperand).
//   B (rows j):  for 1×1 stride-1 unpadded convs, x in NCHW the same way (j = ci); otherwise the
//                window of a channels-last copy of x (j = (kh, kw, ci), 8 consecutive ci of one
//                pixel = one 16-byte load), transposed into the tile's k-contiguous rows as it is
//                stored to shared memory (WindowNhwcRowsOperand).
// The NCHW gather did four integer divisions and a 2-byte load per element of both operands (an
// H100 ran SD's 3×3 weight gradients at 10–12 TFLOP/s, 20–33× cuDNN's time).

// Rows r of a [IMGS, R, P] tensor seen as the R × (IMGS·P) matrix whose k = (img, p): row r, k
// is base[(img·R + r)·P + p]. The host takes it only when P % 8 = 0 and base is 16-byte aligned,
// so 8 consecutive k (8-aligned) stay in one image: one 16-byte load. Slice layout as
// DenseKOperand's (commit_k_vectors).
template <typename T>
struct PlaneKOperand {
    const T* base;
    int R, P, row0, kend;
    uint4 regs[2];

    __device__ __forceinline__ void fetch(int k0) {
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int v = threadIdx.x + TC_THREADS * h, r = row0 + (v >> 2), k = k0 + (v & 3) * 8;
            regs[h] = uint4{0u, 0u, 0u, 0u};
            if (r >= R || k >= kend) continue;
            int img = k / P, p = k - img * P;
            regs[h] = load16(base + ((int64_t)img * R + r) * P + p, "PlaneKOperand: unaligned 16-byte load");
        }
    }
    __device__ __forceinline__ void commit(T* s) const { commit_k_vectors<T, TC_THREADS>(s, regs); }
};

// Rows j = (kh, kw, ci) of the windows of x_nhwc [N, H, W, C] (C % 8 = 0) over the pixels
// k = (n, oh, ow). Thread vector v (two per thread) holds rows 8·(v >> 5) … +7 at pixel k0 + (v & 31):
// the tap and channel are decoded once (fixed per thread), the pixel once per slice. A warp's 32
// lanes take 32 consecutive pixels of one 8-row group, so each of the 8 two-byte shared stores
// writes 16 consecutive words: no bank conflicts (rows are 20 words apart, lanes 1 half apart).
template <typename T>
struct WindowNhwcRowsOperand {
    const T* x;
    const TcConvGeom& g;
    int kend;
    int ci[2], kh[2], kw[2];  // per vector: its 8 rows' tap and first channel (ci < 0: past J)
    uint4 regs[2];

    __device__ WindowNhwcRowsOperand(const T* x_, const TcConvGeom& g_, int row0, int kend_) : x(x_), g(g_), kend(kend_) {
        const int J = g.c * g.kh * g.kw;
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int j = row0 + ((threadIdx.x + TC_THREADS * h) >> 5) * 8;
            int tap = j / g.c;
            ci[h] = j < J ? j - tap * g.c : -1;
            kh[h] = tap / g.kw;
            kw[h] = tap - kh[h] * g.kw;
        }
    }
    __device__ __forceinline__ void fetch(int k0) {
        const int P = g.ho * g.wo;
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int m = k0 + ((threadIdx.x + TC_THREADS * h) & 31);
            regs[h] = uint4{0u, 0u, 0u, 0u};
            if (ci[h] < 0 || m >= kend) continue;
            int n = m / P, p = m - n * P, oh = p / g.wo, ow = p - oh * g.wo;
            int ih = oh * g.sh - g.ph + kh[h] * g.dh, iw = ow * g.sw - g.pw + kw[h] * g.dw;
            if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
            regs[h] = load16(x + (((int64_t)n * g.h + ih) * g.w + iw) * g.c + ci[h], "WindowNhwcRowsOperand: unaligned 16-byte load");
        }
    }
    __device__ __forceinline__ void commit(T* s) const {
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int v = threadIdx.x + TC_THREADS * h, kk = v & 31;
            T* col = s + (v >> 5) * 8 * TC_LD + kk;
            const T* e = reinterpret_cast<const T*>(&regs[h]);
            #pragma unroll
            for (int i = 0; i < 8; ++i) col[i * TC_LD] = e[i];
        }
    }
};

// dw [C_out, C_in, KH, KW] (f32, zeroed by the host) += this block's share of the pixels
// [z·chunk, (z+1)·chunk). nhwc = 1: x is x_nhwc and j = (kh, kw, ci); nhwc = 0 (1×1, stride 1, no
// padding): x is NCHW and j = ci.
template <typename T>
__device__ void conv_bwd_weight_dense(TcConvGeom g, int nhwc, const T* x, const T* dy, float* dw, int chunk) {
    const int P = g.ho * g.wo, KK = g.kh * g.kw, J = g.c * KK, K = g.n * P;
    const int kbeg = blockIdx.z * chunk, kend = min(K, kbeg + chunk);
    const int m0 = blockIdx.x * TC_BM, n0 = blockIdx.y * TC_BN;
    PlaneKOperand<T> a{dy, g.k, P, m0, kend};
    auto put = [&](int co, int j, float v) {
        int tap = j / g.c, ci = j - tap * g.c;  // j = ci when KK = 1
        atomicAdd(dw + ((int64_t)co * g.c + ci) * KK + tap, v);
    };
    if (nhwc) {
        WindowNhwcRowsOperand<T> b(x, g, n0, kend);
        tc_gemm_tile<T>(g.k, J, kbeg, kend, m0, n0, a, b, put);
    } else {
        PlaneKOperand<T> b{x, g.c, P, n0, kend};
        tc_gemm_tile<T>(g.k, J, kbeg, kend, m0, n0, a, b, put);
    }
}

#define CONV_TC(T, S) \
extern "C" __global__ void __launch_bounds__(TC_THREADS) conv_tc_fwd_nhwc_split_##S(TcConvGeom g, int flip, const T* x, const T* wk, float* ws, int* tickets, \
        int chunk, const T* bias, const T* res, T* y) { \
    conv_fwd_nhwc_split_finished<T>(g, flip, x, wk, ws, tickets, chunk, bias, res, y); } \
extern "C" __global__ void __launch_bounds__(TC_THREADS) conv_tc_fwd_nhwc_##S(TcConvGeom g, int flip, const T* x, const T* wk, const T* bias, const T* res, T* y) { \
    conv_fwd_nhwc<T>(g, flip, x, wk, bias, res, y); } \
extern "C" __global__ void __launch_bounds__(TCW_THREADS) conv_tc_fwd_nhwc_wide_##S(TcConvGeom g, int flip, const T* x, const T* wk, const T* bias, const T* res, T* y) { \
    conv_fwd_nhwc_wide<T>(g, flip, x, wk, bias, res, y); } \
extern "C" __global__ void __launch_bounds__(TC_THREADS) conv_tc_fwd_##S(TcConvGeom g, const T* x, const T* w, const T* bias, const T* res, T* y) { \
    conv_fwd<T>(g, x, w, bias, res, y); } \
extern "C" __global__ void __launch_bounds__(TC_THREADS) conv_tc_bwd_data_##S(TcConvGeom g, const T* dy, const T* w, const T* bias, T* dx) { \
    conv_bwd_data<T>(g, dy, w, bias, dx); } \
extern "C" __global__ void __launch_bounds__(TC_THREADS) conv_tc_bwd_weight_##S(TcConvGeom g, const T* x, const T* dy, float* dw, int chunk) { \
    conv_bwd_weight<T>(g, x, dy, dw, chunk); } \
extern "C" __global__ void __launch_bounds__(TC_THREADS) conv_tc_bwd_weight_dense_##S(TcConvGeom g, int nhwc, const T* x, const T* dy, float* dw, int chunk) { \
    conv_bwd_weight_dense<T>(g, nhwc, x, dy, dw, chunk); }
CONV_TC(f16, f16)
CONV_TC(bf16, bf16)
