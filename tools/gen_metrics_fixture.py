"""PSNR and SSIM as scikit-image computes them, for tests/train_metrics.rs.

Real photos from skimage.data (astronaut, coffee, chelsea), cropped small at odd sizes, against
degraded copies of themselves: Gaussian noise, Gaussian blur, JPEG-like 8x8 block-DCT
quantisation, and a shift (the same photo cropped one row and two columns further on). Plus a
grey (one-channel) case, a constant image, a case at the 11x11 minimum SSIM accepts, and the
three data ranges an evaluation meets: [-1, 1] (range 2, the autoencoder's), [0, 1] and [0, 255].

Each case `k` stores `k.ref` [1, C, H, W] (f32) and `k.test` [N, C, H, W] (f32); the metadata
holds `k.range` and skimage's per-image `k.psnr` / `k.ssim` of ref against each test image, as
comma-separated f64 decimals. skimage gets the f32 values widened to f64: on f32 input it would filter in f32 (its
_supported_float_type), where uxx - ux^2 cancels; that is the reference's own error, not ours
(printed below: 6.9e-7 on these cases). An identical pair has PSNR +inf (skimage divides by a zero MSE).

SSIM settings (Wang et al. 2004): gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
K1=0.01, K2=0.03, channel_axis=0 (channels averaged).

Run: /opt/torchref/bin/python tools/gen_metrics_fixture.py   (needs scikit-image, safetensors)
"""
import os
import warnings

import numpy as np
import scipy.fft
from safetensors.numpy import save_file
from skimage import data, filters
from skimage.color import rgb2gray
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "metrics", "metrics.safetensors")
RNG = np.random.default_rng(0)


def chw(img_hwc):
    return np.ascontiguousarray(np.transpose(img_hwc, (2, 0, 1)))


def photo(name, top, left, h, w, lo, hi):
    """A crop of a skimage.data photo as f32 [C, H, W] scaled from uint8 to [lo, hi]."""
    img = getattr(data, name)()[top:top + h, left:left + w].astype(np.float64) / 255.0
    return chw(img * (hi - lo) + lo).astype(np.float32)


def noise(x, sigma, lo, hi):
    return np.clip(x + RNG.normal(0.0, sigma, x.shape), lo, hi).astype(np.float32)


def blur(x, sigma):
    # per channel: no mixing across C
    return np.stack([filters.gaussian(c.astype(np.float64), sigma=sigma, mode="reflect") for c in x]).astype(np.float32)


def jpeg_like(x, step, lo, hi):
    """8x8 block DCT, coefficients rounded to a step that grows with frequency (JPEG's idea)."""
    y = np.empty_like(x, dtype=np.float64)
    for c in range(x.shape[0]):
        for i in range(0, x.shape[1], 8):
            for j in range(0, x.shape[2], 8):
                blk = x[c, i:i + 8, j:j + 8].astype(np.float64)
                u, v = np.meshgrid(np.arange(blk.shape[0]), np.arange(blk.shape[1]), indexing="ij")
                q = step * (1 + u + v)
                coef = scipy.fft.dctn(blk, norm="ortho")
                y[c, i:i + 8, j:j + 8] = scipy.fft.idctn(np.round(coef / q) * q, norm="ortho")
    return np.clip(y, lo, hi).astype(np.float32)


def cases():
    # astronaut, 61x47 RGB in [-1, 1] (the autoencoder's range)
    lo, hi = -1.0, 1.0
    a = photo("astronaut", 60, 200, 61, 47, lo, hi)
    yield "astronaut", 2.0, a, [noise(a, 0.1, lo, hi), blur(a, 1.0), jpeg_like(a, 0.08, lo, hi),
                                photo("astronaut", 61, 202, 61, 47, lo, hi)]
    # coffee, 33x45 RGB in [0, 1]
    lo, hi = 0.0, 1.0
    c = photo("coffee", 100, 250, 33, 45, lo, hi)
    yield "coffee", 1.0, c, [noise(c, 0.05, lo, hi), jpeg_like(c, 0.04, lo, hi)]
    # chelsea, grey 29x37 in [-1, 1]: one channel
    g = (rgb2gray(data.chelsea()[80:80 + 30, 150:150 + 39]) * 2 - 1).astype(np.float32)
    gref = np.ascontiguousarray(g[None, :29, :37])
    yield "chelsea_grey", 2.0, gref, [gref.copy(), blur(gref, 1.5), np.ascontiguousarray(g[None, 1:30, 2:39])]
    # chelsea, 23x19 RGB in [0, 255]
    lo, hi = 0.0, 255.0
    k = photo("chelsea", 120, 180, 23, 19, lo, hi)
    yield "chelsea_255", 255.0, k, [noise(k, 10.0, lo, hi), np.round(k / 32.0) * 32.0]
    # a constant image: against itself (PSNR inf, SSIM 1), against noise and another constant
    cst = np.full((3, 13, 11), 0.25, dtype=np.float32)
    yield "constant", 2.0, cst, [cst.copy(), noise(cst, 0.2, -1.0, 1.0), np.full_like(cst, 0.5)]
    # the smallest image SSIM accepts: one valid pixel after the 5-pixel crop
    m = photo("astronaut", 300, 300, 11, 11, -1.0, 1.0)
    yield "min_size", 2.0, m, [noise(m, 0.1, -1.0, 1.0)]


def main():
    out, meta, worst_f32 = {}, {}, 0.0
    names = []
    for name, rng, ref, tests in cases():
        test = np.stack(tests).astype(np.float32)
        r64 = ref.astype(np.float64)
        psnr, ssim = [], []
        for t in test:
            t64 = t.astype(np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # divide by zero -> inf, on purpose
                psnr.append(peak_signal_noise_ratio(r64, t64, data_range=rng))
            kw = dict(data_range=rng, channel_axis=0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
            s = structural_similarity(r64, t64, **kw)
            s32 = structural_similarity(ref, t, **kw)
            worst_f32 = max(worst_f32, abs(float(s32) - s))
            ssim.append(s)
        out[f"{name}.ref"] = ref[None]
        out[f"{name}.test"] = test
        # the engine loads f64 tensors as f32, which would round the reference to ~1e-8: the
        # values go in the metadata as full-precision decimals instead ("inf" parses in Rust)
        meta[f"{name}.psnr"] = ",".join(repr(float(v)) for v in psnr)
        meta[f"{name}.ssim"] = ",".join(repr(float(v)) for v in ssim)
        meta[f"{name}.range"] = repr(rng)
        names.append(name)
        print(f"{name:13s} {tuple(test.shape)} psnr {np.round(psnr, 3)} ssim {np.round(ssim, 5)}")
    meta["cases"] = ",".join(names)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    # safetensors.numpy writes a view's underlying buffer, not its values: copy views first
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    save_file(out, OUT, metadata=meta)
    print(f"skimage's own f32-vs-f64 SSIM difference: {worst_f32:.2e}")
    print(OUT, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
