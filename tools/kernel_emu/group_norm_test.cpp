// kernels/norm.cu's channels-last group_norm apply (gn_apply_nhwc: x [N, C, S] normalised and
// written as [N, S, C] through a 32×32 tile) against the NCHW apply (gn_apply) on the CPU
// emulator: every value must be the NCHW kernel's value, to the bit, at its transposed place —
// with and without the fused SiLU and the affine parameters, for channel and pixel counts that end
// mid-tile and several images. The statistics are given (the apply does not compute them).
#include "../../kernels/norm.cu"

#include <random>

template <typename T>
static int run(const char* dtype, int N, int C, int S, int groups, bool silu, bool affine) {
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> u(-3.0f, 3.0f);
    std::vector<T> x((size_t)N * C * S), w(C), b(C), y_nchw(x.size()), y_nhwc(x.size());
    for (auto& v : x) v = from_f32<T>(u(rng));
    for (int c = 0; c < C; ++c) { w[c] = from_f32<T>(u(rng)); b[c] = from_f32<T>(u(rng)); }
    std::vector<float> stats(2 * (size_t)N * groups);
    for (size_t i = 0; i < stats.size(); i += 2) { stats[i] = 0.3f * u(rng); stats[i + 1] = 0.5f + std::fabs(u(rng)); }
    const T* wp = affine ? w.data() : nullptr;
    const T* bp = affine ? b.data() : nullptr;
    int64_t total = (int64_t)N * C * S, cpg = C / groups;
    ldm_emu::launch(dim3{(unsigned)((total + 127) / 128), 1, 1}, dim3{128, 1, 1},
                    [&] { gn_apply<T, 1>(total, C, S, cpg, silu, x.data(), wp, bp, stats.data(), y_nchw.data()); });
    ldm_emu::launch(dim3{(unsigned)((S + 31) / 32), (unsigned)((C + 31) / 32), (unsigned)N}, dim3{32, 8, 1},
                    [&] { gn_apply_nhwc<T>(C, S, cpg, silu, x.data(), wp, bp, stats.data(), y_nhwc.data()); });
    size_t bad = 0;
    for (int n = 0; n < N; ++n)
        for (int c = 0; c < C; ++c)
            for (int p = 0; p < S; ++p) {
                T a = y_nchw[((size_t)n * C + c) * S + p], z = y_nhwc[((size_t)n * S + p) * C + c];
                bad += std::memcmp(&a, &z, sizeof(T)) != 0;
            }
    std::printf("%-4s %s [%d, %d, %d] groups %d%s%s: %zu of %zu values differ\n", bad ? "FAIL" : "ok", dtype, N, C, S, groups, silu ? " +silu" : "",
                affine ? " +affine" : "", bad, x.size());
    return bad ? 1 : 0;
}

int main() {
    int failures = run<__half>("f16 ", 2, 40, 70, 8, true, true) + run<__nv_bfloat16>("bf16", 1, 64, 64, 32, false, true) +
                   run<__half>("f16 ", 3, 16, 33, 4, true, false) + run<float>("f32 ", 1, 96, 9, 32, false, false);
    std::printf("%s\n", failures ? "group_norm emulation: FAILED" : "group_norm emulation: all cases pass");
    return failures ? 1 : 0;
}
