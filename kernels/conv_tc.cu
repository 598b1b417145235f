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
// One block: 128 threads (4 warps as 2×2), a 64×64 output tile, k slices of 32; each warp owns a
// 32×32 sub-tile (2×4 mma tiles). The next slice's gathers are issued into registers before the
// current slice's mma, so global latency overlaps the math. Shared rows are padded by 8 elements
// (40 halves = 20 words), which makes every fragment load bank-conflict free.
// CPU twin: src/backend/cpu/conv.rs (tests/device_ops.rs compares them; tools/kernel_emu runs these
// kernels on the CPU, so CI checks their indexing without a GPU).
#include "common.cuh"

#define TC_BM 64
#define TC_BN 64
#define TC_BK 32
#define TC_LD (TC_BK + 8)
#define TC_THREADS 128
#define TC_PER_THREAD (TC_BM * TC_BK / TC_THREADS)  // = TC_BN * TC_BK / TC_THREADS = 16

// Geometry, in int32: the host takes this path only when every tensor has < 2^31 elements.
struct TcConvGeom {
    int n, c, h, w;   // input
    int k;            // output channels
    int kh, kw, sh, sw, ph, pw, dh, dw;
    int ho, wo;
};

// The (row, k) of this thread's i-th element of a 64×32 tile: `M_FAST` operands give consecutive
// threads consecutive rows (their memory is contiguous along m: image pixels), the others
// consecutive k.
template <bool M_FAST>
__device__ __forceinline__ void tile_slot(int i, int& r, int& kk) {
    const int tid = threadIdx.x;
    if (M_FAST) { r = tid % 64; kk = tid / 64 + 2 * i; }
    else { kk = tid % 32; r = tid / 32 + 4 * i; }
}

// Loads of one k slice into registers (zero outside the matrix), and their store to shared memory.
template <typename T, bool M_FAST, class Get>
__device__ __forceinline__ void gather_tile(T (&regs)[TC_PER_THREAD], int rows, int row0, int k0, int kend, const Get& get) {
    #pragma unroll
    for (int i = 0; i < TC_PER_THREAD; ++i) {
        int r, kk;
        tile_slot<M_FAST>(i, r, kk);
        int gr = row0 + r, gk = k0 + kk;
        regs[i] = (gr < rows && gk < kend) ? get(gr, gk) : from_f32<T>(0.0f);
    }
}

template <typename T, bool M_FAST>
__device__ __forceinline__ void store_tile(T* s, const T (&regs)[TC_PER_THREAD]) {
    #pragma unroll
    for (int i = 0; i < TC_PER_THREAD; ++i) {
        int r, kk;
        tile_slot<M_FAST>(i, r, kk);
        s[r * TC_LD + kk] = regs[i];
    }
}

// C[m, n] = Σ_{k in [kbeg, kend)} A(m, k)·B(k, n) over this block's 64×64 tile, then put(m, n, c).
// The getters take (row, k): get_a(m, k) = A(m, k), get_b(n, k) = B(k, n).
template <typename T, bool A_M_FAST, bool B_N_FAST, class GetA, class GetB, class Put>
__device__ void gather_gemm(int M, int N, int kbeg, int kend, int m0, int n0, const GetA& get_a, const GetB& get_b, const Put& put) {
    LDM_SHARED(T, As, TC_BM * TC_LD);
    LDM_SHARED(T, Bs, TC_BN * TC_LD);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 1) * 32, wn = (warp & 1) * 32;
    float acc[2][4][4];
    #pragma unroll
    for (int i = 0; i < 2; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    T ra[TC_PER_THREAD], rb[TC_PER_THREAD];
    if (kbeg < kend) {
        gather_tile<T, A_M_FAST>(ra, M, m0, kbeg, kend, get_a);
        gather_tile<T, B_N_FAST>(rb, N, n0, kbeg, kend, get_b);
    }
    for (int k0 = kbeg; k0 < kend; k0 += TC_BK) {
        store_tile<T, A_M_FAST>(As, ra);
        store_tile<T, B_N_FAST>(Bs, rb);
        __syncthreads();
        if (k0 + TC_BK < kend) {
            gather_tile<T, A_M_FAST>(ra, M, m0, k0 + TC_BK, kend, get_a);
            gather_tile<T, B_N_FAST>(rb, N, n0, k0 + TC_BK, kend, get_b);
        }
        #pragma unroll
        for (int ks = 0; ks < TC_BK; ks += 16) {
            uint32_t a[2][4], b[4][2];
            #pragma unroll
            for (int i = 0; i < 2; ++i) {
                const T* p = As + (wm + i * 16 + g) * TC_LD + ks + 2 * t;
                a[i][0] = load_pair(p);
                a[i][1] = load_pair(p + 8 * TC_LD);
                a[i][2] = load_pair(p + 8);
                a[i][3] = load_pair(p + 8 * TC_LD + 8);
            }
            #pragma unroll
            for (int j = 0; j < 4; ++j) {
                const T* p = Bs + (wn + j * 8 + g) * TC_LD + ks + 2 * t;
                b[j][0] = load_pair(p);
                b[j][1] = load_pair(p + 8);
            }
            #pragma unroll
            for (int i = 0; i < 2; ++i)
                #pragma unroll
                for (int j = 0; j < 4; ++j) mma_16816<T>(acc[i][j], a[i], b[j]);
        }
        __syncthreads();
    }
    #pragma unroll
    for (int i = 0; i < 2; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) {
                int m = m0 + wm + i * 16 + g + (e >= 2 ? 8 : 0), n = n0 + wn + j * 8 + 2 * t + (e & 1);
                if (m < M && n < N) put(m, n, acc[i][j][e]);
            }
}

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
