//! group_norm, layer_norm, upsample_nearest2d, avg_pool2d, max_pool2d and pad2d: forward against naive f64
//! references written here (two-pass statistics, explicit index arithmetic), gradients against
//! finite differences, f16/bf16 round trips, non-contiguous inputs and argument errors.

mod common;

use common::{assert_close, grad_check, randn, strided_copy, vals};
use ldm_engine::autograd::PadMode;
use ldm_engine::{DType, Tensor};

// ---------- f64 references ----------

/// torch.nn.functional.group_norm on x [n, c, s] in f64, two-pass mean/variance.
#[allow(clippy::too_many_arguments)]
fn group_norm_ref(x: &[f64], n: usize, c: usize, s: usize, groups: usize, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> Vec<f64> {
    let cpg = c / groups;
    let mut out = vec![0.0; x.len()];
    for ni in 0..n {
        for gi in 0..groups {
            let base = (ni * c + gi * cpg) * s;
            let unit = &x[base..base + cpg * s];
            let mean = unit.iter().sum::<f64>() / unit.len() as f64;
            let var = unit.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / unit.len() as f64;
            for j in 0..cpg * s {
                let ch = gi * cpg + j / s;
                let y = (unit[j] - mean) / (var + eps).sqrt();
                out[base + j] = y * w.map_or(1.0, |w| w[ch]) + b.map_or(0.0, |b| b[ch]);
            }
        }
    }
    out
}

fn layer_norm_ref(x: &[f64], d: usize, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|r| {
            let mean = r.iter().sum::<f64>() / d as f64;
            let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            (0..d).map(move |i| (r[i] - mean) / (var + eps).sqrt() * w.map_or(1.0, |w| w[i]) + b.map_or(0.0, |b| b[i]))
        })
        .collect()
}

/// Nearest with exact integer arithmetic: src = floor(dst·in/out).
fn upsample_ref(x: &[f64], planes: usize, h: usize, w: usize, oh: usize, ow: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for p in 0..planes {
        for i in 0..oh {
            for j in 0..ow {
                out.push(x[p * h * w + (i * h / oh) * w + j * w / ow]);
            }
        }
    }
    out
}

fn avg_pool_ref(x: &[f64], planes: usize, h: usize, w: usize, k: (usize, usize), s: (usize, usize)) -> Vec<f64> {
    let (oh, ow) = ((h - k.0) / s.0 + 1, (w - k.1) / s.1 + 1);
    let mut out = Vec::new();
    for p in 0..planes {
        for i in 0..oh {
            for j in 0..ow {
                let mut acc = 0.0;
                for a in 0..k.0 {
                    for c in 0..k.1 {
                        acc += x[p * h * w + (i * s.0 + a) * w + j * s.1 + c];
                    }
                }
                out.push(acc / (k.0 * k.1) as f64);
            }
        }
    }
    out
}

/// Max of each window and the flat plane index it came from (first maximum on ties).
fn max_pool_ref(x: &[f64], planes: usize, h: usize, w: usize, k: (usize, usize), s: (usize, usize)) -> (Vec<f64>, Vec<usize>) {
    let (oh, ow) = ((h - k.0) / s.0 + 1, (w - k.1) / s.1 + 1);
    let (mut out, mut arg) = (Vec::new(), Vec::new());
    for p in 0..planes {
        for i in 0..oh {
            for j in 0..ow {
                let mut best = (f64::NEG_INFINITY, 0);
                for a in 0..k.0 {
                    for c in 0..k.1 {
                        let idx = (i * s.0 + a) * w + j * s.1 + c;
                        if x[p * h * w + idx] > best.0 {
                            best = (x[p * h * w + idx], idx);
                        }
                    }
                }
                out.push(best.0);
                arg.push(p * h * w + best.1);
            }
        }
    }
    (out, arg)
}

/// One padded line built by concatenation: mirrored slice (edge excluded) + line + mirrored slice.
fn pad_line(v: &[f64], before: usize, after: usize, reflect: bool) -> Vec<f64> {
    let n = v.len();
    let mut out = Vec::new();
    if reflect {
        out.extend(v[1..=before].iter().rev());
        out.extend_from_slice(v);
        out.extend(v[n - 1 - after..n - 1].iter().rev());
    } else {
        out.extend(std::iter::repeat_n(0.0, before));
        out.extend_from_slice(v);
        out.extend(std::iter::repeat_n(0.0, after));
    }
    out
}

/// Pads rows first, then columns of the row-padded plane (separable, like the op's definition).
fn pad_ref(x: &[f64], planes: usize, h: usize, w: usize, p: [usize; 4], reflect: bool) -> Vec<f64> {
    let [l, r, t, b] = p;
    let ow = w + l + r;
    let mut out = Vec::new();
    for pl in 0..planes {
        let rows: Vec<Vec<f64>> = (0..h).map(|i| pad_line(&x[pl * h * w + i * w..pl * h * w + (i + 1) * w], l, r, reflect)).collect();
        // Columns: pad each column of the row-padded plane.
        let mut cols: Vec<Vec<f64>> = Vec::new();
        for j in 0..ow {
            let col: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            cols.push(pad_line(&col, t, b, reflect));
        }
        for i in 0..h + t + b {
            for col in cols.iter() {
                out.push(col[i]);
            }
        }
    }
    out
}

fn opt(t: &Option<Tensor>) -> Option<Vec<f64>> {
    t.as_ref().map(vals)
}

// ---------- group_norm ----------

// f32 kernel vs f64 reference on O(1) outputs: a few f32 ulps of rounding → atol 1e-5, rtol 1e-5.
const F32_TOL: (f64, f64) = (1e-5, 1e-5);

#[test]
fn group_norm_forward_matches_reference() {
    // 3-D [N, C, L], 4-D and 5-D inputs; odd sizes; every weight/bias combination.
    for (k, shape) in [vec![2, 6, 35], vec![2, 6, 5, 7], vec![1, 4, 3, 2, 3]].into_iter().enumerate() {
        let (n, c) = (shape[0], shape[1]);
        let s: usize = shape[2..].iter().product();
        let groups = if c == 6 { 3 } else { 2 };
        let x = randn(&shape, 10 + k as u64);
        let w = randn(&[c], 20);
        let b = randn(&[c], 21);
        for (wi, bi) in [(false, false), (true, false), (false, true), (true, true)] {
            let (wt, bt) = (wi.then(|| w.clone()), bi.then(|| b.clone()));
            let y = x.group_norm(groups, wt.as_ref(), bt.as_ref(), 1e-5).unwrap();
            assert_eq!(y.shape(), &shape[..]);
            let want = group_norm_ref(&vals(&x), n, c, s, groups, opt(&wt).as_deref(), opt(&bt).as_deref(), 1e-5);
            assert_close(&vals(&y), &want, F32_TOL.0, F32_TOL.1, &format!("group_norm {shape:?} w={wi} b={bi}"));
        }
    }
}

#[test]
fn group_norm_large_batch_runs_parallel_path() {
    // 2×32×24×24 = 36864 elements ≥ PAR_MIN: the rayon path, 32 groups of one channel each.
    let x = randn(&[2, 32, 24, 24], 1);
    let (w, b) = (randn(&[32], 2), randn(&[32], 3));
    let y = x.group_norm(32, Some(&w), Some(&b), 1e-6).unwrap();
    let want = group_norm_ref(&vals(&x), 2, 32, 576, 32, Some(&vals(&w)), Some(&vals(&b)), 1e-6);
    assert_close(&vals(&y), &want, F32_TOL.0, F32_TOL.1, "group_norm parallel");
}

#[test]
fn group_norm_large_offset_is_stable() {
    // mean 1000 ≫ std 1: naive f32 E[x²]−E[x]² would lose every digit. The reference sees the
    // same f32 inputs, so the only error is f32 output rounding: atol 2e-5.
    let x = randn(&[2, 4, 9, 5], 4).affine(1.0, 1000.0).unwrap();
    let y = x.group_norm(2, None, None, 1e-5).unwrap();
    let want = group_norm_ref(&vals(&x), 2, 4, 45, 2, None, None, 1e-5);
    assert_close(&vals(&y), &want, 2e-5, 1e-5, "group_norm offset 1000");
}

#[test]
fn group_norm_non_contiguous_input() {
    let x = randn(&[2, 6, 5, 7], 5);
    let xs = strided_copy(&x);
    assert!(!xs.is_contiguous());
    let w = randn(&[6], 6);
    let y = xs.group_norm(3, Some(&w), None, 1e-5).unwrap();
    let want = group_norm_ref(&vals(&x), 2, 6, 35, 3, Some(&vals(&w)), None, 1e-5);
    assert_close(&vals(&y), &want, F32_TOL.0, F32_TOL.1, "group_norm strided");
}

/// f16/bf16 in → same dtype out. The reference normalises the already-rounded inputs in f64, so
/// the error is the output rounding (half an ulp: 2^-11 for f16, 2^-8 for bf16, relative) plus
/// f32 compute; tolerance 2 ulps of the format, relative, with the same absolute floor.
fn low_precision_tol(dt: DType) -> f64 {
    match dt {
        DType::F16 => 2.0 * 2f64.powi(-10),
        _ => 2.0 * 2f64.powi(-7),
    }
}

#[test]
fn norms_keep_half_dtypes() {
    for dt in [DType::F16, DType::BF16] {
        let tol = low_precision_tol(dt);
        let x = randn(&[2, 6, 5, 7], 7).to_dtype(dt).unwrap();
        let w = randn(&[6], 8).to_dtype(dt).unwrap();
        let b = randn(&[6], 9).to_dtype(dt).unwrap();
        let y = x.group_norm(3, Some(&w), Some(&b), 1e-5).unwrap();
        assert_eq!(y.dtype(), dt);
        let want = group_norm_ref(&vals(&x), 2, 6, 35, 3, Some(&vals(&w)), Some(&vals(&b)), 1e-5);
        assert_close(&vals(&y), &want, tol, tol, &format!("group_norm {dt:?}"));

        let x = randn(&[3, 5, 33], 10).to_dtype(dt).unwrap();
        let w = randn(&[33], 11).to_dtype(dt).unwrap();
        let y = x.layer_norm(Some(&w), None, 1e-5).unwrap();
        assert_eq!(y.dtype(), dt);
        let want = layer_norm_ref(&vals(&x), 33, Some(&vals(&w)), None, 1e-5);
        assert_close(&vals(&y), &want, tol, tol, &format!("layer_norm {dt:?}"));
    }
}

// Gradient checks use common::grad_check's default tolerance (atol 2e-3 + rtol 2e-2, see its doc:
// central differences with h = 1e-2 on O(1) inputs). Units of ≥ 20 values keep the norm's third
// derivative (which scales like 1/unit) small enough for that step.

/// group_norm_silu is silu(group_norm(x)) computed in one op: the same values (the CPU applies
/// the same f32 SiLU to the same norm output, so equal bit for bit) and gradients by finite
/// differences, with and without the affine parameters.
#[test]
fn group_norm_silu_is_the_fused_pair() {
    let x = randn(&[2, 6, 5, 7], 40);
    let (w, b) = (randn(&[6], 41), randn(&[6], 42));
    let fused = x.group_norm_silu(3, Some(&w), Some(&b), 1e-5).unwrap();
    let pair = x.group_norm(3, Some(&w), Some(&b), 1e-5).unwrap().silu().unwrap();
    assert_eq!(vals(&fused), vals(&pair));
    grad_check(|t| t[0].group_norm_silu(3, Some(&t[1]), Some(&t[2]), 1e-5), &[x.clone(), w.clone(), b.clone()], "group_norm_silu x,w,b");
    grad_check(|t| t[0].group_norm_silu(2, None, None, 1e-5), &[randn(&[3, 4, 11], 43)], "group_norm_silu x only");
}

/// group_norm_silu_shifted is silu(group_norm(x + shift[n, c])): against the f64 reference of
/// the shifted input (per-sample rows and one row broadcast to every sample, the shift read in
/// place from a column slice as the UNet passes it); when a gradient is asked for, the recorded
/// add and norm (gradients by finite differences through it); bad shifts are one-line errors.
#[test]
fn group_norm_silu_shifted_adds_the_shift_before_the_norm() {
    let (n, c, s, groups) = (2, 6, 35, 3);
    let x = randn(&[n, c, 5, 7], 60);
    let (w, b) = (randn(&[6], 61), randn(&[6], 62));
    let wide = randn(&[n, 10], 63).mul_scalar(3.0).unwrap();
    for (name, shift) in [("per sample", wide.narrow(1, 2, c).unwrap()), ("broadcast", wide.narrow(0, 1, 1).unwrap().narrow(1, 4, c).unwrap())] {
        let (xv, sv) = (vals(&x), vals(&shift));
        let shifted: Vec<f64> = xv.iter().enumerate().map(|(i, v)| v + sv[if shift.dim(0).unwrap() == 1 { 0 } else { i / (c * s) * c } + i / s % c]).collect();
        let want: Vec<f64> = group_norm_ref(&shifted, n, c, s, groups, Some(&vals(&w)), Some(&vals(&b)), 1e-5).iter().map(|z| z / (1.0 + (-z).exp())).collect();
        let got = x.group_norm_silu_shifted(&shift, groups, Some(&w), Some(&b), 1e-5).unwrap();
        assert_eq!(got.shape(), x.shape());
        assert_close(&vals(&got), &want, 1e-5, 1e-5, name);
        let tracked = x.requires_grad().group_norm_silu_shifted(&shift, groups, Some(&w), Some(&b), 1e-5).unwrap();
        assert_close(&vals(&tracked), &want, 1e-5, 1e-5, &format!("{name}, recorded"));
    }
    grad_check(|t| t[0].group_norm_silu_shifted(&t[1], 3, Some(&t[2]), None, 1e-5), &[x.clone(), randn(&[n, c], 64), w.clone()], "shifted x,shift,w");
    for bad in [&[n, c + 1][..], &[3, c], &[n, c, 1, 1]] {
        let e = x.group_norm_silu_shifted(&Tensor::zeros(bad, DType::F32), groups, None, None, 1e-5).unwrap_err().to_string();
        assert!(e.contains("group_norm_silu_shifted") && e.contains("shift has shape") && !e.contains('\n'), "{e}");
    }
}

#[test]
fn group_norm_gradients() {
    let x = randn(&[2, 6, 5, 7], 12);
    let w = randn(&[6], 13);
    let b = randn(&[6], 14);
    grad_check(|t| t[0].group_norm(3, Some(&t[1]), Some(&t[2]), 1e-5), &[x.clone(), w.clone(), b.clone()], "group_norm x,w,b");
    grad_check(|t| t[0].group_norm(3, None, None, 1e-5), std::slice::from_ref(&x), "group_norm x only");
    grad_check(|t| t[0].group_norm(2, Some(&t[1]), None, 1e-5), &[randn(&[3, 4, 11], 15), randn(&[4], 16)], "group_norm 3-D x,w");
    grad_check(|t| t[0].group_norm(3, None, Some(&t[1]), 1e-5), &[x.clone(), b.clone()], "group_norm x,b");
    // Non-contiguous input inside the graph: the gradient flows back through the transposes.
    grad_check(|t| strided_copy(&t[0]).group_norm(3, Some(&t[1]), None, 1e-5), &[x, w], "group_norm strided");
}

#[test]
fn group_norm_gradients_parallel_path() {
    // Above PAR_MIN so the backward's rayon path and the batch sum of dγ/dβ are exercised.
    let x = randn(&[2, 8, 48, 48], 17);
    let (w, b) = (randn(&[8], 18), randn(&[8], 19));
    common::grad_check_with(|t| t[0].group_norm(4, Some(&t[1]), Some(&t[2]), 1e-5), &[x, w, b], 1e-2, 2e-3, 2e-2, 12, "group_norm big");
}

// ---------- layer_norm ----------

#[test]
fn layer_norm_forward_matches_reference() {
    let x = randn(&[3, 5, 33], 30);
    let (w, b) = (randn(&[33], 31), randn(&[33], 32));
    for (wi, bi) in [(false, false), (true, false), (false, true), (true, true)] {
        let (wt, bt) = (wi.then(|| w.clone()), bi.then(|| b.clone()));
        let y = x.layer_norm(wt.as_ref(), bt.as_ref(), 1e-5).unwrap();
        let want = layer_norm_ref(&vals(&x), 33, opt(&wt).as_deref(), opt(&bt).as_deref(), 1e-5);
        assert_close(&vals(&y), &want, F32_TOL.0, F32_TOL.1, &format!("layer_norm w={wi} b={bi}"));
    }
    // Non-contiguous, and a size above PAR_MIN (parallel rows).
    let y = strided_copy(&x).layer_norm(Some(&w), Some(&b), 1e-5).unwrap();
    let want = layer_norm_ref(&vals(&x), 33, Some(&vals(&w)), Some(&vals(&b)), 1e-5);
    assert_close(&vals(&y), &want, F32_TOL.0, F32_TOL.1, "layer_norm strided");
    let big = randn(&[300, 129], 33).affine(1.0, 500.0).unwrap();
    let y = big.layer_norm(None, None, 1e-6).unwrap();
    // Offset 500: as for group_norm, the shifted f64 statistics keep this at output rounding.
    assert_close(&vals(&y), &layer_norm_ref(&vals(&big), 129, None, None, 1e-6), 2e-5, 1e-5, "layer_norm big");
}

#[test]
fn layer_norm_gradients() {
    let x = randn(&[3, 5, 33], 34);
    let (w, b) = (randn(&[33], 35), randn(&[33], 36));
    grad_check(|t| t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-5), &[x.clone(), w.clone(), b.clone()], "layer_norm x,w,b");
    grad_check(|t| t[0].layer_norm(None, None, 1e-5), std::slice::from_ref(&x), "layer_norm x");
    grad_check(|t| t[0].layer_norm(Some(&t[1]), None, 1e-5), &[x.clone(), w], "layer_norm x,w");
    grad_check(|t| t[0].layer_norm(None, Some(&t[1]), 1e-5), &[x, b], "layer_norm x,b");
    // 40 rows → two backward tasks of 32 rows, and a parallel-sized batch.
    let big = randn(&[1100, 33], 37);
    common::grad_check_with(|t| t[0].layer_norm(Some(&t[1]), Some(&t[2]), 1e-5), &[big, randn(&[33], 38), randn(&[33], 39)], 1e-2, 2e-3, 2e-2, 12, "layer_norm big");
}

// ---------- upsample_nearest2d ----------

// Gathers and sums copy values exactly (upsample, pad) or add ≤ 9 f32 values (avg_pool):
// the forward is compared exactly or at f32 rounding (atol 1e-6).

#[test]
fn upsample_forward() {
    let x = randn(&[2, 3, 5, 7], 40);
    let xv = vals(&x);
    for (oh, ow) in [(10, 14), (8, 3), (5, 7), (3, 16)] {
        let y = x.upsample_nearest2d(oh, ow).unwrap();
        assert_eq!(y.shape(), &[2, 3, oh, ow]);
        assert_eq!(vals(&y), upsample_ref(&xv, 6, 5, 7, oh, ow), "upsample to {oh}x{ow}");
    }
    // rank 2 and non-contiguous input
    let y = strided_copy(&x).upsample_nearest2d(8, 3).unwrap();
    assert_eq!(vals(&y), upsample_ref(&xv, 6, 5, 7, 8, 3));
    let x2 = randn(&[5, 7], 41);
    assert_eq!(vals(&x2.upsample_nearest2d(10, 14).unwrap()), upsample_ref(&vals(&x2), 1, 5, 7, 10, 14));
    // f16 stays f16 and copies values bit-exactly
    let xh = x.to_dtype(DType::F16).unwrap();
    let yh = xh.upsample_nearest2d(10, 14).unwrap();
    assert_eq!(yh.dtype(), DType::F16);
    assert_eq!(vals(&yh), upsample_ref(&vals(&xh), 6, 5, 7, 10, 14));
}

#[test]
fn upsample_matches_torch_float_indexing() {
    // 26 → 22 is a case where torch's f32 index math (floor(dst · (f32)(in/out))) differs from
    // exact integer floor(dst·in/out) at dst = 11; the expected indices were printed by
    // torch 2.x: F.interpolate(arange(26)[None,None,None], size=(1,22), mode='nearest').
    let torch_idx = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24];
    let x = Tensor::arange(0.0, 26.0, 1.0, DType::F32).unwrap().reshape(&[1, 26]).unwrap();
    let y = x.upsample_nearest2d(1, 22).unwrap();
    assert_eq!(vals(&y), torch_idx.iter().map(|&i| i as f64).collect::<Vec<_>>());
}

#[test]
fn upsample_gradients() {
    // Linear op: finite differences are exact up to f32 rounding, default tolerance is ample.
    grad_check(|t| t[0].upsample_nearest2d(10, 14), &[randn(&[2, 3, 5, 7], 42)], "upsample 2x");
    grad_check(|t| t[0].upsample_nearest2d(8, 3), &[randn(&[2, 3, 5, 7], 43)], "upsample 5->8, 7->3");
    // Backward sums children: for an exact 2× every input gets 4 copies of a constant gradient.
    let x = randn(&[1, 2, 3, 4], 44).requires_grad();
    let g = x.upsample_nearest2d(6, 8).unwrap().sum_all().unwrap().backward().unwrap();
    assert!(vals(g.get(&x).unwrap()).iter().all(|&v| v == 4.0));
}

// ---------- avg_pool2d ----------

#[test]
fn avg_pool_forward() {
    let x = randn(&[2, 3, 7, 9], 50);
    let xv = vals(&x);
    for (k, s) in [((2, 2), (2, 2)), ((3, 3), (1, 1)), ((2, 3), (1, 2)), ((7, 9), (1, 1))] {
        let y = x.avg_pool2d(k, s).unwrap();
        let want = avg_pool_ref(&xv, 6, 7, 9, k, s);
        assert_eq!(y.shape(), &[2, 3, (7 - k.0) / s.0 + 1, (9 - k.1) / s.1 + 1]);
        assert_close(&vals(&y), &want, 1e-6, 1e-6, &format!("avg_pool k{k:?} s{s:?}"));
    }
    let y = strided_copy(&x).avg_pool2d((2, 2), (2, 2)).unwrap();
    assert_close(&vals(&y), &avg_pool_ref(&xv, 6, 7, 9, (2, 2), (2, 2)), 1e-6, 1e-6, "avg_pool strided");
    let xb = x.to_dtype(DType::BF16).unwrap();
    let yb = xb.avg_pool2d((2, 2), (2, 2)).unwrap();
    assert_eq!(yb.dtype(), DType::BF16);
    let tol = low_precision_tol(DType::BF16);
    assert_close(&vals(&yb), &avg_pool_ref(&vals(&xb), 6, 7, 9, (2, 2), (2, 2)), tol, tol, "avg_pool bf16");
}

#[test]
fn avg_pool_gradients() {
    grad_check(|t| t[0].avg_pool2d((2, 2), (2, 2)), &[randn(&[2, 3, 7, 9], 51)], "avg_pool 2x2 s2 odd");
    grad_check(|t| t[0].avg_pool2d((3, 3), (1, 1)), &[randn(&[2, 2, 6, 5], 52)], "avg_pool 3x3 s1");
    grad_check(|t| t[0].avg_pool2d((2, 3), (1, 2)), &[randn(&[1, 2, 5, 8], 53)], "avg_pool 2x3 s(1,2)");
}

// ---------- max_pool2d ----------

#[test]
fn max_pool_forward() {
    let x = randn(&[2, 3, 7, 9], 54);
    let xv = vals(&x);
    // VGG's 2×2/2 (odd sizes: the last row/column is dropped, floor mode), AlexNet's 3×3/2,
    // overlapping and rectangular windows, and a window as large as the input.
    for (k, s) in [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((3, 3), (1, 1)), ((2, 3), (1, 2)), ((7, 9), (1, 1))] {
        let y = x.max_pool2d(k, s).unwrap();
        assert_eq!(y.shape(), &[2, 3, (7 - k.0) / s.0 + 1, (9 - k.1) / s.1 + 1]);
        assert_eq!(vals(&y), max_pool_ref(&xv, 6, 7, 9, k, s).0, "max_pool k{k:?} s{s:?}");
    }
    let y = strided_copy(&x).max_pool2d((3, 3), (2, 2)).unwrap();
    assert_eq!(vals(&y), max_pool_ref(&xv, 6, 7, 9, (3, 3), (2, 2)).0, "max_pool strided");
    // A plane count over the parallel threshold.
    let big = randn(&[4, 64, 15, 17], 55);
    assert_eq!(vals(&big.max_pool2d((2, 2), (2, 2)).unwrap()), max_pool_ref(&vals(&big), 256, 15, 17, (2, 2), (2, 2)).0);
    let xh = x.to_dtype(DType::F16).unwrap();
    let yh = xh.max_pool2d((2, 2), (2, 2)).unwrap();
    assert_eq!(yh.dtype(), DType::F16);
    assert_eq!(vals(&yh), max_pool_ref(&vals(&xh), 6, 7, 9, (2, 2), (2, 2)).0, "max_pool f16 copies values");
}

#[test]
fn max_pool_ties_and_nan_follow_torch() {
    // Post-ReLU feature maps are full of all-zero windows: the whole gradient goes to the first
    // zero of each window (torch: `val > maxval || isnan(val)` in row-major scan order).
    let x = Tensor::from_vec(vec![0f32, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 2.0, f32::NAN, 3.0, 3.0, f32::NAN, 2.0, 0.5, 3.0], &[1, 1, 4, 4]).unwrap();
    let xv = x.requires_grad();
    let y = xv.max_pool2d((2, 2), (2, 2)).unwrap();
    let yv = vals(&y);
    assert_eq!(&yv[..2], &[0.0, 1.0]);
    assert!(yv[2].is_nan(), "NaN propagates");
    assert_eq!(yv[3], 3.0);
    let g = y.mul(&Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
    // window 0 → (0,0); window 1 → (0,2); window 2: the last NaN, (3,0); window 3 → (2,2).
    // These are the values and gradient torch 2.15's F.max_pool2d(x, 2, 2) gives on this input.
    let want = [1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 3.0, 0.0, 0.0, 0.0];
    assert_eq!(vals(g.get(&xv).unwrap()), want);
}

/// Distinct values at least 0.05 apart (a shuffled ramp): a finite-difference step of 1e-2 can
/// never change which element is a window's maximum, so the check is not flaky at near-ties.
fn separated(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let order = vals(&randn(&[n], seed));
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| order[a].total_cmp(&order[b]));
    let mut v = vec![0f32; n];
    for (rank, &i) in idx.iter().enumerate() {
        v[i] = (rank as f32 - n as f32 / 2.0) * 0.05;
    }
    Tensor::from_vec(v, shape).unwrap()
}

#[test]
fn max_pool_gradients() {
    grad_check(|t| t[0].max_pool2d((2, 2), (2, 2)), &[separated(&[2, 3, 7, 9], 56)], "max_pool 2x2 s2 odd");
    grad_check(|t| t[0].max_pool2d((3, 3), (2, 2)), &[separated(&[2, 2, 7, 8], 57)], "max_pool 3x3 s2 overlapping");
    grad_check(|t| t[0].max_pool2d((2, 3), (1, 2)), &[separated(&[1, 2, 5, 8], 58)], "max_pool 2x3 s(1,2)");
    // Exact routing: each output gradient lands on the reference argmax (overlaps add up).
    let x = randn(&[2, 3, 7, 9], 59);
    let xv = x.requires_grad();
    let y = xv.max_pool2d((3, 3), (2, 2)).unwrap();
    let w = randn(y.shape(), 60);
    let g = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    let mut want = vec![0.0; x.numel()];
    for (a, wv) in max_pool_ref(&vals(&x), 6, 7, 9, (3, 3), (2, 2)).1.into_iter().zip(vals(&w)) {
        want[a] += wv;
    }
    assert_close(&vals(g.get(&xv).unwrap()), &want, 1e-6, 0.0, "max_pool routing");
}

// ---------- pad2d ----------

#[test]
fn pad_forward() {
    let x = randn(&[2, 3, 5, 4], 60);
    let xv = vals(&x);
    for (p, mode) in [([1, 2, 3, 0], PadMode::Zero), ([2, 1, 0, 3], PadMode::Reflect), ([3, 3, 4, 4], PadMode::Reflect), ([0, 0, 0, 0], PadMode::Zero)] {
        let y = x.pad2d(p, mode).unwrap();
        assert_eq!(y.shape(), &[2, 3, 5 + p[2] + p[3], 4 + p[0] + p[1]]);
        assert_eq!(vals(&y), pad_ref(&xv, 6, 5, 4, p, mode == PadMode::Reflect), "pad {p:?} {mode:?}");
    }
    let y = strided_copy(&x).pad2d([2, 1, 1, 3], PadMode::Reflect).unwrap();
    assert_eq!(vals(&y), pad_ref(&xv, 6, 5, 4, [2, 1, 1, 3], true));
    let xh = x.to_dtype(DType::F16).unwrap();
    let yh = xh.pad2d([1, 0, 2, 1], PadMode::Reflect).unwrap();
    assert_eq!(yh.dtype(), DType::F16);
    assert_eq!(vals(&yh), pad_ref(&vals(&xh), 6, 5, 4, [1, 0, 2, 1], true));
}

#[test]
fn pad_gradients() {
    let x = randn(&[2, 2, 5, 4], 61);
    grad_check(|t| t[0].pad2d([1, 2, 3, 0], PadMode::Zero), std::slice::from_ref(&x), "pad zero");
    grad_check(|t| t[0].pad2d([2, 1, 0, 3], PadMode::Reflect), std::slice::from_ref(&x), "pad reflect");
    grad_check(|t| t[0].pad2d([3, 3, 4, 4], PadMode::Reflect), &[x], "pad reflect max");
}

// ---------- errors ----------

fn err_text<T: std::fmt::Debug>(r: ldm_engine::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn argument_errors_name_the_op() {
    let x = randn(&[2, 6, 5, 7], 70);
    let cases: Vec<(String, &str)> = vec![
        (err_text(x.group_norm(4, None, None, 1e-5)), "group_norm"),
        (err_text(x.group_norm(0, None, None, 1e-5)), "group_norm"),
        (err_text(x.group_norm(3, Some(&randn(&[5], 1)), None, 1e-5)), "weight"),
        (err_text(x.group_norm(3, None, Some(&randn(&[6, 1], 1)), 1e-5)), "bias"),
        (err_text(x.group_norm(3, None, None, -1.0)), "eps"),
        (err_text(randn(&[6], 1).group_norm(3, None, None, 1e-5)), "group_norm"),
        (err_text(Tensor::from_vec(vec![1i64; 12], &[2, 6]).unwrap().group_norm(3, None, None, 1e-5)), "group_norm"),
        (err_text(x.layer_norm(Some(&randn(&[6], 1)), None, 1e-5)), "layer_norm"),
        (err_text(x.layer_norm(None, Some(&randn(&[8], 1)), 1e-5)), "layer_norm"),
        (err_text(Tensor::scalar(1.0, DType::F32).layer_norm(None, None, 1e-5)), "layer_norm"),
        (err_text(randn(&[7], 1).upsample_nearest2d(2, 2)), "upsample_nearest2d"),
        (err_text(Tensor::zeros(&[1, 0, 3], DType::F32).upsample_nearest2d(2, 2)), "upsample_nearest2d"),
        (err_text(x.avg_pool2d((0, 2), (1, 1))), "avg_pool2d"),
        (err_text(x.avg_pool2d((2, 2), (1, 0))), "avg_pool2d"),
        (err_text(x.avg_pool2d((6, 2), (1, 1))), "avg_pool2d"),
        (err_text(x.max_pool2d((2, 0), (2, 2))), "max_pool2d"),
        (err_text(x.max_pool2d((2, 2), (0, 2))), "max_pool2d"),
        (err_text(x.max_pool2d((2, 8), (2, 2))), "max_pool2d"),
        (err_text(randn(&[7], 1).max_pool2d((2, 2), (2, 2))), "max_pool2d"),
        (err_text(x.pad2d([7, 0, 0, 0], PadMode::Reflect)), "pad2d"),
        (err_text(x.pad2d([0, 0, 0, 5], PadMode::Reflect)), "pad2d"),
        (err_text(randn(&[4], 1).pad2d([1, 1, 1, 1], PadMode::Zero)), "pad2d"),
    ];
    for (msg, want) in cases {
        assert!(msg.contains(want), "error '{msg}' should mention '{want}'");
    }
    // Zero padding may exceed the size; the reflect limit is strict (pad = size − 1 is fine).
    assert_eq!(x.pad2d([9, 0, 0, 0], PadMode::Zero).unwrap().shape(), &[2, 6, 5, 16]);
    assert!(x.pad2d([6, 6, 4, 4], PadMode::Reflect).is_ok());
}

#[test]
fn empty_inputs_do_not_panic() {
    let x = Tensor::zeros(&[0, 6, 5, 7], DType::F32);
    assert_eq!(x.group_norm(3, None, None, 1e-5).unwrap().shape(), &[0, 6, 5, 7]);
    assert_eq!(Tensor::zeros(&[4, 0], DType::F32).layer_norm(None, None, 1e-5).unwrap().shape(), &[4, 0]);
    assert_eq!(x.upsample_nearest2d(10, 3).unwrap().shape(), &[0, 6, 10, 3]);
    assert_eq!(x.pad2d([1, 1, 1, 1], PadMode::Zero).unwrap().shape(), &[0, 6, 7, 9]);
    assert_eq!(x.avg_pool2d((2, 2), (2, 2)).unwrap().shape(), &[0, 6, 2, 3]);
    assert_eq!(x.max_pool2d((2, 2), (2, 2)).unwrap().shape(), &[0, 6, 2, 3]);
    let xv = x.requires_grad();
    let g = xv.max_pool2d((2, 2), (2, 2)).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&xv).unwrap().shape(), &[0, 6, 5, 7]);
}
