//! Pictures a person reads during training: loss curves (one panel per series, log-scaled y when
//! every value is positive, tick labels in an 8×8 bitmap font) and input-vs-reconstruction grids.

use std::path::Path;

use crate::io::image::{save_png, to_rgb8};
use crate::{Error, Result, Tensor};

/// An RGB canvas.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

const COLORS: [[u8; 3]; 6] = [[31, 119, 180], [214, 39, 40], [44, 160, 44], [148, 103, 189], [255, 127, 14], [23, 190, 207]];

impl Canvas {
    fn new(w: usize, h: usize) -> Self {
        Canvas { w, h, px: vec![255; 3 * w * h] }
    }

    fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = 3 * (y as usize * self.w + x as usize);
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Bresenham's line.
    fn line(&mut self, (mut x0, mut y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let mut err = dx + dy;
        loop {
            self.set(x0, y0, c);
            if x0 == x1 && y0 == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x0 += sx;
            }
            if e2 <= dx {
                err += dx;
                y0 += sy;
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3]) {
        for (k, ch) in s.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY.get(ch as usize).copied().unwrap_or([0; 8]);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits >> col & 1 == 1 {
                        self.set(x + 8 * k as i64 + col, y + row as i64, c);
                    }
                }
            }
        }
    }
}

fn label(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e4).contains(&a) { format!("{v:.1e}") } else { format!("{v:.3}") }
}

/// One panel per series [(name, [(step, value)])], stacked, 640 px wide.
pub fn loss_plot(series: &[(&str, Vec<(f64, f64)>)]) -> (Vec<u8>, usize, usize) {
    let (w, panel_h) = (640usize, 160usize);
    let mut c = Canvas::new(w, panel_h * series.len().max(1));
    let (left, right, top, bottom) = (80i64, 16i64, 18i64, 22i64);
    for (k, (name, pts)) in series.iter().enumerate() {
        let y0 = (k * panel_h) as i64;
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|(_, v)| v.is_finite()).collect();
        let log = !pts.is_empty() && pts.iter().all(|(_, v)| *v > 0.0);
        let tr = |v: f64| if log { v.log10() } else { v };
        let (x_lo, x_hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
        let (y_lo, y_hi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| (a.min(tr(*y)), b.max(tr(*y))));
        let (pw, ph) = (w as i64 - left - right, panel_h as i64 - top - bottom);
        let grey = [90, 90, 90];
        // frame, title, tick labels
        c.line((left, y0 + top), (left + pw, y0 + top), grey);
        c.line((left, y0 + top + ph), (left + pw, y0 + top + ph), grey);
        c.line((left, y0 + top), (left, y0 + top + ph), grey);
        c.line((left + pw, y0 + top), (left + pw, y0 + top + ph), grey);
        c.text(left, y0 + 4, &format!("{name}{}", if log { " (log scale)" } else { "" }), color);
        if pts.is_empty() {
            continue;
        }
        let (x_span, y_span) = ((x_hi - x_lo).max(1e-12), (y_hi - y_lo).max(1e-12));
        let show = |v: f64| label(if log { 10f64.powf(v) } else { v });
        c.text(4, y0 + top, &show(y_hi), grey);
        c.text(4, y0 + top + ph - 8, &show(y_lo), grey);
        c.text(left, y0 + top + ph + 6, &format!("step {}", x_lo as u64), grey);
        let last = format!("{}", x_hi as u64);
        c.text(left + pw - 8 * last.len() as i64, y0 + top + ph + 6, &last, grey);
        let to_px = |(x, y): (f64, f64)| (left + ((x - x_lo) / x_span * pw as f64).round() as i64, y0 + top + ph - ((tr(y) - y_lo) / y_span * ph as f64).round() as i64);
        for pair in pts.windows(2) {
            c.line(to_px(pair[0]), to_px(pair[1]), color);
        }
        if pts.len() == 1 {
            let (x, y) = to_px(pts[0]);
            c.set(x, y, color);
        }
    }
    (c.px, c.w, c.h)
}

/// Writes `loss_plot` as a PNG.
pub fn save_loss_plot(path: &Path, series: &[(&str, Vec<(f64, f64)>)]) -> Result<()> {
    let (px, w, h) = loss_plot(series);
    save_png(path, &px, w, h, &[("Software", "ldm-engine")])
}

/// Inputs (top row) over reconstructions (bottom row), [N, C, H, W] each in [−1, 1], as
/// `save_image_grid` lays them out.
pub fn save_recon_grid(path: &Path, inputs: &Tensor, recons: &Tensor, caption: &str) -> Result<()> {
    if inputs.shape() != recons.shape() || inputs.rank() != 4 {
        return Err(Error::bad_shape("recon_grid", format!("reconstructions must be shaped like the inputs {:?}", inputs.shape()), recons.shape()));
    }
    save_image_grid(path, &Tensor::cat(&[inputs, recons], 0)?, inputs.dim(0)?, caption)
}

/// Images [N, C, H, W] in [−1, 1] as a grid of `cols` columns, row by row, 2 px gaps, enlarged
/// (nearest neighbour) to at least 64 px so a person can see them.
pub fn save_image_grid(path: &Path, images: &Tensor, cols: usize, caption: &str) -> Result<()> {
    if images.rank() != 4 || images.dim(0)? == 0 || cols == 0 {
        return Err(Error::bad_shape("image_grid", "expected [N ≥ 1, C, H, W] and at least one column", images.shape()));
    }
    let zoom = 64usize.div_ceil(images.dim(2)?.max(1)).max(1);
    let images = if zoom > 1 { images.upsample_nearest2d(images.dim(2)? * zoom, images.dim(3)? * zoom)? } else { images.clone() };
    let (n, h, w) = (images.dim(0)?, images.dim(2)?, images.dim(3)?);
    let rows = n.div_ceil(cols);
    let gap = 2;
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    let mut grid = vec![255u8; 3 * gw * gh];
    for i in 0..n {
        let (rgb, _, _) = to_rgb8(&images.narrow(0, i, 1)?)?;
        let (x0, y0) = (gap + (i % cols) * (w + gap), gap + (i / cols) * (h + gap));
        for y in 0..h {
            let dst = 3 * ((y0 + y) * gw + x0);
            grid[dst..dst + 3 * w].copy_from_slice(&rgb[3 * y * w..3 * (y + 1) * w]);
        }
    }
    save_png(path, &grid, gw, gh, &[("Description", caption), ("Software", "ldm-engine")])
}
