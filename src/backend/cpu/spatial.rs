//! CPU kernels for the spatial ops on the last two dims of a contiguous [planes, H, W] view:
//! index-map gather/scatter (nearest upsampling and padding are both "output pixel (i, j) reads
//! input pixel (rows[i], cols[j]) or zero"), and average and max pooling. Planes run in parallel.

use super::PAR_MIN;
use rayon::prelude::*;

/// Where each output row (or column) reads from; `None` reads zero (zero padding).
pub type IndexMap = Vec<Option<usize>>;

/// torch's 'nearest' source index: identity and exact 2× are special-cased, otherwise
/// `min(floor(dst · (in/out)), in − 1)` with the scale and product in f32, exactly as
/// aten/src/ATen/native/UpSample.h computes it, so odd ratios pick the same pixels as torch.
pub fn nearest_map(input: usize, output: usize) -> IndexMap {
    (0..output)
        .map(|i| {
            Some(if output == input {
                i
            } else if output == 2 * input {
                i >> 1
            } else {
                let scale = input as f32 / output as f32;
                ((i as f32 * scale).floor() as usize).min(input - 1)
            })
        })
        .collect()
}

/// Source index of each output position of a dim padded by (before, after): `None` in the zero
/// border, or the mirror image without repeating the edge (torch 'reflect'). Reflect requires
/// `before, after < size` (checked by the caller).
pub fn pad_map(size: usize, before: usize, after: usize, reflect: bool) -> IndexMap {
    (0..before + size + after)
        .map(|o| {
            let i = o as isize - before as isize;
            let n = size as isize;
            if (0..n).contains(&i) {
                Some(i as usize)
            } else if !reflect {
                None
            } else if i < 0 {
                Some((-i) as usize)
            } else {
                Some((2 * (n - 1) - i) as usize)
            }
        })
        .collect()
}

/// Runs `f(out_plane, in_plane)` over matching planes, in parallel when the work is large enough.
fn for_planes(out: &mut [f32], out_plane: usize, inp: &[f32], in_plane: usize, f: impl Fn(&mut [f32], &[f32]) + Sync + Send) {
    if out_plane == 0 || in_plane == 0 {
        return;
    }
    if out.len().max(inp.len()) >= PAR_MIN {
        out.par_chunks_mut(out_plane).zip(inp.par_chunks(in_plane)).for_each(|(o, i)| f(o, i));
    } else {
        out.chunks_mut(out_plane).zip(inp.chunks(in_plane)).for_each(|(o, i)| f(o, i));
    }
}

/// out[p, i, j] = x[p, rows[i], cols[j]] (zero where a map is `None`); x is [planes, in_h, in_w].
pub fn gather2d(x: &[f32], planes: usize, in_w: usize, in_plane: usize, rows: &IndexMap, cols: &IndexMap) -> Vec<f32> {
    let ow = cols.len();
    let out_plane = rows.len() * ow;
    let mut out = vec![0f32; planes * out_plane];
    // Columns split into a left zero border, a run with its source map, and a right zero border,
    // so the common interior is a plain indexed copy without Option checks per element.
    let lo = cols.iter().take_while(|c| c.is_none()).count();
    let hi = ow - cols.iter().rev().take_while(|c| c.is_none()).count().min(ow - lo);
    let mid: Vec<usize> = cols[lo..hi].iter().map(|c| c.unwrap_or(0)).collect();
    let mid_zero: Vec<bool> = cols[lo..hi].iter().map(Option::is_none).collect();
    let any_mid_zero = mid_zero.iter().any(|&z| z);
    for_planes(&mut out, out_plane, x, in_plane, |o, xp| {
        for (orow, r) in o.chunks_mut(ow).zip(rows) {
            let Some(r) = *r else { continue };
            let src = &xp[r * in_w..(r + 1) * in_w];
            let dst = &mut orow[lo..hi];
            if any_mid_zero {
                for ((d, &c), &z) in dst.iter_mut().zip(&mid).zip(&mid_zero) {
                    *d = if z { 0.0 } else { src[c] };
                }
            } else {
                dst.iter_mut().zip(&mid).for_each(|(d, &c)| *d = src[c]);
            }
        }
    });
    out
}

/// The adjoint of `gather2d`: gx[p, rows[i], cols[j]] += g[p, i, j]; gx is [planes, in_h, in_w].
pub fn scatter_add2d(g: &[f32], planes: usize, in_h: usize, in_w: usize, rows: &IndexMap, cols: &IndexMap) -> Vec<f32> {
    let ow = cols.len();
    let out_plane = rows.len() * ow;
    let in_plane = in_h * in_w;
    let mut gx = vec![0f32; planes * in_plane];
    for_planes(&mut gx, in_plane, g, out_plane, |gp, gs| {
        for (grow, r) in gs.chunks(ow).zip(rows) {
            let Some(r) = *r else { continue };
            let dst = &mut gp[r * in_w..(r + 1) * in_w];
            for (&v, c) in grow.iter().zip(cols) {
                if let Some(c) = *c {
                    dst[c] += v;
                }
            }
        }
    });
    gx
}

/// Geometry of a 2-D pooling window sweep over [planes, in_h, in_w].
#[derive(Clone, Copy, Debug)]
pub struct Pool2d {
    pub planes: usize,
    pub in_hw: (usize, usize),
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
}

impl Pool2d {
    /// Output (h, w); the caller has checked kernel ≤ input and nonzero kernel/stride.
    pub fn out_hw(&self) -> (usize, usize) {
        ((self.in_hw.0 - self.kernel.0) / self.stride.0 + 1, (self.in_hw.1 - self.kernel.1) / self.stride.1 + 1)
    }
}

/// Average of each kernel window (no padding, divisor = kernel area).
pub fn avg_pool2d(x: &[f32], p: Pool2d) -> Vec<f32> {
    let (ih, iw) = p.in_hw;
    let (oh, ow) = p.out_hw();
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let inv = 1.0 / (kh * kw) as f32;
    let mut out = vec![0f32; p.planes * oh * ow];
    for_planes(&mut out, oh * ow, x, ih * iw, |o, xp| {
        for (i, orow) in o.chunks_mut(ow).enumerate() {
            // Sum the kernel's rows first (contiguous adds), then each window's columns.
            for a in 0..kh {
                let src = &xp[(i * sh + a) * iw..(i * sh + a + 1) * iw];
                for (j, d) in orow.iter_mut().enumerate() {
                    let s = &src[j * sw..j * sw + kw];
                    *d += s.iter().sum::<f32>();
                }
            }
            orow.iter_mut().for_each(|d| *d *= inv);
        }
    });
    out
}

/// avg_pool2d backward: each output gradient is spread evenly (g / area) over its window;
/// overlapping windows (stride < kernel) accumulate.
pub fn avg_pool2d_backward(g: &[f32], p: Pool2d) -> Vec<f32> {
    let (ih, iw) = p.in_hw;
    let (oh, ow) = p.out_hw();
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let inv = 1.0 / (kh * kw) as f32;
    let mut gx = vec![0f32; p.planes * ih * iw];
    for_planes(&mut gx, ih * iw, g, oh * ow, |gp, gs| {
        for (i, grow) in gs.chunks(ow).enumerate() {
            for a in 0..kh {
                let dst = &mut gp[(i * sh + a) * iw..(i * sh + a + 1) * iw];
                for (j, &v) in grow.iter().enumerate() {
                    let v = v * inv;
                    dst[j * sw..j * sw + kw].iter_mut().for_each(|d| *d += v);
                }
            }
        }
    });
    gx
}

/// Flat index (within its plane) of window (i, j)'s maximum, with torch's rule
/// (aten/src/ATen/native/cpu/MaxPoolKernel.cpp): scan the window row-major and take a value when
/// it is `> max` or NaN, so ties keep the first maximum and a NaN wins (propagates). The forward
/// applies the same rule to values, so the gradient goes exactly where the forward read from.
#[inline]
fn window_argmax(xp: &[f32], p: &Pool2d, i: usize, j: usize) -> usize {
    let iw = p.in_hw.1;
    let (r0, c0) = (i * p.stride.0, j * p.stride.1);
    let mut best = r0 * iw + c0;
    let mut m = f32::NEG_INFINITY;
    for a in 0..p.kernel.0 {
        let row = (r0 + a) * iw + c0;
        for (c, &v) in xp[row..row + p.kernel.1].iter().enumerate() {
            let take = v > m || v.is_nan();
            m = if take { v } else { m };
            best = if take { row + c } else { best };
        }
    }
    best
}

/// Maximum of each kernel window (no padding); ties and NaN as in `window_argmax`.
pub fn max_pool2d(x: &[f32], p: Pool2d) -> Vec<f32> {
    let (ih, iw) = p.in_hw;
    let (oh, ow) = p.out_hw();
    let (kh, kw) = p.kernel;
    let (sh, sw) = p.stride;
    let mut out = vec![f32::NEG_INFINITY; p.planes * oh * ow];
    for_planes(&mut out, oh * ow, x, ih * iw, |o, xp| {
        for (i, orow) in o.chunks_mut(ow).enumerate() {
            // Window offsets outermost and output columns innermost: a select per element over
            // a strided row, instead of a short branchy scan per window (59 → 27 ms median on
            // relu(randn) 4×64×256×256, VGG's first pool, on the 2-core dev machine).
            for a in 0..kh {
                let src = &xp[(i * sh + a) * iw..(i * sh + a + 1) * iw];
                for c in 0..kw {
                    for (j, d) in orow.iter_mut().enumerate() {
                        let v = src[j * sw + c];
                        *d = if v > *d || v.is_nan() { v } else { *d };
                    }
                }
            }
        }
    });
    out
}

/// max_pool2d backward: each output gradient goes to its window's argmax (recomputed from x
/// rather than stored by the forward: one cheap pass instead of an index tensor per pooling
/// layer kept alive by the graph); overlapping windows (stride < kernel) accumulate.
pub fn max_pool2d_backward(x: &[f32], g: &[f32], p: Pool2d) -> Vec<f32> {
    let (ih, iw) = p.in_hw;
    let (oh, ow) = p.out_hw();
    let (in_plane, out_plane) = (ih * iw, oh * ow);
    let mut gx = vec![0f32; p.planes * in_plane];
    if in_plane == 0 || out_plane == 0 {
        return gx;
    }
    let body = |(gp, (xp, gs)): (&mut [f32], (&[f32], &[f32]))| {
        for (i, grow) in gs.chunks(ow).enumerate() {
            for (j, &v) in grow.iter().enumerate() {
                gp[window_argmax(xp, &p, i, j)] += v;
            }
        }
    };
    if gx.len() >= PAR_MIN {
        gx.par_chunks_mut(in_plane).zip(x.par_chunks(in_plane).zip(g.par_chunks(out_plane))).for_each(body);
    } else {
        gx.chunks_mut(in_plane).zip(x.chunks(in_plane).zip(g.chunks(out_plane))).for_each(body);
    }
    gx
}
