// Kernel lab, GEMM variant 3 (tools/kernel_lab/README.md): the shipped 128×128 tile
// (kernels/gemm_tc.cu gemm_tc_wide_vv, tc_tile.cuh tc_wide_mainloop) with one change — operands
// reach shared memory by cp.async (sm_80+) through a 3-stage ring instead of the register
// prefetch of one slice:
//   - no staging registers and no commit stores: the copy engine writes shared memory while the
//     warps do the math, two slices ahead, so global latency has two slices' time to hide;
//   - the rows are not padded (48 KB = 3 stages × 2 operands × 128 rows × 32 halves, the static
//     shared-memory limit); instead each row's four 16-byte chunks are XOR-swizzled by
//     (row >> 1) & 3, which keeps the 32-bit fragment loads bank-conflict free (8 rows × 4 lanes
//     of a fragment hit 32 distinct banks) and the 16-byte copies whole.
// Same signature, grid and block as gemm_tc_wide_vv, so the host and the bench launch it the
// same way. Emulated by tools/kernel_emu/gemm_tc_test.cpp (the emulator lands each copy only at
// the cp.async.wait that covers it, so reading a stage too early fails there).
// the shipped tile's epilogue (tc_store_pairs, RowMajorPairStore)
#include "../../kernels/tc_tile.cuh"

#define V3_BM 128
#define V3_BN 128
#define V3_BK 32
#define V3_THREADS 256
#define V3_STAGES 3

// cp.async helpers: kernels/common.cuh (the emulator's: tools/kernel_emu/ldm_emu.h).

// Element (row, col) of a swizzled 128×32 operand slice: chunk col/8 of the row moved to
// chunk (col/8) ^ ((row >> 1) & 3); the element's place inside its chunk is kept.
__device__ __forceinline__ int v3_swz(int row, int col) {
    return row * V3_BK + ((((col >> 3) ^ (row >> 1)) & 3) << 3) + (col & 7);
}

// Issues the copies of slice k0 of one operand (rows row0 …, dense along k with rows ld apart,
// k % 8 = 0, 16-byte aligned rows: the vv path's operands) into stage buffer s: 128 rows × 4
// chunks, two per thread; rows ≥ rows and k ≥ K are zero-filled.
template <typename T>
__device__ __forceinline__ void v3_issue(T* s, const T* base, int64_t ld, int rows, int row0, int K, int k0) {
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        int v = threadIdx.x + V3_THREADS * h, r = v >> 2, kk = (v & 3) * 8;
        int gr = row0 + r, gk = k0 + kk;
        bool in = gr < rows && gk < K;
        cp_async16(s + v3_swz(r, kk), in ? (const void*)(base + gr * ld + gk) : (const void*)base, in);
    }
}

// As kernels/gemm_tc.cu TcGemmDims (this file is built on its own).
struct TcGemmDimsV3 {
    int m, n, k;
    int64_t a_rs, a_cs;
    int64_t b_rs, b_cs;
};

template <typename T>
__device__ void gemm_tc_wide_v3(const TcGemmDimsV3& d, const T* A, const Strided& ab, const T* B, const Strided& bb, const T* bias, T* C) {
    LDM_SHARED(T, As, V3_STAGES * V3_BM * V3_BK);
    LDM_SHARED(T, Bs, V3_STAGES * V3_BN * V3_BK);
    const int64_t z = blockIdx.z;
    const T* x = A + strided_offset(ab, z);
    const T* w = B + strided_offset(bb, z);
    T* y = C + z * (int64_t)d.m * d.n;
    const int M = d.m, N = d.n, K = d.k;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int gq = lane >> 2, t = lane & 3;
    const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;
    const int m0 = blockIdx.x * V3_BM, n0 = blockIdx.y * V3_BN;
    const int slices = (K + V3_BK - 1) / V3_BK;
    float acc[4][4][4];
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    // Prologue: slices 0 and 1 in flight (an empty group where there is no slice, so the group
    // count, and with it the wait below, is the same every iteration).
    #pragma unroll
    for (int s = 0; s < V3_STAGES - 1; ++s) {
        if (s < slices) {
            v3_issue(As + s * V3_BM * V3_BK, x, d.a_rs, M, m0, K, s * V3_BK);
            v3_issue(Bs + s * V3_BN * V3_BK, w, d.b_cs, N, n0, K, s * V3_BK);
        }
        cp_async_commit();
    }
    for (int i = 0; i < slices; ++i) {
        cp_async_wait<V3_STAGES - 2>();  // slice i has landed (this thread's copies) …
        __syncthreads();                 // … and every thread's; slice i − 1's stage is free
        const int next = i + V3_STAGES - 1;
        if (next < slices) {
            int st = next % V3_STAGES;
            v3_issue(As + st * V3_BM * V3_BK, x, d.a_rs, M, m0, K, next * V3_BK);
            v3_issue(Bs + st * V3_BN * V3_BK, w, d.b_cs, N, n0, K, next * V3_BK);
        }
        cp_async_commit();
        const T* as = As + (i % V3_STAGES) * V3_BM * V3_BK;
        const T* bs = Bs + (i % V3_STAGES) * V3_BN * V3_BK;
        #pragma unroll
        for (int ks = 0; ks < V3_BK; ks += 16) {
            uint32_t af[4][4], bf[4][2];
            #pragma unroll
            for (int a = 0; a < 4; ++a) {
                int r = wm + a * 16 + gq, c = ks + 2 * t;
                af[a][0] = load_pair(as + v3_swz(r, c));
                af[a][1] = load_pair(as + v3_swz(r + 8, c));
                af[a][2] = load_pair(as + v3_swz(r, c + 8));
                af[a][3] = load_pair(as + v3_swz(r + 8, c + 8));
            }
            #pragma unroll
            for (int j = 0; j < 4; ++j) {
                int r = wn + j * 8 + gq, c = ks + 2 * t;
                bf[j][0] = load_pair(bs + v3_swz(r, c));
                bf[j][1] = load_pair(bs + v3_swz(r, c + 8));
            }
            #pragma unroll
            for (int a = 0; a < 4; ++a)
                #pragma unroll
                for (int j = 0; j < 4; ++j) mma_16816<T>(acc[a][j], af[a], bf[j]);
        }
    }
    cp_async_wait<0>();  // nothing may still be writing shared memory when the block ends

    // the shipped epilogue (gemm_tc.cu gemm_tc_wide): 8 warps as 2 × 4, adjacent columns paired
    tc_store_pairs<4, 4, 4>(M, N, m0, n0, acc, RowMajorPairStore<T>{y, N, bias});
}

#define GEMM_TC_V3(T, S) \
extern "C" __global__ void __launch_bounds__(V3_THREADS) gemm_tc_wide_v3_vv_##S(TcGemmDimsV3 d, const T* A, Strided ab, const T* B, Strided bb, const T* bias, T* C) { \
    gemm_tc_wide_v3<T>(d, A, ab, B, bb, bias, C); }
GEMM_TC_V3(f16, f16)
GEMM_TC_V3(bf16, bf16)
