// kernels/conv_tc.cu run on the CPU emulator (ldm_emu.h) against an f64 direct convolution of the
// same (already rounded) f16/bf16 inputs: forward with bias and residual, backward data, backward
// weight with split-K, on the shape classes the models use (3×3 stride 1 and 2, 1×1, 3/4/9 input
// channels, odd sizes, dilation) and tiles that end mid-way.
//
// Tolerance per element: |out − ref| ≤ 2·eps(T)·|ref| + 1e-5·Σ|a·b| — the output is rounded to T
// once (eps = 2^-11 for f16, 2^-8 for bf16; 2·eps allows for the f32 accumulation in between) and
// the f32 sum of K products may differ from the f64 one by ~K·2^-24 of the magnitudes summed.
// Backward weight is stored in f32: 1e-5·Σ|a·b| only.
// The channels-last forward also runs on the 128×128 tile (conv_fwd_nhwc_wide) and on the kernel
// lab's variants 4 and 5 of it (tools/kernel_lab/conv_tc_v4.cu: a cp.async ring, ldmatrix
// fragments; conv_tc_wgmma_sm90a.cu: the ring feeding wgmma).
// Prints one line per case; exit status 1 if any case fails.
#include "../../kernels/conv_tc.cu"
#include "../kernel_lab/conv_tc_v4.cu"
#include "../kernel_lab/conv_tc_wgmma_sm90a.cu"

#include <random>
#include <string>

using Geom = TcConvGeom;

static std::mt19937 rng(1234);

template <typename T>
static std::vector<T> random_tensor(size_t n, std::vector<double>& exact) {
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<T> v(n);
    exact.resize(n);
    for (size_t i = 0; i < n; ++i) {
        v[i] = from_f32<T>(u(rng));
        exact[i] = to_f32(v[i]);
    }
    return v;
}

// [A, B, S] copied to [A, S, B]: an NCHW image to NHWC (B = C, S = H·W), a conv weight
// [K, C, KH·KW] to [K, KH·KW, C] — what the host's channels-last transpose gives the kernels.
template <typename T>
static std::vector<T> channels_last(const std::vector<T>& v, int a, int b, size_t s) {
    std::vector<T> out(v.size());
    for (int i = 0; i < a; ++i)
        for (int j = 0; j < b; ++j)
            for (size_t k = 0; k < s; ++k) out[((size_t)i * s + k) * b + j] = v[((size_t)i * b + j) * s + k];
    return out;
}

static double eps_of(const __half*) { return std::ldexp(1.0, -11); }
static double eps_of(const __nv_bfloat16*) { return std::ldexp(1.0, -8); }

// Direct convolution in f64: y (and Σ|x·w| per output), given the rounded inputs.
static void conv_ref(const Geom& g, const std::vector<double>& x, const std::vector<double>& w, std::vector<double>& y, std::vector<double>& mag) {
    size_t P = (size_t)g.ho * g.wo;
    y.assign((size_t)g.n * g.k * P, 0.0);
    mag.assign(y.size(), 0.0);
    for (int n = 0; n < g.n; ++n)
        for (int co = 0; co < g.k; ++co)
            for (int oh = 0; oh < g.ho; ++oh)
                for (int ow = 0; ow < g.wo; ++ow) {
                    double s = 0, a = 0;
                    for (int ci = 0; ci < g.c; ++ci)
                        for (int kh = 0; kh < g.kh; ++kh)
                            for (int kw = 0; kw < g.kw; ++kw) {
                                int ih = oh * g.sh - g.ph + kh * g.dh, iw = ow * g.sw - g.pw + kw * g.dw;
                                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                                double p = x[(((size_t)n * g.c + ci) * g.h + ih) * g.w + iw] * w[(((size_t)co * g.c + ci) * g.kh + kh) * g.kw + kw];
                                s += p;
                                a += std::fabs(p);
                            }
                    size_t o = ((size_t)n * g.k + co) * P + (size_t)oh * g.wo + ow;
                    y[o] = s;
                    mag[o] = a;
                }
}

struct Check {
    double worst = 0;  // max of |err| / allowed
    size_t bad = 0;
    void add(double got, double ref, double allowed) {
        double err = std::fabs(got - ref);
        if (!(err <= allowed)) ++bad;
        worst = std::max(worst, err / allowed);
    }
};

static int failures = 0;

static void report(const std::string& what, const Check& c) {
    bool ok = c.bad == 0;
    std::printf("%-4s %-70s worst err/allowed %.3f\n", ok ? "ok" : "FAIL", what.c_str(), c.worst);
    if (!ok) ++failures;
}

template <typename T>
static void run_case(const char* dtype, Geom g, bool bias_on, bool res_on) {
    g.ho = (g.h + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
    g.wo = (g.w + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
    size_t P = (size_t)g.ho * g.wo, HW = (size_t)g.h * g.w, KK = (size_t)g.kh * g.kw;
    std::vector<double> xe, we, be, re, dye;
    auto x = random_tensor<T>((size_t)g.n * g.c * HW, xe);
    auto w = random_tensor<T>((size_t)g.k * g.c * KK, we);
    auto b = random_tensor<T>((size_t)g.k, be);
    auto r = random_tensor<T>((size_t)g.n * g.k * P, re);
    auto dy = random_tensor<T>((size_t)g.n * g.k * P, dye);
    double eps = eps_of((const T*)nullptr);
    char name[200];
    std::snprintf(name, sizeof name, "%s n%d c%d %dx%d -> k%d k%dx%d s%d p%d d%d%s%s", dtype, g.n, g.c, g.h, g.w, g.k, g.kh, g.kw, g.sh,
                  g.ph, g.dh, bias_on ? " +bias" : "", res_on ? " +res" : "");

    // Forward.
    std::vector<T> y((size_t)g.n * g.k * P);
    dim3 grid{(unsigned)((g.n * P + TC_BM - 1) / TC_BM), (unsigned)((g.k + TC_BN - 1) / TC_BN), 1};
    ldm_emu::launch(grid, dim3{TC_THREADS, 1, 1}, [&] { conv_fwd<T>(g, x.data(), w.data(), bias_on ? b.data() : nullptr, res_on ? r.data() : nullptr, y.data()); });
    std::vector<double> yr, mag;
    conv_ref(g, xe, we, yr, mag);
    // Every forward's output against the reference (+ bias, + residual), reported as `what`.
    auto check_fwd = [&](const char* what, const std::vector<T>& out) {
        Check c;
        for (size_t o = 0; o < out.size(); ++o) {
            double ref = yr[o] + (bias_on ? be[o / P % g.k] : 0) + (res_on ? re[o] : 0);
            c.add(to_f32(out[o]), ref, 2 * eps * std::fabs(ref) + 1e-5 * (mag[o] + 1));
        }
        report(std::string(what) + name, c);
    };
    check_fwd("forward  ", y);


    // The channels-last forward (C % 8 = 0): x permuted to [N, H, W, C], w to [K, KH, KW, C].
    if (g.c % 8 == 0) {
        std::vector<T> xn = channels_last(x, g.n, g.c, HW), wk = channels_last(w, g.k, g.c, KK), yn(y.size());
        ldm_emu::launch(grid, dim3{TC_THREADS, 1, 1}, [&] { conv_fwd_nhwc<T>(g, 0, xn.data(), wk.data(), bias_on ? b.data() : nullptr, res_on ? r.data() : nullptr, yn.data()); });
        check_fwd("fwd nhwc ", yn);

        // The same on the 128×128 tile (256 threads): rows and channels past one wide tile or not.
        std::vector<T> yw(y.size());
        dim3 gwide{(unsigned)((g.n * P + TCW_BM - 1) / TCW_BM), (unsigned)((g.k + TCW_BN - 1) / TCW_BN), 1};
        ldm_emu::launch(gwide, dim3{TCW_THREADS, 1, 1}, [&] { conv_fwd_nhwc_wide<T>(g, 0, xn.data(), wk.data(), bias_on ? b.data() : nullptr, res_on ? r.data() : nullptr, yw.data()); });
        check_fwd("fwd wide ", yw);
        // The kernel lab's variant 4 (the same tile on a cp.async ring, ldmatrix fragments).
        std::vector<T> y4(y.size());
        ldm_emu::launch(gwide, dim3{RING_THREADS, 1, 1}, [&] { conv_fwd_nhwc_v4<T>(g, 0, xn.data(), wk.data(), bias_on ? b.data() : nullptr, res_on ? r.data() : nullptr, y4.data()); });
        check_fwd("fwd lab v4 ", y4);
        std::vector<T> y5(y.size());
        ldm_emu::launch(gwide, dim3{RING_THREADS, 1, 1}, [&] { conv_fwd_nhwc_v5<T>(g, 0, xn.data(), wk.data(), bias_on ? b.data() : nullptr, res_on ? r.data() : nullptr, y5.data()); });
        check_fwd("fwd lab v5 ", y5);

        // Split-K: the k range in chunks of 2 slices, summed in f32 by atomics, then bias and
        // residual in the finishing pass.
        // The shipped kernel finishes each tile in its last block; its tickets (one per output
        // tile) must come back zeroed like the workspace.
        int K = (int)(g.c * KK), chunk = 2 * TC_BK;
        std::vector<float> ws(y.size(), 0.0f);
        std::vector<T> ys(y.size());
        dim3 gs{grid.x, grid.y, (unsigned)((K + chunk - 1) / chunk)};
        std::vector<int> tickets(grid.x * grid.y, 0);
        ldm_emu::launch(gs, dim3{TC_THREADS, 1, 1}, [&] {
            conv_fwd_nhwc_split_finished<T>(g, 0, xn.data(), wk.data(), ws.data(), tickets.data(), chunk, bias_on ? b.data() : nullptr, res_on ? r.data() : nullptr, ys.data());
        });
        check_fwd("fwd split", ys);
        Check untouched;
        for (int t : tickets) untouched.add(t, 0.0, 0.0);
        report(std::string("split tickets zeroed ") + name, untouched);
        // lab variants 4 and 5's split-K on the 128×128 ring, chunks of 2 slices, into the same
        // workspace and the same tickets (the shipped kernel left both zeroed; the host keeps one
        // of each per device), each tile finished by its last block as the shipped kernel does
        std::vector<T> ys4(y.size());
        dim3 gs4{gwide.x, gwide.y, gs.z};
        std::vector<int> tickets4(gwide.x * gwide.y, 0);
        ldm_emu::launch(gs4, dim3{RING_THREADS, 1, 1}, [&] {
            conv_fwd_nhwc_split_v4<T>(g, 0, xn.data(), wk.data(), ws.data(), tickets4.data(), chunk, bias_on ? b.data() : nullptr, res_on ? r.data() : nullptr, ys4.data());
        });
        check_fwd("fwd split lab v4 ", ys4);
        std::vector<T> ys5(y.size());
        ldm_emu::launch(gs4, dim3{RING_THREADS, 1, 1}, [&] {
            conv_fwd_nhwc_split_v5<T>(g, 0, xn.data(), wk.data(), ws.data(), tickets4.data(), chunk, bias_on ? b.data() : nullptr, res_on ? r.data() : nullptr, ys5.data());
        });
        check_fwd("fwd split lab v5 ", ys5);
        Check zeroed;
        for (float v : ws) zeroed.add(v, 0.0, 0.0);
        for (int t : tickets4) zeroed.add(t, 0.0, 0.0);
        report(std::string("split workspace and lab tickets zeroed ") + name, zeroed);
    }

    // Backward data: dx = Σ over outputs of dy·w, by brute force over the forward's index map.
    std::vector<double> dxr((size_t)g.n * g.c * HW, 0.0), dxm(dxr.size(), 0.0);
    std::vector<double> dwr((size_t)g.k * g.c * KK, 0.0), dwm(dwr.size(), 0.0);
    for (int n = 0; n < g.n; ++n)
        for (int co = 0; co < g.k; ++co)
            for (int oh = 0; oh < g.ho; ++oh)
                for (int ow = 0; ow < g.wo; ++ow) {
                    double d = dye[((size_t)n * g.k + co) * P + (size_t)oh * g.wo + ow];
                    for (int ci = 0; ci < g.c; ++ci)
                        for (int kh = 0; kh < g.kh; ++kh)
                            for (int kw = 0; kw < g.kw; ++kw) {
                                int ih = oh * g.sh - g.ph + kh * g.dh, iw = ow * g.sw - g.pw + kw * g.dw;
                                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                                size_t xi = (((size_t)n * g.c + ci) * g.h + ih) * g.w + iw;
                                size_t wi = (((size_t)co * g.c + ci) * g.kh + kh) * g.kw + kw;
                                dxr[xi] += d * we[wi];
                                dxm[xi] += std::fabs(d * we[wi]);
                                dwr[wi] += d * xe[xi];
                                dwm[wi] += std::fabs(d * xe[xi]);
                            }
                }
    std::vector<T> dx(dxr.size());
    dim3 gd{(unsigned)((g.n * HW + TC_BM - 1) / TC_BM), (unsigned)((g.c + TC_BN - 1) / TC_BN), 1};
    ldm_emu::launch(gd, dim3{TC_THREADS, 1, 1}, [&] { conv_bwd_data<T>(g, dy.data(), w.data(), nullptr, dx.data()); });
    // Every backward-data output against the reference, reported as `what`.
    auto check_bwd = [&](const char* what, const std::vector<T>& out) {
        Check c;
        for (size_t i = 0; i < out.size(); ++i) c.add(to_f32(out[i]), dxr[i], 2 * eps * std::fabs(dxr[i]) + 1e-5 * (dxm[i] + 1));
        report(std::string(what) + name, c);
    };
    check_bwd("bwd data ", dx);

    // Backward data as the channels-last forward with flipped taps (stride 1, C_out % 8 = 0, the
    // padding dh·(KH−1) − ph not negative): dy permuted to [N, HO, WO, C_out], w to [C_in, KH, KW, C_out].
    int fph = g.dh * (g.kh - 1) - g.ph, fpw = g.dw * (g.kw - 1) - g.pw;
    if (g.sh == 1 && g.sw == 1 && g.k % 8 == 0 && fph >= 0 && fpw >= 0) {
        std::vector<T> dyn = channels_last(dy, g.n, g.k, P), wt(w.size()), dxn(dx.size());
        for (int co = 0; co < g.k; ++co)
            for (int ci = 0; ci < g.c; ++ci)
                for (size_t t = 0; t < KK; ++t) wt[((size_t)ci * KK + t) * g.k + co] = w[((size_t)co * g.c + ci) * KK + t];
        Geom gb{g.n, g.k, g.ho, g.wo, g.c, g.kh, g.kw, 1, 1, fph, fpw, g.dh, g.dw, g.h, g.w};
        ldm_emu::launch(gd, dim3{TC_THREADS, 1, 1}, [&] { conv_fwd_nhwc<T>(gb, 1, dyn.data(), wt.data(), nullptr, nullptr, dxn.data()); });
        check_bwd("bwd nhwc ", dxn);
        std::vector<T> dxw(dx.size());
        dim3 gdw{(unsigned)((g.n * HW + TCW_BM - 1) / TCW_BM), (unsigned)((g.c + TCW_BN - 1) / TCW_BN), 1};
        ldm_emu::launch(gdw, dim3{TCW_THREADS, 1, 1}, [&] { conv_fwd_nhwc_wide<T>(gb, 1, dyn.data(), wt.data(), nullptr, nullptr, dxw.data()); });
        check_bwd("bwd wide ", dxw);
        std::vector<T> dx4(dx.size());
        ldm_emu::launch(gdw, dim3{RING_THREADS, 1, 1}, [&] { conv_fwd_nhwc_v4<T>(gb, 1, dyn.data(), wt.data(), nullptr, nullptr, dx4.data()); });
        check_bwd("bwd lab v4 ", dx4);
        std::vector<T> dx5(dx.size());
        ldm_emu::launch(gdw, dim3{RING_THREADS, 1, 1}, [&] { conv_fwd_nhwc_v5<T>(gb, 1, dyn.data(), wt.data(), nullptr, nullptr, dx5.data()); });
        check_bwd("bwd lab v5 ", dx5);
    }

    // Backward weight, the k range (n, oh, ow) split in chunks of 2 slices.
    int K = (int)(g.n * P), chunk = 2 * TC_BK, J = (int)(g.c * KK);
    std::vector<float> dw(dwr.size(), 0.0f);
    dim3 gw{(unsigned)((g.k + TC_BM - 1) / TC_BM), (unsigned)((J + TC_BN - 1) / TC_BN), (unsigned)((K + chunk - 1) / chunk)};
    ldm_emu::launch(gw, dim3{TC_THREADS, 1, 1}, [&] { conv_bwd_weight<T>(g, x.data(), dy.data(), dw.data(), chunk); });
    Check cw;
    for (size_t i = 0; i < dw.size(); ++i) cw.add(dw[i], dwr[i], 1e-5 * (dwm[i] + 1));
    report(std::string("bwd wgt  ") + name, cw);

    // Backward weight from dense operands (pixels per image P % 8 = 0): dy's image planes, and x
    // channels-last (C % 8 = 0) or, for 1×1 stride-1 unpadded convs, x's own NCHW planes.
    bool planes = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
    for (int nhwc = 0; nhwc < 2 && P % 8 == 0; ++nhwc) {
        if (nhwc ? g.c % 8 != 0 : !planes) continue;
        std::vector<T> xin = nhwc ? channels_last(x, g.n, g.c, HW) : x;
        std::vector<float> dwd(dwr.size(), 0.0f);
        ldm_emu::launch(gw, dim3{TC_THREADS, 1, 1}, [&] { conv_bwd_weight_dense<T>(g, nhwc, xin.data(), dy.data(), dwd.data(), chunk); });
        Check cwd;
        for (size_t i = 0; i < dwd.size(); ++i) cwd.add(dwd[i], dwr[i], 1e-5 * (dwm[i] + 1));
        report(std::string(nhwc ? "bwd wgt nhwc " : "bwd wgt plane ") + name, cwd);
    }
}

int main() {
    // {n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo}
    const Geom cases[] = {
        {2, 4, 9, 7, 70, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0},   // VAE/UNet conv_in-like: 4 channels, odd image
        {1, 3, 11, 10, 33, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0}, // stride-2 downsample, 3 channels
        {2, 40, 6, 5, 72, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0},  // 1×1 projection
        {1, 9, 8, 8, 20, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0},   // inpainting UNet: 9 input channels
        {1, 66, 5, 6, 65, 3, 3, 1, 1, 2, 2, 2, 2, 0, 0},  // dilation 2, channels past one tile
        {1, 5, 7, 9, 6, 3, 3, 2, 2, 0, 0, 1, 1, 0, 0},    // stride 2 without padding (the VAE's down conv)
        {1, 16, 12, 11, 130, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0}, // K = 144 (16-byte weight loads), 130 outputs
        {2, 32, 5, 5, 40, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0},  // 1×1 with K = 32: exactly one slice
        {2, 64, 9, 7, 72, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0},  // the UNet's 3×3 (channels-last paths): 126 pixels, 72 outputs
        {1, 24, 10, 9, 48, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0}, // stride-2 downsample, channels-last forward
        {1, 32, 7, 8, 16, 3, 3, 1, 1, 2, 2, 2, 2, 0, 0},  // dilation 2, channels-last forward and flipped backward
        {1, 8, 5, 6, 8, 3, 3, 1, 1, 0, 0, 1, 1, 0, 0},    // no padding: the flipped backward pads by 2
        {2, 64, 8, 8, 70, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0},  // 64 pixels per image: dense backward weight, 70 outputs
        {2, 40, 4, 6, 72, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0},  // 1×1 over 24 pixels: both operands as NCHW planes
        {1, 16, 16, 12, 33, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0}, // stride 2 onto 8×6: dense backward weight
        {3, 4, 4, 4, 8, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0},    // 1×1 with 4 input channels: planes only
        {2, 24, 12, 11, 136, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0}, // 264 pixels, 136 outputs: the wide tile's edges in both directions
    };
    for (const Geom& g : cases) {
        run_case<__half>("f16 ", g, true, true);
        run_case<__nv_bfloat16>("bf16", g, g.k % 2 == 0, false);
    }
    std::printf("%s\n", failures ? "conv_tc emulation: FAILED" : "conv_tc emulation: all cases pass");
    return failures ? 1 : 0;
}
