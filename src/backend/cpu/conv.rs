//! CPU 2-D convolution kernels (NCHW, OIHW weights), f32 on contiguous buffers.
//!
//! Everything is lowered to GEMM through the `gemm` crate:
//! - forward:          y[n,g] [Og, P]  = w_g [Og, K] · col(x[n,g]) [K, P]     (im2col)
//! - backward data:    dx[n,g]         = col2im(w_gᵀ [K, Og] · dy[n,g] [Og, P])
//! - backward weight:  dw_g [Og, K]   += dy[n,g] [Og, P] · col(x[n,g])ᵀ [P, K]
//! with K = Cg·KH·KW and P = H_out·W_out. A transposed convolution is the backward-data pass of
//! the convolution that goes the other way, so three kernels serve conv2d, conv_transpose2d and
//! both their backward passes.
//!
//! 1×1 stride-1 unpadded convolutions skip im2col: x[n,g] viewed as [Cg, H·W] already *is* the
//! column matrix. For k×k, the column matrix is built in tiles of output pixels so that the
//! buffer stays cache-sized instead of K·P floats (47 MB for 320×64×64 3×3).

use super::matmul::{gemm_strided, threads};
use gemm::Parallelism;
use rayon::prelude::*;

/// Geometry of one convolution `x [n, c_in, h, w] → y [n, c_out, ho, wo]` with weight
/// `[c_out, c_in/groups, kh, kw]`. For a transposed convolution this describes the forward
/// convolution it is the adjoint of (its output is the `x` side here).
#[derive(Clone, Copy, Debug)]
pub struct Geom {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    fn cg_in(&self) -> usize {
        self.c_in / self.groups
    }
    fn cg_out(&self) -> usize {
        self.c_out / self.groups
    }
    /// Rows of the column matrix: Cg·KH·KW.
    fn k(&self) -> usize {
        self.cg_in() * self.kh * self.kw
    }
    /// Output pixels per image.
    fn p(&self) -> usize {
        self.ho * self.wo
    }
    /// A 1×1, stride-1, unpadded conv: the input plane is the column matrix as it is.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == (1, 1) && self.padding == (0, 0) && self.h == self.ho && self.w == self.wo
    }
    /// Output pixels per im2col tile: the whole image when the column matrix fits the budget,
    /// otherwise about equal tiles of a multiple of 64 columns. Each tile's
    /// gemm re-packs the whole weight matrix (O(Og·K) for O(Og·K·tile) flops), so tiles stay
    /// ≥ 256 columns: below that deep layers (1280 channels at 16×16) lose more to re-packing
    /// the 59 MB of weights than they gain from a cache-sized column buffer.
    fn tile(&self, budget_bytes: usize) -> usize {
        let p = self.p();
        let cols = (budget_bytes / (4 * self.k().max(1))).max(MIN_TILE);
        if cols >= p {
            return p;
        }
        // Equal tiles (no thin last tile), rounded up to whole register tiles.
        let tiles = p.div_ceil(cols);
        p.div_ceil(tiles).next_multiple_of(64).min(p)
    }
}

/// Column-buffer budget per tile. On the 2-core EPYC (benches/conv.rs `tile sweep` lines,
/// AVX-512 gemm, quiet machine) 2–8 MiB run 320×64×64 3×3 in ~18–19.5 ms against ~32 ms for
/// the untiled 47 MB buffer and ~20 ms for the bare gemm of the same size (the gemm itself is
/// faster on a cache-sized rhs); 4 MiB was best by a hair on both 320- and 640-channel shapes.
pub const COL_BUDGET: usize = 4 << 20;
const MIN_TILE: usize = 256;


/// Small products lose more to thread hand-off than they gain.
fn par_for(m: usize, n: usize, k: usize) -> Parallelism {
    if m * n * k >= (1 << 18) { Parallelism::Rayon(threads()) } else { Parallelism::None }
}

/// The output columns `ox` in `[lo, hi)` whose input column `ox·s + off` lies in `[0, len)`.
fn valid_range(off: isize, s: usize, len: usize, n_out: usize) -> (usize, usize) {
    let s = s as isize;
    // ox·s + off ≥ 0  ⇔  ox ≥ ceil(−off / s)
    let lo = if off >= 0 { 0 } else { ((-off) + s - 1) / s };
    // ox·s + off < len  ⇔  ox < ceil((len − off) / s)
    let hi = if (len as isize) <= off { 0 } else { (len as isize - off + s - 1) / s };
    let lo = (lo as usize).min(n_out);
    (lo, (hi as usize).clamp(lo, n_out))
}

/// Walks output pixels `[p0, p1)` one output row segment at a time, calling
/// `f(seg_start_in_tile, iy or None when the input row is padding, ox0, ox1)`.
fn for_segments(g: &Geom, ki: usize, p0: usize, p1: usize, mut f: impl FnMut(usize, Option<usize>, usize, usize)) {
    let mut p = p0;
    while p < p1 {
        let (oy, ox0) = (p / g.wo, p % g.wo);
        let ox1 = g.wo.min(ox0 + (p1 - p));
        let iy = (oy * g.stride.0 + ki * g.dilation.0) as isize - g.padding.0 as isize;
        let iy = (iy >= 0 && (iy as usize) < g.h).then_some(iy as usize);
        f(p - p0, iy, ox0, ox1);
        p += ox1 - ox0;
    }
}

/// Fills one column-matrix row (channel plane `xc`, kernel tap (ki, kj)) for output pixels
/// `[p0, p1)`; `out.len() == p1 - p0`.
fn im2col_row(xc: &[f32], g: &Geom, ki: usize, kj: usize, p0: usize, p1: usize, out: &mut [f32]) {
    let off = (kj * g.dilation.1) as isize - g.padding.1 as isize;
    let sw = g.stride.1;
    let (vlo, vhi) = valid_range(off, sw, g.w, g.wo);
    for_segments(g, ki, p0, p1, |at, iy, ox0, ox1| {
        let seg = &mut out[at..at + (ox1 - ox0)];
        let Some(iy) = iy else { return seg.fill(0.0) };
        let row = &xc[iy * g.w..(iy + 1) * g.w];
        let (lo, hi) = (vlo.clamp(ox0, ox1), vhi.clamp(ox0, ox1));
        seg[..lo - ox0].fill(0.0);
        seg[hi.max(lo) - ox0..].fill(0.0);
        if hi > lo {
            let dst = &mut seg[lo - ox0..hi - ox0];
            let start = (lo as isize * sw as isize + off) as usize;
            if sw == 1 {
                dst.copy_from_slice(&row[start..start + dst.len()]);
            } else {
                dst.iter_mut().enumerate().for_each(|(i, d)| *d = row[start + i * sw]);
            }
        }
    });
}

/// Adds one column-matrix row back into channel plane `xc` (the adjoint of `im2col_row`).
fn col2im_row(xc: &mut [f32], g: &Geom, ki: usize, kj: usize, p0: usize, p1: usize, col: &[f32]) {
    let off = (kj * g.dilation.1) as isize - g.padding.1 as isize;
    let sw = g.stride.1;
    let (vlo, vhi) = valid_range(off, sw, g.w, g.wo);
    for_segments(g, ki, p0, p1, |at, iy, ox0, ox1| {
        let Some(iy) = iy else { return };
        let (lo, hi) = (vlo.clamp(ox0, ox1), vhi.clamp(ox0, ox1));
        if hi <= lo {
            return;
        }
        let src = &col[at + lo - ox0..at + hi - ox0];
        let row = &mut xc[iy * g.w..(iy + 1) * g.w];
        let start = (lo as isize * sw as isize + off) as usize;
        if sw == 1 {
            row[start..start + src.len()].iter_mut().zip(src).for_each(|(d, s)| *d += s);
        } else {
            src.iter().enumerate().for_each(|(i, s)| row[start + i * sw] += s);
        }
    });
}

/// Column matrix [K, p1−p0] of one (image, group) input block `xg` [Cg, H, W], rows in
/// parallel (each row is an independent gather).
fn im2col(xg: &[f32], g: &Geom, p0: usize, p1: usize, col: &mut [f32]) {
    let (tw, taps) = (p1 - p0, g.kh * g.kw);
    let plane = g.h * g.w;
    let body = |(r, out): (usize, &mut [f32])| {
        let (c, t) = (r / taps, r % taps);
        im2col_row(&xg[c * plane..(c + 1) * plane], g, t / g.kw, t % g.kw, p0, p1, out);
    };
    if g.k() * tw >= super::PAR_MIN {
        col[..g.k() * tw].par_chunks_mut(tw).enumerate().with_min_len(8).for_each(body);
    } else {
        col[..g.k() * tw].chunks_mut(tw).enumerate().for_each(body);
    }
}

/// Adds the column matrix [K, p1−p0] back into `xg` [Cg, H, W]; channels in parallel (a
/// channel's plane is written only by its own KH·KW rows, so there are no races).
fn col2im(xg: &mut [f32], g: &Geom, p0: usize, p1: usize, col: &[f32]) {
    let (tw, taps) = (p1 - p0, g.kh * g.kw);
    let plane = g.h * g.w;
    let body = |(c, xc): (usize, &mut [f32])| {
        for t in 0..taps {
            let r = c * taps + t;
            col2im_row(xc, g, t / g.kw, t % g.kw, p0, p1, &col[r * tw..(r + 1) * tw]);
        }
    };
    if g.k() * tw >= super::PAR_MIN {
        xg[..g.cg_in() * plane].par_chunks_mut(plane).enumerate().for_each(body);
    } else {
        xg[..g.cg_in() * plane].chunks_mut(plane).enumerate().for_each(body);
    }
}

/// Output filled with the bias per channel (the gemms then accumulate onto it), or zeros.
fn init_out(n: usize, c: usize, plane: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let mut v = zeros_touched(n * c * plane);
    if let Some(b) = bias {
        v.par_chunks_mut(plane.max(1)).enumerate().for_each(|(i, ch)| ch.fill(b[i % c]));
    }
    v
}

/// A zeroed buffer whose pages are already mapped. A fresh allocation is mapped lazily, one
/// page fault per 4 KiB on first write; taken inside the gemm those faults cost far more than
/// up front (the 59 MB weight gradient of a 1280-channel 3×3 conv: 140 ms vs 55 ms, measured),
/// and here both threads take them at once.
fn zeros_touched(len: usize) -> Vec<f32> {
    let mut v = vec![0f32; len];
    if len >= 1 << 18 {
        v.par_chunks_mut(1 << 16).for_each(|c| c.fill(0.0));
    }
    v
}

/// Images per chunk for small planes. Under MIN_TILE output pixels per image the per-image
/// products are thin (N = P: 64 columns for an 8×8 latent level), and their packing and thread
/// hand-off cost more than their flops; placing `nb` images' column matrices side by side makes
/// one [K, nb·P] product instead. None: the per-image path (grouped convs, one image, big planes).
fn batch_chunk(g: &Geom) -> Option<usize> {
    let p = g.p();
    if g.groups != 1 || g.n < 2 || p >= MIN_TILE {
        return None;
    }
    let nb = (COL_BUDGET / (4 * g.k().max(1) * p)).clamp(1, g.n);
    (nb >= 2).then_some(nb)
}

/// col [K, m·P]: image n0 + j's column matrix in columns j·P..(j+1)·P; rows in parallel.
fn im2col_batch(x: &[f32], g: &Geom, n0: usize, m: usize, col: &mut [f32]) {
    let (p, taps, plane) = (g.p(), g.kh * g.kw, g.h * g.w);
    let width = m * p;
    let body = |(r, out): (usize, &mut [f32])| {
        let (c, t) = (r / taps, r % taps);
        for j in 0..m {
            let xc = &x[((n0 + j) * g.c_in + c) * plane..][..plane];
            im2col_row(xc, g, t / g.kw, t % g.kw, 0, p, &mut out[j * p..(j + 1) * p]);
        }
    };
    if g.k() * width >= super::PAR_MIN {
        col[..g.k() * width].par_chunks_mut(width).enumerate().for_each(body);
    } else {
        col[..g.k() * width].chunks_mut(width).enumerate().for_each(body);
    }
}

/// dyb [C_out, m·P] = images n0..n0+m of dy [n, C_out, P], side by side.
fn gather_batch(dy: &[f32], g: &Geom, n0: usize, m: usize, dyb: &mut [f32]) {
    let (p, co) = (g.p(), g.c_out);
    dyb[..co * m * p].par_chunks_mut(m * p).enumerate().for_each(|(c, row)| {
        for j in 0..m {
            row[j * p..(j + 1) * p].copy_from_slice(&dy[((n0 + j) * co + c) * p..][..p]);
        }
    });
}

/// The chunks of the stacked path: (first image, images, columns m·P).
fn stacked_chunks(g: &Geom, nb: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    (0..g.n).step_by(nb).map(move |n0| {
        let m = nb.min(g.n - n0);
        (n0, m, m * g.p())
    })
}

fn forward_batched(x: &[f32], w: &[f32], g: &Geom, nb: usize, y: &mut [f32]) {
    let (k, p, co) = (g.k(), g.p(), g.c_out);
    let mut col = vec![0f32; k * nb * p];
    let mut tmp = vec![0f32; co * nb * p];
    for (n0, m, width) in stacked_chunks(g, nb) {
        im2col_batch(x, g, n0, m, &mut col);
        unsafe { gemm_strided(co, width, k, tmp.as_mut_ptr(), width as isize, 1, false, w.as_ptr(), k as isize, 1, col.as_ptr(), width as isize, 1, par_for(co, width, k)) };
        y[n0 * co * p..(n0 + m) * co * p].par_chunks_mut(p).enumerate().for_each(|(i, dst)| {
            let (j, c) = (i / co, i % co);
            dst.iter_mut().zip(&tmp[c * width + j * p..][..p]).for_each(|(d, s)| *d += s);
        });
    }
}

fn backward_data_batched(dy: &[f32], w: &[f32], g: &Geom, nb: usize, dx: &mut [f32]) {
    let (k, p, co, plane, taps) = (g.k(), g.p(), g.c_out, g.h * g.w, g.kh * g.kw);
    let mut dyb = vec![0f32; co * nb * p];
    let mut col = vec![0f32; k * nb * p];
    for (n0, m, width) in stacked_chunks(g, nb) {
        gather_batch(dy, g, n0, m, &mut dyb);
        // wᵀ [K, C_out] · dyb [C_out, m·P]
        unsafe { gemm_strided(k, width, co, col.as_mut_ptr(), width as isize, 1, false, w.as_ptr(), 1, k as isize, dyb.as_ptr(), width as isize, 1, par_for(k, width, co)) };
        dx[n0 * g.c_in * plane..(n0 + m) * g.c_in * plane].par_chunks_mut(g.c_in * plane).enumerate().for_each(|(j, xg)| {
            for (c, xc) in xg.chunks_mut(plane).enumerate() {
                for t in 0..taps {
                    col2im_row(xc, g, t / g.kw, t % g.kw, 0, p, &col[(c * taps + t) * width + j * p..][..p]);
                }
            }
        });
    }
}

fn backward_weight_batched(x: &[f32], dy: &[f32], g: &Geom, nb: usize, dw: &mut [f32]) {
    let (k, p, co) = (g.k(), g.p(), g.c_out);
    let mut dyb = vec![0f32; co * nb * p];
    let mut col = vec![0f32; k * nb * p];
    for (n0, m, width) in stacked_chunks(g, nb) {
        gather_batch(dy, g, n0, m, &mut dyb);
        im2col_batch(x, g, n0, m, &mut col);
        // dyb [C_out, m·P] · colᵀ [m·P, K]; colᵀ(q, r) sits at col[r·width + q]
        unsafe { gemm_strided(co, k, width, dw.as_mut_ptr(), k as isize, 1, true, dyb.as_ptr(), width as isize, 1, col.as_ptr(), 1, width as isize, par_for(co, k, width)) };
    }
}

/// y [n, c_out, ho, wo] = conv2d(x [n, c_in, h, w], w [c_out, c_in/groups, kh, kw]) (+ bias).
pub fn conv2d_forward(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &Geom) -> Vec<f32> {
    conv2d_forward_with(x, w, bias, g, COL_BUDGET)
}

/// `conv2d_forward` with an explicit im2col tile budget in bytes (benches sweep it).
pub fn conv2d_forward_with(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &Geom, budget: usize) -> Vec<f32> {
    let (k, p, og, cg) = (g.k(), g.p(), g.cg_out(), g.cg_in());
    let mut y = init_out(g.n, g.c_out, p, bias);
    if let Some(nb) = batch_chunk(g) {
        forward_batched(x, w, g, nb, &mut y);
        return y;
    }
    let tw = g.tile(budget);
    let mut col = if g.is_pointwise() { Vec::new() } else { vec![0f32; k * tw] };
    for n in 0..g.n {
        for gi in 0..g.groups {
            let xg = &x[(n * g.c_in + gi * cg) * g.h * g.w..][..cg * g.h * g.w];
            let yg = y[(n * g.c_out + gi * og) * p..].as_mut_ptr();
            let wg = w[gi * og * k..].as_ptr();
            for p0 in (0..p).step_by(tw.max(1)) {
                let p1 = (p0 + tw).min(p);
                // The rhs [K, p1−p0]: x itself for pointwise convs, else a fresh column tile.
                let (rhs, rhs_rs) = if g.is_pointwise() {
                    (xg[p0..].as_ptr(), p as isize)
                } else {
                    im2col(xg, g, p0, p1, &mut col);
                    (col.as_ptr(), (p1 - p0) as isize)
                };
                unsafe { gemm_strided(og, p1 - p0, k, yg.add(p0), p as isize, 1, true, wg, k as isize, 1, rhs, rhs_rs, 1, par_for(og, p1 - p0, k)) };
            }
        }
    }
    y
}

/// dx [n, c_in, h, w] = conv2d's input gradient for dy [n, c_out, ho, wo] (+ bias per c_in
/// channel, which makes this conv_transpose2d's forward with its bias).
pub fn conv2d_backward_data(dy: &[f32], w: &[f32], bias: Option<&[f32]>, g: &Geom) -> Vec<f32> {
    let (k, p, og, cg) = (g.k(), g.p(), g.cg_out(), g.cg_in());
    let plane = g.h * g.w;
    let mut dx = init_out(g.n, g.c_in, plane, bias);
    if let Some(nb) = batch_chunk(g) {
        backward_data_batched(dy, w, g, nb, &mut dx);
        return dx;
    }
    let tw = g.tile(COL_BUDGET);
    let mut col = if g.is_pointwise() { Vec::new() } else { vec![0f32; k * tw] };
    for n in 0..g.n {
        for gi in 0..g.groups {
            let dyg = dy[(n * g.c_out + gi * og) * p..].as_ptr();
            let wg = w[gi * og * k..].as_ptr();
            let dxg = &mut dx[(n * g.c_in + gi * cg) * plane..][..cg * plane];
            for p0 in (0..p).step_by(tw.max(1)) {
                let p1 = (p0 + tw).min(p);
                // w_gᵀ [K, Og] · dy_g[:, p0..p1] [Og, tw]
                unsafe {
                    if g.is_pointwise() {
                        gemm_strided(k, p1 - p0, og, dxg[p0..].as_mut_ptr(), p as isize, 1, true, wg, 1, k as isize, dyg.add(p0), p as isize, 1, par_for(k, p1 - p0, og));
                    } else {
                        gemm_strided(k, p1 - p0, og, col.as_mut_ptr(), (p1 - p0) as isize, 1, false, wg, 1, k as isize, dyg.add(p0), p as isize, 1, par_for(k, p1 - p0, og));
                        col2im(dxg, g, p0, p1, &col);
                    }
                }
            }
        }
    }
    dx
}

/// dw [c_out, c_in/groups, kh, kw] = conv2d's weight gradient, summed over the batch.
pub fn conv2d_backward_weight(x: &[f32], dy: &[f32], g: &Geom) -> Vec<f32> {
    let (k, p, og, cg) = (g.k(), g.p(), g.cg_out(), g.cg_in());
    let mut dw = zeros_touched(g.c_out * k);
    if let Some(nb) = batch_chunk(g) {
        backward_weight_batched(x, dy, g, nb, &mut dw);
        return dw;
    }
    let tw = g.tile(COL_BUDGET);
    let mut col = if g.is_pointwise() { Vec::new() } else { vec![0f32; k * tw] };
    for n in 0..g.n {
        for gi in 0..g.groups {
            let xg = &x[(n * g.c_in + gi * cg) * g.h * g.w..][..cg * g.h * g.w];
            let dyg = dy[(n * g.c_out + gi * og) * p..].as_ptr();
            let dwg = dw[gi * og * k..].as_mut_ptr();
            for p0 in (0..p).step_by(tw.max(1)) {
                let p1 = (p0 + tw).min(p);
                // dy_g[:, p0..p1] [Og, tw] · colᵀ [tw, K]; colᵀ(q, r) sits at col[r·rs + q].
                let (cm, col_rs) = if g.is_pointwise() {
                    (xg[p0..].as_ptr(), p as isize)
                } else {
                    im2col(xg, g, p0, p1, &mut col);
                    (col.as_ptr(), (p1 - p0) as isize)
                };
                unsafe { gemm_strided(og, k, p1 - p0, dwg, k as isize, 1, true, dyg.add(p0), p as isize, 1, cm, 1, col_rs, par_for(og, k, p1 - p0)) };
            }
        }
    }
    dw
}
