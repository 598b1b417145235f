// Kernel lab, flash attention forward variant 2 — against variant 1 (kernels/attention.cu):
//   1. 128 query rows per block (8 warps × 16): each K/V tile loaded to shared memory serves twice
//      the queries, halving K/V traffic per query.
//   2. The next key block's K and V are loaded into registers while the current one computes
//      (one barrier pair per block as before, but the global latency is hidden).
//   3. K and V arrive as 16-byte vectors (8 elements of one key) when the head dim is contiguous,
//      a multiple of 8, and the rows 16-byte aligned; otherwise the same chunks element by element.
// The softmax, fragment layouts and epilogue are variant 1's. What it measured:
// tools/kernel_lab/README.md. Correctness: tools/kernel_emu/attention_test.cpp runs it on variant
// 1's forward cases.
#include "../../kernels/common.cuh"

#define FA2_BQ 128
#define FA2_THREADS 256
#define FA2_LOG2E 1.4426950408889634f
#define FA2_LN2 0.6931471805599453f

// Must match AttnArgs in kernels/attention.cu (the host passes the same struct).
struct AttnArgsV2 {
    int b, h, lq, lk, d;
    float scale_log2;
    int64_t qs[4], ks[4], vs[4], ms[4];
};

template <typename T, int DP>
__device__ void flash_forward_v2(const AttnArgsV2 a, const T* q, const T* k, const T* v, const float* mask, T* out, float* lse) {
    constexpr int BKV = DP > 128 ? 32 : 64;
    constexpr int LDK = DP + 8, LDV = BKV + 8;
    constexpr int CHUNKS = BKV * DP / 8;                           // 8-element pieces of one tile
    constexpr int PER_THREAD = (CHUNKS + FA2_THREADS - 1) / FA2_THREADS;
    LDM_SHARED(T, Ks, BKV * LDK);
    LDM_SHARED(T, Vt, DP * LDV);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
    const int bh = blockIdx.y, bi = bh / a.h, hi = bh - bi * a.h;
    const int row0 = blockIdx.x * FA2_BQ + warp * 16;
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
            int c = tid + i * FA2_THREADS, j = c / (DP / 8), col = (c - j * (DP / 8)) * 8, key = kb + j;
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
            int c = tid + i * FA2_THREADS, j = c / (DP / 8), col = (c - j * (DP / 8)) * 8;
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
                else if (mh && r < a.lq) x += mh[r * a.ms[2] + key * a.ms[3]] * FA2_LOG2E;
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
            if (t == 0) lse[(int64_t)bh * a.lq + row] = l > 0.0f ? (m_run[r] + log2f(l)) * FA2_LN2 : -LDM_INF;
        }
    }
}

#define FLASH_FWD_V2(T, S, DP) \
extern "C" __global__ void __launch_bounds__(FA2_THREADS) flash_fwd_v2_d##DP##_##S(AttnArgsV2 a, const T* q, const T* k, const T* v, \
        const float* mask, T* out, float* lse) { flash_forward_v2<T, DP>(a, q, k, v, mask, out, lse); }
#define FLASH_FWD_V2_ALL(T, S) \
    FLASH_FWD_V2(T, S, 16) FLASH_FWD_V2(T, S, 32) FLASH_FWD_V2(T, S, 48) FLASH_FWD_V2(T, S, 64) \
    FLASH_FWD_V2(T, S, 80) FLASH_FWD_V2(T, S, 96) FLASH_FWD_V2(T, S, 128) FLASH_FWD_V2(T, S, 160)
FLASH_FWD_V2_ALL(f16, f16)
FLASH_FWD_V2_ALL(bf16, bf16)
