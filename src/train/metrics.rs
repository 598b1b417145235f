//! Image-quality metrics for `ldm-engine eval autoencoder`: PSNR, SSIM, MSE and MAE, one value per
//! image of a batch [N, C, H, W].
//!
//! SSIM is scikit-image's `structural_similarity(a, b, data_range=R, channel_axis=0,
//! gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`, the settings of Wang et al.
//! 2004 ("Image quality assessment: from error visibility to structural similarity") that skimage
//! documents as the way to match the paper: an 11×11 Gaussian window with σ = 1.5 (radius
//! int(3.5·σ + 0.5) = 5, as scipy.ndimage truncates it), K1 = 0.01, K2 = 0.03, population
//! (co)variances, the SSIM map averaged over the image minus a 5-pixel border, channels averaged.
//! PSNR is skimage's `peak_signal_noise_ratio(a, b, data_range=R)` per image (all channels).
//! tests/train_metrics.rs checks both against skimage (tools/gen_metrics_fixture.py).
//!
//! Everything is computed in f64 from the f32 values: SSIM's variance uxx − ux² cancels badly in
//! f32. A NaN in an image makes that image's values NaN (a diverged decoder should show, not be
//! averaged away). Images run in parallel (rayon, one task per channel plane); no tensor ops are needed.

use crate::{Error, Result, Tensor};
use rayon::prelude::*;

/// σ of the Gaussian SSIM window (Wang et al. 2004).
pub const SSIM_SIGMA: f64 = 1.5;
/// Stabilising constants: C1 = (K1·R)², C2 = (K2·R)² for data range R.
pub const SSIM_K1: f64 = 0.01;
pub const SSIM_K2: f64 = 0.03;
/// Window radius: scipy.ndimage's int(truncate·σ + 0.5) with skimage's truncate = 3.5.
const RADIUS: usize = 5;
/// Window side, and the smallest height and width SSIM accepts (skimage raises below it).
pub const SSIM_WIN: usize = 2 * RADIUS + 1;

/// Mean squared error per image.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    let (x, y, s) = pair("mse", a, b)?;
    Ok(per_image(&x, &y, s, |p, q| (p - q) * (p - q)))
}

/// Mean absolute error per image.
pub fn mae(a: &Tensor, b: &Tensor) -> Result<Vec<f64>> {
    let (x, y, s) = pair("mae", a, b)?;
    Ok(per_image(&x, &y, s, |p, q| (p - q).abs()))
}

/// PSNR in dB per image: 10·log10(range² / MSE) over all of an image's channels and pixels.
/// Images in [-1, 1] have `data_range` 2, in [0, 1] 1, in [0, 255] 255. An image identical to its
/// reference has MSE 0 and PSNR `f64::INFINITY`, as skimage returns (with a divide warning):
/// it is reported, not clamped, so a caller averaging over a folder must decide what an exact
/// reconstruction counts for (JSON has no infinity; serde_json writes it as null).
pub fn psnr(a: &Tensor, b: &Tensor, data_range: f64) -> Result<Vec<f64>> {
    check_range("psnr", data_range)?;
    let (x, y, s) = pair("psnr", a, b)?;
    Ok(psnr_slices(&x, &y, s, data_range))
}

/// PSNR of row-major [N, C, H, W] slices (already checked).
fn psnr_slices(a: &[f32], b: &[f32], shape: [usize; 4], data_range: f64) -> Vec<f64> {
    per_image(a, b, shape, |p, q| (p - q) * (p - q))
        .into_iter()
        .map(|mse| if mse == 0.0 { f64::INFINITY } else { 10.0 * (data_range * data_range / mse).log10() })
        .collect()
}

/// Mean SSIM per image (channels averaged), as skimage computes it with Wang et al.'s settings
/// (module doc). Height and width must be at least 11, the window's side.
pub fn ssim(a: &Tensor, b: &Tensor, data_range: f64) -> Result<Vec<f64>> {
    check_range("ssim", data_range)?;
    let (x, y, s) = pair("ssim", a, b)?;
    if s[2] < SSIM_WIN || s[3] < SSIM_WIN {
        return Err(Error::bad_shape("ssim", format!("images must be at least {SSIM_WIN}×{SSIM_WIN} (the Gaussian window), these are {}×{}", s[2], s[3]), a.shape()));
    }
    Ok(ssim_slices(&x, &y, s, data_range))
}

/// SSIM of row-major [N, C, H, W] slices with H, W ≥ 11 (already checked).
fn ssim_slices(a: &[f32], b: &[f32], shape: [usize; 4], data_range: f64) -> Vec<f64> {
    let [n, c, h, w] = shape;
    let plane = h * w;
    let weights = gaussian_weights();
    let (c1, c2) = ((SSIM_K1 * data_range).powi(2), (SSIM_K2 * data_range).powi(2));
    let per_plane: Vec<f64> = (0..n * c)
        .into_par_iter()
        .map(|p| ssim_plane(&a[p * plane..(p + 1) * plane], &b[p * plane..(p + 1) * plane], h, w, &weights, c1, c2))
        .collect();
    per_plane.chunks(c).map(|ch| ch.iter().sum::<f64>() / c as f64).collect()
}

/// scipy.ndimage's `_gaussian_kernel1d`: exp(−x²/2σ²) for x in −5..=5, normalised to sum 1.
fn gaussian_weights() -> [f64; SSIM_WIN] {
    let mut w = [0.0; SSIM_WIN];
    for (i, v) in w.iter_mut().enumerate() {
        let x = i as f64 - RADIUS as f64;
        *v = (-0.5 / (SSIM_SIGMA * SSIM_SIGMA) * x * x).exp();
    }
    let sum: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= sum);
    w
}

/// Mean SSIM of one channel plane over the valid region.
///
/// skimage filters the whole image (mode 'reflect') and then crops `pad = (win_size − 1) / 2 = 5`
/// pixels from every side before averaging. The window radius is also 5, so every pixel that
/// survives the crop has its whole window inside the image: the border mode never reaches the
/// mean, and a "valid" separable filter over the cropped region gives the same numbers while
/// computing only the pixels that count. One output row at a time: the vertical pass sums the 11
/// rows under it for x, y, x², y², xy, the horizontal pass filters those five rows and the SSIM of
/// each pixel is summed at once, so no full-size intermediate maps are kept.
fn ssim_plane(x: &[f32], y: &[f32], h: usize, w: usize, k: &[f64; SSIM_WIN], c1: f64, c2: f64) -> f64 {
    // The same loops compiled for AVX2 (4 f64 lanes instead of SSE2's 2) take 15 ms instead of
    // 22 on 16×3×256×256; the crate builds for baseline x86-64, so pick at run time. No mul_add anywhere, so LLVM fuses
    // nothing and both versions round identically: the value does not depend on the CPU.
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2(x: &[f32], y: &[f32], h: usize, w: usize, k: &[f64; SSIM_WIN], c1: f64, c2: f64) -> f64 {
            ssim_plane_impl(x, y, h, w, k, c1, c2)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU has AVX2, the only feature `avx2` is compiled for.
            return unsafe { avx2(x, y, h, w, k, c1, c2) };
        }
    }
    ssim_plane_impl(x, y, h, w, k, c1, c2)
}

/// Columns per register block: 5 sums × 8 lanes of f64 fit the 16 AVX2 registers. Keeping the
/// sums in registers across the 11 taps, instead of adding each tap into rows in memory, took
/// SSIM on 16×3×256×256 from 55 ms to 22 ms (SSE2, 2 threads).
const LANES: usize = 8;

/// Block starts covering 0..n (n ≥ LANES); the last block overlaps the one before it instead of
/// needing a scalar tail. The passes write their outputs (not add to them), so overlap is harmless.
fn blocks(n: usize) -> impl Iterator<Item = usize> {
    (0..n / LANES).map(|j| j * LANES).chain((!n.is_multiple_of(LANES)).then_some(n - LANES))
}

#[inline(always)]
fn ssim_plane_impl(x: &[f32], y: &[f32], h: usize, w: usize, k: &[f64; SSIM_WIN], c1: f64, c2: f64) -> f64 {
    let (oh, ow) = (h - 2 * RADIUS, w - 2 * RADIUS);
    // v: vertical sums of x, y, x², y², xy for one output row, [5][w]; f: those filtered along
    // the row as well, [5][ow]
    let mut v = vec![0f64; 5 * w];
    let mut f = vec![0f64; 5 * ow];
    let mut total = 0f64;
    for oy in 0..oh {
        // vertical pass, 8 columns at a time with the 40 sums in registers across the 11 taps
        // (w ≥ 11 > LANES)
        for i0 in blocks(w) {
            let mut acc = [[0f64; LANES]; 5];
            for (t, &kt) in k.iter().enumerate() {
                let r = (oy + t) * w + i0;
                let (xs, ys) = (&x[r..r + LANES], &y[r..r + LANES]);
                for l in 0..LANES {
                    let (p, q) = (xs[l] as f64, ys[l] as f64);
                    acc[0][l] += kt * p;
                    acc[1][l] += kt * q;
                    acc[2][l] += kt * (p * p);
                    acc[3][l] += kt * (q * q);
                    acc[4][l] += kt * (p * q);
                }
            }
            for (m, a) in acc.iter().enumerate() {
                v[m * w + i0..m * w + i0 + LANES].copy_from_slice(a);
            }
        }
        // horizontal pass over the columns that survive the crop
        for (src, dst) in v.chunks_exact(w).zip(f.chunks_exact_mut(ow)) {
            if ow >= LANES {
                for i0 in blocks(ow) {
                    let mut acc = [0f64; LANES];
                    for (t, &kt) in k.iter().enumerate() {
                        let s = &src[i0 + t..i0 + t + LANES];
                        for l in 0..LANES {
                            acc[l] += kt * s[l];
                        }
                    }
                    dst[i0..i0 + LANES].copy_from_slice(&acc);
                }
            } else {
                for (i, d) in dst.iter_mut().enumerate() {
                    *d = k.iter().zip(&src[i..i + SSIM_WIN]).fold(0.0, |acc, (&kt, &s)| acc + kt * s);
                }
            }
        }
        let (ux, rest) = f.split_at(ow);
        let (uy, rest) = rest.split_at(ow);
        let (uxx, rest) = rest.split_at(ow);
        let (uyy, uxy) = rest.split_at(ow);
        let mut row_sum = 0f64;
        for i in 0..ow {
            let (mx, my) = (ux[i], uy[i]);
            let (vx, vy, vxy) = (uxx[i] - mx * mx, uyy[i] - my * my, uxy[i] - mx * my);
            let (a1, a2) = (2.0 * mx * my + c1, 2.0 * vxy + c2);
            let (b1, b2) = (mx * mx + my * my + c1, vx + vy + c2);
            row_sum += (a1 * a2) / (b1 * b2);
        }
        total += row_sum;
    }
    total / (oh * ow) as f64
}

/// Mean of `f(a, b)` over each image's C·H·W values, in f64.
fn per_image(a: &[f32], b: &[f32], shape: [usize; 4], f: impl Fn(f64, f64) -> f64 + Sync) -> Vec<f64> {
    let len = shape[1] * shape[2] * shape[3];
    (0..shape[0])
        .into_par_iter()
        .map(|i| {
            let (x, y) = (&a[i * len..(i + 1) * len], &b[i * len..(i + 1) * len]);
            x.iter().zip(y).map(|(&p, &q)| f(p as f64, q as f64)).sum::<f64>() / len as f64
        })
        .collect()
}

fn check_range(op: &'static str, data_range: f64) -> Result<()> {
    if data_range.is_finite() && data_range > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(op, format!("data_range must be a positive number (2 for images in [-1, 1], 1 for [0, 1], 255 for [0, 255]), got {data_range}")))
    }
}

/// Both batches as row-major f32 (exact for f32, f16, bf16 and u8) with their [N, C, H, W] shape.
fn pair(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(Vec<f32>, Vec<f32>, [usize; 4])> {
    if a.shape() != b.shape() {
        return Err(Error::ShapeMismatch { op, lhs: a.shape().to_vec(), rhs: b.shape().to_vec() });
    }
    let &[n, c, h, w] = a.shape() else {
        return Err(Error::bad_shape(op, "expected a batch of images [N, C, H, W]", a.shape()));
    };
    if c * h * w == 0 {
        return Err(Error::bad_shape(op, "images have no pixels", a.shape()));
    }
    Ok((a.to_vec::<f32>()?, b.to_vec::<f32>()?, [n, c, h, w]))
}
