// What the tensor-core conv kernels share with the kernel lab's conv variants
// (tools/kernel_lab/conv_tc_v4.cu): the geometry passed by value, the NCHW epilogue and the
// channels-last input window. Included by conv_tc.cu (see its header for the products).
#pragma once
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

// The forward's epilogue: output (m = (n, p), co) stored NCHW, + bias[co], + residual (y's shape).
template <typename T>
struct NchwStore {
    int P, K;
    const T* bias;
    const T* res;
    T* y;
    __device__ __forceinline__ void operator()(int m, int co, float v) const {
        int n = m / P, p = m - n * P;
        int64_t o = ((int64_t)n * K + co) * P + p;
        if (bias) v += to_f32(bias[co]);
        if (res) v += to_f32(res[o]);
        y[o] = from_f32<T>(v);
    }
};

// The input window read from a channels-last copy of x (x_nhwc [N, H, W, C], C % 8 = 0) with the
// GEMM's k ordered (kh, kw, ci): 8 consecutive k are 8 channels of one pixel, one 16-byte load
// (NCHW's gather does 8 two-byte loads, each after four integer divisions). Each thread decodes
// its two output pixels once per tile; a slice costs it one division per vector. `flip` reads
// tap (KH−1−kh, KW−1−kw) for k's tap (kh, kw): backward data as a forward conv (below).
// THREADS: the block's threads; a slice has 2·THREADS/4 rows (64, or 128 for the wide tile).
template <typename T, int THREADS = TC_THREADS>
struct WindowNhwcOperand {
    const T* x;
    const TcConvGeom& g;
    int K, flip;
    int img[2], ih0[2], iw0[2];  // per row: image, top-left input coordinate (img < 0: no row)
    uint4 regs[2];

    __device__ WindowNhwcOperand(const T* x_, const TcConvGeom& g_, int flip_, int M, int row0) : x(x_), g(g_), K(g_.c * g_.kh * g_.kw), flip(flip_) {
        const int P = g.ho * g.wo;
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int m = row0 + ((threadIdx.x + THREADS * h) >> 2);
            int n = m / P, p = m - n * P, oh = p / g.wo, ow = p - oh * g.wo;
            img[h] = m < M ? n : -1;
            ih0[h] = oh * g.sh - g.ph;
            iw0[h] = ow * g.sw - g.pw;
        }
    }
    // Where row h's vector at k (8 channels of one input pixel) starts; nullptr in the padding,
    // past the rows or past K (the vector is then zero).
    __device__ __forceinline__ const T* vector_at(int h, int k) const {
        if (img[h] < 0 || k >= K) return nullptr;
        int tap = k / g.c, ci = k - tap * g.c;
        if (flip) tap = g.kh * g.kw - 1 - tap;
        int kh = tap / g.kw, kw = tap - kh * g.kw;
        int ih = ih0[h] + kh * g.dh, iw = iw0[h] + kw * g.dw;
        if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) return nullptr;
        return x + (((int64_t)img[h] * g.h + ih) * g.w + iw) * g.c + ci;
    }
    __device__ __forceinline__ void fetch(int k0) {
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            const T* src = vector_at(h, k0 + ((threadIdx.x + THREADS * h) & 3) * 8);
            regs[h] = src ? load16(src, "WindowNhwcOperand: unaligned 16-byte load") : uint4{0u, 0u, 0u, 0u};
        }
    }
    __device__ __forceinline__ void commit(T* s) const { commit_k_vectors<T, THREADS>(s, regs); }
};

// Split-K conv forward, finished by the tile's last block (serial split-K), for any block tile
// BM × BN: after adding its partial sums to the zeroed f32 workspace ws (NCHW), each block takes a
// ticket on its output tile's counter (tickets: zeroed like ws, one per tile of the grid's x × y);
// the block that takes the last one reads the tile's sums back from L2, where the atomics were
// performed, adds bias and residual, rounds once to T, and leaves the tile's ws entries and its
// counter zeroed for the next split conv. One launch per split conv instead of two (the finishing
// pass was 60 launches per SD1.5 UNet step). Called by every thread of the block, after its sums.
// The verdict reaches the block through __syncthreads_or, not shared memory: the lab's ring
// kernels use all 48 KB of static shared memory.
template <typename T, int BM, int BN>
__device__ __forceinline__ void conv_split_finish_tile(const TcConvGeom& g, float* ws, int* tickets, const T* bias, const T* res, T* y) {
    __threadfence();  // this thread's sums are visible device-wide before the block's ticket
    __syncthreads();
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    const bool last = threadIdx.x == 0 && atomicAdd(tickets + tile, 1) == (int)gridDim.z - 1;
    if (!__syncthreads_or(last)) return;
    __threadfence();
    const int P = g.ho * g.wo, M = g.n * P, m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    for (int e = threadIdx.x; e < BM * BN; e += blockDim.x) {
        const int m = m0 + e % BM, co = n0 + e / BM;  // consecutive threads, consecutive pixels
        if (m >= M || co >= g.k) continue;
        const int n = m / P, p = m - n * P;
        const int64_t i = ((int64_t)n * g.k + co) * P + p;
        float v = __ldcg(ws + i);
        ws[i] = 0.0f;
        if (bias) v += to_f32(bias[co]);
        if (res) v += to_f32(res[i]);
        y[i] = from_f32<T>(v);
    }
    if (threadIdx.x == 0) tickets[tile] = 0;
}
