// kernels/norm.cu's group_norm forward on the CPU emulator, both launches as the host makes them
// (src/backend/cuda/norm.rs): gn_partial (chunk statistics, 16-byte or scalar loads), then the
// apply, which merges the partials itself — NCHW with 16-byte and with scalar loads, and the
// channels-last gn_apply_nhwc with one and with several pixel tiles per block — against an f64
// reference of group_norm (mean and biased variance per (n, group), affine, optional SiLU). Shapes
// with odd sizes, channel and pixel counts that end mid-tile, units that a 32-channel tile cuts,
// 1 to 40 chunks per unit (some empty), x misaligned for 16-byte loads, f32/f16/bf16, and with a
// shift per (n, channel) added before the norm (the ResBlock's h + emb; its rows `C + 3` apart, as
// a column slice of the UNet's stacked embedding projections is), whose reference is the norm of
// the f64 sum.
//
// Tolerance, per value: |y − ref| ≤ 1e-5·(1 + |x̂·w| + |b|) + r·|ref|.
//   1e-5: f32 statistics and arithmetic. The computed terms (x̂·w and b, before the SiLU, whose
//   slope is at most 1.1) carry ~10 roundings of 6e-8 each; the mean's own rounding error (|μ| ~ 5
//   here, σ ~ 1.7) adds ~3e-7 to x̂ — together ~1e-6, so 1e-5 leaves 10× slack and no more.
//   r: the output's rounding to its dtype, half an ulp relative: 0 (f32), 2⁻¹¹ (f16: 11 significant bits), 2⁻⁸ (bf16: 8).
// Exact, bit for bit: the 16-byte and the scalar NCHW apply, and the channels-last apply at the
// transposed place, all from the same partials — they share gn_unit_stats and GnChannel; and the
// channels-last copy of x that the apply can write beside its output equals x.
#include "../../kernels/norm.cu"

#include <random>
#include <string>

template <typename T> constexpr double out_rounding = 0.0;
template <> constexpr double out_rounding<__half> = 1.0 / 2048;
template <> constexpr double out_rounding<__nv_bfloat16> = 1.0 / 256;

struct Case {
    int N, C, S, G, splits, blocks;  // blocks: per unit, of the NCHW apply
    bool silu, affine;
    int misalign;                    // x starts this many elements past a 16-byte boundary
    int tiles;                       // pixel tiles per block of the second channels-last run
    bool shifted = false;            // a shift[n, c] added before the norm
};

template <typename T>
static int run(const char* dtype, const Case& k) {
    const int N = k.N, C = k.C, S = k.S, G = k.G, cpg = C / G, units = N * G;
    const int64_t count = (int64_t)cpg * S, total = (int64_t)N * C * S;
    const float eps = 1e-5f;
    std::mt19937 rng(11 + C + S);
    std::uniform_real_distribution<float> u(-3.0f, 3.0f);
    std::vector<T> xbuf(total + 8), w(C), b(C);
    T* x = xbuf.data() + k.misalign;
    // |μ| ≫ σ in places: a per-channel offset around 5
    for (int64_t i = 0; i < total; ++i) x[i] = from_f32<T>(5.0f + 0.1f * (float)(i / S % C) + u(rng));
    for (int c = 0; c < C; ++c) { w[c] = from_f32<T>(u(rng)); b[c] = from_f32<T>(u(rng)); }
    const T* wp = k.affine ? w.data() : nullptr;
    const T* bp = k.affine ? b.data() : nullptr;
    const int64_t shift_rs = C + 3;
    std::vector<T> shift_buf((size_t)N * shift_rs);
    for (auto& v : shift_buf) v = from_f32<T>(2.0f * u(rng));
    const T* sh = k.shifted ? shift_buf.data() : nullptr;
    auto shift_at = [&](int n, int c) { return k.shifted ? (double)to_f32(shift_buf[(size_t)n * shift_rs + c]) : 0.0; };

    std::vector<float> part(3 * (size_t)units * k.splits, std::nanf(""));  // a partial left unwritten shows
    ldm_emu::launch(dim3{(unsigned)units, (unsigned)k.splits, 1}, dim3{256, 1, 1}, [&] { gn_partial<T>(count, C, S, cpg, k.splits, x, sh, shift_rs, part.data()); });

    constexpr int V = 16 / sizeof(T);
    const bool vec = S % V == 0 && k.misalign % V == 0;  // the host's condition (y is aligned here)
    std::vector<T> y_scalar(total), y_vec(total), y_nhwc[2] = {std::vector<T>(total), std::vector<T>(total)};
    ldm_emu::launch(dim3{(unsigned)units, (unsigned)k.blocks, 1}, dim3{256, 1, 1},
                    [&] { gn_apply<T, 1>(count, C, S, cpg, k.splits, k.silu, eps, part.data(), x, sh, shift_rs, wp, bp, y_scalar.data()); });
    if (vec)
        ldm_emu::launch(dim3{(unsigned)units, (unsigned)k.blocks, 1}, dim3{256, 1, 1},
                        [&] { gn_apply<T, V>(count, C, S, cpg, k.splits, k.silu, eps, part.data(), x, sh, shift_rs, wp, bp, y_vec.data()); });
    const int tiles[2] = {1, k.tiles}, all = (S + 31) / 32;
    std::vector<T> x_copy(total);  // the second channels-last run also writes x channels-last
    for (int r = 0; r < 2; ++r)
        ldm_emu::launch(dim3{(unsigned)((all + tiles[r] - 1) / tiles[r]), (unsigned)((C + 31) / 32), (unsigned)N}, dim3{32, 8, 1}, [&] {
            gn_apply_nhwc<T>(C, S, cpg, k.splits, tiles[r], k.silu, eps, part.data(), x, sh, shift_rs, wp, bp, y_nhwc[r].data(), r == 1 ? x_copy.data() : nullptr);
        });

    size_t bad = 0, differ = 0;
    double worst = 0.0;  // the largest |y − ref| / tolerance
    for (int n = 0; n < N; ++n)
        for (int g = 0; g < G; ++g) {
            const T* xu = x + ((int64_t)n * G + g) * count;
            auto xs = [&](int64_t j) { return (double)to_f32(xu[j]) + shift_at(n, g * cpg + (int)(j / S)); };
            double mean = 0.0, var = 0.0;
            for (int64_t j = 0; j < count; ++j) mean += xs(j);
            mean /= (double)count;
            for (int64_t j = 0; j < count; ++j) var += (xs(j) - mean) * (xs(j) - mean);
            const double rstd = 1.0 / std::sqrt(var / (double)count + eps);
            for (int cl = 0; cl < cpg; ++cl)
                for (int p = 0; p < S; ++p) {
                    const int c = g * cpg + cl;
                    const int64_t i = ((int64_t)n * C + c) * S + p;
                    const double wc = k.affine ? to_f32(w[c]) : 1.0, bc = k.affine ? to_f32(b[c]) : 0.0;
                    const double xw = ((double)to_f32(x[i]) + shift_at(n, c) - mean) * rstd * wc;
                    double ref = xw + bc;
                    if (k.silu) ref /= 1.0 + std::exp(-ref);
                    const double tol = 1e-5 * (1.0 + std::fabs(xw) + std::fabs(bc)) + out_rounding<T> * std::fabs(ref);
                    const double err = std::fabs(to_f32(y_scalar[i]) - ref) / tol;
                    worst = std::max(worst, err);
                    bad += !(err <= 1.0);
                    const T a = y_scalar[i];
                    const int64_t t = ((int64_t)n * S + p) * C + c;
                    differ += (vec && std::memcmp(&a, &y_vec[i], sizeof(T)) != 0) + (std::memcmp(&a, &y_nhwc[0][t], sizeof(T)) != 0) +
                              (std::memcmp(&a, &y_nhwc[1][t], sizeof(T)) != 0) + (std::memcmp(&x[i], &x_copy[t], sizeof(T)) != 0);
                }
        }
    const bool fail = bad || differ;
    std::printf("%-4s %s [%d, %d, %d] groups %d, %d chunks%s%s%s%s: %zu of %lld values off (worst %.2f of tolerance); "
                "%s scalar, nhwc tiles 1 and %d, x copied channels-last: %zu differ\n",
                fail ? "FAIL" : "ok", dtype, N, C, S, G, k.splits, k.shifted ? " +shift" : "", k.silu ? " +silu" : "", k.affine ? " +affine" : "",
                k.misalign ? " x misaligned" : "", bad, (long long)total, worst, vec ? "nchw 16-byte =" : "nchw", k.tiles, differ);
    return fail ? 1 : 0;
}

int main() {
    int failures = 0;
    //                               N    C    S   G splits blocks silu  affine misalign tiles
    failures += run<__half>("f16 ", {2, 40, 70, 8, 3, 1, true, true, 0, 2});          // scalar everywhere (S, count odd for 16 bytes)
    failures += run<__nv_bfloat16>("bf16", {1, 64, 64, 16, 1, 1, false, true, 0, 2});  // one chunk
    failures += run<__half>("f16 ", {1, 16, 33, 2, 40, 1, true, false, 0, 2});         // > 32 chunks: a lane merges two; 7 empty
    failures += run<float>("f32 ", {1, 96, 9, 16, 2, 1, false, false, 0, 1});
    failures += run<float>("f32 ", {1, 64, 256, 8, 7, 2, true, true, 0, 3});           // 16-byte loads, 2 blocks a unit
    failures += run<float>("f32 ", {1, 64, 256, 8, 7, 2, true, true, 1, 3});           // the same, x misaligned: scalar
    failures += run<__half>("f16 ", {1, 64, 320, 2, 5, 1, true, true, 0, 3});          // 1280 vectors: a block loops
    failures += run<__nv_bfloat16>("bf16", {1, 48, 100, 2, 37, 3, false, true, 0, 2});  // 16-byte chunks, 3 left empty
    failures += run<__nv_bfloat16>("bf16", {1, 48, 100, 2, 37, 3, true, true, 3, 2});   // the same, misaligned
    failures += run<float>("f32 ", {1, 50, 45, 50, 1, 1, true, true, 0, 2});           // a unit per channel: 32 per tile
    failures += run<__half>("f16 ", {2, 96, 40, 2, 4, 2, true, true, 0, 2});           // 48 channels a unit: a tile cuts one
    // shifted (the ResBlock's h + emb): 16-byte loads, scalar loads, several units per tile, chunks
    // that end mid-channel, a unit cut by a tile, f32/f16/bf16
    failures += run<__half>("f16 ", {2, 64, 256, 32, 6, 2, true, true, 0, 2, true});   // SD's 32 groups, 2 channels a unit
    failures += run<__half>("f16 ", {2, 40, 70, 8, 3, 1, true, true, 0, 2, true});     // scalar everywhere
    failures += run<__nv_bfloat16>("bf16", {2, 96, 40, 2, 4, 2, false, true, 0, 2, true});
    failures += run<float>("f32 ", {1, 64, 256, 8, 7, 2, true, true, 1, 3, true});     // misaligned x
    failures += run<float>("f32 ", {2, 48, 24, 4, 5, 1, true, false, 0, 1, true});     // 24 pixels: vectors straddle no channel
    std::printf("%s\n", failures ? "group_norm emulation: FAILED" : "group_norm emulation: all cases pass");
    return failures ? 1 : 0;
}
