//! Fused scaled-dot-product attention on the CPU, FlashAttention-2 style (Dao 2023, Alg. 1 for the
//! forward, Alg. 2 for the backward).
//!
//! Why tiled: the score matrix of SD's 64×64 latent self-attention is 4096×4096 per head; we never
//! hold more than one `bq × bk` tile of it. The forward walks key blocks with an online softmax
//! (running max `m`, running sum `l`, the output accumulator rescaled when `m` grows); the backward
//! recomputes each probability tile from the saved row log-sum-exp instead of storing P.
//!
//! Why base 2: `scale·log2(e)` is folded into the copied Q block, so the tile holds scores in log2
//! units and the softmax needs `exp2(s − m)`, whose range reduction (`x − round(x)`) is exact. The
//! exp is the hot loop at D = 40 (one exp per 4·D flops of matrix products), so it is a polynomial
//! LLVM vectorises, compiled three times (AVX-512, AVX2+FMA, baseline) and picked at run time,
//! since the crate is not built with `target-cpu=native`.
//!
//! Matrix products go through the `gemm` crate with `Parallelism::None`: the threads are spent on
//! independent (batch, head, query block) items instead, which needs no synchronisation.

use super::matmul::sgemm;
use gemm::Parallelism;
use rayon::prelude::*;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2: f32 = std::f32::consts::LN_2;

/// Tile sizes (query rows × key columns of the score tile).
#[derive(Clone, Copy, Debug)]
pub struct Tiles {
    pub bq: usize,
    pub bk: usize,
}

/// Forward tiles, measured (`ATTN_SWEEP=1 cargo bench --bench attention`, 1 thread, min of 6, on
/// the 2-core AVX-512 EPYC, 8×4096² D=40): bq 64 × bk 512/1024/4096 took 254–258 ms; bq 32, 128
/// or 256, or bk ≤ 256, took 284–420 ms. 64 rows keep the Q block and the output accumulator in L1
/// while amortising the gemm crate's per-call packing of the K block.
pub const FWD_TILES: Tiles = Tiles { bq: 64, bk: 512 };
/// Backward tiles: two score-sized tiles (P and dP) plus the dK/dV accumulators of a key block.
pub const BWD_TILES: Tiles = Tiles { bq: 64, bk: 128 };

/// A [B, H, L, D] operand: the f32 storage and the element strides to read it by (any strides:
/// a q made by transposing [B, L, H, D] is read in place, never copied).
#[derive(Clone, Copy)]
pub struct Src<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub strides: [usize; 4],
}

impl Src<'_> {
    /// Storage offset of row 0 of head (b, h).
    fn head(&self, b: usize, h: usize) -> usize {
        self.offset + b * self.strides[0] + h * self.strides[1]
    }
    fn rs(&self) -> isize {
        self.strides[2] as isize
    }
    fn cs(&self) -> isize {
        self.strides[3] as isize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub b: usize,
    pub h: usize,
    pub lq: usize,
    pub lk: usize,
    pub d: usize,
    pub dv: usize,
}

// ---------------------------------------------------------------------------------------------
// exp

const ROUND_MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer in the low bits

/// a·b + c, fused when the caller is compiled with FMA (otherwise `mul_add` is a libm call).
#[inline(always)]
fn fma<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// 2^n for an integer n ∈ [-127, 128] stored as `n + ROUND_MAGIC` (the rounding trick's result):
/// the low mantissa bits of that sum are n, so shifting (n + 127) into the exponent field needs no
/// float→int conversion. n = -127 gives +0 (flush), n = 128 gives +inf.
#[inline(always)]
fn pow2_from_rounded(t: f32) -> f32 {
    f32::from_bits(t.to_bits().wrapping_add(127) << 23)
}

/// 2^x with relative error ≤ 2 ulp for x ∈ [-126, 128); 0 below -126.5 (f32 subnormals are
/// flushed: softmax terms that small vanish next to the row maximum's 1); NaN stays NaN.
#[inline(always)]
fn exp2_impl<const F: bool>(x: f32) -> f32 {
    // Compare-and-select (not f32::clamp/max) so that NaN passes through and it vectorises.
    let x = if x < -127.0 { -127.0 } else { x };
    let x = if x > 128.0 { 128.0 } else { x };
    let t = x + ROUND_MAGIC;
    let f = x - (t - ROUND_MAGIC); // exact, in [-0.5, 0.5]
    // Near-minimax fit of 2^f on [-0.5, 0.5] (relative error 2e-9 before f32 rounding).
    let p = fma::<F>(f, 1.535_336_2e-4, 1.339_887_5e-3);
    let p = fma::<F>(p, f, 9.618_437e-3);
    let p = fma::<F>(p, f, 5.550_332_4e-2);
    let p = fma::<F>(p, f, 2.402_264_8e-1);
    let p = fma::<F>(p, f, 6.931_472e-1);
    let p = fma::<F>(p, f, 1.0);
    p * pow2_from_rounded(t)
}

/// e^x by Cody–Waite reduction (x = n·ln2 + r, ln2 split in a high part exact in f32 and a low
/// part) and a degree-6 polynomial; a few ulp over [-88, 88], subnormal results included (the
/// power of two is applied in two halves so 2^n below 2^-126 stays exact).
#[inline(always)]
fn exp_impl<const F: bool>(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75; // 11 significant bits: n·LN2_HI is exact for |n| < 2^13
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = if x < -104.0 { -104.0 } else { x };
    let x = if x > 88.8 { 88.8 } else { x };
    let t = fma::<F>(x, LOG2E, ROUND_MAGIC);
    let n = t - ROUND_MAGIC;
    let r = fma::<F>(-n, LN2_HI, x);
    let r = fma::<F>(-n, LN2_LO, r);
    let p = fma::<F>(r, 1.384_365_4e-3, 8.374_155_5e-3);
    let p = fma::<F>(p, r, 4.166_800_2e-2);
    let p = fma::<F>(p, r, 1.666_643_2e-1);
    let p = fma::<F>(p, r, 4.999_999_4e-1);
    let p = fma::<F>(p, r, 1.0);
    let p = fma::<F>(p, r, 1.0);
    // n = n1 + n2 with both halves in the normal exponent range.
    let n1 = ((n as i32) >> 1) as f32;
    let n2 = n - n1;
    p * pow2_from_rounded(n1 + ROUND_MAGIC) * pow2_from_rounded(n2 + ROUND_MAGIC)
}

/// Fast 2^x (see `exp2_impl`): the softmax's exponential. Public for its accuracy test.
pub fn exp2_approx(x: f32) -> f32 {
    exp2_impl::<false>(x)
}

/// Fast e^x (see `exp_impl`). Public for its accuracy test and for other CPU kernels.
pub fn exp_approx(x: f32) -> f32 {
    exp_impl::<false>(x)
}

// ---------------------------------------------------------------------------------------------
// tile kernels (vectorised; each compiled per instruction set by `multiversion!`)

const LANES: usize = 16;

/// Max of a row. Explicit lane accumulators: LLVM does not reassociate a float max/sum fold on its
/// own, but it does vectorise 16 independent ones. NaN is ignored here; it still reaches the
/// output through the exp and the sum.
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in acc.iter().chain(chunks.remainder()) {
        m = if x > m { x } else { m };
    }
    m
}

/// row ← exp2(row − m), returning the row's sum.
#[inline(always)]
fn exp2_row<const F: bool>(row: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let p = exp2_impl::<F>(c[i] - m);
            c[i] = p;
            acc[i] += p;
        }
    }
    let mut s = 0.0;
    for x in chunks.into_remainder() {
        *x = exp2_impl::<F>(*x - m);
        s += *x;
    }
    s + acc.iter().sum::<f32>()
}

/// Online-softmax step for one score tile (rows × cols, log2 units): turns the scores into
/// unnormalised probabilities in place, updates the running max `m` and sum `l`, and rescales the
/// output accumulator rows (`dv` wide) by exp2(m_old − m_new).
#[inline(always)]
fn online_softmax_impl<const F: bool>(s: &mut [f32], cols: usize, m: &mut [f32], l: &mut [f32], acc: &mut [f32], dv: usize) {
    for (r, row) in s.chunks_exact_mut(cols).enumerate() {
        let m_old = m[r];
        let mx = row_max(row);
        let m_new = if mx > m_old { mx } else { m_old };
        if m_new == f32::NEG_INFINITY {
            // Every key so far is masked: the row has no probability mass yet (and −inf − −inf
            // would be NaN).
            row.fill(0.0);
            continue;
        }
        let sum = exp2_row::<F>(row, m_new);
        let alpha = exp2_impl::<F>(m_old - m_new); // 0 when m_old = −inf, exactly 1 when equal
        l[r] = l[r] * alpha + sum;
        if alpha != 1.0 {
            acc[r * dv..(r + 1) * dv].iter_mut().for_each(|x| *x *= alpha);
        }
        m[r] = m_new;
    }
}

/// Backward probabilities: s ← exp2(s − lse2[r]) (lse2 is the log2-unit lse, +inf for rows that
/// are fully masked so that their P is 0).
#[inline(always)]
fn probs_impl<const F: bool>(s: &mut [f32], cols: usize, lse2: &[f32]) {
    for (row, &m) in s.chunks_exact_mut(cols).zip(lse2) {
        row.iter_mut().for_each(|x| *x = exp2_impl::<F>(*x - m));
    }
}

/// dS = P ∘ (dP − Dᵣ) · scale, written over dP.
#[inline(always)]
fn dscores_impl<const F: bool>(dp: &mut [f32], p: &[f32], cols: usize, di: &[f32], scale: f32) {
    for ((dprow, prow), &d) in dp.chunks_exact_mut(cols).zip(p.chunks_exact(cols)).zip(di) {
        dprow.iter_mut().zip(prow).for_each(|(x, &p)| *x = p * (*x - d) * scale);
    }
}

/// s[r, c] += mask[r·rs + c·cs]·log2(e) over a rows × cols tile.
#[inline(always)]
fn add_mask_impl<const F: bool>(s: &mut [f32], cols: usize, mask: &[f32], rs: usize, cs: usize) {
    for (r, row) in s.chunks_exact_mut(cols).enumerate() {
        let base = r * rs;
        if cs == 1 {
            let mrow = &mask[base..base + cols];
            row.iter_mut().zip(mrow).for_each(|(x, &mk)| *x = fma::<F>(mk, LOG2E, *x));
        } else {
            row.iter_mut().enumerate().for_each(|(c, x)| *x = fma::<F>(mask[base + c * cs], LOG2E, *x));
        }
    }
}

multiversion!(fn online_softmax(s: &mut [f32], cols: usize, m: &mut [f32], l: &mut [f32], acc: &mut [f32], dv: usize) => online_softmax_impl::<true>, online_softmax_impl::<false>);
multiversion!(fn probs(s: &mut [f32], cols: usize, lse2: &[f32]) => probs_impl::<true>, probs_impl::<false>);
multiversion!(fn dscores(dp: &mut [f32], p: &[f32], cols: usize, di: &[f32], scale: f32) => dscores_impl::<true>, dscores_impl::<false>);
multiversion!(fn add_mask(s: &mut [f32], cols: usize, mask: &[f32], rs: usize, cs: usize) => add_mask_impl::<true>, add_mask_impl::<false>);

/// Copies rows × d of a strided head into `dst` (contiguous) times `mul`.
fn copy_scaled(dst: &mut [f32], src: &Src, head: usize, row0: usize, rows: usize, d: usize, mul: f32) {
    let (rs, cs) = (src.strides[2], src.strides[3]);
    for r in 0..rows {
        let base = head + (row0 + r) * rs;
        let out = &mut dst[r * d..(r + 1) * d];
        if cs == 1 {
            out.iter_mut().zip(&src.data[base..base + d]).for_each(|(o, &x)| *o = x * mul);
        } else {
            out.iter_mut().enumerate().for_each(|(c, o)| *o = src.data[base + c * cs] * mul);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// forward

struct FwdScratch {
    q: Vec<f32>,
    s: Vec<f32>,
    acc: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
}

/// softmax(q kᵀ·scale + mask) v. Returns the output [B, H, Lq, Dv] and the row log-sum-exp
/// [B, H, Lq] of the scaled, masked scores (natural log; −inf for a fully masked row, whose
/// output is 0). `mask`'s strides are those of its broadcast to [B, H, Lq, Lk].
pub fn forward(dims: Dims, q: Src, k: Src, v: Src, mask: Option<Src>, scale: f32, tiles: Tiles) -> (Vec<f32>, Vec<f32>) {
    let Dims { b: _, h: nh, lq, lk, d, dv } = dims;
    let heads = dims.b * nh;
    let mut out = vec![0f32; heads * lq * dv];
    let mut lse = vec![0f32; heads * lq];
    if heads * lq == 0 || dv == 0 {
        return (out, lse);
    }
    let (bq, bk) = (tiles.bq.clamp(1, lq), tiles.bk.clamp(1, lk));
    let qmul = scale * LOG2E;
    out.par_chunks_mut(lq * dv).zip(lse.par_chunks_mut(lq)).enumerate().for_each(|(bh, (o_head, lse_head))| {
        let (bi, hi) = (bh / nh, bh % nh);
        let (qh, kh, vh) = (q.head(bi, hi), k.head(bi, hi), v.head(bi, hi));
        let mh = mask.map(|m| m.head(bi, hi));
        let init = || FwdScratch {
            q: vec![0.0; bq * d],
            s: vec![0.0; bq * bk],
            acc: vec![0.0; bq * dv],
            m: vec![0.0; bq],
            l: vec![0.0; bq],
        };
        o_head.par_chunks_mut(bq * dv).zip(lse_head.par_chunks_mut(bq)).enumerate().for_each_init(init, |sc, (qb, (o_blk, lse_blk))| {
            let (i0, rows) = (qb * bq, lse_blk.len());
            copy_scaled(&mut sc.q, &q, qh, i0, rows, d, qmul);
            let (m, l, acc) = (&mut sc.m[..rows], &mut sc.l[..rows], &mut sc.acc[..rows * dv]);
            m.fill(f32::NEG_INFINITY);
            l.fill(0.0);
            acc.fill(0.0);
            for j0 in (0..lk).step_by(bk) {
                let cols = bk.min(lk - j0);
                let s = &mut sc.s[..rows * cols];
                // S = (Q·scale·log2e) Kᵀ   [rows × cols]
                // SAFETY: the K rows j0..j0+cols of this head lie inside k.data (its layout was
                // validated against the storage when the tensor was built).
                unsafe {
                    sgemm(rows, cols, d, s, false, sc.q.as_ptr(), d as isize, 1,
                        k.data.as_ptr().add(kh + j0 * k.strides[2]), k.cs(), k.rs(), Parallelism::None)
                };
                if let (Some(mk), Some(mh)) = (&mask, mh) {
                    let (rs, cs) = (mk.strides[2], mk.strides[3]);
                    add_mask(s, cols, &mk.data[mh + i0 * rs + j0 * cs..], rs, cs);
                }
                online_softmax(s, cols, m, l, acc, dv);
                // acc += P V   [rows × dv]
                // SAFETY: as above, for V's rows j0..j0+cols.
                unsafe {
                    sgemm(rows, dv, cols, acc, true, s.as_ptr(), cols as isize, 1,
                        v.data.as_ptr().add(vh + j0 * v.strides[2]), v.rs(), v.cs(), Parallelism::None)
                };
            }
            for r in 0..rows {
                let lr = l[r];
                // l = 0 only when every key is masked: output 0, lse −inf (NaN stays NaN).
                let inv = if lr == 0.0 { 0.0 } else { 1.0 / lr };
                o_blk[r * dv..(r + 1) * dv].iter_mut().zip(&acc[r * dv..(r + 1) * dv]).for_each(|(o, &a)| *o = a * inv);
                lse_blk[r] = if lr == 0.0 { f32::NEG_INFINITY } else { (m[r] + lr.log2()) * LN2 };
            }
        });
    });
    (out, lse)
}

// ---------------------------------------------------------------------------------------------
// backward

struct BwdScratch {
    q: Vec<f32>,
    s: Vec<f32>,
    dp: Vec<f32>,
}

/// (dq, dk, dv), each contiguous [B, H, L, ·], for the forward above given its output `out`
/// (contiguous [B, H, Lq, Dv]), its `lse` ([B, H, Lq]) and the output gradient `g`.
///
/// Work items are (head, group of key blocks); each owns its dK/dV rows and a private dQ partial
/// for its head, summed afterwards, so no two threads write the same memory. Heads alone give
/// enough items for SD (B·H ≥ 8); key groups only split heads when there are fewer than 2 per thread.
#[allow(clippy::too_many_arguments)]
pub fn backward(dims: Dims, q: Src, k: Src, v: Src, mask: Option<Src>, scale: f32, out: &[f32], lse: &[f32], g: Src, tiles: Tiles) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let Dims { b: _, h: nh, lq, lk, d, dv } = dims;
    let heads = dims.b * nh;
    let (mut dq, mut dk, mut dvv) = (vec![0f32; heads * lq * d], vec![0f32; heads * lk * d], vec![0f32; heads * lk * dv]);
    if heads * lq * lk * d == 0 || dv == 0 {
        return (dq, dk, dvv);
    }
    let (bq, bk) = (tiles.bq.clamp(1, lq), tiles.bk.clamp(1, lk));

    // Dᵢ = rowsum(dO ∘ O); lse in log2 units, +inf where a row is fully masked (P = 0 there).
    let mut di = vec![0f32; heads * lq];
    di.par_chunks_mut(lq).enumerate().for_each(|(bh, dh)| {
        let gh = g.head(bh / nh, bh % nh);
        for (i, x) in dh.iter_mut().enumerate() {
            let o = &out[(bh * lq + i) * dv..(bh * lq + i + 1) * dv];
            *x = o.iter().enumerate().map(|(c, &o)| o * g.data[gh + i * g.strides[2] + c * g.strides[3]]).sum();
        }
    });
    let lse2: Vec<f32> = lse.iter().map(|&x| if x == f32::NEG_INFINITY { f32::INFINITY } else { x * LOG2E }).collect();

    let nkb = lk.div_ceil(bk);
    let want_groups = (2 * rayon::current_num_threads()).div_ceil(heads).clamp(1, nkb);
    let blocks_per_group = nkb.div_ceil(want_groups);
    let groups = nkb.div_ceil(blocks_per_group);
    let items: Vec<(usize, usize)> = (0..heads).flat_map(|bh| (0..groups).map(move |gi| (bh, gi))).collect();
    let qmul = scale * LOG2E;
    let init = || BwdScratch { q: vec![0.0; lq * d], s: vec![0.0; bq * bk], dp: vec![0.0; bq * bk] };
    let parts: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = items
        .par_iter()
        .map_init(init, |sc, &(bh, gi)| {
            let (bi, hi) = (bh / nh, bh % nh);
            let (qh, kh, vh, gh) = (q.head(bi, hi), k.head(bi, hi), v.head(bi, hi), g.head(bi, hi));
            let mh = mask.map(|m| m.head(bi, hi));
            let (k0, k1) = (gi * blocks_per_group * bk, ((gi + 1) * blocks_per_group * bk).min(lk));
            let mut dq_part = vec![0f32; lq * d];
            let mut dk_part = vec![0f32; (k1 - k0) * d];
            let mut dv_part = vec![0f32; (k1 - k0) * dv];
            copy_scaled(&mut sc.q, &q, qh, 0, lq, d, qmul);
            let (lse2h, dih) = (&lse2[bh * lq..(bh + 1) * lq], &di[bh * lq..(bh + 1) * lq]);
            for j0 in (k0..k1).step_by(bk) {
                let cols = bk.min(k1 - j0);
                let dk_acc = &mut dk_part[(j0 - k0) * d..(j0 - k0 + cols) * d];
                let dv_acc = &mut dv_part[(j0 - k0) * dv..(j0 - k0 + cols) * dv];
                // SAFETY (all sgemm calls below): every operand is a row range of one head of a
                // validated tensor (q, k, v, g) or a scratch buffer sized rows × cols.
                let (kj, vj) = unsafe { (k.data.as_ptr().add(kh + j0 * k.strides[2]), v.data.as_ptr().add(vh + j0 * v.strides[2])) };
                for i0 in (0..lq).step_by(bq) {
                    let rows = bq.min(lq - i0);
                    let s = &mut sc.s[..rows * cols];
                    let dp = &mut sc.dp[..rows * cols];
                    let (qi, gi_) = unsafe { (q.data.as_ptr().add(qh + i0 * q.strides[2]), g.data.as_ptr().add(gh + i0 * g.strides[2])) };
                    // P = exp(S − lse), S recomputed in log2 units.
                    unsafe { sgemm(rows, cols, d, s, false, sc.q[i0 * d..].as_ptr(), d as isize, 1, kj, k.cs(), k.rs(), Parallelism::None) };
                    if let (Some(mk), Some(mh)) = (&mask, mh) {
                        let (rs, cs) = (mk.strides[2], mk.strides[3]);
                        add_mask(s, cols, &mk.data[mh + i0 * rs + j0 * cs..], rs, cs);
                    }
                    probs(s, cols, &lse2h[i0..i0 + rows]);
                    // dV += Pᵀ dO
                    unsafe { sgemm(cols, dv, rows, dv_acc, true, s.as_ptr(), 1, cols as isize, gi_, g.rs(), g.cs(), Parallelism::None) };
                    // dP = dO Vᵀ
                    unsafe { sgemm(rows, cols, dv, dp, false, gi_, g.rs(), g.cs(), vj, v.cs(), v.rs(), Parallelism::None) };
                    dscores(dp, s, cols, &dih[i0..i0 + rows], scale);
                    // dQ += dS K;  dK += dSᵀ Q   (dS already carries the scale)
                    unsafe { sgemm(rows, d, cols, &mut dq_part[i0 * d..(i0 + rows) * d], true, dp.as_ptr(), cols as isize, 1, kj, k.rs(), k.cs(), Parallelism::None) };
                    unsafe { sgemm(cols, d, rows, dk_acc, true, dp.as_ptr(), 1, cols as isize, qi, q.rs(), q.cs(), Parallelism::None) };
                }
            }
            (dq_part, dk_part, dv_part)
        })
        .collect();

    for (&(bh, gi), (dq_part, dk_part, dv_part)) in items.iter().zip(parts) {
        let k0 = gi * blocks_per_group * bk;
        dq[bh * lq * d..(bh + 1) * lq * d].iter_mut().zip(&dq_part).for_each(|(a, &b)| *a += b);
        dk[(bh * lk + k0) * d..(bh * lk + k0) * d + dk_part.len()].copy_from_slice(&dk_part);
        dvv[(bh * lk + k0) * dv..(bh * lk + k0) * dv + dv_part.len()].copy_from_slice(&dv_part);
    }
    (dq, dk, dvv)
}
