// Kernel lab: the 128×128 tensor-core block tile fed by a cp.async ring, shared by the GEMM
// variants 3 and 4 (gemm_tc_ring.cu) and the conv variant 4 (conv_tc_v4.cu). It is
// kernels/tc_tile.cuh's tc_wide_mainloop (8 warps as 2 × 4, 64×32 each, k slices of 32) with the
// operands' path changed:
//   - operands reach shared memory by cp.async (sm_80+) through a 3-stage ring instead of the
//     register prefetch of one slice: no staging registers and no commit stores, and two slices
//     are in flight while the warps compute, so global latency has two slices' time to hide;
//   - rows are not padded (48 KB = 3 stages × 2 operands × 128 rows × 32 halves, the static
//     shared-memory limit); each row's four 16-byte chunks are XOR-swizzled by (row >> 1) & 3,
//     which keeps the 32-bit fragment loads bank-conflict free (8 rows × 4 lanes of a fragment
//     hit 32 distinct banks), every 8-row ldmatrix phase on 8 distinct 16-byte bank groups, and
//     the 16-byte copies whole.
// LDSM = true reads the fragments with ldmatrix.x4 (one instruction per A fragment and per two
// B fragments: 6 per 16-wide k step instead of 24 32-bit loads; the same bytes).
// An operand is an "issuer": `issue(T* stage, int k0)` starts this thread's two 16-byte copies of
// slice k0 — vector v = threadIdx.x + 256·h (h = 0, 1) is row v >> 2, k (v & 3)·8 … +7 — to
// `stage + ring_swz(row, k)`, zero-filling what lies outside (cp_async16 with full = false).
// Emulated through the GEMM and conv tests of tools/kernel_emu (the emulator lands a copy only at
// the cp.async.wait that covers it, and builds ldmatrix fragments from the PTX ISA's layout).
#pragma once
#include "../../kernels/tc_tile.cuh"

#define RING_BM 128
#define RING_BN 128
#define RING_BK 32
#define RING_THREADS 256
#define RING_STAGES 3

// Element (row, col) of a swizzled 128×32 operand slice: chunk col/8 of the row moved to
// chunk (col/8) ^ ((row >> 1) & 3); the element's place inside its chunk is kept.
__device__ __forceinline__ int ring_swz(int row, int col) {
    return row * RING_BK + ((((col >> 3) ^ (row >> 1)) & 3) << 3) + (col & 7);
}

// Rows row0 … of an operand dense along k, rows ld apart (k % 8 = 0, 16-byte aligned rows: the
// GEMM's vv operands and the conv's channels-last weights); rows ≥ rows and k ≥ kend zero-filled.
template <typename T>
struct DenseKIssuer {
    const T* base;
    int64_t ld;
    int rows, row0, kend;
    __device__ __forceinline__ void issue(T* stage, int k0) const {
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int v = threadIdx.x + RING_THREADS * h, r = v >> 2, kk = (v & 3) * 8;
            int gr = row0 + r, gk = k0 + kk;
            bool in = gr < rows && gk < kend;
            cp_async16(stage + ring_swz(r, kk), in ? (const void*)(base + gr * ld + gk) : (const void*)base, in);
        }
    }
};

// acc = Σ_{k in [kbeg, kend)} A(m, k)·B(k, n) over the block's 128 rows of A (issuer `a`) and 128
// rows of Bᵀ (issuer `b`), in tc_tile.cuh's 128×128 accumulator layout (TcLanePlace<4, 4, 4>), so
// tc_wide_store / tc_wide_store_pairs write it.
template <typename T, bool LDSM, class IssA, class IssB>
__device__ __forceinline__ void ring_mainloop(int kbeg, int kend, const IssA& a, const IssB& b, float (&acc)[4][4][4]) {
    LDM_SHARED(T, As, RING_STAGES * RING_BM * RING_BK);
    LDM_SHARED(T, Bs, RING_STAGES * RING_BN * RING_BK);
    const TcLanePlace<4, 4, 4> at;
    const int gq = at.g, t = at.t, wm = at.wm, wn = at.wn, lane = threadIdx.x & 31;
    const int slices = kend > kbeg ? (kend - kbeg + RING_BK - 1) / RING_BK : 0;
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    // Prologue: slices 0 and 1 in flight (an empty group where there is no slice, so the group
    // count, and with it the wait below, is the same every iteration).
    #pragma unroll
    for (int s = 0; s < RING_STAGES - 1; ++s) {
        if (s < slices) {
            a.issue(As + s * RING_BM * RING_BK, kbeg + s * RING_BK);
            b.issue(Bs + s * RING_BN * RING_BK, kbeg + s * RING_BK);
        }
        cp_async_commit();
    }
    for (int i = 0; i < slices; ++i) {
        cp_async_wait<RING_STAGES - 2>();  // slice i has landed (this thread's copies) …
        __syncthreads();                   // … and every thread's; slice i − 1's stage is free
        const int next = i + RING_STAGES - 1;
        if (next < slices) {
            int st = next % RING_STAGES;
            a.issue(As + st * RING_BM * RING_BK, kbeg + next * RING_BK);
            b.issue(Bs + st * RING_BN * RING_BK, kbeg + next * RING_BK);
        }
        cp_async_commit();
        const T* as = As + (i % RING_STAGES) * RING_BM * RING_BK;
        const T* bs = Bs + (i % RING_STAGES) * RING_BN * RING_BK;
        #pragma unroll
        for (int ks = 0; ks < RING_BK; ks += 16) {
            uint32_t af[4][4], bf[4][2];
            if (LDSM) {
                // A: matrices (rows +0 / +8: lane bit 3) × (k +0 / +8: lane bit 4) = a0, a1, a2, a3
                #pragma unroll
                for (int m = 0; m < 4; ++m)
                    ldmatrix_x4(af[m], as + ring_swz(wm + m * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, ks + (lane >> 4) * 8));
                // Bᵀ: matrices (k +0 / +8: lane bit 3) × (rows +0 / +8: lane bit 4) = two n-tiles' b0, b1
                #pragma unroll
                for (int j = 0; j < 4; j += 2) {
                    uint32_t r[4];
                    ldmatrix_x4(r, bs + ring_swz(wn + j * 8 + (lane & 7) + (lane >> 4) * 8, ks + ((lane >> 3) & 1) * 8));
                    bf[j][0] = r[0];
                    bf[j][1] = r[1];
                    bf[j + 1][0] = r[2];
                    bf[j + 1][1] = r[3];
                }
            } else {
                #pragma unroll
                for (int m = 0; m < 4; ++m) {
                    int r = wm + m * 16 + gq, c = ks + 2 * t;
                    af[m][0] = load_pair(as + ring_swz(r, c));
                    af[m][1] = load_pair(as + ring_swz(r + 8, c));
                    af[m][2] = load_pair(as + ring_swz(r, c + 8));
                    af[m][3] = load_pair(as + ring_swz(r + 8, c + 8));
                }
                #pragma unroll
                for (int j = 0; j < 4; ++j) {
                    int r = wn + j * 8 + gq, c = ks + 2 * t;
                    bf[j][0] = load_pair(bs + ring_swz(r, c));
                    bf[j][1] = load_pair(bs + ring_swz(r, c + 8));
                }
            }
            #pragma unroll
            for (int m = 0; m < 4; ++m)
                #pragma unroll
                for (int j = 0; j < 4; ++j) mma_16816<T>(acc[m][j], af[m], bf[j]);
        }
    }
    cp_async_wait<0>();  // nothing may still be writing shared memory when the block ends
}
