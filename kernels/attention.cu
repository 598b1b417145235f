// Flash-style scaled-dot-product attention forward on tensor cores (FlashAttention-2, Dao 2023,
// Alg. 1): out = softmax(q kᵀ·scale + mask) v for q [B,H,Lq,D], k/v [B,H,Lk,D], f16/bf16 in,
// f32 accumulation, never materialising the Lq×Lk scores; out stored as [B,Lq,H,D]. Also writes the row log-sum-exp (natural
// log, −inf for a row whose keys are all masked) that the backward needs.
//
// One forward block: 8 warps, 128 query rows (16 per warp), walking key blocks of 64 (32 at DP
// 160); each K/V tile in shared memory serves all 128 rows, and the next key block's K and V are
// loaded into registers (16-byte vectors when the head dim is contiguous, a multiple of 8 and the
// rows aligned) while the current block computes. The warp's Q fragments stay in registers for
// the whole walk; each key block's K [key][d] and Vᵀ [d][key] sit in shared memory, so both
// products read their B fragments with 32-bit loads. S = Q·Kᵀ lands in mma accumulators whose
// layout is exactly the A-fragment layout of P·V, so P goes from the softmax to the second product
// without touching shared memory. The online softmax works in base 2 (scale·log2 e folded into the
// scores): per row a running max m and sum l, the output rescaled by 2^(m_old − m_new) when m
// grows; a row still at m = −inf uses 0 as its reference so no −inf − −inf appears, and its l
// stays 0, which the end turns into a 0 output (the CPU twin's semantics for fully masked rows).
// This is the kernel lab's variant 2 (tools/kernel_lab/README.md): on the H100 it ran the SD
// shapes 1.12–1.37× faster than the 64-row, 4-warp variant 1 (equal at head dim 160).
//
// The head dim is padded to DP (a multiple of 16, one kernel per DP): SD uses 40, 80, 160 (DP 48,
// 80, 160); 64 and 128 are exact. Padding columns are zero in Q, K and V, so they change nothing.
// CPU twin: src/backend/cpu/attention.rs. tools/kernel_emu runs this kernel on the CPU in CI.
#include "common.cuh"

#define FA_FWD_BQ 128
#define FA_FWD_THREADS 256
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
    constexpr int BKV = DP > 128 ? 32 : 64;
    constexpr int LDK = DP + 8, LDV = BKV + 8;
    constexpr int CHUNKS = BKV * DP / 8;                           // 8-element pieces of one tile
    constexpr int PER_THREAD = (CHUNKS + FA_FWD_THREADS - 1) / FA_FWD_THREADS;
    LDM_SHARED(T, Ks, BKV * LDK);
    LDM_SHARED(T, Vt, DP * LDV);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int bh = blockIdx.y, bi = bh / a.h, hi = bh - bi * a.h;
    const int row0 = blockIdx.x * FA_FWD_BQ + warp * 16;
    const T* qh = q + bi * a.qs[0] + hi * a.qs[1];
    const T* kh = k + bi * a.ks[0] + hi * a.ks[1];
    const T* vh = v + bi * a.vs[0] + hi * a.vs[1];
    const float* mh = mask ? mask + bi * a.ms[0] + hi * a.ms[1] : nullptr;
    const T zero = from_f32<T>(0.0f);
    const bool vec = a.ks[3] == 1 && a.vs[3] == 1 && a.d % 8 == 0 && a.ks[2] % 8 == 0 && a.vs[2] % 8 == 0 &&
                     ((uintptr_t)kh & 15) == 0 && ((uintptr_t)vh & 15) == 0;

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

    // One chunk: 8 consecutive head-dim elements of one key, zero outside [0, Lk) × [0, D).
    uint4 rk[PER_THREAD], rv[PER_THREAD];
    auto load = [&](int kb) {
        #pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            int c = tid + i * FA_FWD_THREADS, j = c / (DP / 8), col = (c - j * (DP / 8)) * 8, key = kb + j;
            if (c >= CHUNKS) continue;
            if (vec && key < a.lk && col < a.d) {  // d % 8 == 0: the chunk is all inside
                rk[i] = *reinterpret_cast<const uint4*>(kh + key * a.ks[2] + col);
                rv[i] = *reinterpret_cast<const uint4*>(vh + key * a.vs[2] + col);
            } else {
                T ek[8], ev[8];
                #pragma unroll
                for (int e = 0; e < 8; ++e) {
                    bool in = key < a.lk && col + e < a.d;
                    ek[e] = in ? kh[key * a.ks[2] + (col + e) * a.ks[3]] : zero;
                    ev[e] = in ? vh[key * a.vs[2] + (col + e) * a.vs[3]] : zero;
                }
                rk[i] = uint4{pack_pair(ek[0], ek[1]), pack_pair(ek[2], ek[3]), pack_pair(ek[4], ek[5]), pack_pair(ek[6], ek[7])};
                rv[i] = uint4{pack_pair(ev[0], ev[1]), pack_pair(ev[2], ev[3]), pack_pair(ev[4], ev[5]), pack_pair(ev[6], ev[7])};
            }
        }
    };
    auto store = [&]() {
        #pragma unroll
        for (int i = 0; i < PER_THREAD; ++i) {
            int c = tid + i * FA_FWD_THREADS, j = c / (DP / 8), col = (c - j * (DP / 8)) * 8;
            if (c >= CHUNKS) continue;
            *reinterpret_cast<uint4*>(Ks + j * LDK + col) = rk[i];
            const uint32_t words[4] = {rv[i].x, rv[i].y, rv[i].z, rv[i].w};
            #pragma unroll
            for (int e = 0; e < 8; ++e) Vt[(col + e) * LDV + j] = half_from_bits<T>((unsigned short)(words[e / 2] >> (16 * (e % 2))));
        }
    };

    float o[DP / 8][4];
    #pragma unroll
    for (int j = 0; j < DP / 8; ++j)
        #pragma unroll
        for (int e = 0; e < 4; ++e) o[j][e] = 0.0f;
    float m_run[2] = {-LDM_INF, -LDM_INF}, l_run[2] = {0.0f, 0.0f};

    load(0);
    for (int kb = 0; kb < a.lk; kb += BKV) {
        __syncthreads();  // the previous block's K and V are no longer read
        store();
        __syncthreads();
        if (kb + BKV < a.lk) load(kb + BKV);  // in flight during this block's math

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
            alpha[r] = exp2f(m_run[r] - ref[r]);
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

    // out is [B, Lq, H, D]: the caller's [B, H, Lq, D] as a view, so merging the heads back into
    // [B, Lq, H·D] (what every attention layer does next) needs no copy. The row's address is
    // formed here from blockIdx (nothing extra stays live through the key loop: at head dim 128
    // the kernel is at the 255-register limit).
    #pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = l_run[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        int row = row0 + g + 8 * r;
        float inv = l > 0.0f ? 1.0f / l : 0.0f;
        if (row < a.lq) {
            const int b_out = blockIdx.y / a.h, h_out = blockIdx.y - b_out * a.h;
            T* orow = out + (((int64_t)b_out * a.lq + row) * a.h + h_out) * a.d;
            #pragma unroll
            for (int j = 0; j < DP / 8; ++j)
                #pragma unroll
                for (int e = 0; e < 2; ++e) {
                    int c = j * 8 + 2 * t + e;
                    if (c < a.d) orow[c] = from_f32<T>(o[j][2 * r + e] * inv);
                }
            if (t == 0) lse[(int64_t)bh * a.lq + row] = l > 0.0f ? (m_run[r] + log2f(l)) * FA_LN2 : -LDM_INF;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backward (FlashAttention-2, Alg. 2). With P = softmax(S), S = scale·q kᵀ + mask, and the
// saved row log-sum-exp, every P tile is recomputed, never stored:
//   D_i = Σ_c dO[i,c]·O[i,c]                        (flash_bwd_prep)
//   dV = Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ∘ (dP − D),  dK = scale·dSᵀ·Q,  dQ = scale·dS·K
// One block owns 64 keys (16 per warp) and walks the query blocks: its dK and dV accumulate in
// registers and are written once; dQ gets each (query block, key block) share through f32
// atomics into a zeroed buffer. Sᵀ is computed key-major, so Pᵀ and dSᵀ sit in accumulator
// layout ready to be the A operand of dV and dK (the forward's register trick); dS goes once
// through shared memory for dQ. Operands whose pairs run along a shared-memory column (dO and Q
// as the B of dV/dK, K as the B of dQ) are packed from two 16-bit loads.
// Query blocks are 64 rows up to DP 64 and 32 beyond (registers: dK and dV take DP/2 each);
// DP 160 has no backward kernel (its accumulators alone would fill the register file): the host
// keeps the recorded ops for it.

template <typename T>
__device__ void flash_bwd_prep(int rows, int d, const T* o, const T* dout, float* drow) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    float s = 0.0f;
    if (row < rows)
        for (int c = lane; c < d; c += 32) s += to_f32(o[(int64_t)row * d + c]) * to_f32(dout[(int64_t)row * d + c]);
    s = warp_sum(s);
    if (row < rows && lane == 0) drow[row] = s;
}

// o/dout/dk/dv: contiguous [B,H,L,D]; q/k/v/mask through AttnArgs' strides; dq: f32, zeroed.
template <typename T, int DP>
__device__ void flash_backward(const AttnArgs a, const T* q, const T* k, const T* v, const float* mask, const T* dout,
                               const float* lse, const float* drow, float* dq, T* dk, T* dv) {
    constexpr int BQB = DP > 64 ? 32 : 64;
    constexpr int LDD = DP + 8;
    constexpr int LDS = FA_BK + 8;
    LDM_SHARED(T, Ks, FA_BK * LDD);
    LDM_SHARED(T, Qs, BQB * LDD);
    LDM_SHARED(T, dOs, BQB * LDD);
    LDM_SHARED(T, dSs, BQB * LDS);
    LDM_SHARED(float, lse_s, BQB);
    LDM_SHARED(float, drow_s, BQB);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int bh = blockIdx.y, bi = bh / a.h, hi = bh - bi * a.h;
    const int key0 = blockIdx.x * FA_BK, wk = warp * 16;  // wk: the warp's first key in the block
    const T* qh = q + bi * a.qs[0] + hi * a.qs[1];
    const T* kh = k + bi * a.ks[0] + hi * a.ks[1];
    const T* vh = v + bi * a.vs[0] + hi * a.vs[1];
    const float* mh = mask ? mask + bi * a.ms[0] + hi * a.ms[1] : nullptr;
    const T* doh = dout + (int64_t)bh * a.lq * a.d;
    const float* lseh = lse + (int64_t)bh * a.lq;
    const float* drowh = drow + (int64_t)bh * a.lq;
    float* dqh = dq + (int64_t)bh * a.lq * a.d;
    const T zero = from_f32<T>(0.0f);
    const float scale = a.scale_log2 / FA_LOG2E;

    for (int i = threadIdx.x; i < FA_BK * DP; i += FA_THREADS) {
        int j = i / DP, c = i - j * DP, key = key0 + j;
        Ks[j * LDD + c] = (key < a.lk && c < a.d) ? kh[key * a.ks[2] + c * a.ks[3]] : zero;
    }
    // V rows of this warp's 16 keys as A fragments, for dPᵀ = V·dOᵀ.
    uint32_t vf[DP / 16][4];
    auto vval = [&](int key, int c) { return (key < a.lk && c < a.d) ? vh[key * a.vs[2] + c * a.vs[3]] : zero; };
    #pragma unroll
    for (int kc = 0; kc < DP / 16; ++kc) {
        int c = kc * 16 + 2 * t, r = key0 + wk + g;
        vf[kc][0] = pack_pair(vval(r, c), vval(r, c + 1));
        vf[kc][1] = pack_pair(vval(r + 8, c), vval(r + 8, c + 1));
        vf[kc][2] = pack_pair(vval(r, c + 8), vval(r, c + 9));
        vf[kc][3] = pack_pair(vval(r + 8, c + 8), vval(r + 8, c + 9));
    }
    float dkacc[DP / 8][4], dvacc[DP / 8][4];
    #pragma unroll
    for (int j = 0; j < DP / 8; ++j)
        #pragma unroll
        for (int e = 0; e < 4; ++e) dkacc[j][e] = dvacc[j][e] = 0.0f;

    for (int qb = 0; qb < a.lq; qb += BQB) {
        __syncthreads();  // the previous query block's tiles are no longer read
        for (int i = threadIdx.x; i < BQB * DP; i += FA_THREADS) {
            int r = i / DP, c = i - r * DP, qi = qb + r;
            bool in = qi < a.lq && c < a.d;
            Qs[r * LDD + c] = in ? qh[qi * a.qs[2] + c * a.qs[3]] : zero;
            dOs[r * LDD + c] = in ? doh[(int64_t)qi * a.d + c] : zero;
        }
        for (int r = threadIdx.x; r < BQB; r += FA_THREADS) {
            bool in = qb + r < a.lq;
            lse_s[r] = in ? lseh[qb + r] : -LDM_INF;
            drow_s[r] = in ? drowh[qb + r] : 0.0f;
        }
        __syncthreads();

        // Sᵀ = K·Qᵀ for the warp's 16 keys × BQB queries, then Pᵀ from the saved lse.
        float s[BQB / 8][4], dp[BQB / 8][4];
        #pragma unroll
        for (int j = 0; j < BQB / 8; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.0f;
        #pragma unroll
        for (int kc = 0; kc < DP / 16; ++kc) {
            const T* pk = Ks + (wk + g) * LDD + kc * 16 + 2 * t;
            uint32_t kf[4] = {load_pair(pk), load_pair(pk + 8 * LDD), load_pair(pk + 8), load_pair(pk + 8 * LDD + 8)};
            #pragma unroll
            for (int j = 0; j < BQB / 8; ++j) {
                const T* pq = Qs + (j * 8 + g) * LDD + kc * 16 + 2 * t;
                uint32_t bq[2] = {load_pair(pq), load_pair(pq + 8)};
                mma_16816<T>(s[j], kf, bq);
                const T* pd = dOs + (j * 8 + g) * LDD + kc * 16 + 2 * t;
                uint32_t bd[2] = {load_pair(pd), load_pair(pd + 8)};
                mma_16816<T>(dp[j], vf[kc], bd);  // dPᵀ = V·dOᵀ
            }
        }
        #pragma unroll
        for (int j = 0; j < BQB / 8; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) {
                int key = key0 + wk + g + (e >= 2 ? 8 : 0), r = j * 8 + 2 * t + (e & 1), qi = qb + r;
                float l = lse_s[r], p = 0.0f;
                if (key < a.lk && qi < a.lq && l != -LDM_INF) {
                    float x = s[j][e] * a.scale_log2 - l * FA_LOG2E;
                    if (mh) x += mh[qi * a.ms[2] + key * a.ms[3]] * FA_LOG2E;
                    p = exp2f(x);
                }
                s[j][e] = p;
                dp[j][e] = p * (dp[j][e] - drow_s[r]);  // dSᵀ
            }

        // dV += Pᵀ·dO and dK += dSᵀ·Q (B operands: rows of dO / Q, pairs along the query index).
        #pragma unroll
        for (int c = 0; c < BQB / 16; ++c) {
            uint32_t pf[4] = {pack_f32_pair<T>(s[2 * c][0], s[2 * c][1]), pack_f32_pair<T>(s[2 * c][2], s[2 * c][3]),
                              pack_f32_pair<T>(s[2 * c + 1][0], s[2 * c + 1][1]), pack_f32_pair<T>(s[2 * c + 1][2], s[2 * c + 1][3])};
            uint32_t sf[4] = {pack_f32_pair<T>(dp[2 * c][0], dp[2 * c][1]), pack_f32_pair<T>(dp[2 * c][2], dp[2 * c][3]),
                              pack_f32_pair<T>(dp[2 * c + 1][0], dp[2 * c + 1][1]), pack_f32_pair<T>(dp[2 * c + 1][2], dp[2 * c + 1][3])};
            const int r0 = c * 16 + 2 * t;
            #pragma unroll
            for (int j = 0; j < DP / 8; ++j) {
                const int col = j * 8 + g;
                uint32_t bo[2] = {pack_pair(dOs[r0 * LDD + col], dOs[(r0 + 1) * LDD + col]), pack_pair(dOs[(r0 + 8) * LDD + col], dOs[(r0 + 9) * LDD + col])};
                mma_16816<T>(dvacc[j], pf, bo);
                uint32_t bq[2] = {pack_pair(Qs[r0 * LDD + col], Qs[(r0 + 1) * LDD + col]), pack_pair(Qs[(r0 + 8) * LDD + col], Qs[(r0 + 9) * LDD + col])};
                mma_16816<T>(dkacc[j], sf, bq);
            }
        }
        // dS (query-major) for dQ.
        #pragma unroll
        for (int j = 0; j < BQB / 8; ++j)
            #pragma unroll
            for (int e = 0; e < 4; ++e) dSs[(j * 8 + 2 * t + (e & 1)) * LDS + wk + g + (e >= 2 ? 8 : 0)] = from_f32<T>(dp[j][e]);
        __syncthreads();

        // dQ[query block] += scale·dS·K: (16-query tile, 8-column tile) pairs shared out over the warps.
        constexpr int TILES = (BQB / 16) * (DP / 8);
        static_assert(TILES % 4 == 0, "every warp takes the same number of dQ tiles");
        for (int tile = warp; tile < TILES; tile += 4) {
            const int qt = tile / (DP / 8), j = tile - qt * (DP / 8), col = j * 8 + g;
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            #pragma unroll
            for (int c = 0; c < FA_BK / 16; ++c) {
                const T* ps = dSs + (qt * 16 + g) * LDS + c * 16 + 2 * t;
                uint32_t af[4] = {load_pair(ps), load_pair(ps + 8 * LDS), load_pair(ps + 8), load_pair(ps + 8 * LDS + 8)};
                const int r0 = c * 16 + 2 * t;
                uint32_t bk[2] = {pack_pair(Ks[r0 * LDD + col], Ks[(r0 + 1) * LDD + col]), pack_pair(Ks[(r0 + 8) * LDD + col], Ks[(r0 + 9) * LDD + col])};
                mma_16816<T>(acc, af, bk);
            }
            #pragma unroll
            for (int e = 0; e < 4; ++e) {
                int qi = qb + qt * 16 + g + (e >= 2 ? 8 : 0), c = j * 8 + 2 * t + (e & 1);
                if (qi < a.lq && c < a.d) atomicAdd(dqh + (int64_t)qi * a.d + c, acc[e] * scale);
            }
        }
    }

    #pragma unroll
    for (int j = 0; j < DP / 8; ++j)
        #pragma unroll
        for (int e = 0; e < 4; ++e) {
            int key = key0 + wk + g + (e >= 2 ? 8 : 0), c = j * 8 + 2 * t + (e & 1);
            if (key < a.lk && c < a.d) {
                int64_t o = ((int64_t)bh * a.lk + key) * a.d + c;
                dk[o] = from_f32<T>(dkacc[j][e] * scale);
                dv[o] = from_f32<T>(dvacc[j][e]);
            }
        }
}

#define FLASH_FWD(T, S, DP) \
extern "C" __global__ void __launch_bounds__(FA_FWD_THREADS) flash_fwd_d##DP##_##S(AttnArgs a, const T* q, const T* k, const T* v, \
        const float* mask, T* out, float* lse) { flash_forward<T, DP>(a, q, k, v, mask, out, lse); }
#define FLASH_FWD_ALL(T, S) \
    FLASH_FWD(T, S, 16) FLASH_FWD(T, S, 32) FLASH_FWD(T, S, 48) FLASH_FWD(T, S, 64) \
    FLASH_FWD(T, S, 80) FLASH_FWD(T, S, 96) FLASH_FWD(T, S, 128) FLASH_FWD(T, S, 160)
FLASH_FWD_ALL(f16, f16)
FLASH_FWD_ALL(bf16, bf16)

#define FLASH_BWD(T, S, DP) \
extern "C" __global__ void __launch_bounds__(FA_THREADS) flash_bwd_d##DP##_##S(AttnArgs a, const T* q, const T* k, const T* v, \
        const float* mask, const T* dout, const float* lse, const float* drow, float* dq, T* dk, T* dv) { \
    flash_backward<T, DP>(a, q, k, v, mask, dout, lse, drow, dq, dk, dv); }
#define FLASH_BWD_ALL(T, S) \
    FLASH_BWD(T, S, 16) FLASH_BWD(T, S, 32) FLASH_BWD(T, S, 48) FLASH_BWD(T, S, 64) \
    FLASH_BWD(T, S, 80) FLASH_BWD(T, S, 96) FLASH_BWD(T, S, 128)
FLASH_BWD_ALL(f16, f16)
FLASH_BWD_ALL(bf16, bf16)
extern "C" __global__ void flash_bwd_prep_f16(int rows, int d, const f16* o, const f16* dout, float* drow) { flash_bwd_prep<f16>(rows, d, o, dout, drow); }
extern "C" __global__ void flash_bwd_prep_bf16(int rows, int d, const bf16* o, const bf16* dout, float* drow) { flash_bwd_prep<bf16>(rows, d, o, dout, drow); }
