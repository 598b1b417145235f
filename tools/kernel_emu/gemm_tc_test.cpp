// kernels/gemm_tc.cu run on the CPU emulator (ldm_emu.h) against an f64 product of the same
// (already rounded) f16/bf16 inputs: every one of the nine operand-path pairs (A: v/k/m, B: v/k/n,
// see the kernel's header) on layouts that make that path the host's choice, ragged 64×64 tiles,
// k shorter than one slice and not a multiple of 8, batches with a broadcast operand, and the
// fused bias — then the layouts the models produce: Linear forward (x·Wᵀ), its two gradients
// (dY·W, dYᵀ·X), attention's Q·Kᵀ and P·V.
//
// Every vv case also runs through the 128×128 kernel the host takes for large grids
// (gemm_tc_wide_vv): batches, a broadcast operand and rows padded past k included — and through
// the kernel lab's variants 3 and 4 of it (tools/kernel_lab/gemm_tc_ring.cu: a 3-stage cp.async
// ring; 4 reads its fragments with ldmatrix) and 5 (gemm_tc_wgmma_sm90a.cu: the ring feeding wgmma).
//
// Then the 128×128 kernel with GEGLU fused into its epilogue (gemm_tc_wide_geglu, run_geglu).
//
// Tolerance per element, as tools/kernel_emu/conv_tc_test.cpp: |out − ref| ≤ 2·eps(T)·|ref| +
// 1e-5·(Σ|a·b| + 1). Prints one line per case; exit status 1 if any case fails.
#include "../../kernels/gemm_tc.cu"
#include "../kernel_lab/gemm_tc_ring.cu"
#include "../kernel_lab/gemm_tc_wgmma_sm90a.cu"

#include <random>
#include <string>

static std::mt19937 rng(4321);
static int failures = 0;

static double eps_of(const __half*) { return std::ldexp(1.0, -11); }
static double eps_of(const __nv_bfloat16*) { return std::ldexp(1.0, -8); }

// An operand's memory: `len` random elements, most of them never read (the gaps of strided views).
template <typename T>
static std::vector<T> random_buffer(size_t len) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<T> v(len);
    for (auto& x : v) x = from_f32<T>(u(rng));
    return v;
}

static Strided batch_of(int batch, int64_t stride) {
    Strided s{};
    s.rank = 1;
    s.contiguous = 0;
    s.offset = 0;
    s.shape[0] = batch;
    s.strides[0] = stride;
    return s;
}

// One matrix product: A(m, k) = a[z·a_bs + m·a_rs + k·a_cs], B(k, n) = b[z·b_bs + k·b_rs + n·b_cs].
struct Case {
    std::string name;
    char ak, bk;
    int m, n, k, batch;
    int64_t a_rs, a_cs, a_bs, b_rs, b_cs, b_bs;
    bool bias;
    bool res = false;  // a residual of C's shape added in the epilogue (TcGemmDims::res)
};

template <typename T>
static void launch_kind(char ak, char bk, dim3 grid, const TcGemmDims& d, const T* a, const Strided& ab, const T* b, const Strided& bb, const T* bias, T* c) {
    auto go = [&](auto kernel) { ldm_emu::launch(grid, dim3{TC_THREADS, 1, 1}, [&] { kernel(d, a, ab, b, bb, bias, c); }); };
#define KIND(A, B) if (ak == A && bk == B) return go(gemm_tc<T, A, B>);
    KIND('v', 'v') KIND('v', 'k') KIND('v', 'n') KIND('k', 'v') KIND('k', 'k') KIND('k', 'n') KIND('m', 'v') KIND('m', 'k') KIND('m', 'n')
#undef KIND
    std::fprintf(stderr, "no kernel %c%c\n", ak, bk);
    std::exit(2);
}

template <typename T>
static void run(const char* dtype, const Case& cs) {
    auto extent = [](int batch, int64_t bs, int rows, int64_t rs, int cols, int64_t cstride) {
        return (size_t)((batch - 1) * bs + (rows - 1) * rs + (cols - 1) * cstride + 1);
    };
    auto a = random_buffer<T>(extent(cs.batch, cs.a_bs, cs.m, cs.a_rs, cs.k, cs.a_cs));
    auto b = random_buffer<T>(extent(cs.batch, cs.b_bs, cs.k, cs.b_rs, cs.n, cs.b_cs));
    auto bias = random_buffer<T>(cs.n);
    std::vector<T> c((size_t)cs.batch * cs.m * cs.n);
    auto resid = random_buffer<T>(cs.res ? c.size() : 0);
    const uint64_t res_addr = cs.res ? (uint64_t)(uintptr_t)resid.data() : 0;
    TcGemmDims d{cs.m, cs.n, cs.k, cs.a_rs, cs.a_cs, cs.b_rs, cs.b_cs, res_addr};
    dim3 grid{(unsigned)((cs.m + TC_BM - 1) / TC_BM), (unsigned)((cs.n + TC_BN - 1) / TC_BN), (unsigned)cs.batch};
    launch_kind<T>(cs.ak, cs.bk, grid, d, a.data(), batch_of(cs.batch, cs.a_bs), b.data(), batch_of(cs.batch, cs.b_bs), cs.bias ? bias.data() : nullptr, c.data());
    // the vv cases also through the 128×128 kernel (gemm_tc_wide_vv), batches and padded rows
    // included, and through the lab's ring variants 3 and 4 of it
    bool wide = cs.ak == 'v' && cs.bk == 'v';
    const char* labels[4] = {"128x128 ", "lab v3  ", "lab v4  ", "lab v5  "};
    std::vector<std::vector<T>> cw(4, std::vector<T>(c.size()));
    if (wide) {
        dim3 grid2{(unsigned)((cs.m + TCW_BM - 1) / TCW_BM), (unsigned)((cs.n + TCW_BN - 1) / TCW_BN), (unsigned)cs.batch};
        const T* bp = cs.bias ? bias.data() : nullptr;
        ldm_emu::launch(grid2, dim3{TCW_THREADS, 1, 1}, [&] {
            gemm_tc_wide<T>(d, a.data(), batch_of(cs.batch, cs.a_bs), b.data(), batch_of(cs.batch, cs.b_bs), bp, cw[0].data());
        });
        dim3 grid3{(unsigned)((cs.m + RING_BM - 1) / RING_BM), (unsigned)((cs.n + RING_BN - 1) / RING_BN), (unsigned)cs.batch};
        ldm_emu::launch(grid3, dim3{RING_THREADS, 1, 1}, [&] {
            gemm_tc_wide_ring<T, false>(d, a.data(), batch_of(cs.batch, cs.a_bs), b.data(), batch_of(cs.batch, cs.b_bs), bp, cw[1].data());
        });
        ldm_emu::launch(grid3, dim3{RING_THREADS, 1, 1}, [&] {
            gemm_tc_wide_ring<T, true>(d, a.data(), batch_of(cs.batch, cs.a_bs), b.data(), batch_of(cs.batch, cs.b_bs), bp, cw[2].data());
        });
        ldm_emu::launch(grid3, dim3{RING_THREADS, 1, 1}, [&] {
            gemm_tc_wide_wgmma<T>(d, a.data(), batch_of(cs.batch, cs.a_bs), b.data(), batch_of(cs.batch, cs.b_bs), bp, cw[3].data());
        });
    }

    double eps = eps_of((const T*)nullptr), worst = 0, worst_w[4] = {0, 0, 0, 0};
    size_t bad = 0, bad_w[4] = {0, 0, 0, 0};
    for (int z = 0; z < cs.batch; ++z)
        for (int i = 0; i < cs.m; ++i)
            for (int j = 0; j < cs.n; ++j) {
                size_t at = ((size_t)z * cs.m + i) * cs.n + j;
                double s = (cs.bias ? to_f32(bias[j]) : 0.0) + (cs.res ? to_f32(resid[at]) : 0.0), mag = 0;
                for (int kk = 0; kk < cs.k; ++kk) {
                    double p = (double)to_f32(a[z * cs.a_bs + i * cs.a_rs + kk * cs.a_cs]) * to_f32(b[z * cs.b_bs + kk * cs.b_rs + j * cs.b_cs]);
                    s += p;
                    mag += std::fabs(p);
                }
                double got = to_f32(c[at]), allowed = 2 * eps * std::fabs(s) + 1e-5 * (mag + 1);
                double err = std::fabs(got - s);
                if (!(err <= allowed)) ++bad;
                worst = std::max(worst, err / allowed);
                for (int v = 0; wide && v < 4; ++v) {
                    double e = std::fabs(to_f32(cw[v][at]) - s);
                    if (!(e <= allowed)) ++bad_w[v];
                    worst_w[v] = std::max(worst_w[v], e / allowed);
                }
            }
    char line[300];
    std::snprintf(line, sizeof line, "%s %c%c %s: [%d] %dx%d·%dx%d%s%s", dtype, cs.ak, cs.bk, cs.name.c_str(), cs.batch, cs.m, cs.k, cs.k, cs.n, cs.bias ? " +bias" : "", cs.res ? " +res" : "");
    std::printf("%-4s %-78s worst err/allowed %.3f\n", bad ? "FAIL" : "ok", line, worst);
    if (bad) ++failures;
    for (int v = 0; wide && v < 4; ++v) {
        std::printf("%-4s %-78s worst err/allowed %.3f\n", bad_w[v] ? "FAIL" : "ok", (std::string(labels[v]) + line).c_str(), worst_w[v]);
        if (bad_w[v]) ++failures;
    }
}

// GEGLU fused into the 128×128 product (gemm_tc_wide_geglu): x [M, K] (rows padded) times W
// [2·inner, K] (value rows, then gate rows; rows padded) + bias, out [M, inner] = value ·
// gelu_erf(gate), against f64. The value and gate sums carry the product's tolerance (no rounding
// between the sum and the gate); the output one rounding: |out − ref| ≤ 2·eps·|ref| +
// |gelu(g)|·tol_v + 1.13·|v|·tol_g (|gelu'| ≤ 1.13).
template <typename T>
static void run_geglu(const char* dtype, const char* name, int m, int inner, int k, bool with_bias) {
    const int n = 2 * inner;
    const int64_t a_rs = k + 8, w_rs = k + 8;
    auto a = random_buffer<T>((size_t)m * a_rs);
    auto w = random_buffer<T>((size_t)n * w_rs);
    auto bias = random_buffer<T>(n);
    std::vector<T> c((size_t)m * inner);
    TcGemmDims d{m, n, k, a_rs, 1, 1, w_rs, 0};
    dim3 grid{(unsigned)((m + TCW_BM - 1) / TCW_BM), (unsigned)((n + TCW_BN - 1) / TCW_BN), 1};
    ldm_emu::launch(grid, dim3{TCW_THREADS, 1, 1}, [&] { gemm_tc_wide_geglu<T>(d, a.data(), w.data(), with_bias ? bias.data() : nullptr, c.data()); });
    const double eps = eps_of((const T*)nullptr);
    double worst = 0;
    size_t bad = 0;
    auto gelu = [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); };
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < inner; ++j) {
            double v = with_bias ? to_f32(bias[j]) : 0.0, g = with_bias ? to_f32(bias[inner + j]) : 0.0, mv = 0, mg = 0;
            for (int kk = 0; kk < k; ++kk) {
                const double x = to_f32(a[i * a_rs + kk]);
                const double pv = x * to_f32(w[j * w_rs + kk]), pg = x * to_f32(w[(inner + j) * w_rs + kk]);
                v += pv, g += pg, mv += std::fabs(pv), mg += std::fabs(pg);
            }
            const double ref = v * gelu(g);
            const double allowed = 2 * eps * std::fabs(ref) + std::fabs(gelu(g)) * 1e-5 * (mv + 1) + 1.13 * std::fabs(v) * 1e-5 * (mg + 1) + 1e-7;
            const double err = std::fabs(to_f32(c[(size_t)i * inner + j]) - ref);
            bad += !(err <= allowed);
            worst = std::max(worst, err / allowed);
        }
    char line[300];
    std::snprintf(line, sizeof line, "%s 128x128 GEGLU %s: %dx%d·%dx%d%s", dtype, name, m, k, k, n, with_bias ? " +bias" : "");
    std::printf("%-4s %-78s worst err/allowed %.3f\n", bad ? "FAIL" : "ok", line, worst);
    if (bad) ++failures;
}

// A layout for which the host picks path `kind` for an operand with `rows` rows and k columns:
// v dense along k with padded, 16-byte aligned rows; k any strides (here: every other element);
// m/n contiguous along the rows (column-major with a padded leading dimension).
static void layout(char kind, int rows, int k, int64_t& rs, int64_t& ks) {
    switch (kind) {
        case 'v': rs = k + 8; ks = 1; break;
        case 'k': rs = 2 * (int64_t)k + 3; ks = 2; break;
        default: rs = 1; ks = rows + 3; break;
    }
}

int main() {
    std::vector<Case> cases;
    // All nine paths, tiles ragged in m and n, k = 48 (one and a half slices), with and without bias.
    for (char ak : {'v', 'k', 'm'})
        for (char bk : {'v', 'k', 'n'}) {
            Case c{"every path", ak, bk, 70, 66, 48, 1, 0, 0, 0, 0, 0, 0, (ak + bk) % 2 == 0};
            layout(ak, c.m, c.k, c.a_rs, c.a_cs);
            int64_t n_rs, n_ks;
            layout(bk, c.n, c.k, n_rs, n_ks);  // Bᵀ's rows are n: B(k, n) = b[n·n_rs + k·n_ks]
            c.b_cs = n_rs;
            c.b_rs = n_ks;
            cases.push_back(c);
        }
    // k not a multiple of 8 (no vector path) and shorter than one slice; a single row and column.
    cases.push_back({"k = 37", 'k', 'n', 65, 129, 37, 1, 37, 1, 0, 129, 1, 0, true});
    cases.push_back({"k = 5, one row", 'k', 'k', 1, 3, 5, 1, 5, 1, 0, 1, 5, 0, false});
    cases.push_back({"k = 8", 'v', 'v', 9, 70, 8, 1, 8, 1, 0, 1, 8, 0, true});
    // Batches: B broadcast (batch stride 0), A with a batch stride past its matrix.
    cases.push_back({"batch, B broadcast", 'v', 'n', 33, 20, 48, 3, 48, 1, 33 * 48 + 16, 20, 1, 0, false});
    // The models' layouts. Linear: x [M, K] · Wᵀ (W [N, K]) + bias, K = 72.
    cases.push_back({"linear x·Wᵀ", 'v', 'v', 130, 70, 72, 1, 72, 1, 0, 1, 72, 0, true});
    // Past one 128×128 tile both ways (the lab variant's), and an odd N (its unpaired stores).
    cases.push_back({"linear, 128-tiles", 'v', 'v', 200, 130, 96, 1, 96, 1, 0, 1, 96, 0, true});
    cases.push_back({"linear, odd N", 'v', 'v', 33, 71, 40, 1, 40, 1, 0, 1, 40, 0, true});
    // A k range of many slices, the last partial (8 slices: lab v3's 3-stage ring wraps twice).
    cases.push_back({"linear, k = 232", 'v', 'v', 136, 72, 232, 1, 232, 1, 0, 1, 232, 0, true});
    cases.push_back({"batch, padded rows, B broadcast", 'v', 'v', 140, 40, 32, 3, 48, 1, 140 * 48, 1, 40, 0, true});
    // A Linear closing a residual connection (y = x·Wᵀ + b + r): 64×64 and 128×128 tiles, an odd N
    // (unpaired stores), batches; and a gathered-operand kernel with one.
    cases.push_back({"linear + residual", 'v', 'v', 200, 130, 96, 1, 96, 1, 0, 1, 96, 0, true, true});
    cases.push_back({"linear + residual, odd N", 'v', 'v', 33, 71, 40, 1, 40, 1, 0, 1, 40, 0, true, true});
    cases.push_back({"batch + residual", 'v', 'v', 140, 40, 32, 3, 48, 1, 140 * 48, 1, 40, 0, false, true});
    cases.push_back({"k = 37 + residual", 'k', 'n', 65, 129, 37, 1, 37, 1, 0, 129, 1, 0, true, true});
    // Its gradients: dX = dY [M, N] · W [N, K]; dW = dYᵀ · X (dY [M', N'], X [M', K']).
    cases.push_back({"linear dY·W", 'k', 'n', 130, 72, 70, 1, 70, 1, 0, 72, 1, 0, false});
    cases.push_back({"linear dYᵀ·X", 'm', 'n', 70, 72, 130, 1, 1, 70, 0, 72, 1, 0, false});
    // Attention: Q [4, 77, 40] · Kᵀ (K [4, 90, 40]); P [4, 77, 90] · V [4, 90, 40].
    cases.push_back({"attention Q·Kᵀ", 'v', 'v', 77, 90, 40, 4, 40, 1, 77 * 40, 1, 40, 90 * 40, false});
    cases.push_back({"attention P·V", 'k', 'n', 77, 40, 90, 4, 90, 1, 77 * 90, 40, 1, 90 * 40, false});
    for (const Case& c : cases) {
        run<__half>("f16 ", c);
        run<__nv_bfloat16>("bf16", c);
    }
    // The SD feed-forward's first product with its GEGLU: ragged tiles both ways (inner 130: the
    // last column tile holds pairs 128–129 only), many k slices, with and without bias.
    run_geglu<__half>("f16 ", "ragged", 200, 130, 40, true);
    run_geglu<__nv_bfloat16>("bf16", "ragged", 200, 130, 40, true);
    run_geglu<__half>("f16 ", "k = 232", 130, 64, 232, false);
    run_geglu<__nv_bfloat16>("bf16", "k = 232", 130, 64, 232, true);
    std::printf("%s\n", failures ? "gemm_tc emulation: FAILED" : "gemm_tc emulation: all cases pass");
    return failures ? 1 : 0;
}
