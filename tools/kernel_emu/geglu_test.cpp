// kernels/elementwise.cu's fused GEGLU gate on the CPU emulator against f64: x [rows, 2·inner] →
// x[:, :inner] · gelu_erf(x[:, inner:]), f32 and bf16, sizes that do not fill the last block.
// Also its tiled transpose (the conv's channels-last copies), which must move every value exactly.
// Tolerance, relative to max(1, |ref|): f32 1e-6 (erff's few-ulp error); f16/bf16 the one output
// rounding (at most 2^-11 / 2^-8 of the value) plus that 1e-6.
#include "../../kernels/elementwise.cu"

#include <random>

template <typename T>
static int run(const char* name, int rows, int inner, double tol) {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-4.0f, 4.0f);
    std::vector<T> x((size_t)rows * 2 * inner), out((size_t)rows * inner);
    for (auto& v : x) v = from_f32<T>(u(rng));
    int64_t n = (int64_t)rows * inner;
    ldm_emu::launch(dim3{(unsigned)((n + 127) / 128), 1, 1}, dim3{128, 1, 1}, [&] { geglu_loop<T>(n, inner, x.data(), out.data()); });
    double worst = 0;
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < inner; ++j) {
            double a = to_f32(x[(size_t)r * 2 * inner + j]), b = to_f32(x[(size_t)r * 2 * inner + inner + j]);
            double ref = a * 0.5 * b * (1.0 + std::erf(b / std::sqrt(2.0)));
            double err = std::fabs(to_f32(out[(size_t)r * inner + j]) - ref) / std::max(1.0, std::fabs(ref));
            worst = std::max(worst, err);
        }
    bool ok = worst <= tol;
    std::printf("%-4s geglu %s rows %d inner %d: worst relative error %.2e (allowed %.1e)\n", ok ? "ok" : "FAIL", name, rows, inner, worst, tol);
    return ok ? 0 : 1;
}

// [B, R, S] → [B, S, R] through transpose_tile, shapes that end mid-tile: exact.
template <typename T>
static int run_transpose(const char* name, int B, int R, int S) {
    std::vector<T> x((size_t)B * R * S), y(x.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = from_f32<T>((float)(i % 2039) - 1000.0f);
    ldm_emu::launch(dim3{(unsigned)((S + 31) / 32), (unsigned)((R + 31) / 32), (unsigned)B}, dim3{32, 8, 1}, [&] { transpose_tile<T>(R, S, x.data(), y.data(), [](int64_t, T v) -> T { return v; }); });
    size_t bad = 0;
    for (int b = 0; b < B; ++b)
        for (int r = 0; r < R; ++r)
            for (int s = 0; s < S; ++s) bad += to_f32(y[((size_t)b * S + s) * R + r]) != to_f32(x[((size_t)b * R + r) * S + s]);
    std::printf("%-4s transpose %s [%d, %d, %d]: %zu of %zu values misplaced\n", bad ? "FAIL" : "ok", name, B, R, S, bad, x.size());
    return bad ? 1 : 0;
}

int main() {
    int failures = run_transpose<__half>("f16 ", 2, 40, 70) + run_transpose<float>("f32 ", 3, 33, 9) + run_transpose<__nv_bfloat16>("bf16", 1, 64, 64) +
                   run<float>("f32 ", 7, 40, 1e-6) + run<__nv_bfloat16>("bf16", 3, 1280, std::ldexp(1.0, -8) + 1e-6) +
                   run<__half>("f16 ", 5, 33, std::ldexp(1.0, -11) + 1e-6);
    std::printf("%s\n", failures ? "geglu emulation: FAILED" : "geglu emulation: all cases pass");
    return failures ? 1 : 0;
}
