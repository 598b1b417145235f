// Kernel lab, conv2d variant 2 (forward only) — against variant 1 (kernels/conv_tc.cu):
//   1. 128×128×32 block tiles, 8 warps (2 × 4) of 64×32: twice the mma work per shared load.
//   2. No divisions in the input gather: each thread decomposes its output pixel once per tile and
//      its first k once per slice; its next k values (k + 2 each) are stepped incrementally.
//   3. Weights (dense along k) arrive as 16-byte vector loads when C_in·KH·KW is a multiple of 8
//      (every SD conv but the 4-channel conv_in), stored to shared memory as 16-byte vectors.
// Same smem padding (40 halves per row), fragment loads and epilogue as variant 1. What it
// measured: tools/kernel_lab/README.md. Correctness: tools/kernel_emu/conv_tc_test.cpp runs it
// with variant 1's cases.
#include "../../kernels/common.cuh"

#define V2_BM 128
#define V2_BN 128
#define V2_BK 32
#define V2_LD (V2_BK + 8)
#define V2_THREADS 256

// Must match TcConvGeom in kernels/conv_tc.cu (the host passes the same struct).
struct TcConvGeomV2 {
    int n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo;
};

struct V2Row {  // one output pixel's window origin
    const void* base;  // x + n·C·H·W
    int ih0, iw0;      // oh·sh − ph, ow·sw − pw
    bool valid;
};

template <typename T>
__device__ void conv_fwd_v2(TcConvGeomV2 g, const T* x, const T* w, const T* bias, const T* res, T* y) {
    LDM_SHARED(T, As, V2_BM * V2_LD);
    LDM_SHARED(T, Bs, V2_BN * V2_LD);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int gq = lane >> 2, t = lane & 3;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    const int P = g.ho * g.wo, KK = g.kh * g.kw, K = g.c * KK, M = g.n * P, HW = g.h * g.w;
    const int m0 = blockIdx.x * V2_BM, n0 = blockIdx.y * V2_BN;
    const T zero = from_f32<T>(0.0f);

    // A: thread owns row am = tid % 128 and k columns tid / 128 + 2i (i < 16) of each slice.
    const int am = tid % V2_BM, ak = tid / V2_BM;
    V2Row row;
    {
        int m = m0 + am;
        row.valid = m < M;
        int n = row.valid ? m / P : 0, p = m - n * P, oh = p / g.wo, ow = p - oh * g.wo;
        row.base = x + (int64_t)n * g.c * HW;
        row.ih0 = oh * g.sh - g.ph;
        row.iw0 = ow * g.sw - g.pw;
    }
    // B: thread owns 8 consecutive k (bk8) of rows bn and bn + 64.
    const int bk8 = (tid % 4) * 8, bn = tid / 4;
    const bool vec_b = (K % 8) == 0 && ((uintptr_t)w & 15) == 0;

    T ra[16];
    uint4 rb[2];  // 8 weights each, as the 16 bytes they are stored in
    auto gather = [&](int k0) {
        // A, incremental (ci, kh, kw) for k = k0 + ak, then + 2 per element.
        int k = k0 + ak;
        int ci = k / KK, r = k - ci * KK, kh = r / g.kw, kw = r - kh * g.kw;
        const T* xb = (const T*)row.base;
        #pragma unroll
        for (int i = 0; i < 16; ++i) {
            T v = zero;
            if (row.valid && k < K) {
                int ih = row.ih0 + kh * g.dh, iw = row.iw0 + kw * g.dw;
                if ((unsigned)ih < (unsigned)g.h && (unsigned)iw < (unsigned)g.w) v = xb[(int64_t)ci * HW + ih * g.w + iw];
            }
            ra[i] = v;
            k += 2;
            kw += 2;
            while (kw >= g.kw) { kw -= g.kw; if (++kh == g.kh) { kh = 0; ++ci; } }
        }
        // B, rows bn and bn + 64 of the weight tile.
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int co = n0 + bn + 64 * h, kb = k0 + bk8;
            const T* src = w + (int64_t)co * K + kb;
            if (co < g.k && vec_b && kb + 8 <= K) {
                rb[h] = *reinterpret_cast<const uint4*>(src);
            } else {
                T e8[8];
                #pragma unroll
                for (int e = 0; e < 8; ++e) e8[e] = (co < g.k && kb + e < K) ? src[e] : zero;
                rb[h].x = pack_pair(e8[0], e8[1]);
                rb[h].y = pack_pair(e8[2], e8[3]);
                rb[h].z = pack_pair(e8[4], e8[5]);
                rb[h].w = pack_pair(e8[6], e8[7]);
            }
        }
    };

    float acc[4][4][4];
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    gather(0);
    for (int k0 = 0; k0 < K; k0 += V2_BK) {
        #pragma unroll
        for (int i = 0; i < 16; ++i) As[am * V2_LD + ak + 2 * i] = ra[i];
        #pragma unroll
        for (int h = 0; h < 2; ++h) *reinterpret_cast<uint4*>(Bs + (bn + 64 * h) * V2_LD + bk8) = rb[h];
        __syncthreads();
        if (k0 + V2_BK < K) gather(k0 + V2_BK);
        #pragma unroll
        for (int ks = 0; ks < V2_BK; ks += 16) {
            uint32_t a[4][4], b[4][2];
            #pragma unroll
            for (int i = 0; i < 4; ++i) {
                const T* p = As + (wm + i * 16 + gq) * V2_LD + ks + 2 * t;
                a[i][0] = load_pair(p);
                a[i][1] = load_pair(p + 8 * V2_LD);
                a[i][2] = load_pair(p + 8);
                a[i][3] = load_pair(p + 8 * V2_LD + 8);
            }
            #pragma unroll
            for (int j = 0; j < 4; ++j) {
                const T* p = Bs + (wn + j * 8 + gq) * V2_LD + ks + 2 * t;
                b[j][0] = load_pair(p);
                b[j][1] = load_pair(p + 8);
            }
            #pragma unroll
            for (int i = 0; i < 4; ++i)
                #pragma unroll
                for (int j = 0; j < 4; ++j) mma_16816<T>(acc[i][j], a[i], b[j]);
        }
        __syncthreads();
    }
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) {
                int m = m0 + wm + i * 16 + gq + (e >= 2 ? 8 : 0), co = n0 + wn + j * 8 + 2 * t + (e & 1);
                if (m >= M || co >= g.k) continue;
                int n = m / P, p = m - n * P;
                int64_t o = ((int64_t)n * g.k + co) * P + p;
                float v = acc[i][j][e];
                if (bias) v += to_f32(bias[co]);
                if (res) v += to_f32(res[o]);
                y[o] = from_f32<T>(v);
            }
}

#define CONV_TC_V2(T, S) \
extern "C" __global__ void __launch_bounds__(V2_THREADS) conv_tc_fwd_v2_##S(TcConvGeomV2 g, const T* x, const T* w, const T* bias, const T* res, T* y) { \
    conv_fwd_v2<T>(g, x, w, bias, res, y); }
CONV_TC_V2(f16, f16)
CONV_TC_V2(bf16, bf16)
