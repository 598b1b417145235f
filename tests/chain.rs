//! End-to-end backprop through a small UNet-like block: conv → group_norm → SiLU → conv (stride 2)
//! → self-attention over the spatial positions → conv_transpose back up → skip add → pad →
//! avg-pool → upsample, with a scalar loss. Every parameter's gradient must match finite
//! differences, which checks the rules compose (views, broadcasts, accumulation) as a model uses them.

mod common;
use common::*;
use ldm_engine::autograd::PadMode;
use ldm_engine::tensor::conv::{Conv2dParams, ConvTranspose2dParams};
use ldm_engine::{Result, Tensor};

/// inputs: x, conv1 w, conv1 b, gn gamma, gn beta, conv2 w, q/k/v projection w, convT w, ln gamma
fn block(t: &[Tensor]) -> Result<Tensor> {
    let (x, w1, b1, gamma, beta, w2, wqkv, wt, ln_g) = (&t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6], &t[7], &t[8]);
    let same = Conv2dParams { padding: (1, 1), ..Default::default() };
    let h = x.conv2d(w1, Some(b1), same)?; // [2, 4, 6, 6]
    let h = h.group_norm(2, Some(gamma), Some(beta), 1e-5)?.silu()?;
    let down = h.conv2d(w2, None, Conv2dParams { stride: (2, 2), padding: (1, 1), ..Default::default() })?; // [2, 4, 3, 3]
    let (n, c, hh, ww) = (2, 4, 3, 3);
    let tokens = down.reshape(&[n, c, hh * ww])?.transpose(1, 2)?; // [2, 9, 4]
    let tokens = tokens.layer_norm(Some(ln_g), None, 1e-5)?;
    let qkv = tokens.matmul(wqkv)?; // [2, 9, 12]
    let heads = |i: usize| qkv.narrow(2, i * 4, 4)?.reshape(&[n, 9, 2, 2])?.transpose(1, 2); // [2, 2, 9, 2]
    let a = Tensor::scaled_dot_product_attention(&heads(0)?, &heads(1)?, &heads(2)?, None, None)?; // [2, 2, 9, 2]
    let a = a.transpose(1, 2)?.reshape(&[n, 9, c])?.transpose(1, 2)?.reshape(&[n, c, hh, ww])?;
    let up = down.add(&a)?.conv_transpose2d(wt, None, ConvTranspose2dParams { stride: (2, 2), padding: (1, 1), output_padding: (1, 1), ..Default::default() })?; // [2, 4, 6, 6]
    let y = up.add(&h)?.pad2d([1, 1, 1, 1], PadMode::Reflect)?.avg_pool2d((2, 2), (2, 2))?; // [2, 4, 4, 4]
    y.upsample_nearest2d(8, 8)?.sqr()?.mean(&[1])
}

#[test]
fn small_unet_block_backprops_like_finite_differences() {
    let s = |shape: &[usize], seed: u64, scale: f64| randn(shape, seed).mul_scalar(scale).unwrap();
    let inputs = [
        s(&[2, 3, 6, 6], 1, 1.0),
        s(&[4, 3, 3, 3], 2, 0.3),
        s(&[4], 3, 0.1),
        s(&[4], 4, 0.2).add_scalar(1.0).unwrap(),
        s(&[4], 5, 0.1),
        s(&[4, 4, 3, 3], 6, 0.3),
        s(&[4, 12], 7, 0.5),
        s(&[4, 4, 3, 3], 8, 0.3),
        s(&[4], 9, 0.2).add_scalar(1.0).unwrap(),
    ];
    // The chain is ~25 ops deep in f32; the same FD tolerances as the per-op checks hold because
    // every op is smooth at these inputs (no ReLU kinks, group/layer norm variance well above eps).
    grad_check(block, &inputs, "unet block");
}
