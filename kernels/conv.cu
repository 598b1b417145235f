// The data movement half of the GEMM-based convolution (the products run in gemm.cu):
//   im2col: x [N, C, H, W] → cols [N, C·KH·KW, HO·WO] (zero where the window is padding);
//   col2im: cols → dx [N, C, H, W], the adjoint, as a gather (each dx element sums the window
//           positions that read it), so no atomics and a deterministic sum order.
// Groups need nothing here: group g's rows of cols are the channels g·Cg … (g+1)·Cg − 1.
// CPU twin: src/backend/cpu/conv.rs.
#include "common.cuh"

struct ConvGeom {
    int64_t n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo;
};

template <typename T>
__device__ void im2col(const ConvGeom g, const T* x, T* cols) {
    const int64_t p = g.ho * g.wo, krows = g.c * g.kh * g.kw;
    GRID_STRIDE(i, g.n * krows * p) {
        int64_t ow = i % g.wo, oh = (i / g.wo) % g.ho;
        int64_t r = (i / p) % krows, n = i / (p * krows);
        int64_t kj = r % g.kw, ki = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);
        int64_t ih = oh * g.sh - g.ph + ki * g.dh, iw = ow * g.sw - g.pw + kj * g.dw;
        bool inside = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
        cols[i] = inside ? x[((n * g.c + c) * g.h + ih) * g.w + iw] : from_f32<T>(0.0f);
    }
}

template <typename T>
__device__ void col2im(const ConvGeom g, const T* cols, T* dx) {
    const int64_t p = g.ho * g.wo, krows = g.c * g.kh * g.kw;
    GRID_STRIDE(i, g.n * g.c * g.h * g.w) {
        int64_t iw = i % g.w, ih = (i / g.w) % g.h, c = (i / (g.w * g.h)) % g.c, n = i / (g.w * g.h * g.c);
        float acc = 0.0f;
        for (int64_t ki = 0; ki < g.kh; ++ki) {
            int64_t th = ih + g.ph - ki * g.dh;  // = oh·sh when this tap reads (ih, ·)
            if (th < 0 || th % g.sh != 0) continue;
            int64_t oh = th / g.sh;
            if (oh >= g.ho) continue;
            for (int64_t kj = 0; kj < g.kw; ++kj) {
                int64_t tw = iw + g.pw - kj * g.dw;
                if (tw < 0 || tw % g.sw != 0) continue;
                int64_t ow = tw / g.sw;
                if (ow >= g.wo) continue;
                int64_t r = (c * g.kh + ki) * g.kw + kj;
                acc += to_f32(cols[(n * krows + r) * p + oh * g.wo + ow]);
            }
        }
        dx[i] = from_f32<T>(acc);
    }
}

#define CONV_OPS(T, S) \
extern "C" __global__ void im2col_##S(ConvGeom g, const T* x, T* cols) { im2col<T>(g, x, cols); } \
extern "C" __global__ void col2im_##S(ConvGeom g, const T* cols, T* dx) { col2im<T>(g, cols, dx); }
CONV_OPS(float, f32)
CONV_OPS(f16, f16)
CONV_OPS(bf16, bf16)
