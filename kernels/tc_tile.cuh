// One 64×64 output tile of a matrix product on tensor cores (mma.sync m16n8k16, f16/bf16 inputs,
// f32 accumulation), shared by the implicit-GEMM convolution (conv_tc.cu) and the dense batched
// GEMM (gemm_tc.cu). What differs between them is only how a 64×32 slice of each operand reaches
// shared memory — an "operand" object (below) fetches a slice into registers and commits it — and
// what happens to each finished value (the `put` functor: bias, residual, atomics, the layout).
//
// One block: 128 threads (4 warps as 2×2), k slices of 32; each warp owns a 32×32 sub-tile (2×4
// mma tiles). The next slice is fetched into registers before the current slice's mma, so global
// latency overlaps the math. Shared rows are padded by 8 elements (40 halves = 20 words), which
// makes every fragment load bank-conflict free and keeps each row 16-byte aligned.
#pragma once
#include "common.cuh"

#define TC_BM 64
#define TC_BN 64
#define TC_BK 32
#define TC_LD (TC_BK + 8)
#define TC_THREADS 128
#define TC_PER_THREAD (TC_BM * TC_BK / TC_THREADS)  // = TC_BN * TC_BK / TC_THREADS = 16

// An operand read element by element through `get(row, k)` (image windows, any strided view).
// `M_FAST` operands give consecutive threads consecutive rows (their memory is contiguous along the
// row index: image pixels, a transposed view), the others consecutive k; either way a warp's loads
// are as coalesced as the layout allows. Zero outside [0, rows) × [.., kend).
template <typename T, bool M_FAST, class Get>
struct GatherOperand {
    const Get& get;
    int rows, row0, kend;
    T regs[TC_PER_THREAD];

    // The (row, k) of this thread's i-th element of the 64×32 slice.
    __device__ __forceinline__ static void slot(int i, int& r, int& kk) {
        const int tid = threadIdx.x;
        if (M_FAST) { r = tid % 64; kk = tid / 64 + 2 * i; }
        else { kk = tid % 32; r = tid / 32 + 4 * i; }
    }
    __device__ __forceinline__ void fetch(int k0) {
        #pragma unroll
        for (int i = 0; i < TC_PER_THREAD; ++i) {
            int r, kk;
            slot(i, r, kk);
            int gr = row0 + r, gk = k0 + kk;
            regs[i] = (gr < rows && gk < kend) ? get(gr, gk) : from_f32<T>(0.0f);
        }
    }
    __device__ __forceinline__ void commit(T* s) const {
        #pragma unroll
        for (int i = 0; i < TC_PER_THREAD; ++i) {
            int r, kk;
            slot(i, r, kk);
            s[r * TC_LD + kk] = regs[i];
        }
    }
};

// 16 bytes from global memory at `src`. x86 forgives unaligned vector loads; the GPU does not:
// the emulator stops on one, naming the operand (`who`).
template <typename T>
__device__ __forceinline__ uint4 load16(const T* src, const char* who) {
#ifdef LDM_KERNEL_EMU
    if (reinterpret_cast<uintptr_t>(src) % 16 != 0) ldm_emu::fail(who);
#else
    (void)who;
#endif
    return *reinterpret_cast<const uint4*>(src);
}

// The vector-operands' slice layout: a thread's two 16-byte vectors v = tid + THREADS·h hold row
// v / 4, k (v % 4)·8 … +7 of the slice (2·THREADS/4 rows × 32 k), stored into its padded rows.
template <typename T, int THREADS>
__device__ __forceinline__ void commit_k_vectors(T* s, const uint4 (&regs)[2]) {
    #pragma unroll
    for (int h = 0; h < 2; ++h) {
        int v = threadIdx.x + THREADS * h;
        *reinterpret_cast<uint4*>(s + (v >> 2) * TC_LD + (v & 3) * 8) = regs[h];
    }
}

// An operand stored dense along k: row r starts at base + r·ld. The host picks it only when base
// and ld keep every row 16-byte aligned and the k range is a multiple of 8, so a slice is 256
// aligned 8-element vectors, two 16-byte loads per thread (a quarter of GatherOperand's loads).
// THREADS: the block's threads; a slice has 2·THREADS/4 rows (64 here, 128 for gemm_tc.cu's
// 256-thread wide tile), still two vectors per thread.
// PAIRED: rows taken from two halves in turn — row 2j is base row j, row 2j + 1 is base row
// `half` + j (a GEGLU projection's value and gate rows side by side: gemm_tc_wide_geglu).
template <typename T, int THREADS = TC_THREADS, bool PAIRED = false>
struct DenseKOperand {
    const T* base;
    int64_t ld;
    int rows, row0, kend;
    uint4 regs[2];
    int half = 0;  // PAIRED: where the second half's rows start

    __device__ __forceinline__ void fetch(int k0) {
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
            int v = threadIdx.x + THREADS * h, r = v >> 2, kk = (v & 3) * 8;
            int gr = row0 + r, gk = k0 + kk;
            const int64_t row = PAIRED ? (gr >> 1) + (gr & 1) * half : gr;
            if (gr < rows && gk < kend) regs[h] = load16(base + row * ld + gk, "DenseKOperand: unaligned 16-byte load");
            else regs[h] = uint4{0u, 0u, 0u, 0u};
        }
    }
    __device__ __forceinline__ void commit(T* s) const { commit_k_vectors<T, THREADS>(s, regs); }
};

// Where a thread's accumulators sit in a block tile of (warps / WARPS_N) × WARPS_N warps with
// MI × NJ mma tiles (16×8) each: its warp's tile origin (wm, wn), and g = lane / 4, t = lane % 4 —
// accumulator e of mma tile (i, j) is row wm + 16i + g (+8 for e ≥ 2), column wn + 8j + 2t + (e & 1).
template <int MI, int NJ, int WARPS_N>
struct TcLanePlace {
    int g, t, wm, wn;
    __device__ __forceinline__ TcLanePlace() {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        g = lane >> 2;
        t = lane & 3;
        wm = (warp / WARPS_N) * (MI * 16);
        wn = (warp % WARPS_N) * (NJ * 8);
    }
};

// The main loop of a block tile of (warps / WARPS_N) × WARPS_N warps, each owning MI × NJ mma
// tiles (16×8) at (wm, wn): acc = Σ_{k in [kbeg, kend)} A(m, k)·B(k, n) over the block's BM rows
// of A (served by `a`) and BN rows of Bᵀ (served by `b`). The next slice is fetched into
// registers before the current slice's mma.
template <typename T, int MI, int NJ, int WARPS_N, int BM, int BN, class OpA, class OpB>
__device__ __forceinline__ void tc_mainloop(int kbeg, int kend, OpA& a, OpB& b, float (&acc)[MI][NJ][4]) {
    LDM_SHARED(T, As, BM * TC_LD);
    LDM_SHARED(T, Bs, BN * TC_LD);
    const TcLanePlace<MI, NJ, WARPS_N> at;
    const int g = at.g, t = at.t, wm = at.wm, wn = at.wn;
    #pragma unroll
    for (int i = 0; i < MI; ++i)
        #pragma unroll
        for (int j = 0; j < NJ; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;
    if (kbeg < kend) {
        a.fetch(kbeg);
        b.fetch(kbeg);
    }
    for (int k0 = kbeg; k0 < kend; k0 += TC_BK) {
        a.commit(As);
        b.commit(Bs);
        __syncthreads();
        if (k0 + TC_BK < kend) {  // the next slice in flight during this one's math
            a.fetch(k0 + TC_BK);
            b.fetch(k0 + TC_BK);
        }
        #pragma unroll
        for (int ks = 0; ks < TC_BK; ks += 16) {
            uint32_t af[MI][4], bf[NJ][2];
            #pragma unroll
            for (int i = 0; i < MI; ++i) {
                const T* p = As + (wm + i * 16 + g) * TC_LD + ks + 2 * t;
                af[i][0] = load_pair(p);
                af[i][1] = load_pair(p + 8 * TC_LD);
                af[i][2] = load_pair(p + 8);
                af[i][3] = load_pair(p + 8 * TC_LD + 8);
            }
            #pragma unroll
            for (int j = 0; j < NJ; ++j) {
                const T* p = Bs + (wn + j * 8 + g) * TC_LD + ks + 2 * t;
                bf[j][0] = load_pair(p);
                bf[j][1] = load_pair(p + 8);
            }
            #pragma unroll
            for (int i = 0; i < MI; ++i)
                #pragma unroll
                for (int j = 0; j < NJ; ++j) mma_16816<T>(acc[i][j], af[i], bf[j]);
        }
        __syncthreads();
    }
}

// The block tile at (m0, n0) by pairs, in tc_mainloop's layout: accumulators [2h], [2h + 1] of
// mma tile (i, j) are columns n, n + 1 of one row m. pair(m, n, v0, v1) for each pair whose row
// is inside M and whose first column is inside N (n + 1 may be N: the callee checks).
template <int MI, int NJ, int WARPS_N, class Pair>
__device__ __forceinline__ void tc_store_pairs(int M, int N, int m0, int n0, const float (&acc)[MI][NJ][4], const Pair& pair) {
    const TcLanePlace<MI, NJ, WARPS_N> at;
    const int g = at.g, t = at.t, wm = at.wm, wn = at.wn;
    #pragma unroll
    for (int i = 0; i < MI; ++i)
        #pragma unroll
        for (int j = 0; j < NJ; ++j)
            #pragma unroll
            for (int half = 0; half < 2; ++half) {
                int m = m0 + wm + i * 16 + g + 8 * half, n = n0 + wn + j * 8 + 2 * t;
                if (m < M && n < N) pair(m, n, acc[i][j][2 * half], acc[i][j][2 * half + 1]);
            }
}

// The dense GEMM's pair store (tc_store_pairs): C row-major M×N (+ bias[n]) (+ res, row-major
// M×N like C); adjacent columns n, n + 1 as one 32-bit word when both exist and N is even (the
// pair is then 4-byte aligned).
template <typename T>
struct RowMajorPairStore {
    T* c;
    int N;
    const T* bias;
    const T* res;
    __device__ __forceinline__ void operator()(int m, int n, float v0, float v1) const {
        if (bias) {
            v0 += to_f32(bias[n]);
            if (n + 1 < N) v1 += to_f32(bias[n + 1]);
        }
        if (res) {
            const T* r = res + (int64_t)m * N + n;
            v0 += to_f32(r[0]);
            if (n + 1 < N) v1 += to_f32(r[1]);
        }
        T* out = c + (int64_t)m * N + n;
        if (n + 1 < N && (N & 1) == 0) *reinterpret_cast<uint32_t*>(out) = pack_f32_pair<T>(v0, v1);
        else {
            out[0] = from_f32<T>(v0);
            if (n + 1 < N) out[1] = from_f32<T>(v1);
        }
    }
};

// Each value of the block tile at (m0, n0) inside M×N to put(m, n, v).
template <int MI, int NJ, int WARPS_N, class Put>
__device__ __forceinline__ void tc_store(int M, int N, int m0, int n0, const float (&acc)[MI][NJ][4], const Put& put) {
    const TcLanePlace<MI, NJ, WARPS_N> at;
    const int g = at.g, t = at.t, wm = at.wm, wn = at.wn;
    #pragma unroll
    for (int i = 0; i < MI; ++i)
        #pragma unroll
        for (int j = 0; j < NJ; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) {
                int m = m0 + wm + i * 16 + g + (e >= 2 ? 8 : 0), n = n0 + wn + j * 8 + 2 * t + (e & 1);
                if (m < M && n < N) put(m, n, acc[i][j][e]);
            }
}

// C[m, n] = Σ_{k in [kbeg, kend)} A(m, k)·B(k, n) over the 64×64 tile at (m0, n0) (4 warps as
// 2×2, 32×32 each), then put(m, n, c) for each of its values inside M×N. `a` serves rows m
// (A's), `b` rows n (Bᵀ's).
template <typename T, class OpA, class OpB, class Put>
__device__ void tc_gemm_tile(int M, int N, int kbeg, int kend, int m0, int n0, OpA& a, OpB& b, const Put& put) {
    float acc[2][4][4];
    tc_mainloop<T, 2, 4, 2, TC_BM, TC_BN>(kbeg, kend, a, b, acc);
    tc_store<2, 4, 2>(M, N, m0, n0, acc, put);
}

// The 64×64 tile with both operands gathered through getters: get_a(m, k) = A(m, k),
// get_b(n, k) = B(k, n).
template <typename T, bool A_M_FAST, bool B_N_FAST, class GetA, class GetB, class Put>
__device__ void gather_gemm(int M, int N, int kbeg, int kend, int m0, int n0, const GetA& get_a, const GetB& get_b, const Put& put) {
    GatherOperand<T, A_M_FAST, GetA> a{get_a, M, m0, kend};
    GatherOperand<T, B_N_FAST, GetB> b{get_b, N, n0, kend};
    tc_gemm_tile<T>(M, N, kbeg, kend, m0, n0, a, b, put);
}

// ---------------------------------------------------------------------------------------------
// The 128×128 block tile: 8 warps (2 × 4) of 64×32 each, twice the mma work per shared-memory
// load and per global byte of the 64×64 tile (the kernel lab's GEMM variant 2, measured 1.07–1.60×
// faster than the 64×64 tile on the H100's Linear products with ≥ 192 of these blocks). Operands
// as above at 256 threads (a slice has 128 rows); the callers own the epilogue (gemm_tc.cu stores
// pairs, conv_tc.cu goes through `put`).
#define TCW_BM 128
#define TCW_BN 128
#define TCW_THREADS 256
#define TCW_WARPS_N 4

template <typename T, class OpA, class OpB>
__device__ __forceinline__ void tc_wide_mainloop(int kbeg, int kend, OpA& a, OpB& b, float (&acc)[4][4][4]) {
    tc_mainloop<T, 4, 4, TCW_WARPS_N, TCW_BM, TCW_BN>(kbeg, kend, a, b, acc);
}

template <class Put>
__device__ __forceinline__ void tc_wide_store(int M, int N, int m0, int n0, const float (&acc)[4][4][4], const Put& put) {
    tc_store<4, 4, TCW_WARPS_N>(M, N, m0, n0, acc, put);
}

template <class Pair>
__device__ __forceinline__ void tc_wide_store_pairs(int M, int N, int m0, int n0, const float (&acc)[4][4][4], const Pair& pair) {
    tc_store_pairs<4, 4, TCW_WARPS_N>(M, N, m0, n0, acc, pair);
}
