//! Fused attention (src/tensor/attention.rs, src/backend/cpu/attention.rs) against independent
//! references: a naive full-softmax attention in f64, finite differences, and the gradient of the
//! same computation built from the engine's own differentiable ops (matmul → softmax → matmul).

mod common;

use common::{assert_close, grad_check, randn, vals};
use ldm_engine::backend::cpu::attention::{self as cpu, Dims, Src, Tiles};
use ldm_engine::{DType, Tensor};

const NEG_INF: f64 = f64::NEG_INFINITY;

/// Naive attention in f64: the full score matrix per head, softmax, times v. Returns (out, lse);
/// a fully masked row gives out 0 and lse −inf (the engine's definition).
fn reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let (b, h, lq, d, lk, dv) = (qs[0], qs[1], qs[2], qs[3], ks[2], vs[3]);
    let (qv, kv, vv) = (vals(q), vals(k), vals(v));
    let mv = mask.map(|m| vals(&m.broadcast_as(&[b, h, lq, lk]).unwrap()));
    let mut out = vec![0.0; b * h * lq * dv];
    let mut lse = vec![0.0; b * h * lq];
    for bh in 0..b * h {
        for i in 0..lq {
            let s: Vec<f64> = (0..lk)
                .map(|j| {
                    let dot: f64 = (0..d).map(|c| qv[(bh * lq + i) * d + c] * kv[(bh * lk + j) * d + c]).sum();
                    dot * scale + mv.as_ref().map_or(0.0, |m| m[(bh * lq + i) * lk + j])
                })
                .collect();
            let m = s.iter().copied().fold(NEG_INF, f64::max);
            let row = bh * lq + i;
            if m == NEG_INF {
                lse[row] = NEG_INF;
                continue;
            }
            let p: Vec<f64> = s.iter().map(|&x| (x - m).exp()).collect();
            let l: f64 = p.iter().sum();
            lse[row] = m + l.ln();
            for c in 0..dv {
                out[row * dv + c] = (0..lk).map(|j| p[j] * vv[(bh * lk + j) * dv + c]).sum::<f64>() / l;
            }
        }
    }
    (out, lse)
}

fn sdpa(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Tensor {
    Tensor::scaled_dot_product_attention(q, k, v, mask, None).unwrap()
}

/// The forward output and the lse it saved (recorded because the inputs are tracked).
fn sdpa_with_lse(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: Option<f64>) -> (Vec<f64>, Vec<f64>) {
    let (qv, kv, vv) = (q.requires_grad(), k.requires_grad(), v.requires_grad());
    let y = Tensor::scaled_dot_product_attention(&qv, &kv, &vv, mask, scale).unwrap();
    let lse = vals(y.attention_lse().expect("a tracked forward records its lse"));
    (vals(&y), lse)
}

/// f32 scores of magnitude O(√D·scale) = O(1) summed over D products and Lk keys: 1e-5 absolute
/// and relative covers the f32 rounding of the dot products and of the online rescaling (≈ 1e-6).
const F32_ATOL: f64 = 1e-5;
const F32_RTOL: f64 = 1e-5;

fn qkv(b: usize, h: usize, lq: usize, lk: usize, d: usize, dv: usize, seed: u64) -> (Tensor, Tensor, Tensor) {
    (randn(&[b, h, lq, d], seed), randn(&[b, h, lk, d], seed + 1), randn(&[b, h, lk, dv], seed + 2))
}

#[test]
fn exp_approximations_are_accurate_to_a_few_ulp() {
    // ulp of the f64 value rounded to f32 (subnormals: 2^-149).
    let ulp = |e: f64| -> f64 {
        let e32 = e as f32;
        if e32 == 0.0 || !e32.is_normal() { 2f64.powi(-149) } else { ((f32::from_bits(e32.to_bits() + 1) as f64) - e32 as f64).abs() }
    };
    let n = 1_000_000;
    let (mut worst_e, mut worst_2) = (0f64, 0f64);
    for i in 0..=n {
        let x = -88.0 * i as f64 / n as f64;
        let xf = x as f32;
        let e = (xf as f64).exp();
        worst_e = worst_e.max((cpu::exp_approx(xf) as f64 - e).abs() / ulp(e));
        let x2 = (-126.0 * i as f64 / n as f64) as f32;
        let e2 = (x2 as f64).exp2();
        worst_2 = worst_2.max((cpu::exp2_approx(x2) as f64 - e2).abs() / ulp(e2));
    }
    // A polynomial with 2e-9 relative fit error plus ~6 f32 roundings: measured 1.3 ulp, bound 2
    // (torch's Sleef exp is 1 ulp; the softmax needs far less). Exact values at the special points:
    assert!(worst_e <= 2.0, "exp: worst error {worst_e} ulp over [-88, 0]");
    assert!(worst_2 <= 2.0, "exp2: worst error {worst_2} ulp over [-126, 0]");
    assert_eq!(cpu::exp_approx(0.0), 1.0);
    assert_eq!(cpu::exp2_approx(0.0), 1.0);
    assert_eq!(cpu::exp2_approx(f32::NEG_INFINITY), 0.0);
    assert_eq!(cpu::exp_approx(f32::NEG_INFINITY), 0.0);
    assert!(cpu::exp2_approx(f32::NAN).is_nan() && cpu::exp_approx(f32::NAN).is_nan());
    println!("exp worst {worst_e:.2} ulp, exp2 worst {worst_2:.2} ulp");
}

#[test]
fn forward_matches_f64_reference_self_and_cross() {
    // (B, H, Lq, Lk, D, Dv): odd sizes; Lq/Lk below one default tile (64 × 512) and above several
    // (200 > 3·64, 1100 > 2·512) with ragged remainders; D = 40 (SD), D = 8, Dv ≠ D.
    for &(b, h, lq, lk, d, dv) in &[
        (2, 3, 37, 53, 40, 40),
        (2, 3, 37, 53, 8, 12),
        (2, 3, 53, 53, 40, 40),
        (1, 2, 200, 77, 40, 24),
        (1, 2, 130, 1100, 16, 40),
        (1, 1, 1, 1, 3, 5),
    ] {
        let (q, k, v) = qkv(b, h, lq, lk, d, dv, 10 + lq as u64);
        let scale = 1.0 / (d as f64).sqrt();
        let (want, want_lse) = reference(&q, &k, &v, None, scale);
        let (got, got_lse) = sdpa_with_lse(&q, &k, &v, None, None);
        let what = format!("[{b},{h},{lq},{lk},{d},{dv}]");
        assert_close(&got, &want, F32_ATOL, F32_RTOL, &format!("{what} out"));
        // lse = log Σ exp(scaled scores), magnitude O(ln Lk + max score): 1e-5 absolute + relative.
        assert_close(&got_lse, &want_lse, F32_ATOL, F32_RTOL, &format!("{what} lse"));
    }
}

#[test]
fn explicit_scale_is_used() {
    let (q, k, v) = qkv(1, 2, 19, 23, 8, 8, 3);
    let (want, _) = reference(&q, &k, &v, None, 0.7);
    let got = vals(&Tensor::scaled_dot_product_attention(&q, &k, &v, None, Some(0.7)).unwrap());
    assert_close(&got, &want, F32_ATOL, F32_RTOL, "scale 0.7");
}

/// Runs the backend kernel with explicit (small) tiles on contiguous f32 data.
fn forward_tiles(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, tiles: Tiles) -> (Vec<f64>, Vec<f64>) {
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let dims = Dims { b: qs[0], h: qs[1], lq: qs[2], lk: ks[2], d: qs[3], dv: vs[3] };
    let st = |s: &[usize]| [s[1] * s[2] * s[3], s[2] * s[3], s[3], 1];
    let (qv, kv, vv) = (q.to_vec::<f32>().unwrap(), k.to_vec::<f32>().unwrap(), v.to_vec::<f32>().unwrap());
    let full = [dims.b, dims.h, dims.lq, dims.lk];
    let mv = mask.map(|m| m.broadcast_as(&full).unwrap().to_vec::<f32>().unwrap());
    let msrc = mv.as_deref().map(|data| Src { data, offset: 0, strides: st(&full) });
    let scale = 1.0 / (dims.d as f32).sqrt();
    let (o, l) = cpu::forward(
        dims,
        Src { data: &qv, offset: 0, strides: st(qs) },
        Src { data: &kv, offset: 0, strides: st(ks) },
        Src { data: &vv, offset: 0, strides: st(vs) },
        msrc,
        scale,
        tiles,
    );
    (o.iter().map(|&x| x as f64).collect(), l.iter().map(|&x| x as f64).collect())
}

#[test]
fn tile_boundaries_with_small_tiles() {
    // Many ragged tiles cheaply: tiles 1×1, 7×5, 16×24 over Lq = 37, Lk = 53, with a causal mask
    // so some tiles are entirely masked for some rows (m stays −inf across tiles).
    let (q, k, v) = qkv(2, 3, 37, 53, 40, 24, 77);
    let causal = causal_mask(37, 53);
    for mask in [None, Some(&causal)] {
        let (want, want_lse) = reference(&q, &k, &v, mask, 1.0 / 40f64.sqrt());
        for tiles in [Tiles { bq: 1, bk: 1 }, Tiles { bq: 7, bk: 5 }, Tiles { bq: 16, bk: 24 }, Tiles { bq: 64, bk: 512 }] {
            let (got, got_lse) = forward_tiles(&q, &k, &v, mask, tiles);
            assert_close(&got, &want, F32_ATOL, F32_RTOL, &format!("{tiles:?} masked={}", mask.is_some()));
            assert_close(&got_lse, &want_lse, F32_ATOL, F32_RTOL, &format!("{tiles:?} lse"));
        }
    }
}

/// [Lq, Lk] additive causal mask (query i sees keys j ≤ i + (Lk − Lq), the bottom-right
/// alignment, so every row keeps at least one key when Lk ≥ Lq).
fn causal_mask(lq: usize, lk: usize) -> Tensor {
    let off = lk as isize - lq as isize;
    let m: Vec<f32> = (0..lq * lk)
        .map(|x| if ((x % lk) as isize) <= (x / lk) as isize + off { 0.0 } else { f32::NEG_INFINITY })
        .collect();
    Tensor::from_vec(m, &[lq, lk]).unwrap()
}

#[test]
fn causal_and_padding_masks() {
    let (q, k, v) = qkv(2, 3, 37, 53, 40, 16, 21);
    let scale = 1.0 / 40f64.sqrt();
    let causal = causal_mask(37, 53);
    // Padding: batch 0 sees all 53 keys, batch 1 only the first 30; [B, 1, 1, Lk] like a text mask.
    let pad: Vec<f32> = (0..2 * 53).map(|x| if x >= 53 && x % 53 >= 30 { f32::NEG_INFINITY } else { 0.0 }).collect();
    let pad = Tensor::from_vec(pad, &[2, 1, 1, 53]).unwrap();
    // A finite additive bias (relative-position-bias style), broadcast over batch: [H, Lq, Lk].
    let bias = randn(&[3, 37, 53], 5);
    for (name, m) in [("causal", &causal), ("padding", &pad), ("bias", &bias)] {
        let (want, want_lse) = reference(&q, &k, &v, Some(m), scale);
        let (got, got_lse) = sdpa_with_lse(&q, &k, &v, Some(m), None);
        assert_close(&got, &want, F32_ATOL, F32_RTOL, name);
        assert_close(&got_lse, &want_lse, F32_ATOL, F32_RTOL, &format!("{name} lse"));
    }
    // f16 mask values are widened like the inputs.
    let bias16 = bias.to_dtype(DType::F16).unwrap();
    let (want, _) = reference(&q, &k, &v, Some(&bias16), scale);
    assert_close(&vals(&sdpa(&q, &k, &v, Some(&bias16))), &want, F32_ATOL, F32_RTOL, "f16 bias");
}

#[test]
fn non_contiguous_inputs_are_read_in_place() {
    // As models do: q, k, v come from a [B, L, H, D] projection transposed to [B, H, L, D].
    let (b, h, lq, lk, d) = (2, 3, 41, 29, 8);
    let q = randn(&[b, lq, h, d], 1).transpose(1, 2).unwrap();
    let k = randn(&[b, lk, h, d], 2).transpose(1, 2).unwrap();
    let v = common::strided_copy(&randn(&[b, h, lk, d], 3)); // [.., Lk, Dv] with column stride ≠ 1
    assert!(!q.is_contiguous() && !k.is_contiguous() && !v.is_contiguous());
    let (want, _) = reference(&q, &k, &v, None, 1.0 / (d as f64).sqrt());
    assert_close(&vals(&sdpa(&q, &k, &v, None)), &want, F32_ATOL, F32_RTOL, "strided");
}

#[test]
fn half_precision_inputs_keep_their_dtype() {
    let (q, k, v) = qkv(2, 3, 37, 53, 40, 40, 33);
    // The reference sees the same rounded inputs; the kernel computes in f32 and rounds the output
    // once: error ≤ ½ ulp of the output's dtype (f16 2^-11, bf16 2^-8 relative) plus f32 noise.
    for (dt, tol) in [(DType::F16, 1e-3), (DType::BF16, 8e-3)] {
        let (qh, kh, vh) = (q.to_dtype(dt).unwrap(), k.to_dtype(dt).unwrap(), v.to_dtype(dt).unwrap());
        let y = sdpa(&qh, &kh, &vh, None);
        assert_eq!(y.dtype(), dt);
        let (want, _) = reference(&qh, &kh, &vh, None, 1.0 / 40f64.sqrt());
        assert_close(&vals(&y), &want, tol * 0.1, tol, &format!("{dt}"));
    }
}

#[test]
fn fully_masked_row_gives_zero_output_and_gradient() {
    let (b, h, lq, lk, d) = (1, 2, 9, 70, 8);
    let (q, k, v) = qkv(b, h, lq, lk, d, d, 44);
    // Row 3 sees no key at all; the other rows see keys 0..=i·7.
    let m: Vec<f32> = (0..lq * lk)
        .map(|x| {
            let (i, j) = (x / lk, x % lk);
            if i == 3 || j > i * 7 { f32::NEG_INFINITY } else { 0.0 }
        })
        .collect();
    let mask = Tensor::from_vec(m, &[lq, lk]).unwrap();
    let (want, want_lse) = reference(&q, &k, &v, Some(&mask), 1.0 / (d as f64).sqrt());
    let (got, got_lse) = sdpa_with_lse(&q, &k, &v, Some(&mask), None);
    assert!(got.iter().all(|x| x.is_finite()), "no NaN/inf in the output");
    assert_close(&got, &want, F32_ATOL, F32_RTOL, "masked out");
    for hi in 0..h {
        assert!(got[(hi * lq + 3) * d..(hi * lq + 4) * d].iter().all(|&x| x == 0.0));
        assert_eq!(got_lse[hi * lq + 3], NEG_INF);
    }
    assert_close(&got_lse, &want_lse, F32_ATOL, F32_RTOL, "masked lse");
    // Small tiles too: the all-masked row spans several key tiles.
    let (got_t, _) = forward_tiles(&q, &k, &v, Some(&mask), Tiles { bq: 4, bk: 16 });
    assert_close(&got_t, &want, F32_ATOL, F32_RTOL, "masked out, small tiles");

    // Backward: finite everywhere, exactly zero dq for the dead row.
    let (qv, kv, vv) = (q.requires_grad(), k.requires_grad(), v.requires_grad());
    let y = Tensor::scaled_dot_product_attention(&qv, &kv, &vv, Some(&mask), None).unwrap();
    let grads = y.mul(&randn(y.shape(), 9)).unwrap().sum_all().unwrap().backward().unwrap();
    for t in [&qv, &kv, &vv] {
        assert!(vals(grads.get(t).unwrap()).iter().all(|x| x.is_finite()));
    }
    let dq = vals(grads.get(&qv).unwrap());
    assert!(dq[3 * d..4 * d].iter().all(|&x| x == 0.0));
    // And the live rows still pass the finite-difference check.
    grad_check(|x| Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], Some(&mask), None), &[q, k, v], "fully masked row");
}

#[test]
fn gradients_match_finite_differences() {
    // Small sizes (finite differences cost two forwards per probed element); inputs scaled so the
    // softmax is neither flat nor saturated. Default tolerance of grad_check (atol 2e-3 + rtol 2e-2:
    // O(h²) truncation with h = 1e-2 plus f32 forward noise / h).
    let (q, k, v) = qkv(1, 2, 5, 7, 4, 3, 61);
    grad_check(|x| Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], None, None), &[q.clone(), k.clone(), v.clone()], "sdpa");
    let causal = causal_mask(5, 7);
    grad_check(|x| Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], Some(&causal), None), &[q.clone(), k.clone(), v.clone()], "sdpa causal");
    let bias = randn(&[2, 5, 7], 62);
    grad_check(|x| Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], Some(&bias), Some(0.3)), &[q, k, v], "sdpa bias scale 0.3");
    // Cross attention with Dv ≠ D and two batches.
    let (q, k, v) = qkv(2, 1, 6, 3, 5, 2, 63);
    grad_check(|x| Tensor::scaled_dot_product_attention(&x[0], &x[1], &x[2], None, None), &[q, k, v], "sdpa cross");
}

/// softmax(q kᵀ·scale + mask) v from the engine's own differentiable ops.
fn composed(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f64) -> Tensor {
    let s = q.matmul(&k.t().unwrap()).unwrap().mul_scalar(scale).unwrap();
    let s = match mask {
        Some(m) => s.add(m).unwrap(),
        None => s,
    };
    s.softmax(-1).unwrap().matmul(v).unwrap()
}

fn grads_of(f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor, q: &Tensor, k: &Tensor, v: &Tensor, w: &Tensor) -> Vec<Vec<f64>> {
    let (qv, kv, vv) = (q.requires_grad(), k.requires_grad(), v.requires_grad());
    let y = f(&qv, &kv, &vv);
    let grads = y.mul(w).unwrap().sum_all().unwrap().backward().unwrap();
    [&qv, &kv, &vv].iter().map(|t| vals(grads.get(t).unwrap())).collect()
}

#[test]
fn backward_matches_composed_ops() {
    // Medium sizes spanning several backward tiles (64 × 128) with ragged edges; B·H = 1 also
    // exercises the split of one head's keys across threads (partial dQ sums).
    let pad: Vec<f32> = (0..2 * 300).map(|x| if x >= 300 && x % 300 >= 211 { f32::NEG_INFINITY } else { 0.0 }).collect();
    let pad = Tensor::from_vec(pad, &[2, 1, 1, 300]).unwrap();
    let causal = causal_mask(150, 300);
    for &(b, h, lq, lk, d, dv, mask) in &[
        (2, 2, 150, 300, 40, 24, None),
        (2, 2, 150, 300, 40, 24, Some(&pad)),
        (1, 1, 150, 300, 16, 16, Some(&causal)),
        (1, 1, 70, 600, 8, 8, None),
    ] {
        let (q, k, v) = qkv(b, h, lq, lk, d, dv, 90 + lk as u64);
        let w = randn(&[b, h, lq, dv], 91);
        let scale = 1.0 / (d as f64).sqrt();
        let fused = grads_of(|q, k, v| Tensor::scaled_dot_product_attention(q, k, v, mask, None).unwrap(), &q, &k, &v, &w);
        let naive = grads_of(|q, k, v| composed(q, k, v, mask, scale), &q, &k, &v, &w);
        // Both f32 with different summation orders over up to Lk = 600 terms: 1e-4 absolute (the
        // gradients are O(1)) plus 1e-3 relative.
        for (name, (a, e)) in ["dq", "dk", "dv"].iter().zip(fused.iter().zip(&naive)) {
            assert_close(a, e, 1e-4, 1e-3, &format!("[{b},{h},{lq},{lk},{d},{dv}] mask={} {name}", mask.is_some()));
        }
    }
}

#[test]
fn half_precision_backward_returns_input_dtypes() {
    let (q, k, v) = qkv(1, 2, 20, 30, 8, 8, 5);
    let (qh, kh, vh) = (q.to_dtype(DType::BF16).unwrap(), k.to_dtype(DType::BF16).unwrap(), v.to_dtype(DType::BF16).unwrap());
    let w = randn(&[1, 2, 20, 8], 6).to_dtype(DType::BF16).unwrap();
    let got = grads_of(|q, k, v| Tensor::scaled_dot_product_attention(q, k, v, None, None).unwrap(), &qh, &kh, &vh, &w);
    let w = w.to_dtype(DType::F32).unwrap();
    let (q32, k32, v32) = (qh.to_dtype(DType::F32).unwrap(), kh.to_dtype(DType::F32).unwrap(), vh.to_dtype(DType::F32).unwrap());
    let want = grads_of(|q, k, v| composed(q, k, v, None, 1.0 / 8f64.sqrt()), &q32, &k32, &v32, &w);
    // The output is rounded to bf16 (2^-8) before the loss and the gradients are stored in bf16:
    // 2e-2 relative + 2e-2 absolute on O(1) gradients.
    for (a, e) in got.iter().zip(&want) {
        assert_close(a, e, 2e-2, 2e-2, "bf16 grads");
    }
    let qv = qh.requires_grad();
    let y = Tensor::scaled_dot_product_attention(&qv, &kh, &vh, None, None).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(grads.get(&qv).unwrap().dtype(), DType::BF16);
}

#[test]
fn errors_name_the_op_and_never_panic() {
    let (q, k, v) = qkv(1, 2, 5, 7, 4, 3, 1);
    let err = |r: ldm_engine::Result<Tensor>| {
        let e = r.expect_err("should fail").to_string();
        assert!(e.contains("scaled_dot_product_attention"), "error names the op: {e}");
        e
    };
    let f = |q: &Tensor, k: &Tensor, v: &Tensor, m: Option<&Tensor>, s: Option<f64>| Tensor::scaled_dot_product_attention(q, k, v, m, s);
    // rank
    err(f(&q.reshape(&[2, 5, 4]).unwrap(), &k, &v, None, None));
    // head dim of k ≠ q's
    err(f(&q, &randn(&[1, 2, 7, 5], 2), &v, None, None));
    // v's Lk ≠ k's
    err(f(&q, &k, &randn(&[1, 2, 6, 3], 2), None, None));
    // batch / heads mismatch
    err(f(&q, &randn(&[2, 2, 7, 4], 2), &randn(&[2, 2, 7, 3], 2), None, None));
    // dtype mismatch and integer inputs
    err(f(&q.to_dtype(DType::F16).unwrap(), &k, &v, None, None));
    let qi = q.to_dtype(DType::I64).unwrap();
    err(f(&qi, &k.to_dtype(DType::I64).unwrap(), &v.to_dtype(DType::I64).unwrap(), None, None));
    // mask that does not broadcast, and a non-float mask
    let e = err(f(&q, &k, &v, Some(&randn(&[5, 6], 3)), None));
    assert!(e.contains("broadcast"), "{e}");
    err(f(&q, &k, &v, Some(&Tensor::zeros(&[5, 7], DType::U8)), None));
    err(f(&q, &k, &v, Some(&randn(&[1, 1, 1, 5, 7], 3)), None));
    // scale
    err(f(&q, &k, &v, None, Some(f64::NAN)));
    // zero keys
    err(f(&q, &randn(&[1, 2, 0, 4], 2), &randn(&[1, 2, 0, 3], 2), None, None));
    // Empty query length is fine: an empty output.
    let y = f(&randn(&[1, 2, 0, 4], 2), &k, &v, None, None).unwrap();
    assert_eq!(y.shape(), &[1, 2, 0, 3]);
}

/// The unfused formula (what CUDA runs until the flash kernel lands) against the fused CPU kernel:
/// outputs and gradients with causal, padding (incl. a fully masked row) and bias masks, and the
/// f16 path. Same f32 math in a different order: tolerances as the forward's.
#[test]
fn unfused_formula_matches_the_fused_kernel() {
    let (q, k, v) = qkv(2, 3, 37, 53, 40, 16, 31);
    let scale = 1.0 / 40f64.sqrt();
    // Padding where batch 1 sees no key at all in its last query rows: a fully masked row.
    let pad: Vec<f32> = (0..2 * 37 * 53).map(|x| if x / (37 * 53) == 1 && (x / 53) % 37 >= 30 { f32::NEG_INFINITY } else { 0.0 }).collect();
    let pad = Tensor::from_vec(pad, &[2, 1, 37, 53]).unwrap();
    let bias = randn(&[3, 37, 53], 32);
    let causal = causal_mask(37, 53);
    for (name, m) in [("none", None), ("causal", Some(&causal)), ("padding", Some(&pad)), ("bias", Some(&bias))] {
        let fused = sdpa(&q, &k, &v, m);
        let unfused = Tensor::scaled_dot_product_attention_unfused(&q, &k, &v, m, scale).unwrap();
        assert_close(&vals(&unfused), &vals(&fused), F32_ATOL, F32_RTOL, name);
        let w = randn(&[2, 3, 37, 16], 33);
        let gf = grads_of(|q, k, v| Tensor::scaled_dot_product_attention(q, k, v, m, Some(scale)).unwrap(), &q, &k, &v, &w);
        let gu = grads_of(|q, k, v| Tensor::scaled_dot_product_attention_unfused(q, k, v, m, scale).unwrap(), &q, &k, &v, &w);
        for (i, (a, b)) in gu.iter().zip(&gf).enumerate() {
            assert!(a.iter().all(|x| x.is_finite()), "{name}: gradient {i} has a non-finite value");
            assert_close(a, b, 1e-4, 1e-4, &format!("{name} gradient {i}"));
        }
    }
    let (q16, k16, v16) = (q.to_dtype(DType::F16).unwrap(), k.to_dtype(DType::F16).unwrap(), v.to_dtype(DType::F16).unwrap());
    let unfused = Tensor::scaled_dot_product_attention_unfused(&q16, &k16, &v16, None, scale).unwrap();
    assert_eq!(unfused.dtype(), DType::F16);
    assert_close(&vals(&unfused), &vals(&sdpa(&q16, &k16, &v16, None)), 1e-3, 1e-3, "f16");
}

/// The f16 inference formula for head dims the flash kernel lacks (CUDA takes it for the VAE's
/// 512-wide head): scores rounded to f16 once, the softmax in f32 per row, P rounded to f16 for
/// the second product. Against the f64 reference on the same f16 inputs, next to the widened f32
/// formula (one rounding, of the output): the extra error is the scores' rounding, 2⁻¹¹·|s| in
/// each exponent, so the bound scales with the largest scaled score. The inputs are views like
/// the VAE's (tokens of an NCHW image: q, k, v transposed), which both products read in place.
#[test]
fn f16_formula_for_wide_heads_stays_within_half_precision() {
    let (lq, lk, d) = (48, 80, 512);
    let to_tokens = |t: Tensor| t.to_dtype(DType::F16).unwrap().transpose(2, 3).unwrap(); // [1, 1, L, D] view
    let q = to_tokens(randn(&[1, 1, d, lq], 41).mul_scalar(3.0).unwrap());
    let (k, v) = (to_tokens(randn(&[1, 1, d, lk], 42)), to_tokens(randn(&[1, 1, d, lk], 43)));
    let scale = 1.0 / (d as f64).sqrt();
    let (want, _) = reference(&q, &k, &v, None, scale);
    let err = |y: &Tensor| vals(y).iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let f16 = Tensor::scaled_dot_product_attention_f16(&q, &k, &v, scale).unwrap();
    assert_eq!((f16.dtype(), f16.shape()), (DType::F16, &[1, 1, lq, d][..]));
    let widened = Tensor::scaled_dot_product_attention_unfused(&q, &k, &v, None, scale).unwrap();
    let (e16, e32) = (err(&f16), err(&widened));
    // Worst case per output: each probability off by the rounding of its exponent (2⁻¹¹·|s|) and
    // of itself (2⁻¹¹), all in one direction — 2·(2⁻¹¹·max|s| + 2⁻¹¹)·max|v| — plus the output's
    // own rounding. Random errors partly cancel: the measured error is well inside this.
    let f32s = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
    let s_max = vals(&f32s(&q).matmul(&f32s(&k).transpose(2, 3).unwrap()).unwrap()).iter().fold(0.0f64, |m, x| m.max(x.abs())) * scale;
    let v_max = vals(&v).iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let u = 2f64.powi(-11);
    let bound = 2.0 * (u * s_max + u) * v_max + u * v_max;
    println!("max |scaled score| {s_max:.1}: f16 formula max error {e16:.2e}, widened f32 formula {e32:.2e}, bound {bound:.2e}");
    assert!(e16 <= bound, "f16 formula error {e16:.3e} above {bound:.3e}");
    assert!(e32 <= e16.max(1e-3), "the widened formula should be the more accurate one");
}
