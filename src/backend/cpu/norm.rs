//! CPU group_norm / layer_norm kernels, forward and backward, on contiguous f32 slices.
//!
//! Each normalisation unit (one (n, group) block of `(C/G)·S` values, or one layer-norm row) is
//! handled by one task: a statistics pass accumulating in f64 (around a shift, see `Moments`),
//! then one fused normalise+affine pass. Backward accumulates the four sums it needs
//! (Σx, Σx², Σg, Σg·x) in the same single pass, then writes dx in closed form:
//!   dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ∘x̂)),  ĝ = g·γ,  x̂ = (x − μ)·rstd.
//! Units run in parallel with rayon once the tensor is big enough to pay for the threads.

use super::math::{sigmoid, unary_grad_f32};
use super::PAR_MIN;
use crate::tensor::UnaryOp;
use rayon::prelude::*;

/// Lanes of independent f64 accumulators: lets the compiler vectorise the sums (floating-point
/// addition is not reassociated on its own) and keeps several add chains in flight.
const LANES: usize = 16;

/// Shifted sums Σ(x−k), Σ(x−k)² over a run of values, in f64. Shifting by a sample of the data
/// (k = the unit's first value) keeps E[x²] − E[x]² from cancelling catastrophically when the
/// mean is large against the spread, at the cost of one subtraction.
#[derive(Clone, Copy, Default)]
struct Moments {
    s: f64,
    q: f64,
}

impl Moments {
    #[inline(always)]
    fn add_run(&mut self, v: &[f32], k: f64) {
        let (mut s, mut q) = ([0f64; LANES], [0f64; LANES]);
        let mut it = v.chunks_exact(LANES);
        for c in &mut it {
            for i in 0..LANES {
                let d = c[i] as f64 - k;
                s[i] += d;
                q[i] += d * d;
            }
        }
        for &x in it.remainder() {
            let d = x as f64 - k;
            s[0] += d;
            q[0] += d * d;
        }
        self.s += s.iter().sum::<f64>();
        self.q += q.iter().sum::<f64>();
    }

    /// (mean, rstd) of `n` values accumulated around shift `k`; biased variance, like torch.
    #[inline(always)]
    fn mean_rstd(&self, n: usize, k: f64, eps: f64) -> (f64, f64) {
        let n = n as f64;
        let dm = self.s / n;
        let var = (self.q / n - dm * dm).max(0.0);
        (k + dm, 1.0 / (var + eps).sqrt())
    }
}

/// The mean as an f32 pair (hi, lo) with hi + lo ≈ mean to ~f64 precision. Centring as
/// (x − hi) − lo is exact in its first step whenever x is within 2× of the mean (Sterbenz), so a
/// large common offset (mean ≫ std) does not leave an f32 rounding of the mean in every output.
#[inline(always)]
fn split_mean(mean: f64) -> (f32, f32) {
    let hi = mean as f32;
    (hi, (mean - hi as f64) as f32)
}

/// Σg and Σg·(x−k) over a run, in f64 lanes (the backward's extra sums).
#[inline(always)]
fn grad_sums(x: &[f32], g: &[f32], k: f64) -> (f64, f64) {
    let (mut sg, mut sgx) = ([0f64; LANES], [0f64; LANES]);
    let mut xi = x.chunks_exact(LANES);
    let mut gi = g.chunks_exact(LANES);
    for (xc, gc) in (&mut xi).zip(&mut gi) {
        for i in 0..LANES {
            let gv = gc[i] as f64;
            sg[i] += gv;
            sgx[i] += gv * (xc[i] as f64 - k);
        }
    }
    for (&xv, &gv) in xi.remainder().iter().zip(gi.remainder()) {
        sg[0] += gv as f64;
        sgx[0] += gv as f64 * (xv as f64 - k);
    }
    (sg.iter().sum(), sgx.iter().sum())
}

/// Shape of a group-norm problem: x is [n, c, s] contiguous (s = product of the spatial dims).
#[derive(Clone, Copy, Debug)]
pub struct GroupDims {
    pub n: usize,
    pub c: usize,
    pub s: usize,
    pub groups: usize,
}

impl GroupDims {
    fn cpg(&self) -> usize {
        self.c / self.groups
    }
    /// Values in one (n, group) unit.
    fn unit(&self) -> usize {
        self.cpg() * self.s
    }
}

/// group_norm forward: y = (x − μ)·rstd·γ_c + β_c per (n, group).
pub fn group_norm(x: &[f32], d: GroupDims, w: Option<&[f32]>, b: Option<&[f32]>, eps: f64) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    let (unit, cpg, s) = (d.unit(), d.cpg(), d.s);
    if x.is_empty() || unit == 0 {
        return out;
    }
    let task = |(u, (o, xs)): (usize, (&mut [f32], &[f32]))| gn_fwd_unit(o, xs, (u % d.groups) * cpg, s, w, b, eps);
    if x.len() >= PAR_MIN {
        out.par_chunks_mut(unit).zip(x.par_chunks(unit)).enumerate().for_each(task);
    } else {
        out.chunks_mut(unit).zip(x.chunks(unit)).enumerate().for_each(task);
    }
    out
}

multiversion!(fn gn_fwd_unit(o: &mut [f32], xs: &[f32], c0: usize, s: usize, w: Option<&[f32]>, b: Option<&[f32]>, eps: f64) => gn_fwd_unit_impl, gn_fwd_unit_impl);

/// One (n, group) unit: statistics, then y = (x − μ)·(rstd·γ_c) + β_c channel by channel.
#[inline(always)]
fn gn_fwd_unit_impl(o: &mut [f32], xs: &[f32], c0: usize, s: usize, w: Option<&[f32]>, b: Option<&[f32]>, eps: f64) {
    let k = xs[0] as f64;
    let mut m = Moments::default();
    m.add_run(xs, k);
    let (mean, rstd) = m.mean_rstd(xs.len(), k, eps);
    let (mh, ml) = split_mean(mean);
    for (j, (oc, xc)) in o.chunks_mut(s).zip(xs.chunks(s)).enumerate() {
        let c = c0 + j;
        let scale = (rstd * w.map_or(1.0, |w| w[c] as f64)) as f32;
        let shift = b.map_or(0.0, |b| b[c]);
        oc.iter_mut().zip(xc).for_each(|(o, &x)| *o = (x - mh - ml) * scale + shift);
    }
}

/// The SiLU half of group_norm_silu, applied to the norm's output in place.
pub fn silu_in_place(z: &mut [f32]) {
    let f = |v: &mut f32| *v *= sigmoid(*v);
    if z.len() >= PAR_MIN {
        z.par_chunks_mut(4096).for_each(|c| c.iter_mut().for_each(f));
    } else {
        z.iter_mut().for_each(f);
    }
}

/// g·silu'(z): the gradient of group_norm_silu at the norm's output z.
pub fn silu_backward(z: &[f32], g: &[f32]) -> Vec<f32> {
    z.iter().zip(g).map(|(&z, &g)| g * unary_grad_f32(UnaryOp::Silu, z)).collect()
}

/// group_norm backward: (dx, dγ, dβ); dγ/dβ are computed only when asked for.
pub fn group_norm_backward(
    x: &[f32],
    g: &[f32],
    d: GroupDims,
    w: Option<&[f32]>,
    eps: f64,
    want_w: bool,
    want_b: bool,
) -> (Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>) {
    let mut dx = vec![0f32; x.len()];
    let (unit, cpg, s) = (d.unit(), d.cpg(), d.s);
    // Per (n, c): (Σg, Σg·x̂), the pieces of dβ and dγ before summing over the batch.
    let mut part = vec![(0f64, 0f64); d.n * d.c];
    type Unit<'a> = (usize, ((&'a mut [f32], &'a mut [(f64, f64)]), (&'a [f32], &'a [f32])));
    if !x.is_empty() && unit > 0 {
        let task = |(u, ((dxs, ps), (xs, gs))): Unit| {
            gn_bwd_unit(dxs, ps, xs, gs, (u % d.groups) * cpg, s, w, eps)
        };
        if x.len() >= PAR_MIN {
            dx.par_chunks_mut(unit)
                .zip(part.par_chunks_mut(cpg))
                .zip(x.par_chunks(unit).zip(g.par_chunks(unit)))
                .enumerate()
                .for_each(task);
        } else {
            dx.chunks_mut(unit).zip(part.chunks_mut(cpg)).zip(x.chunks(unit).zip(g.chunks(unit))).enumerate().for_each(task);
        }
    }
    let batch_sum = |pick: fn(&(f64, f64)) -> f64| -> Vec<f32> {
        (0..d.c).map(|c| (0..d.n).map(|n| pick(&part[n * d.c + c])).sum::<f64>() as f32).collect()
    };
    let dw = want_w.then(|| batch_sum(|p| p.1));
    let db = want_b.then(|| batch_sum(|p| p.0));
    (dx, dw, db)
}

multiversion!(fn gn_bwd_unit(
    dxs: &mut [f32],
    ps: &mut [(f64, f64)],
    xs: &[f32],
    gs: &[f32],
    c0: usize,
    s: usize,
    w: Option<&[f32]>,
    eps: f64,
) => gn_bwd_unit_impl, gn_bwd_unit_impl);

/// One (n, group) unit of the backward: per-channel (Σg, Σg·x̂) into `ps`, dx in closed form.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn gn_bwd_unit_impl(dxs: &mut [f32], ps: &mut [(f64, f64)], xs: &[f32], gs: &[f32], c0: usize, s: usize, w: Option<&[f32]>, eps: f64) {
    let k = xs[0] as f64;
    let mut m = Moments::default();
    for (j, (xc, gc)) in xs.chunks(s).zip(gs.chunks(s)).enumerate() {
        m.add_run(xc, k);
        ps[j] = grad_sums(xc, gc, k); // (Σg, Σg·(x−k)) for now
    }
    let unit = xs.len();
    let (mean, rstd) = m.mean_rstd(unit, k, eps);
    // Σ_c γ_c Σg and Σ_c γ_c Σg·x̂ over the group, for mean(ĝ) and mean(ĝ∘x̂).
    let (mut sg, mut sgx) = (0f64, 0f64);
    for (j, p) in ps.iter_mut().enumerate() {
        let gx_hat = rstd * (p.1 - (mean - k) * p.0);
        *p = (p.0, gx_hat);
        let gamma = w.map_or(1.0, |w| w[c0 + j] as f64);
        sg += gamma * p.0;
        sgx += gamma * gx_hat;
    }
    let n = unit as f64;
    let (m1, m2) = (sg / n, sgx / n);
    // dx = rstd·γ_c·g − rstd²·m2·(x − μ) − rstd·m1: one pass with per-channel coefficients.
    let bcoef = (-rstd * rstd * m2) as f32;
    let ccoef = (-rstd * m1) as f32;
    let (mh, ml) = split_mean(mean);
    for (j, ((dc, xc), gc)) in dxs.chunks_mut(s).zip(xs.chunks(s)).zip(gs.chunks(s)).enumerate() {
        let a = (rstd * w.map_or(1.0, |w| w[c0 + j] as f64)) as f32;
        dc.iter_mut().zip(xc.iter().zip(gc)).for_each(|(o, (&x, &g))| *o = a * g + bcoef * (x - mh - ml) + ccoef);
    }
}

/// layer_norm forward over rows of length `dim`.
pub fn layer_norm(x: &[f32], dim: usize, w: Option<&[f32]>, b: Option<&[f32]>, eps: f64) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    if x.is_empty() || dim == 0 {
        return out;
    }
    // Blocks of rows per task, so the thread hand-off and the CPU-feature dispatch are paid once
    // per block rather than once per (short) row.
    let block = dim * LN_ROWS_PER_TASK;
    let task = |(o, xs): (&mut [f32], &[f32])| ln_fwd_rows(o, xs, dim, w, b, eps);
    if x.len() >= PAR_MIN {
        out.par_chunks_mut(block).zip(x.par_chunks(block)).for_each(task);
    } else {
        out.chunks_mut(block).zip(x.chunks(block)).for_each(task);
    }
    out
}

multiversion!(fn ln_fwd_rows(o: &mut [f32], xs: &[f32], dim: usize, w: Option<&[f32]>, b: Option<&[f32]>, eps: f64) => ln_fwd_rows_impl, ln_fwd_rows_impl);

#[inline(always)]
fn ln_fwd_rows_impl(o: &mut [f32], xs: &[f32], dim: usize, w: Option<&[f32]>, b: Option<&[f32]>, eps: f64) {
    for (o, xs) in o.chunks_mut(dim).zip(xs.chunks(dim)) {
        let k = xs[0] as f64;
        let mut m = Moments::default();
        m.add_run(xs, k);
        let (mean, rstd) = m.mean_rstd(dim, k, eps);
        let ((mh, ml), rstdf) = (split_mean(mean), rstd as f32);
        // Four specialised loops so each one vectorises without per-element Option checks.
        match (w, b) {
            (Some(w), Some(b)) => {
                o.iter_mut().zip(xs.iter().zip(w.iter().zip(b))).for_each(|(o, (&x, (&w, &b)))| *o = (x - mh - ml) * rstdf * w + b)
            }
            (Some(w), None) => o.iter_mut().zip(xs.iter().zip(w)).for_each(|(o, (&x, &w))| *o = (x - mh - ml) * rstdf * w),
            (None, Some(b)) => o.iter_mut().zip(xs.iter().zip(b)).for_each(|(o, (&x, &b))| *o = (x - mh - ml) * rstdf + b),
            (None, None) => o.iter_mut().zip(xs).for_each(|(o, &x)| *o = (x - mh - ml) * rstdf),
        }
    }
}

/// Rows per task: a backward task keeps its own dγ/dβ partial sums (length `dim`), so it must
/// cover enough rows to amortise them, and there must still be enough tasks to share.
const LN_ROWS_PER_TASK: usize = 32;

/// layer_norm backward: (dx, dγ, dβ) with dγ/dβ only when asked for.
pub fn layer_norm_backward(
    x: &[f32],
    g: &[f32],
    dim: usize,
    w: Option<&[f32]>,
    eps: f64,
    want_w: bool,
    want_b: bool,
) -> (Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>) {
    let mut dx = vec![0f32; x.len()];
    if x.is_empty() || dim == 0 {
        return (dx, want_w.then(|| vec![0.0; dim]), want_b.then(|| vec![0.0; dim]));
    }
    let block = dim * LN_ROWS_PER_TASK;
    let task = |((dxs, xs), gs): ((&mut [f32], &[f32]), &[f32])| ln_bwd_rows(dxs, xs, gs, dim, w, eps, want_w, want_b);
    type Partials = (Vec<f32>, Vec<f32>);
    let parts: Vec<Partials> = if x.len() >= PAR_MIN {
        dx.par_chunks_mut(block).zip(x.par_chunks(block)).zip(g.par_chunks(block)).map(task).collect()
    } else {
        dx.chunks_mut(block).zip(x.chunks(block)).zip(g.chunks(block)).map(task).collect()
    };
    // Blocks are combined in f64 so a long batch of rows does not drift.
    let combine = |pick: fn(&Partials) -> &Vec<f32>| -> Vec<f32> {
        (0..dim).map(|i| parts.iter().map(|p| pick(p)[i] as f64).sum::<f64>() as f32).collect()
    };
    let dw = want_w.then(|| combine(|p| &p.0));
    let db = want_b.then(|| combine(|p| &p.1));
    (dx, dw, db)
}

multiversion!(fn ln_bwd_rows(
    dxs: &mut [f32],
    xs: &[f32],
    gs: &[f32],
    dim: usize,
    w: Option<&[f32]>,
    eps: f64,
    want_w: bool,
    want_b: bool,
) -> (Vec<f32>, Vec<f32>) => ln_bwd_rows_impl, ln_bwd_rows_impl);

/// One block of rows of the backward: their dx, plus the block's f32 partial Σg·x̂ and Σg per column.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_bwd_rows_impl(dxs: &mut [f32], xs: &[f32], gs: &[f32], dim: usize, w: Option<&[f32]>, eps: f64, want_w: bool, want_b: bool) -> (Vec<f32>, Vec<f32>) {
    let mut pw = if want_w { vec![0f32; dim] } else { Vec::new() };
    let mut pb = if want_b { vec![0f32; dim] } else { Vec::new() };
    let mut gh = vec![0f32; if w.is_some() { dim } else { 0 }]; // ĝ = g·γ of the current row
    for ((dr, xr), gr) in dxs.chunks_mut(dim).zip(xs.chunks(dim)).zip(gs.chunks(dim)) {
        let k = xr[0] as f64;
        let mut m = Moments::default();
        m.add_run(xr, k);
        let (mean, rstd) = m.mean_rstd(dim, k, eps);
        let ((mh, ml), rstdf) = (split_mean(mean), rstd as f32);
        // Σĝ and Σĝ·(x−k) with ĝ = g·γ, in f64 lanes.
        let (sg, sgx) = match w {
            Some(w) => {
                gh.iter_mut().zip(gr.iter().zip(w)).for_each(|(h, (&g, &w))| *h = g * w);
                grad_sums(xr, &gh, k)
            }
            None => grad_sums(xr, gr, k),
        };
        let n = dim as f64;
        let m1 = sg / n;
        let m2 = rstd * (sgx - (mean - k) * sg) / n;
        let bcoef = (-rstd * rstd * m2) as f32;
        let ccoef = (-rstd * m1) as f32;
        let ghat: &[f32] = if w.is_some() { &gh } else { gr };
        dr.iter_mut().zip(ghat.iter().zip(xr)).for_each(|(d, (&gh, &x))| *d = rstdf * gh + bcoef * (x - mh - ml) + ccoef);
        if want_w {
            pw.iter_mut().zip(gr.iter().zip(xr)).for_each(|(p, (&g, &x))| *p += g * (x - mh - ml) * rstdf);
        }
        if want_b {
            pb.iter_mut().zip(gr).for_each(|(p, &g)| *p += g);
        }
    }
    (pw, pb)
}
