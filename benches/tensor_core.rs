//! The tensor-core kernels on the Stable Diffusion shapes, in TFLOP/s: conv2d (kernels/conv_tc.cu)
//! forward, backward data and backward weight for 320/640/1280 channels at 64²/32²/16²/8²
//! (batch 2, as with classifier-free guidance), and flash attention forward (kernels/attention.cu)
//! at (4096, 40), (1024, 80), (256, 160), 4096×77 cross-attention and (4096, 64), batch 2 × 8 heads,
//! in f16 and bf16, and the Linear layers' products (kernels/gemm_tc.cu, bias fused) at the SD
//! shapes. Without a GPU it prints why and exits 0.
//!
//! With `--features kernel-lab` the kernel lab's variants get rows of their own ("conv2d fwd v4",
//! "conv2d fwd v5" (wgmma: Hopper only),
//! "linear v3", "linear v4", "linear v5" (wgmma: Hopper only), "attention fwd v3"),
//! after a line giving their largest difference from the shipped kernel.
//! Each row is also printed as one tab-separated `TC` line that tools/torch_bench/tensor_core.py
//! reads to put PyTorch's time (cuDNN conv, SDPA) for the same shape next to ours:
//!   TC <kind> <shape> <dtype> <ms> <TFLOP/s>
//! cargo bench --bench tensor_core           (tools/gpu_check.sh runs it on a GPU machine)

use ldm_engine::backend::cpu::conv::Geom;
use ldm_engine::backend::cuda;
use ldm_engine::tensor::conv::Conv2dParams;
use ldm_engine::{DType, Device, Tensor};

mod gpu_timing;

/// A kernel-lab variant's output against the shipped kernel's on the same inputs, printed: true
/// when within 8 ulps of the half type at the output's scale (each rounds its f32 result once; the
/// summation orders differ). A variant that is wrong gets a WRONG line and no timing row — its
/// time would not count — and the bench goes on to the shipped kernels' rows.
#[cfg(feature = "kernel-lab")]
fn lab_check(what: &str, got: ldm_engine::Result<Tensor>, want: &Tensor, dt: DType) -> bool {
    if cuda::device(0).is_ok_and(|d| d.dry_run().is_some()) {
        // nothing was computed: only whether it launches, and a host-side failure ends the run
        if let Err(e) = got {
            panic!("lab {what} failed in a dry run: {e}");
        }
        println!("lab {what}: launched (dry run: outputs not compared)");
        return true;
    }
    let got = match got.and_then(|t| t.to_vec_f64()) {
        Ok(v) => v,
        Err(e) => {
            println!("lab {what} failed: {e}: not timed");
            return false;
        }
    };
    let want = want.to_vec_f64().unwrap();
    let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
    let eps = if dt == DType::F16 { 2f64.powi(-11) } else { 2f64.powi(-8) };
    let right = diff <= 8.0 * eps * scale; // false for NaN too
    println!("lab {what} vs shipped: max |diff| {diff:.3e} (max |y| {scale:.3e}){}", if right { "" } else { " WRONG: not timed" });
    right
}

fn time(dev: &cuda::CudaDevice, f: impl FnMut()) -> f64 {
    gpu_timing::median_seconds(dev, 3, 100, f)
}

/// (C_in = C_out, H = W, kernel) of the SD UNet's convs; batch 2.
pub const CONVS: [(usize, usize, usize); 8] = [
    (320, 64, 3),
    (640, 32, 3),
    (1280, 16, 3),
    (1280, 8, 3),
    (320, 64, 1),
    (640, 32, 1),
    (1280, 16, 1),
    (1280, 8, 1),
];
/// (M, K, N) of the SD UNet's Linear layers at batch 2 (x [M, K] · Wᵀ + bias, kernels/gemm_tc.cu):
/// the attention projections and the GEGLU feed-forward at 64² latents, the feed-forward at 32²
/// and 16², and the text cross-attention's key/value projection (2 × 77 tokens of 768).
pub const LINEARS: [(usize, usize, usize); 6] = [(8192, 320, 320), (8192, 320, 2560), (8192, 1280, 320), (2048, 640, 5120), (512, 1280, 10240), (154, 768, 320)];
/// (queries, keys, head dim) with batch 2 and 8 heads: SD1.x's levels and its text cross-attention.
pub const ATTENTION: [(usize, usize, usize); 5] = [(4096, 4096, 40), (1024, 1024, 80), (256, 256, 160), (4096, 77, 40), (4096, 4096, 64)];

fn main() {
    let Some(dev) = gpu_timing::first_device("tensor_core") else { return };
    let d = Device::Cuda(0);
    let _g = ldm_engine::no_grad();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut randn = |shape: &[usize], dt: DType, sd: f64| Tensor::randn(shape, 0.0, sd, dt, &mut rng).to_device(d).unwrap();
    let row = |kind: &str, shape: &str, dt: DType, s: f64, flops: f64| {
        println!("{kind:<18} {shape:<28} {dt:<5} {:>9.3} ms {:>7.1} TFLOP/s", s * 1e3, flops / s / 1e12);
        println!("TC\t{kind}\t{shape}\t{dt}\t{:.4}\t{:.2}", s * 1e3, flops / s / 1e12);
    };
    for dt in [DType::F16, DType::BF16] {
        for (c, hw, k) in CONVS {
            let pad = k / 2;
            let x = randn(&[2, c, hw, hw], dt, 1.0);
            let w = randn(&[c, c, k, k], dt, 0.02);
            let b = randn(&[c], dt, 1.0);
            let dy = randn(&[2, c, hw, hw], dt, 1.0);
            let g = Geom { n: 2, c_in: c, h: hw, w: hw, c_out: c, kh: k, kw: k, stride: (1, 1), padding: (pad, pad), dilation: (1, 1), groups: 1, ho: hw, wo: hw };
            let flops = 2.0 * (2 * c * c * k * k * hw * hw) as f64;
            let shape = format!("2x{c}x{hw}x{hw} k{k}");
            let p = Conv2dParams { padding: (pad, pad), ..Default::default() };
            row("conv2d fwd", &shape, dt, time(&dev, || drop(x.conv2d(&w, Some(&b), p).unwrap())), flops);
            row("conv2d bwd data", &shape, dt, time(&dev, || drop(cuda::conv::backward_data(&dy, &w, None, &g).unwrap())), flops);
            row("conv2d bwd weight", &shape, dt, time(&dev, || drop(cuda::conv::backward_weight(&x, &dy, &g, dt).unwrap())), flops);
            // the kernel lab's conv forward variants 4 and 5 on the same tensors, checked against the shipped one
            #[cfg(feature = "kernel-lab")]
            for variant in [4, 5] {
                if lab_check(&format!("conv v{variant}"), cuda::lab::conv2d_lab(&x, &w, Some(&b), &g, variant), &x.conv2d(&w, Some(&b), p).unwrap(), dt) {
                    row(&format!("conv2d fwd v{variant}"), &shape, dt, time(&dev, || drop(cuda::lab::conv2d_lab(&x, &w, Some(&b), &g, variant).unwrap())), flops);
                }
            }
        }
        for (m, k, n) in LINEARS {
            let (x, w, b) = (randn(&[m, k], dt, 1.0), randn(&[n, k], dt, 0.02), randn(&[n], dt, 1.0));
            let s = time(&dev, || drop(x.linear(&w, Some(&b)).unwrap()));
            row("linear", &format!("{m}x{k}x{n}"), dt, s, 2.0 * (m * k * n) as f64);
            // The kernel lab's GEMM variant on the same tensors (tools/gpu_check.sh builds this
            // bench with --features kernel-lab); its output is checked against the shipped one.
            #[cfg(feature = "kernel-lab")]
            for variant in [3, 4, 5] {
                if lab_check(&format!("gemm v{variant}"), cuda::lab::linear_ring(&x, &w, &b, variant), &x.linear(&w, Some(&b)).unwrap(), dt) {
                    row(&format!("linear v{variant}"), &format!("{m}x{k}x{n}"), dt, time(&dev, || drop(cuda::lab::linear_ring(&x, &w, &b, variant).unwrap())), 2.0 * (m * k * n) as f64);
                }
            }
        }
        for (lq, lk, dh) in ATTENTION {
            let (q, k, v) = (randn(&[2, 8, lq, dh], dt, 1.0), randn(&[2, 8, lk, dh], dt, 1.0), randn(&[2, 8, lk, dh], dt, 1.0));
            // Two products of 2·Lq·Lk·D flops each, per (batch, head).
            let flops = 4.0 * (16 * lq * lk * dh) as f64;
            let s = time(&dev, || drop(Tensor::scaled_dot_product_attention(&q, &k, &v, None, None).unwrap()));
            row("attention fwd", &format!("2x8x{lq}x{lk} d{dh}"), dt, s, flops);
            // attention lab variant 3 where it applies (head dims ≤ 80), checked against the shipped forward
            #[cfg(feature = "kernel-lab")]
            if dh <= 80 {
                let scale = 1.0 / (dh as f64).sqrt();
                let shipped = Tensor::scaled_dot_product_attention(&q, &k, &v, None, None).unwrap();
                if lab_check("attention v3", cuda::lab::flash_forward_v3(&q, &k, &v, scale).map(|(o, _)| o), &shipped, dt) {
                    let s = time(&dev, || drop(cuda::lab::flash_forward_v3(&q, &k, &v, scale).unwrap()));
                    row("attention fwd v3", &format!("2x8x{lq}x{lk} d{dh}"), dt, s, flops);
                }
            }
        }
    }
}
