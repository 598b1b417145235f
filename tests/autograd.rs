//! The autograd engine itself: accumulation across uses and calls, detach, no_grad, errors, and a
//! long chain through many op families.

mod common;
use common::*;
use ldm_engine::{no_grad, GradStore, Tensor};

#[test]
fn gradient_accumulates_across_uses_and_calls() {
    let x = randn(&[4], 1).requires_grad();
    // y = x·x + 3x: x used three times
    let y = x.mul(&x).unwrap().add(&x.mul_scalar(3.0).unwrap()).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    let want: Vec<f64> = vals(&x).iter().map(|v| 2.0 * v + 3.0).collect();
    assert_close(&vals(g.get(&x).unwrap()), &want, 1e-6, 1e-6, "d(x²+3x)");

    // two backward calls into one store add up (gradient accumulation over micro-batches)
    let mut store = GradStore::new();
    for _ in 0..2 {
        x.mul_scalar(2.0).unwrap().sum_all().unwrap().backward_into(&mut store).unwrap();
    }
    assert_eq!(vals(store.get(&x).unwrap()), vec![4.0; 4]);
}

#[test]
fn detach_and_no_grad_stop_recording() {
    let x = randn(&[3], 2).requires_grad();
    let d = x.detach();
    assert!(!d.tracked() && d.same_storage(&x));
    let y = x.mul(&d).unwrap().sum_all().unwrap(); // d is a constant: dy/dx = d
    assert_close(&vals(y.backward().unwrap().get(&x).unwrap()), &vals(&d), 0.0, 0.0, "detach");
    {
        let _g = no_grad();
        let z = x.mul_scalar(2.0).unwrap();
        assert!(!z.tracked() && z.op().is_none());
    }
    assert!(x.mul_scalar(2.0).unwrap().tracked(), "grad mode restored when the guard drops");
    // inference over plain tensors records nothing
    let w = randn(&[3, 3], 3);
    assert!(w.matmul(&w).unwrap().op().is_none());
}

#[test]
fn backward_errors_are_clear() {
    let x = randn(&[3], 4).requires_grad();
    let e = x.mul_scalar(2.0).unwrap().backward().err().unwrap().to_string();
    assert!(e.contains("scalar"), "{e}");
    let e = randn(&[1], 5).backward().err().unwrap().to_string();
    assert!(e.contains("does not depend"), "{e}");
}

#[test]
fn deep_chain_does_not_overflow_the_stack() {
    let x = randn(&[2], 6).requires_grad();
    let mut y = x.clone();
    for _ in 0..200_000 {
        y = y.mul_scalar(1.0).unwrap();
    }
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(g.get(&x).unwrap()), vec![1.0, 1.0]);
}

/// A small MLP-with-attention-style chain made of matmul, softmax, layer-free ops, reductions and
/// views; its end-to-end gradient must match finite differences.
#[test]
fn chain_of_mixed_ops_backprops() {
    let f = |t: &[Tensor]| {
        let (x, w1, w2) = (&t[0], &t[1], &t[2]);
        let h = x.matmul(w1)?.gelu()?; // [5, 6]
        let scores = h.matmul(&h.t()?)?.mul_scalar(0.3)?.softmax(-1)?; // [5, 5]
        let mixed = scores.matmul(&h)?; // [5, 6]
        let y = mixed.add(&h.narrow(1, 0, 6)?)?.matmul(w2)?.tanh()?; // [5, 2]
        let centered = y.sub(&y.mean_keepdim(&[0])?)?;
        Tensor::cat(&[&centered, &y.sqr()?], 1)
    };
    grad_check(f, &[randn(&[5, 4], 7), randn(&[4, 6], 8).mul_scalar(0.5).unwrap(), randn(&[6, 2], 9).mul_scalar(0.5).unwrap()], "mixed chain");
}

/// grad_for gives the same gradient as a full backward for the variables asked for, and none
/// for the others.
#[test]
fn grad_for_matches_backward_on_its_targets_only() {
    let w1 = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.25], &[2, 2]).unwrap().requires_grad();
    let w2 = Tensor::from_vec(vec![1.5f32, 0.5, -0.75, 1.0], &[2, 2]).unwrap().requires_grad();
    let x = Tensor::from_vec(vec![1f32, 2.0, -1.0, 0.5], &[2, 2]).unwrap();
    let loss = x.matmul(&w1).unwrap().tanh().unwrap().matmul(&w2).unwrap().sqr().unwrap().sum_all().unwrap();
    let full = loss.backward().unwrap();
    let only = loss.grad_for(&[&w2]).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only.get(&w2).unwrap().to_vec::<f32>().unwrap(), full.get(&w2).unwrap().to_vec::<f32>().unwrap());
    assert!(only.get(&w1).is_none());
}

/// A VGG block (conv 3×3 → relu → conv → relu → 2×2 max pool) on an odd-sized image: the
/// gradient through relu and max pooling together, w.r.t. the input and both weights.
#[test]
fn vgg_block_backprops() {
    use ldm_engine::tensor::conv::Conv2dParams;
    let p = Conv2dParams { padding: (1, 1), ..Default::default() };
    let f = move |t: &[Tensor]| {
        let h = t[0].conv2d(&t[1], None, p)?.relu()?; // [2, 4, 7, 9]
        h.conv2d(&t[2], None, p)?.relu()?.max_pool2d((2, 2), (2, 2)) // [2, 3, 3, 4]
    };
    let (x, w1, w2) = (randn(&[2, 3, 7, 9], 10), randn(&[4, 3, 3, 3], 11).mul_scalar(0.3).unwrap(), randn(&[3, 4, 3, 3], 12).mul_scalar(0.3).unwrap());
    // relu and max pooling are piecewise linear: at the default step a few probes cross a kink
    // (e.g. w1 moves every pre-activation of a channel at once), hence the kink-aware check.
    // Along one coordinate this block is exactly piecewise linear, so one-sided differences are
    // exact up to f32 rounding (~1e-3 at h = 1e-3); the small step keeps two kinks within ±h rare.
    grad_check_kinked(f, &[x, w1, w2], 1e-3, 3e-3, 2e-2, 40, "conv-relu-conv-relu-maxpool");
}
