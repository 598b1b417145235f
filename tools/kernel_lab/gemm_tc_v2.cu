// Kernel lab, GEMM variant 2 — the Linear layer's product y = x·Wᵀ + bias (x [M, K] and W [N, K]
// both dense along k, K % 8 = 0: the shipped kernel's "vv" path), against variant 1
// (kernels/gemm_tc.cu on tc_tile.cuh's 64×64 tile):
//   1. 128×128×32 block tiles, 8 warps (2 × 4) of 64×32: twice the mma work per shared load and
//      per global byte (the 64×64 tile reads 8 KB per 262k flops, this one 16 KB per 1M).
//   2. Both operands as 16-byte loads, two per thread per slice (as variant 1's v path).
//   3. The epilogue stores two adjacent outputs as one 32-bit word (N even).
// Same smem padding (40 halves per row) and fragment loads as variant 1. What it measured:
// tools/kernel_lab/README.md. Correctness: tools/kernel_emu/gemm_tc_test.cpp runs it on the
// dense cases.
#include "../../kernels/common.cuh"

#define G2_BM 128
#define G2_BN 128
#define G2_BK 32
#define G2_LD (G2_BK + 8)
#define G2_THREADS 256

// Two 16-byte vectors per thread of a 128×32 slice of rows dense along k (row r at base + r·ld).
template <typename T>
__device__ __forceinline__ void g2_fetch(uint4 (&regs)[2], const T* base, int64_t ld, int rows, int row0, int k0, int K) {
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        int v = threadIdx.x + G2_THREADS * h, r = v >> 2, kk = (v & 3) * 8;
        int gr = row0 + r, gk = k0 + kk;
        if (gr < rows && gk < K) regs[h] = *reinterpret_cast<const uint4*>(base + gr * ld + gk);
        else regs[h] = uint4{0u, 0u, 0u, 0u};
    }
}

template <typename T>
__device__ __forceinline__ void g2_commit(T* s, const uint4 (&regs)[2]) {
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        int v = threadIdx.x + G2_THREADS * h, r = v >> 2, kk = (v & 3) * 8;
        *reinterpret_cast<uint4*>(s + r * G2_LD + kk) = regs[h];
    }
}

template <typename T>
__device__ void linear_v2(int M, int N, int K, const T* x, const T* w, const T* bias, T* y) {
    LDM_SHARED(T, As, G2_BM * G2_LD);
    LDM_SHARED(T, Bs, G2_BN * G2_LD);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int gq = lane >> 2, t = lane & 3;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    const int m0 = blockIdx.x * G2_BM, n0 = blockIdx.y * G2_BN;
    float acc[4][4][4];
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    uint4 ra[2], rb[2];
    g2_fetch(ra, x, K, M, m0, 0, K);
    g2_fetch(rb, w, K, N, n0, 0, K);
    for (int k0 = 0; k0 < K; k0 += G2_BK) {
        g2_commit(As, ra);
        g2_commit(Bs, rb);
        __syncthreads();
        if (k0 + G2_BK < K) {
            g2_fetch(ra, x, K, M, m0, k0 + G2_BK, K);
            g2_fetch(rb, w, K, N, n0, k0 + G2_BK, K);
        }
        #pragma unroll
        for (int ks = 0; ks < G2_BK; ks += 16) {
            uint32_t a[4][4], b[4][2];
            #pragma unroll
            for (int i = 0; i < 4; ++i) {
                const T* p = As + (wm + i * 16 + gq) * G2_LD + ks + 2 * t;
                a[i][0] = load_pair(p);
                a[i][1] = load_pair(p + 8 * G2_LD);
                a[i][2] = load_pair(p + 8);
                a[i][3] = load_pair(p + 8 * G2_LD + 8);
            }
            #pragma unroll
            for (int j = 0; j < 4; ++j) {
                const T* p = Bs + (wn + j * 8 + gq) * G2_LD + ks + 2 * t;
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
    // c0,c1 (and c2,c3) are adjacent columns 2t, 2t+1 of one row: one 32-bit store when both
    // exist and N is even (the pair is then 4-byte aligned).
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j)
            #pragma unroll
            for (int half = 0; half < 2; ++half) {
                int m = m0 + wm + i * 16 + gq + 8 * half, n = n0 + wn + j * 8 + 2 * t;
                if (m >= M || n >= N) continue;
                float v0 = acc[i][j][2 * half], v1 = acc[i][j][2 * half + 1];
                if (bias) {
                    v0 += to_f32(bias[n]);
                    if (n + 1 < N) v1 += to_f32(bias[n + 1]);
                }
                T* out = y + (int64_t)m * N + n;
                if (n + 1 < N && (N & 1) == 0) *reinterpret_cast<uint32_t*>(out) = pack_f32_pair<T>(v0, v1);
                else {
                    out[0] = from_f32<T>(v0);
                    if (n + 1 < N) out[1] = from_f32<T>(v1);
                }
            }
}

#define GEMM_TC_V2(T, S) \
extern "C" __global__ void __launch_bounds__(G2_THREADS) linear_tc_v2_##S(int M, int N, int K, const T* x, const T* w, const T* bias, T* y) { \
    linear_v2<T>(M, N, K, x, w, bias, y); }
GEMM_TC_V2(f16, f16)
GEMM_TC_V2(bf16, bf16)
