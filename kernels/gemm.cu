// Batched dense matrix product C[z] = A[z] · B[z] (A: M×K, B: K×N, C: M×N contiguous), with any
// row/column strides on A and B (so transposed views need no copy) and batch offsets read through
// `Strided` descriptors (so a broadcast operand has batch stride 0). f32 accumulation for every
// dtype. A plain shared-memory tiled kernel: 64×64 output tiles, 16-deep k slices, a 4×4
// micro-tile per thread — correct for every shape, not the tensor-core kernel (that is the
// tensor-core issue's conv/attention work). CPU twin: src/backend/cpu/matmul.rs.
#include "common.cuh"

#define TM 64
#define TN 64
#define TK 16

template <typename T>
__device__ void gemm_tiled(int64_t M, int64_t N, int64_t K, const T* A, int64_t a_rs, int64_t a_cs, Strided ab,
                           const T* B, int64_t b_rs, int64_t b_cs, Strided bb, T* C) {
    __shared__ float As[TK][TM + 4];
    __shared__ float Bs[TK][TN + 4];
    const int64_t z = blockIdx.z;
    const T* Az = A + strided_offset(ab, z);
    const T* Bz = B + strided_offset(bb, z);
    T* Cz = C + z * M * N;
    const int64_t row0 = (int64_t)blockIdx.y * TM, col0 = (int64_t)blockIdx.x * TN;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float acc[4][4];
    #pragma unroll
    for (int i = 0; i < 4; ++i)
        #pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int64_t k0 = 0; k0 < K; k0 += TK) {
        #pragma unroll
        for (int i = 0; i < 4; ++i) {
            // A tile: consecutive threads take consecutive k (coalesced when a_cs == 1).
            int e = tid + i * 256;
            int m = e / TK, kk = e % TK;
            int64_t gm = row0 + m, gk = k0 + kk;
            As[kk][m] = (gm < M && gk < K) ? to_f32(Az[gm * a_rs + gk * a_cs]) : 0.0f;
            // B tile: consecutive threads take consecutive n (coalesced when b_cs == 1).
            int kb = e / TN, n = e % TN;
            int64_t gkb = k0 + kb, gn = col0 + n;
            Bs[kb][n] = (gkb < K && gn < N) ? to_f32(Bz[gkb * b_rs + gn * b_cs]) : 0.0f;
        }
        __syncthreads();
        #pragma unroll
        for (int kk = 0; kk < TK; ++kk) {
            float a[4], b[4];
            #pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i];
            #pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx * 4 + j];
            #pragma unroll
            for (int i = 0; i < 4; ++i)
                #pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    #pragma unroll
    for (int i = 0; i < 4; ++i) {
        int64_t r = row0 + ty * 4 + i;
        if (r >= M) continue;
        #pragma unroll
        for (int j = 0; j < 4; ++j) {
            int64_t c = col0 + tx * 4 + j;
            if (c < N) Cz[r * N + c] = from_f32<T>(acc[i][j]);
        }
    }
}

#define GEMM(T, S) \
extern "C" __global__ void __launch_bounds__(256) gemm_##S(int64_t M, int64_t N, int64_t K, \
        const T* A, int64_t a_rs, int64_t a_cs, Strided ab, const T* B, int64_t b_rs, int64_t b_cs, Strided bb, T* C) { \
    gemm_tiled<T>(M, N, K, A, a_rs, a_cs, ab, B, b_rs, b_cs, bb, C); \
}
GEMM(float, f32)
GEMM(f16, f16)
GEMM(bf16, bf16)
