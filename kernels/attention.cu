// Flash-style scaled-dot-product attention forward on tensor cores (FlashAttention-2, Dao 2023,
// Alg. 1): out = softmax(q kᵀ·scale + mask) v for q [B,H,Lq,D], k/v [B,H,Lk,D], f16/bf16 in,
// f32 accumulation, never materialising the Lq×Lk scores. Also writes the row log-sum-exp (natural
// log, −inf for a row whose keys are all masked) that the backward needs.
//
// One block: 4 warps, 64 query rows (16 per warp), walking key blocks of 64 (32 at DP 160). The warp's Q
// fragments stay in registers for the whole walk; each key block's K [key][d] and Vᵀ [d][key] are
// gathered into shared memory, so both products read their B fragments with 32-bit loads. S = Q·Kᵀ
// lands in mma accumulators whose layout is exactly the A-fragment layout of P·V, so P goes from
// the softmax to the second product without touching shared memory. The online softmax works in
// base 2 (scale·log2 e folded into the scores): per row a running max m and sum l, the output
// rescaled by 2^(m_old − m_new) when m grows; a row still at m = −inf uses 0 as its reference so
// no −inf − −inf appears, and its l stays 0, which the end turns into a 0 output (the CPU twin's
// semantics for fully masked rows).
//
// The head dim is padded to DP (a multiple of 16, one kernel per DP): SD uses 40, 80, 160 (DP 48,
// 80, 160); 64 and 128 are exact. Padding columns are zero in Q, K and V, so they change nothing.
// CPU twin: src/backend/cpu/attention.rs. tools/kernel_emu runs this kernel on the CPU in CI.
#include "common.cuh"

#define FA_BQ 64
#define FA_BK 64
#define FA_THREADS 128
#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f

// Element strides of q, k, v (and the additive f32 mask, broadcast with stride 0) over [B,H,L,D].
struct AttnArgs {
    int b, h, lq, lk, d;
    float scale_log2;  // scale · log2(e)
    int64_t qs[4], ks[4], vs[4], ms[4];
};

template <typename T, int DP>
__device__ void flash_forward(const AttnArgs a, const T* q, const T* k, const T* v, const float* mask, T* out, float* lse) {
    // Key block: 64, or 32 for DP 160, where the output accumulators (80 registers) and the Q
    // fragments (40) leave no room for 64 score columns (ptxas spilled on sm_80 with 64).
    constexpr int BKV = DP > 128 ? 32 : FA_BK;
    constexpr int LDK = DP + 8;      // K rows: padded so the fragment loads are conflict-free
    constexpr int LDV = BKV + 8;     // Vᵀ rows
    LDM_SHARED(T, Ks, BKV * LDK);
    LDM_SHARED(T, Vt, DP * LDV);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int bh = blockIdx.y, bi = bh / a.h, hi = bh - bi * a.h;
    const int q0 = blockIdx.x * FA_BQ, row0 = q0 + warp * 16;
    const T* qh = q + bi * a.qs[0] + hi * a.qs[1];
    const T* kh = k + bi * a.ks[0] + hi * a.ks[1];
    const T* vh = v + bi * a.vs[0] + hi * a.vs[1];
    const float* mh = mask ? mask + bi * a.ms[0] + hi * a.ms[1] : nullptr;
    const T zero = from_f32<T>(0.0f);

    // Q fragments of this warp's 16 rows, all DP columns (zero beyond Lq and D).
    uint32_t qf[DP / 16][4];
    auto qval = [&](int r, int c) { return (r < a.lq && c < a.d) ? qh[r * a.qs[2] + c * a.qs[3]] : zero; };
    #pragma unroll
    for (int kc = 0; kc < DP / 16; ++kc) {
        int c = kc * 16 + 2 * t;
        qf[kc][0] = pack_pair(qval(row0 + g, c), qval(row0 + g, c + 1));
        qf[kc][1] = pack_pair(qval(row0 + g + 8, c), qval(row0 + g + 8, c + 1));
        qf[kc][2] = pack_pair(qval(row0 + g, c + 8), qval(row0 + g, c + 9));
        qf[kc][3] = pack_pair(qval(row0 + g + 8, c + 8), qval(row0 + g + 8, c + 9));
    }

    float o[DP / 8][4];
    #pragma unroll
    for (int j = 0; j < DP / 8; ++j)
        #pragma unroll
        for (int e = 0; e < 4; ++e) o[j][e] = 0.0f;
    float m_run[2] = {-LDM_INF, -LDM_INF}, l_run[2] = {0.0f, 0.0f};  // rows g and g + 8 (l: this lane's share)

    for (int kb = 0; kb < a.lk; kb += BKV) {
        __syncthreads();  // the previous block's K and V are no longer read
        for (int i = threadIdx.x; i < BKV * DP; i += FA_THREADS) {
            int j = i / DP, c = i - j * DP, key = kb + j;
            bool in = key < a.lk && c < a.d;
            Ks[j * LDK + c] = in ? kh[key * a.ks[2] + c * a.ks[3]] : zero;
            Vt[c * LDV + j] = in ? vh[key * a.vs[2] + c * a.vs[3]] : zero;
        }
        __syncthreads();

        float s[BKV / 8][4];
        #pragma unroll
        for (int j = 0; j < BKV / 8; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
        #pragma unroll
        for (int kc = 0; kc < DP / 16; ++kc)
            #pragma unroll
            for (int j = 0; j < BKV / 8; ++j) {
                const T* p = Ks + (j * 8 + g) * LDK + kc * 16 + 2 * t;
                uint32_t bf[2] = {load_pair(p), load_pair(p + 8)};
                mma_16816<T>(s[j], qf[kc], bf);
            }

        // Scores in log2 units, masked; the block's row max.
        float m_blk[2] = {-LDM_INF, -LDM_INF};
        #pragma unroll
        for (int j = 0; j < BKV / 8; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) {
                int key = kb + j * 8 + 2 * t + (e & 1), r = row0 + g + (e >= 2 ? 8 : 0);
                float x = s[j][e] * a.scale_log2;
                if (key >= a.lk) x = -LDM_INF;
                else if (mh && r < a.lq) x += mh[r * a.ms[2] + key * a.ms[3]] * FA_LOG2E;
                s[j][e] = x;
                m_blk[e >> 1] = fmaxf(m_blk[e >> 1], x);
            }
        float alpha[2], ref[2];
        #pragma unroll
        for (int r = 0; r < 2; ++r) {
            m_blk[r] = fmaxf(m_blk[r], __shfl_xor_sync(0xffffffffu, m_blk[r], 1));
            m_blk[r] = fmaxf(m_blk[r], __shfl_xor_sync(0xffffffffu, m_blk[r], 2));
            float m_new = fmaxf(m_run[r], m_blk[r]);
            ref[r] = m_new == -LDM_INF ? 0.0f : m_new;
            alpha[r] = exp2f(m_run[r] - ref[r]);  // 0 while m_run was −inf
            m_run[r] = m_new;
            l_run[r] *= alpha[r];
        }
        #pragma unroll
        for (int j = 0; j < DP / 8; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) o[j][e] *= alpha[e >> 1];
        #pragma unroll
        for (int j = 0; j < BKV / 8; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) {
                float p = exp2f(s[j][e] - ref[e >> 1]);
                s[j][e] = p;
                l_run[e >> 1] += p;
            }

        // O += P·V: the accumulators of score tiles 2c and 2c+1 are the A fragment of key chunk c.
        #pragma unroll
        for (int c = 0; c < BKV / 16; ++c) {
            uint32_t pf[4] = {pack_f32_pair<T>(s[2 * c][0], s[2 * c][1]), pack_f32_pair<T>(s[2 * c][2], s[2 * c][3]),
                              pack_f32_pair<T>(s[2 * c + 1][0], s[2 * c + 1][1]), pack_f32_pair<T>(s[2 * c + 1][2], s[2 * c + 1][3])};
            #pragma unroll
            for (int j = 0; j < DP / 8; ++j) {
                const T* p = Vt + (j * 8 + g) * LDV + c * 16 + 2 * t;
                uint32_t bf[2] = {load_pair(p), load_pair(p + 8)};
                mma_16816<T>(o[j], pf, bf);
            }
        }
    }

    // Normalise; a row with no mass (all keys masked) gives 0 and lse −inf.
    T* oh = out + (int64_t)bh * a.lq * a.d;
    #pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = l_run[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        int row = row0 + g + 8 * r;
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        if (row < a.lq) {
            #pragma unroll
            for (int j = 0; j < DP / 8; ++j)
                #pragma unroll
                for (int e = 0; e < 2; ++e) {
                    int c = j * 8 + 2 * t + e;
                    if (c < a.d) oh[(int64_t)row * a.d + c] = from_f32<T>(o[j][2 * r + e] * inv);
                }
            if (t == 0) lse[(int64_t)bh * a.lq + row] = l > 0.0f ? (m_run[r] + log2f(l)) * FA_LN2 : -LDM_INF;
        }
    }
}

#define FLASH_FWD(T, S, DP) \
extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_fwd_d##DP##_##S(AttnArgs a, const T* q, const T* k, const T* v, \
        const float* mask, T* out, float* lse) { flash_forward<T, DP>(a, q, k, v, mask, out, lse); }
#define FLASH_FWD_ALL(T, S) \
    FLASH_FWD(T, S, 16) FLASH_FWD(T, S, 32) FLASH_FWD(T, S, 48) FLASH_FWD(T, S, 64) \
    FLASH_FWD(T, S, 80) FLASH_FWD(T, S, 96) FLASH_FWD(T, S, 128) FLASH_FWD(T, S, 160)
FLASH_FWD_ALL(f16, f16)
FLASH_FWD_ALL(bf16, bf16)
