// kernels/attention.cu (flash forward and backward) run on the CPU emulator (ldm_emu.h) against an f64 softmax
// attention of the same (already rounded) f16/bf16 inputs: the SD head dims (40, 64, 80, 160) and
// odd ones, text-length keys (77), query counts that end mid-block, q read through a transposed
// [B, L, H, D] layout, and an additive mask with −inf entries including whole masked rows.
//
// Tolerance: the output is a convex combination of V rows; P is rounded to T once before P·V and
// the output once at the end, so |out − ref| ≤ 3·eps(T)·max|v| (eps = 2^-11 f16, 2^-8 bf16).
// The log-sum-exp is f32 from exact products: |Δ| ≤ 1e-4 (natural log units). A fully masked row
// must give exactly 0 and lse −inf.
// Backward (dQ, dK, dV after the forward, for a random dO): P and dS are rounded to T before their
// products, so each gradient is compared norm-wise: max|grad − ref| ≤ 8·eps(T)·max|ref|.
#include "../../kernels/attention.cu"
#include "../kernel_lab/attention_v3.cu"

#include <random>
#include <string>

static std::mt19937 rng(77);
static int failures = 0;

template <typename T>
struct Case {
    int b, h, lq, lk, d;
    bool masked, q_transposed;
};

static double eps_of(const __half*) { return std::ldexp(1.0, -11); }
static double eps_of(const __nv_bfloat16*) { return std::ldexp(1.0, -8); }

template <typename T, int DP>
static void launch_dp(const AttnArgs& a, const T* q, const T* k, const T* v, const float* m, T* o, float* l) {
    dim3 grid{(unsigned)((a.lq + FA_FWD_BQ - 1) / FA_FWD_BQ), (unsigned)(a.b * a.h), 1};
    ldm_emu::launch(grid, dim3{FA_FWD_THREADS, 1, 1}, [&] { flash_forward<T, DP>(a, q, k, v, m, o, l); });
}

// The kernel lab's variant 3 (no mask; K/V dense along D, D % 8 = 0, DP ≤ 80) on the same arguments.
template <typename T, int DP>
static void launch_v3(const AttnArgs& a, const T* q, const T* k, const T* v, T* o, float* l) {
    AttnArgsV3 a3;
    static_assert(sizeof a3 == sizeof a, "the lab's argument struct is variant 2's");
    std::memcpy(&a3, &a, sizeof a);
    dim3 grid{(unsigned)((a.lq + V3A_BQ - 1) / V3A_BQ), (unsigned)(a.b * a.h), 1};
    ldm_emu::launch(grid, dim3{V3A_THREADS, 1, 1}, [&] { flash_forward_v3<T, DP>(a3, q, k, v, o, l); });
}

template <typename T>
static void run(const char* dtype, int b, int h, int lq, int lk, int d, bool masked, bool q_transposed, bool v3 = false) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    size_t nq = (size_t)b * h * lq * d, nk = (size_t)b * h * lk * d;
    std::vector<T> q(nq), k(nk), v(nk);
    // Scores of a few units, as in a trained model, so the softmax is neither flat nor one-hot.
    for (auto& x : q) x = from_f32<T>(2.0f * u(rng));
    for (auto& x : k) x = from_f32<T>(2.0f * u(rng));
    for (auto& x : v) x = from_f32<T>(u(rng));
    AttnArgs a{};
    a.b = b; a.h = h; a.lq = lq; a.lk = lk; a.d = d;
    double scale = 1.0 / std::sqrt((double)d);
    a.scale_log2 = (float)(scale * 1.4426950408889634);
    // q stored as [B, L, H, D] and read as the view [B, H, L, D].
    if (q_transposed) { a.qs[0] = (int64_t)lq * h * d; a.qs[1] = d; a.qs[2] = (int64_t)h * d; a.qs[3] = 1; }
    else { a.qs[0] = (int64_t)h * lq * d; a.qs[1] = (int64_t)lq * d; a.qs[2] = d; a.qs[3] = 1; }
    a.ks[0] = a.vs[0] = (int64_t)h * lk * d; a.ks[1] = a.vs[1] = (int64_t)lk * d; a.ks[2] = a.vs[2] = d; a.ks[3] = a.vs[3] = 1;
    // Mask [B, 1, Lq, Lk] broadcast over heads: −inf on a pattern, a whole −inf row (row 3), biases.
    std::vector<float> mask;
    if (masked) {
        mask.resize((size_t)b * lq * lk);
        for (int bi = 0; bi < b; ++bi)
            for (int r = 0; r < lq; ++r)
                for (int j = 0; j < lk; ++j)
                    mask[((size_t)bi * lq + r) * lk + j] = (r == 3 || (r + j) % 5 == 0) ? -INFINITY : 0.5f * u(rng);
        a.ms[0] = (int64_t)lq * lk; a.ms[1] = 0; a.ms[2] = lk; a.ms[3] = 1;
    }
    {
    std::vector<T> out(nq, from_f32<T>(12345.0f));
    std::vector<float> lse((size_t)b * h * lq, 12345.0f);
    const float* mp = masked ? mask.data() : nullptr;
    int dp = d <= 16 ? 16 : d <= 32 ? 32 : d <= 48 ? 48 : d <= 64 ? 64 : d <= 80 ? 80 : d <= 96 ? 96 : d <= 128 ? 128 : 160;
    if (v3) switch (dp) {
        case 16: launch_v3<T, 16>(a, q.data(), k.data(), v.data(), out.data(), lse.data()); break;
        case 32: launch_v3<T, 32>(a, q.data(), k.data(), v.data(), out.data(), lse.data()); break;
        case 48: launch_v3<T, 48>(a, q.data(), k.data(), v.data(), out.data(), lse.data()); break;
        case 64: launch_v3<T, 64>(a, q.data(), k.data(), v.data(), out.data(), lse.data()); break;
        case 80: launch_v3<T, 80>(a, q.data(), k.data(), v.data(), out.data(), lse.data()); break;
        default: std::printf("FAIL lab v3 has no head dim %d\n", d); ++failures; return;
    }
    else switch (dp) {
        case 16: launch_dp<T, 16>(a, q.data(), k.data(), v.data(), mp, out.data(), lse.data()); break;
        case 32: launch_dp<T, 32>(a, q.data(), k.data(), v.data(), mp, out.data(), lse.data()); break;
        case 48: launch_dp<T, 48>(a, q.data(), k.data(), v.data(), mp, out.data(), lse.data()); break;
        case 64: launch_dp<T, 64>(a, q.data(), k.data(), v.data(), mp, out.data(), lse.data()); break;
        case 80: launch_dp<T, 80>(a, q.data(), k.data(), v.data(), mp, out.data(), lse.data()); break;
        case 96: launch_dp<T, 96>(a, q.data(), k.data(), v.data(), mp, out.data(), lse.data()); break;
        case 128: launch_dp<T, 128>(a, q.data(), k.data(), v.data(), mp, out.data(), lse.data()); break;
        default: launch_dp<T, 160>(a, q.data(), k.data(), v.data(), mp, out.data(), lse.data()); break;
    }
    double eps = eps_of((const T*)nullptr), worst = 0, worst_lse = 0;
    size_t bad = 0;
    std::vector<double> sc(lk);
    for (int bi = 0; bi < b; ++bi)
        for (int hi = 0; hi < h; ++hi)
            for (int r = 0; r < lq; ++r) {
                double mx = -INFINITY;
                for (int j = 0; j < lk; ++j) {
                    double s = 0;
                    for (int c = 0; c < d; ++c)
                        s += (double)to_f32(q[bi * a.qs[0] + hi * a.qs[1] + r * a.qs[2] + c]) * to_f32(k[bi * a.ks[0] + hi * a.ks[1] + (size_t)j * d + c]);
                    s *= scale;
                    if (masked) s += mask[((size_t)bi * lq + r) * lk + j];
                    sc[j] = s;
                    mx = std::max(mx, s);
                }
                size_t row = ((size_t)bi * h + hi) * lq + r;
                double l = 0;
                if (mx != -INFINITY)
                    for (int j = 0; j < lk; ++j) l += std::exp(sc[j] - mx);
                double ref_lse = mx == -INFINITY ? -INFINITY : mx + std::log(l);
                if (ref_lse == -INFINITY) {
                    if (lse[row] != -INFINITY) ++bad;
                } else {
                    double e = std::fabs(lse[row] - ref_lse);
                    worst_lse = std::max(worst_lse, e);
                    if (!(e <= 1e-4)) ++bad;
                }
                for (int c = 0; c < d; ++c) {
                    double ref = 0, vmax = 0;
                    for (int j = 0; j < lk; ++j) {
                        double vv = to_f32(v[bi * a.vs[0] + hi * a.vs[1] + (size_t)j * d + c]);
                        if (mx != -INFINITY) ref += std::exp(sc[j] - mx) / l * vv;
                        vmax = std::max(vmax, std::fabs(vv));
                    }
                    double got = to_f32(out[(((size_t)bi * lq + r) * h + hi) * d + c]);  // stored [B, Lq, H, D]
                    double allowed = 3 * eps * vmax + 1e-30;
                    double e = std::fabs(got - ref);
                    if (mx == -INFINITY ? got != 0.0 : !(e <= allowed)) ++bad;
                    worst = std::max(worst, e / allowed);
                }
            }
    char name[200];
    std::snprintf(name, sizeof name, "%s%s b%d h%d lq%d lk%d d%d (DP %d)%s%s", v3 ? "lab v3 " : "", dtype, b, h, lq, lk, d, dp, masked ? " masked" : "",
                  q_transposed ? " q[B,L,H,D]" : "");
    std::printf("%-4s %-57s worst err/allowed %.3f, lse |err| %.2e\n", bad ? "FAIL" : "ok", name, worst, worst_lse);
    if (bad) ++failures;
    }
}

template <typename T, int DP>
static void backward_dp(const AttnArgs& a, const T* q, const T* k, const T* v, const float* m, const T* o, const T* dout, const float* lse,
                        float* drow, float* dq, T* dk, T* dv) {
    int rows = a.b * a.h * a.lq;
    ldm_emu::launch(dim3{(unsigned)((rows + 3) / 4), 1, 1}, dim3{128, 1, 1}, [&] { flash_bwd_prep<T>(rows, a.d, o, dout, drow); });
    dim3 grid{(unsigned)((a.lk + FA_BK - 1) / FA_BK), (unsigned)(a.b * a.h), 1};
    ldm_emu::launch(grid, dim3{FA_THREADS, 1, 1}, [&] { flash_backward<T, DP>(a, q, k, v, m, dout, lse, drow, dq, dk, dv); });
}

// Contiguous q/k/v [B,H,L,D]; the mask (optional) hides key j of row r when (r + j) % 4 == 0,
// and all of row 2.
template <typename T, int DP>
static void run_bwd(const char* dtype, int b, int h, int lq, int lk, int d, bool masked) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    size_t nq = (size_t)b * h * lq * d, nk = (size_t)b * h * lk * d;
    std::vector<T> q(nq), k(nk), v(nk), dout(nq);
    for (auto& x : q) x = from_f32<T>(2.0f * u(rng));
    for (auto& x : k) x = from_f32<T>(2.0f * u(rng));
    for (auto& x : v) x = from_f32<T>(u(rng));
    for (auto& x : dout) x = from_f32<T>(u(rng));
    AttnArgs a{};
    a.b = b; a.h = h; a.lq = lq; a.lk = lk; a.d = d;
    double scale = 1.0 / std::sqrt((double)d);
    a.scale_log2 = (float)(scale * 1.4426950408889634);
    a.qs[0] = (int64_t)h * lq * d; a.qs[1] = (int64_t)lq * d; a.qs[2] = d; a.qs[3] = 1;
    a.ks[0] = a.vs[0] = (int64_t)h * lk * d; a.ks[1] = a.vs[1] = (int64_t)lk * d; a.ks[2] = a.vs[2] = d; a.ks[3] = a.vs[3] = 1;
    std::vector<float> mask;
    if (masked) {
        mask.resize((size_t)lq * lk);
        for (int r = 0; r < lq; ++r)
            for (int j = 0; j < lk; ++j) mask[(size_t)r * lk + j] = (r == 2 || (r + j) % 4 == 0) ? -INFINITY : 0.3f * u(rng);
        a.ms[0] = 0; a.ms[1] = 0; a.ms[2] = lk; a.ms[3] = 1;  // [Lq, Lk] broadcast over B and H
    }
    const float* mp = masked ? mask.data() : nullptr;
    std::vector<T> out(nq), dk(nk, from_f32<T>(999.0f)), dv(nk, from_f32<T>(999.0f));
    std::vector<float> lse((size_t)b * h * lq), drow((size_t)b * h * lq), dq(nq, 0.0f);
    launch_dp<T, DP>(a, q.data(), k.data(), v.data(), mp, out.data(), lse.data());
    // the forward stores [B, Lq, H, D]; the backward reads o contiguous [B, H, Lq, D] (the host's dense())
    std::vector<T> o_bhld(nq);
    for (int bi = 0; bi < b; ++bi)
        for (int hi = 0; hi < h; ++hi)
            for (int r = 0; r < lq; ++r)
                for (int c = 0; c < d; ++c) o_bhld[(((size_t)bi * h + hi) * lq + r) * d + c] = out[(((size_t)bi * lq + r) * h + hi) * d + c];
    backward_dp<T, DP>(a, q.data(), k.data(), v.data(), mp, o_bhld.data(), dout.data(), lse.data(), drow.data(), dq.data(), dk.data(), dv.data());

    auto f = [](T x) { return (double)to_f32(x); };
    std::vector<double> rq(nq, 0.0), rk(nk, 0.0), rv(nk, 0.0);
    std::vector<double> P(lk), dP(lk);
    for (int bh = 0; bh < b * h; ++bh)
        for (int r = 0; r < lq; ++r) {
            const size_t qrow = ((size_t)bh * lq + r) * d;
            double mx = -INFINITY;
            for (int j = 0; j < lk; ++j) {
                double s = 0;
                for (int c = 0; c < d; ++c) s += f(q[qrow + c]) * f(k[((size_t)bh * lk + j) * d + c]);
                s = s * scale + (masked ? mask[(size_t)r * lk + j] : 0.0);
                P[j] = s;
                mx = std::max(mx, s);
            }
            if (mx == -INFINITY) continue;  // no mass: every gradient of this row is 0
            double l = 0;
            for (int j = 0; j < lk; ++j) l += (P[j] = std::exp(P[j] - mx));
            double D = 0;
            std::vector<double> o(d, 0.0);
            for (int j = 0; j < lk; ++j) {
                P[j] /= l;
                for (int c = 0; c < d; ++c) o[c] += P[j] * f(v[((size_t)bh * lk + j) * d + c]);
            }
            for (int c = 0; c < d; ++c) D += o[c] * f(dout[qrow + c]);
            for (int j = 0; j < lk; ++j) {
                double dp = 0;
                for (int c = 0; c < d; ++c) dp += f(dout[qrow + c]) * f(v[((size_t)bh * lk + j) * d + c]);
                double ds = P[j] * (dp - D);
                for (int c = 0; c < d; ++c) {
                    size_t kc = ((size_t)bh * lk + j) * d + c;
                    rv[kc] += P[j] * f(dout[qrow + c]);
                    rk[kc] += scale * ds * f(q[qrow + c]);
                    rq[qrow + c] += scale * ds * f(k[kc]);
                }
            }
        }
    double eps = eps_of((const T*)nullptr);
    bool ok = true;
    char name[160];
    std::snprintf(name, sizeof name, "%s b%d h%d lq%d lk%d d%d (DP %d)%s", dtype, b, h, lq, lk, d, DP, masked ? " masked" : "");
    std::string line;
    auto cmp = [&](const char* what, auto get, const std::vector<double>& ref) {
        double mref = 0, merr = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
            mref = std::max(mref, std::fabs(ref[i]));
            double e = std::fabs(get(i) - ref[i]);
            merr = std::isnan(e) ? INFINITY : std::max(merr, e);
        }
        double ratio = merr / (8 * eps * mref);
        ok = ok && ratio <= 1.0;
        char buf[64];
        std::snprintf(buf, sizeof buf, " %s %.3f", what, ratio);
        line += buf;
    };
    cmp("dq", [&](size_t i) { return (double)dq[i]; }, rq);
    cmp("dk", [&](size_t i) { return f(dk[i]); }, rk);
    cmp("dv", [&](size_t i) { return f(dv[i]); }, rv);
    std::printf("%-4s backward %-51s err/allowed%s\n", ok ? "ok" : "FAIL", name, line.c_str());
    if (!ok) ++failures;
}

int main() {
    run<__half>("f16 ", 1, 2, 70, 77, 40, false, true);     // SD cross-attention shape class (text keys)
    run<__nv_bfloat16>("bf16", 1, 2, 70, 77, 40, true, false);
    run<__half>("f16 ", 1, 1, 130, 130, 80, true, true);    // self-attention, two key blocks + a tail
    run<__nv_bfloat16>("bf16", 2, 1, 65, 64, 64, false, false);
    run<__half>("f16 ", 1, 1, 64, 100, 160, false, false);
    run<__nv_bfloat16>("bf16", 1, 1, 33, 50, 128, true, true);
    run<__half>("f16 ", 1, 3, 17, 9, 5, true, false);       // odd head dim, fewer keys than a block
    run<__nv_bfloat16>("bf16", 1, 1, 20, 150, 96, false, false);
    // lab variant 3: text keys (a partial last block of 13), 3 query blocks at head dim 40 with a
    // query tail, 32-key blocks from head dim 64 on (a tail of 2 at 80, an exact multiple at 64),
    // no keys at all, and the small head dims
    run<__half>("f16 ", 1, 2, 70, 77, 40, false, true, true);
    run<__nv_bfloat16>("bf16", 1, 1, 300, 200, 40, false, false, true);
    run<__half>("f16 ", 1, 1, 130, 130, 80, false, true, true);
    run<__nv_bfloat16>("bf16", 2, 1, 65, 64, 64, false, false, true);
    run<__half>("f16 ", 1, 1, 40, 0, 48, false, false, true);
    run<__nv_bfloat16>("bf16", 1, 2, 40, 50, 16, false, false, true);
    run<__half>("f16 ", 1, 1, 40, 70, 32, false, false, true);
    run_bwd<__half, 48>("f16 ", 1, 2, 70, 77, 40, true);    // SD head dim 40, text keys, masked
    run_bwd<__nv_bfloat16, 64>("bf16", 2, 1, 130, 70, 64, false);
    run_bwd<__half, 80>("f16 ", 1, 1, 45, 130, 80, true);   // 32-query blocks, three key blocks
    run_bwd<__nv_bfloat16, 16>("bf16", 1, 2, 9, 5, 7, false);
    run_bwd<__half, 128>("f16 ", 1, 1, 33, 40, 128, false);
    std::printf("%s\n", failures ? "attention emulation: FAILED" : "attention emulation: all cases pass");
    return failures ? 1 : 0;
}
