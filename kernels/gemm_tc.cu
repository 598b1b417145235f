// Batched dense matrix product on tensor cores: C[z] = A[z]·B[z] (+ bias[n]) with A: M×K, B: K×N
// read through any row/column strides (a transposed weight or key matrix is not copied) and batch
// offsets through `Strided` descriptors (a broadcast operand has batch stride 0); C is M×N
// contiguous per batch, optionally plus a residual of C's shape (TcGemmDims::res). f16/bf16
// inputs, f32 accumulation (mma.sync m16n8k16), one rounding on store. This is every Linear layer (x·Wᵀ), the unfused attention's Q·Kᵀ and P·V, and their
// gradients; the f32 path stays on gemm.cu's kernel.
//
// Each operand reaches shared memory one of three ways, chosen by the host from its strides
// (kernel suffix gemm_tc_<A><B>_<dtype>):
//   v  dense along k with 16-byte aligned rows and k % 8 = 0: two 16-byte loads per thread per
//      slice (x in x·Wᵀ, and Wᵀ itself, whose rows along k are W's rows)
//   k  any strides, consecutive threads on consecutive k
//   m / n  any strides, consecutive threads on consecutive rows (A's m, B's n): for operands
//      contiguous along the row index (W in dY·W, Xᵀ-like views)
// Tiles: tc_tile.cuh (64×64 per block, 4 warps, k slices of 32); the vv path also has a 128×128
// kernel for large grids (gemm_tc_wide_vv, below). CPU twin:
// src/backend/cpu/matmul.rs; tools/kernel_emu/gemm_tc_test.cpp runs this file on the CPU.
#include "gemm_tc.cuh"

// The tile with A's operand `a` ready: B's chosen by B_KIND.
template <typename T, char B_KIND, class OpA, class GetB, class Put>
__device__ __forceinline__ void gemm_tc_b(const TcGemmDims& d, int m0, int n0, OpA& a, const T* Bz, const GetB& get_b, const Put& put) {
    if constexpr (B_KIND == 'v') {
        DenseKOperand<T> b{Bz, d.b_cs, d.n, n0, d.k};  // Bᵀ's row n: B(·, n), stride b_cs
        tc_gemm_tile<T>(d.m, d.n, 0, d.k, m0, n0, a, b, put);
    } else {
        GatherOperand<T, B_KIND == 'n', GetB> b{get_b, d.n, n0, d.k};
        tc_gemm_tile<T>(d.m, d.n, 0, d.k, m0, n0, a, b, put);
    }
}

template <typename T, char A_KIND, char B_KIND>
__device__ void gemm_tc(const TcGemmDims& d, const T* A, const Strided& ab, const T* B, const Strided& bb, const T* bias, T* C) {
    const int64_t z = blockIdx.z;
    const T* Az = A + strided_offset(ab, z);
    const T* Bz = B + strided_offset(bb, z);
    T* Cz = C + z * (int64_t)d.m * d.n;
    const T* Rz = gemm_residual<T>(d, z);
    const int m0 = blockIdx.x * TC_BM, n0 = blockIdx.y * TC_BN;
    auto get_a = [&](int m, int k) { return Az[m * d.a_rs + k * d.a_cs]; };
    auto get_b = [&](int n, int k) { return Bz[k * d.b_rs + n * d.b_cs]; };
    auto put = [&](int m, int n, float v) {
        int64_t o = (int64_t)m * d.n + n;
        if (bias) v += to_f32(bias[n]);
        if (Rz) v += to_f32(Rz[o]);
        Cz[o] = from_f32<T>(v);
    };
    if constexpr (A_KIND == 'v') {
        DenseKOperand<T> a{Az, d.a_rs, d.m, m0, d.k};
        gemm_tc_b<T, B_KIND>(d, m0, n0, a, Bz, get_b, put);
    } else {
        GatherOperand<T, A_KIND == 'm', decltype(get_a)> a{get_a, d.m, m0, d.k};
        gemm_tc_b<T, B_KIND>(d, m0, n0, a, Bz, get_b, put);
    }
}

#define GEMM_TC_1(T, S, AK, BK, NAME) \
extern "C" __global__ void __launch_bounds__(TC_THREADS) gemm_tc_##NAME##_##S(TcGemmDims d, const T* A, Strided ab, const T* B, Strided bb, const T* bias, T* C) { \
    gemm_tc<T, AK, BK>(d, A, ab, B, bb, bias, C); }
#define GEMM_TC(T, S) \
    GEMM_TC_1(T, S, 'v', 'v', vv) GEMM_TC_1(T, S, 'v', 'k', vk) GEMM_TC_1(T, S, 'v', 'n', vn) \
    GEMM_TC_1(T, S, 'k', 'v', kv) GEMM_TC_1(T, S, 'k', 'k', kk) GEMM_TC_1(T, S, 'k', 'n', kn) \
    GEMM_TC_1(T, S, 'm', 'v', mv) GEMM_TC_1(T, S, 'm', 'k', mk) GEMM_TC_1(T, S, 'm', 'n', mn)
GEMM_TC(f16, f16)
GEMM_TC(bf16, bf16)

// ---------------------------------------------------------------------------------------------
// The vv path on tc_tile.cuh's 128×128×32 block tile (8 warps of 64×32), both operands as 16-byte
// loads (two per thread per slice: DenseKOperand at 256 threads), adjacent outputs stored as one
// 32-bit word. This is the kernel lab's GEMM
// variant 2 (tools/kernel_lab/README.md): on the H100 it ran the SD Linear shapes 1.07–1.60×
// faster than the 64×64 tile when the grid held ≥ 192 of its blocks, and 0.63× as fast on a
// 154-row product (6 blocks); the host picks it by block count (linalg.rs `wide_tile_pays`).
// A 'v' (a_cs = 1, rows a_rs apart) times B 'v' (b_rs = 1: Bᵀ's row n at n·b_cs), as gemm_tc's vv.
template <typename T>
__device__ void gemm_tc_wide(const TcGemmDims& d, const T* A, const Strided& ab, const T* B, const Strided& bb, const T* bias, T* C) {
    const int64_t z = blockIdx.z;
    const T* x = A + strided_offset(ab, z);
    const T* w = B + strided_offset(bb, z);
    const int M = d.m, N = d.n, K = d.k;
    const int m0 = blockIdx.x * TCW_BM, n0 = blockIdx.y * TCW_BN;
    // 128×32 slices of both operands, two 16-byte vectors per thread (tc_tile.cuh)
    DenseKOperand<T, TCW_THREADS> ra{x, d.a_rs, M, m0, K}, rb{w, d.b_cs, N, n0, K};
    float acc[4][4][4];
    tc_wide_mainloop<T>(0, K, ra, rb, acc);
    tc_wide_store_pairs(M, N, m0, n0, acc, batch_pair_store<T>(d, bias, C));
}

// ---------------------------------------------------------------------------------------------
// GEGLU fused into the 128×128 vv product: C = value · gelu_erf(gate) with [value | gate] =
// x·Wᵀ + bias, W [2·inner, K] as the Linear stores it (value rows, then gate rows), C [M, inner].
// The product's column 2j reads W's row j and column 2j + 1 its row inner + j (DenseKOperand's
// PAIRED rows), so each output pair a thread holds after the main loop (tc_store_pairs: columns
// n, n + 1 with n even) is one value and its gate: one GEGLU output, from the f32 sums (the
// unfused pair rounds both to T first). The [M, 2·inner] product is never written — in SD1.5's
// feed-forward the largest activation of a transformer block, read again by the separate geglu.
// d.n = 2·inner (the product's columns), no batches, no residual.
template <typename T>
struct GegluPairStore {
    T* c;
    int inner;
    const T* bias;  // [2·inner]: value biases, then gate biases
    __device__ __forceinline__ void operator()(int m, int n, float value, float gate) const {
        const int j = n >> 1;
        if (bias) {
            value += to_f32(bias[j]);
            gate += to_f32(bias[inner + j]);
        }
        c[(int64_t)m * inner + j] = from_f32<T>(value * gelu_erf_(gate));
    }
};

template <typename T>
__device__ void gemm_tc_wide_geglu(const TcGemmDims& d, const T* A, const T* B, const T* bias, T* C) {
    const int M = d.m, N = d.n, K = d.k;
    const int m0 = blockIdx.x * TCW_BM, n0 = blockIdx.y * TCW_BN;
    DenseKOperand<T, TCW_THREADS> ra{A, d.a_rs, M, m0, K};
    DenseKOperand<T, TCW_THREADS, true> rb{B, d.b_cs, N, n0, K, {}, N / 2};
    float acc[4][4][4];
    tc_wide_mainloop<T>(0, K, ra, rb, acc);
    tc_wide_store_pairs(M, N, m0, n0, acc, GegluPairStore<T>{C, N / 2, bias});
}

#define GEMM_TC_WIDE(T, S) \
extern "C" __global__ void __launch_bounds__(TCW_THREADS) gemm_tc_wide_vv_##S(TcGemmDims d, const T* A, Strided ab, const T* B, Strided bb, const T* bias, T* C) { \
    gemm_tc_wide<T>(d, A, ab, B, bb, bias, C); } \
extern "C" __global__ void __launch_bounds__(TCW_THREADS) gemm_tc_wide_geglu_##S(TcGemmDims d, const T* A, const T* B, const T* bias, T* C) { \
    gemm_tc_wide_geglu<T>(d, A, B, bias, C); }
GEMM_TC_WIDE(f16, f16)
GEMM_TC_WIDE(bf16, bf16)
