// kernels/elementwise.cu's unary, affine, binary and copy loops on the CPU emulator, in every path:
// the 16-byte Pack path (contiguous, aligned; lengths that leave a tail), a contiguous view whose
// offset breaks the alignment (element path), a broadcast operand with 32-bit index arithmetic
// (Strided.contiguous == 2), and the same with 64-bit arithmetic (0). Each output must equal, to
// the bit, the per-element formula applied on the host: the paths differ only in how they
// address memory, never in the arithmetic.
#include "../../kernels/elementwise.cu"

#include <random>

static Strided dense(int64_t offset) {
    Strided s{};
    s.rank = 1;
    s.contiguous = 1;
    s.offset = offset;
    s.shape[0] = 1;
    s.strides[0] = 1;
    return s;
}

// [rows, cols] reading a [cols] vector broadcast over rows (a bias): stride 0 along rows.
static Strided row_broadcast(int64_t rows, int64_t cols, int32_t mode) {
    Strided s{};
    s.rank = 2;
    s.contiguous = mode;
    s.offset = 0;
    s.shape[0] = rows;
    s.shape[1] = cols;
    s.strides[0] = 0;
    s.strides[1] = 1;
    return s;
}

template <typename T>
static std::vector<T> values(size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u(-3.0f, 3.0f);
    std::vector<T> v(n);
    for (auto& x : v) x = from_f32<T>(u(rng));
    return v;
}

template <typename T>
static bool same_bits(const T& a, const T& b) { return std::memcmp(&a, &b, sizeof(T)) == 0; }

static int report(const char* what, const char* dtype, int64_t n, size_t bad) {
    std::printf("%-4s %-34s %s n %-5lld: %zu wrong\n", bad ? "FAIL" : "ok", what, dtype, (long long)n, bad);
    return bad ? 1 : 0;
}

static dim3 grid_for(int64_t n) { return dim3{(unsigned)std::max<int64_t>(1, std::min<int64_t>((n + 127) / 128, 3)), 1, 1}; }

template <typename T>
static int run(const char* dtype) {
    int failures = 0;
    for (int64_t n : {1, 7, 64, 1000, 1003}) {
        // x has one spare element in front: offset 0 is aligned, offset 1 is not (for f32/f16/bf16)
        auto x = values<T>(n + 1, 1), b = values<T>(n + 1, 2);
        for (int64_t off : {0, 1}) {
            std::vector<T> y(n), want(n);
            Strided xs = dense(off);
            const char* path = off == 0 ? "packed" : "unaligned";
            if (packable(xs, x.data()) != (off == 0) || !packable(y.data())) {
                std::printf("FAIL the test's own layout: offset %lld is %s\n", (long long)off, packable(xs, x.data()) ? "packable" : "not packable");
                ++failures;
            }
            auto check = [&](const char* op) {
                size_t bad = 0;
                for (int64_t i = 0; i < n; ++i) bad += !same_bits(y[i], want[i]);
                char what[64];
                std::snprintf(what, sizeof what, "%s, %s", op, path);
                failures += report(what, dtype, n, bad);
            };
            ldm_emu::launch(grid_for(n), dim3{128, 1, 1}, [&] { unary_loop<T, U_SILU>(n, xs, x.data(), y.data()); });
            for (int64_t i = 0; i < n; ++i) want[i] = from_f32<T>(unary_f<U_SILU>(to_f32(x[off + i])));
            check("silu");
            ldm_emu::launch(grid_for(n), dim3{128, 1, 1}, [&] { affine_loop<T>(n, xs, x.data(), y.data(), 0.7f, -0.25f); });
            for (int64_t i = 0; i < n; ++i) want[i] = from_f32<T>(to_f32(x[off + i]) * 0.7f + -0.25f);
            check("affine");
            ldm_emu::launch(grid_for(n), dim3{128, 1, 1}, [&] { copy_loop<T>(n, xs, x.data(), y.data()); });
            for (int64_t i = 0; i < n; ++i) want[i] = x[off + i];
            check("copy");
            Strided bs = dense(off);
            ldm_emu::launch(grid_for(n), dim3{128, 1, 1}, [&] { binary_loop<T, B_MUL>(n, xs, x.data(), bs, b.data(), y.data()); });
            for (int64_t i = 0; i < n; ++i) want[i] = from_f32<T>(to_f32(x[off + i]) * to_f32(b[off + i]));
            check("mul");
        }
    }
    // a bias broadcast over rows, with 32- and 64-bit index arithmetic
    for (int32_t mode : {2, 0}) {
        const int64_t rows = 13, cols = 37, n = rows * cols;
        auto x = values<T>(n, 3), bias = values<T>(cols, 4);
        std::vector<T> y(n);
        Strided xs = dense(0), bs = row_broadcast(rows, cols, mode);
        ldm_emu::launch(grid_for(n), dim3{128, 1, 1}, [&] { binary_loop<T, B_ADD>(n, xs, x.data(), bs, bias.data(), y.data()); });
        size_t bad = 0;
        for (int64_t i = 0; i < n; ++i) bad += !same_bits(y[i], from_f32<T>(to_f32(x[i]) + to_f32(bias[i % cols])));
        failures += report(mode == 2 ? "add bias, 32-bit index arithmetic" : "add bias, 64-bit index arithmetic", dtype, n, bad);
    }
    return failures;
}

int main() {
    int failures = run<float>("f32 ") + run<__half>("f16 ") + run<__nv_bfloat16>("bf16");
    std::printf("%s\n", failures ? "elementwise emulation: FAILED" : "elementwise emulation: all cases pass");
    return failures ? 1 : 0;
}
