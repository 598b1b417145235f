//! Shared test utilities: seeded random tensors, f64 comparison with written tolerances, and a
//! finite-difference gradient check.
#![allow(dead_code)]

pub mod device_check;
pub mod refusal;
pub mod fixture;
pub mod sampler;

use ldm_engine::{DType, Result, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Standard-normal f32 tensor (never all-zero).
pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F32, &mut rng(seed))
}

/// Uniform tensor in [lo, hi).
pub fn rand(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::rand(shape, lo, hi, DType::F32, &mut rng(seed))
}

pub fn vals(t: &Tensor) -> Vec<f64> {
    t.to_vec_f64().unwrap()
}

/// Asserts |a − e| ≤ atol + rtol·|e| elementwise, reporting the worst element.
pub fn assert_close(actual: &[f64], expected: &[f64], atol: f64, rtol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length {} vs {}", actual.len(), expected.len());
    let mut worst = (0usize, 0f64);
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let excess = (a - e).abs() - (atol + rtol * e.abs());
        if (excess > 0.0 || excess.is_nan()) && (excess > worst.1 || a.is_nan()) {
            worst = (i, if a.is_nan() { f64::INFINITY } else { excess });
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        panic!("{what}: element {i}: got {} expected {} (atol {atol}, rtol {rtol})", actual[i], expected[i]);
    }
}

/// Row-major index → multi-index.
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

pub fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &s)| acc * s + i)
}

/// A non-contiguous tensor with the same values as `t`: stored transposed, viewed back.
pub fn strided_copy(t: &Tensor) -> Tensor {
    let r = t.rank();
    assert!(r >= 2);
    let s = t.transpose(-1, -2).unwrap().contiguous().unwrap().transpose(-1, -2).unwrap();
    assert!(!s.is_contiguous() || t.dim(-1).unwrap() == 1 || t.dim(-2).unwrap() == 1);
    s
}

/// Checks the analytic gradients of `f` against central finite differences.
///
/// The scalar loss is L = Σ wᵢ·f(x)ᵢ with fixed random weights w (so every output element
/// matters, with different weights), evaluated in f64 from the f32 outputs. With a step h, the
/// FD error is O(h²·f''') plus the f32 rounding of the forward, about 6e-8·‖w∘y‖/h; h = 1e-2 keeps
/// both near 1e-4 for O(1) inputs, so the default tolerance is atol 2e-3 + rtol 2e-2.
/// At most `max_probe` elements of each input are probed (chosen with a fixed stride).
pub fn grad_check(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor], what: &str) {
    grad_check_with(f, inputs, 1e-2, 2e-3, 2e-2, 40, what)
}

/// Variables for `inputs`, the gradients of the scalar Σ f(vars)·w for a fixed random w (so every
/// output element matters), and w's values.
fn weighted_grads(f: &impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[Tensor]) -> (Vec<Tensor>, ldm_engine::autograd::GradStore, Vec<f64>) {
    let vars: Vec<Tensor> = inputs.iter().map(|t| t.requires_grad()).collect();
    let y = f(&vars).unwrap();
    let w = randn(y.shape(), 9_999);
    let grads = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    (vars, grads, vals(&w))
}

/// Σ f(xs)·w, without recording: the finite-difference side of the checks.
fn weighted_eval(f: &impl Fn(&[Tensor]) -> Result<Tensor>, xs: &[Tensor], wv: &[f64]) -> f64 {
    let _g = ldm_engine::no_grad();
    vals(&f(xs).unwrap()).iter().zip(wv).map(|(a, b)| a * b).sum()
}

pub fn grad_check_with(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    h: f64,
    atol: f64,
    rtol: f64,
    max_probe: usize,
    what: &str,
) {
    let (vars, grads, wv) = weighted_grads(&f, inputs);
    let eval = |xs: &[Tensor]| weighted_eval(&f, xs, &wv);
    for (k, x) in inputs.iter().enumerate() {
        let g = grads.get(&vars[k]).unwrap_or_else(|| panic!("{what}: no gradient for input {k}"));
        assert_eq!(g.shape(), x.shape(), "{what}: gradient shape of input {k}");
        let gv = vals(g);
        let xv: Vec<f32> = x.to_vec::<f32>().unwrap();
        let n = xv.len();
        let step = (n / max_probe).max(1);
        let (mut got, mut want) = (Vec::new(), Vec::new());
        for i in (0..n).step_by(step).take(max_probe) {
            let mut plus = xv.clone();
            plus[i] += h as f32;
            let mut minus = xv.clone();
            minus[i] -= h as f32;
            let real_h = (plus[i] as f64 - minus[i] as f64) / 2.0;
            let mut xs: Vec<Tensor> = inputs.to_vec();
            xs[k] = Tensor::from_vec(plus, x.shape()).unwrap();
            let lp = eval(&xs);
            xs[k] = Tensor::from_vec(minus, x.shape()).unwrap();
            let lm = eval(&xs);
            want.push((lp - lm) / (2.0 * real_h));
            got.push(gv[i]);
        }
        assert_close(&got, &want, atol, rtol, &format!("{what}: d/d input {k}"));
    }
}

/// `grad_check` for functions with kinks (relu, max pooling): along one probed coordinate such a
/// function is piecewise smooth, and a kink within ±h makes the central difference mix two
/// pieces. A probe passes when the analytic gradient matches the central difference or, failing
/// that, one of the one-sided differences (at most one kink within ±h leaves one side on the
/// point's own piece; its O(h·f'') error is within tolerance at small h). A wrong gradient
/// matches none of the three. At most a quarter of the probes may need a one-sided match, so the
/// check cannot quietly turn into a one-sided one.
pub fn grad_check_kinked(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    h: f64,
    atol: f64,
    rtol: f64,
    max_probe: usize,
    what: &str,
) {
    let (vars, grads, wv) = weighted_grads(&f, inputs);
    let eval = |xs: &[Tensor]| weighted_eval(&f, xs, &wv);
    let base = eval(inputs);
    let close = |a: f64, e: f64| (a - e).abs() <= atol + rtol * e.abs();
    for (k, x) in inputs.iter().enumerate() {
        let g = grads.get(&vars[k]).unwrap_or_else(|| panic!("{what}: no gradient for input {k}"));
        assert_eq!(g.shape(), x.shape(), "{what}: gradient shape of input {k}");
        let gv = vals(g);
        let xv: Vec<f32> = x.to_vec::<f32>().unwrap();
        let step = (xv.len() / max_probe).max(1);
        let (mut probes, mut one_sided) = (0, 0);
        for i in (0..xv.len()).step_by(step).take(max_probe) {
            let at = |delta: f32| {
                let mut v = xv.clone();
                v[i] += delta;
                let mut xs: Vec<Tensor> = inputs.to_vec();
                xs[k] = Tensor::from_vec(v.clone(), x.shape()).unwrap();
                (eval(&xs), v[i] as f64 - xv[i] as f64)
            };
            let ((lp, hp), (lm, hm)) = (at(h as f32), at(-h as f32));
            let central = (lp - lm) / (hp - hm);
            let (fwd, bwd) = ((lp - base) / hp, (base - lm) / -hm);
            probes += 1;
            if close(gv[i], central) {
                continue;
            }
            assert!(
                close(gv[i], fwd) || close(gv[i], bwd),
                "{what}: d/d input {k} element {i}: got {} expected {central} (one-sided {fwd}, {bwd}; atol {atol}, rtol {rtol})",
                gv[i]
            );
            one_sided += 1;
        }
        assert!(4 * one_sided <= probes, "{what}: input {k}: {one_sided} of {probes} probes matched only one-sided");
    }
}
