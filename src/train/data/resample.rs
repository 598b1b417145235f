//! Antialiased resampling straight into the crop window, as f32 in [-1, 1].
//!
//! The weights follow PIL's `Image.resize` (libImaging/Resample.c), which the reference data
//! modules call: output pixel o of an axis scaled from `input` to `output` samples the input around
//! centre (o + 0.5)·input/output with the kernel widened by the downscale factor, so shrinking
//! averages over every source pixel instead of aliasing; the weights are normalised to sum to 1.
//! Unlike resizing the whole image and then cropping, only the rows and columns under the crop
//! window are computed, and the result goes to the CHW float buffer without an intermediate image.
//! The value is rounded and clamped to 0..=255 before x/127.5 − 1, so the samples stay on the 8-bit
//! grid exactly as they do when PIL hands back an 8-bit image.

use std::ops::Range;

/// The resampling kernel, named as in PIL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// Triangle, support 1.
    Bilinear,
    /// Keys cubic with a = −0.5 (Catmull–Rom), support 2: PIL's BICUBIC.
    Bicubic,
    /// Windowed sinc, support 3.
    Lanczos3,
}

impl Resample {
    fn support(self) -> f64 {
        match self {
            Resample::Bilinear => 1.0,
            Resample::Bicubic => 2.0,
            Resample::Lanczos3 => 3.0,
        }
    }

    fn kernel(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Resample::Bilinear => (1.0 - x).max(0.0),
            Resample::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Resample::Lanczos3 => {
                let sinc = |t: f64| if t == 0.0 { 1.0 } else { (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t) };
                if x < 3.0 { sinc(x) * sinc(x / 3.0) } else { 0.0 }
            }
        }
    }
}

/// The source span and weights of each output index in `range`, weights padded to `width`.
struct Taps {
    spans: Vec<(usize, usize)>,
    weights: Vec<f32>,
    width: usize,
}

impl Taps {
    fn new(filter: Resample, input: usize, output: usize, range: Range<usize>) -> Taps {
        let scale = input as f64 / output as f64;
        let widen = scale.max(1.0);
        let support = filter.support() * widen;
        let width = (2.0 * support).ceil() as usize + 1;
        let (mut spans, mut weights) = (Vec::with_capacity(range.len()), vec![0f32; range.len() * width]);
        for (j, o) in range.enumerate() {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0) as usize).min(input - 1);
            let hi = ((center + support + 0.5).floor() as usize).clamp(lo + 1, input).min(lo + width);
            let w: Vec<f64> = (lo..hi).map(|i| filter.kernel((i as f64 - center + 0.5) / widen)).collect();
            let sum: f64 = w.iter().sum();
            for (k, wk) in w.iter().enumerate() {
                // a span the kernel misses entirely (never for these kernels) falls back to nearest
                weights[j * width + k] = if sum != 0.0 { (wk / sum) as f32 } else { (k == 0) as u8 as f32 };
            }
            spans.push((lo, hi - lo));
        }
        Taps { spans, weights, width }
    }

    fn of(&self, j: usize) -> (usize, &[f32]) {
        let (lo, n) = self.spans[j];
        (lo, &self.weights[j * self.width..j * self.width + n])
    }
}

/// Resamples `rgb` (interleaved, w×h) as if to nw×nh, and writes its s×s window at (x0, y0),
/// mirrored left-right if `flip`, into `out` as [3, s, s] CHW in [-1, 1].
#[allow(clippy::too_many_arguments)]
pub(super) fn resize_crop(
    rgb: &[u8], (w, h): (usize, usize), (nw, nh): (usize, usize), (x0, y0): (usize, usize), s: usize, flip: bool,
    filter: Resample, out: &mut [f32],
) {
    let to_unit = |v: f32| v.round().clamp(0.0, 255.0) / 127.5 - 1.0;
    let plane = s * s;
    let col = |x: usize| if flip { s - 1 - x } else { x };
    let hx = Taps::new(filter, w, nw, x0..x0 + s);
    let vy = Taps::new(filter, h, nh, y0..y0 + s);
    // source rows the vertical taps read
    let r0 = vy.spans.iter().map(|&(lo, _)| lo).min().unwrap_or(0);
    let r1 = vy.spans.iter().map(|&(lo, n)| lo + n).max().unwrap_or(0);

    // horizontal pass over those rows: tmp[r - r0][x][c]
    let mut tmp = vec![0f32; (r1 - r0) * s * 3];
    for (r, trow) in (r0..r1).zip(tmp.chunks_exact_mut(s * 3)) {
        let src = &rgb[r * w * 3..(r + 1) * w * 3];
        for (x, t) in trow.chunks_exact_mut(3).enumerate() {
            let (lo, ws) = hx.of(x);
            let mut acc = [0f32; 3];
            for (p, &wk) in src[lo * 3..(lo + ws.len()) * 3].chunks_exact(3).zip(ws) {
                acc[0] += wk * p[0] as f32;
                acc[1] += wk * p[1] as f32;
                acc[2] += wk * p[2] as f32;
            }
            t.copy_from_slice(&acc);
        }
    }
    // vertical pass into the output rows
    let mut acc = vec![0f32; s * 3];
    for y in 0..s {
        let (lo, ws) = vy.of(y);
        acc.fill(0.0);
        for (k, &wk) in ws.iter().enumerate() {
            let trow = &tmp[(lo + k - r0) * s * 3..(lo + k - r0 + 1) * s * 3];
            acc.iter_mut().zip(trow).for_each(|(a, &t)| *a += wk * t);
        }
        for (x, a) in acc.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + y * s + col(x)] = to_unit(a[c]);
            }
        }
    }
}
