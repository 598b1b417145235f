// What the tensor-core GEMM kernels share with the kernel lab's GEMM variants
// (tools/kernel_lab/gemm_tc_ring.cu, gemm_tc_wgmma_sm90a.cu): the dims passed by value, a batch's
// residual and its pair-store epilogue. Included by gemm_tc.cu (see its header for the operand
// paths).
#pragma once
#include "tc_tile.cuh"

struct TcGemmDims {
    int m, n, k;
    int64_t a_rs, a_cs;  // A(m, k) = A[m·a_rs + k·a_cs]
    int64_t b_rs, b_cs;  // B(k, n) = B[k·b_rs + n·b_cs]
    // 0, or the address of a residual R of C's type and shape (M×N contiguous per batch) added
    // before the one rounding: C = A·B + bias + R (a Linear that closes a residual connection).
    uint64_t res;
};

// The residual of batch z (nullptr without one).
template <typename T>
__device__ __forceinline__ const T* gemm_residual(const TcGemmDims& d, int64_t z) {
    return d.res ? reinterpret_cast<const T*>(d.res) + z * (int64_t)d.m * d.n : nullptr;
}

// The pair store of batch z = blockIdx.z's C (row-major M×N, + bias, + that batch's residual).
// Formed after the main loop: made before it, its pointers stayed live through the loop and cost
// the 128×128 kernels 4–24 registers.
template <typename T>
__device__ __forceinline__ RowMajorPairStore<T> batch_pair_store(const TcGemmDims& d, const T* bias, T* C) {
    const int64_t z = blockIdx.z;
    return RowMajorPairStore<T>{C + z * d.m * d.n, d.n, bias, gemm_residual<T>(d, z)};
}
