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
// The tile machinery (64×64 tiles, 4 warps, k slices of 32, the next slice fetched during the
// current one's mma) is tc_tile.cuh's, shared with the dense GEMM (gemm_tc.cu).
// CPU twin: src/backend/cpu/conv.rs (tests/device_ops.rs compares them; tools/kernel_emu runs these
// kernels on the CPU, so CI checks their indexing without a GPU).
#include "tc_tile.cuh"

// Geometry, in int32: the host takes this path only when every tensor has < 2^31 elements.
struct TcConvGeom {
    int n, c, h, w;   // input
    int k;            // output channels
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int ho, wo;
};

// x(n, ci, oh·sh − ph + kh·dh, ow·sw − pw + kw·dw), zero in the padding.
template <typename T>
__device__ __forceinline__ T window(const TcConvGeom& g, const T* x, int n, int ci, int oh, int ow, int kh, int kw) {
    int ih = oh * g.sh - g.ph + kh * g.dh, iw = ow * g.sw - g.pw + kw * g.dw;
    bool inside = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
    return inside ? x[((int64_t)(n * g.c + ci) * g.h + ih) * g.w + iw] : from_f32<T>(0.0f);
}

template <typename T>
__device__ void conv_fwd(TcConvGeom g, const T* x, const T* w, const T* bias, const T* res, T* y) {
    const int P = g.ho * g.wo, KK = g.kh * g.kw, K = g.c * KK, M = g.n * P;
    auto get_a = [&](int m, int k) {
        int n = m / P, p = m - n * P, oh = p / g.wo, ow = p - oh * g.wo;
        int ci = k / KK, r = k - ci * KK, kh = r / g.kw, kw = r - kh * g.kw;
        return window(g, x, n, ci, oh, ow, kh, kw);
    };
    auto get_b = [&](int co, int k) { return w[(int64_t)co * K + k]; };
    auto put = [&](int m, int co, float v) {
        int n = m / P, p = m - n * P;
        int64_t o = ((int64_t)n * g.k + co) * P + p;
        if (bias) v += to_f32(bias[co]);
        if (res) v += to_f32(res[o]);
        y[o] = from_f32<T>(v);
    };
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

#define CONV_TC(T, S) \
extern "C" __global__ void __launch_bounds__(TC_THREADS) conv_tc_fwd_##S(TcConvGeom g, const T* x, const T* w, const T* bias, const T* res, T* y) { \
    conv_fwd<T>(g, x, w, bias, res, y); } \
extern "C" __global__ void __launch_bounds__(TC_THREADS) conv_tc_bwd_data_##S(TcConvGeom g, const T* dy, const T* w, const T* bias, T* dx) { \
    conv_bwd_data<T>(g, dy, w, bias, dx); } \
extern "C" __global__ void __launch_bounds__(TC_THREADS) conv_tc_bwd_weight_##S(TcConvGeom g, const T* x, const T* dy, float* dw, int chunk) { \
    conv_bwd_weight<T>(g, x, dy, dw, chunk); }
CONV_TC(f16, f16)
CONV_TC(bf16, bf16)
