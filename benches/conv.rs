//! conv2d on the Stable Diffusion UNet shapes (batch 1, 3×3 pad 1 at each resolution, and the
//! 1×1 shortcut conv), reported as GFLOP/s (2·N·C_out·C_in·KH·KW·H_out·W_out per conv).
//!
//! Besides criterion's statistics, each shape prints one easy-to-read line from its own timing
//! loop (median of 10 after a warm-up), the number to put next to tools/torch_bench/conv.py.
//! `CONV_SWEEP=1 cargo bench --bench conv` also sweeps the im2col tile budget.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ldm_engine::backend::cpu::conv::{conv2d_backward_data, conv2d_backward_weight, conv2d_forward_with, Geom};
use ldm_engine::tensor::conv::Conv2dParams;
use ldm_engine::{DType, Tensor};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// (name, N, C_in, H, W, C_out, kernel, padding) — keep in sync with tools/torch_bench/conv.py.
const SHAPES: [(&str, usize, usize, usize, usize, usize, usize, usize); 4] = [
    ("conv3x3 1x320x64x64->320", 1, 320, 64, 64, 320, 3, 1),
    ("conv3x3 1x640x32x32->640", 1, 640, 32, 32, 640, 3, 1),
    ("conv3x3 1x1280x16x16->1280", 1, 1280, 16, 16, 1280, 3, 1),
    ("conv1x1 1x320x64x64->320", 1, 320, 64, 64, 320, 1, 0),
];

fn median_ms(mut f: impl FnMut(), runs: usize) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[runs / 2]
}

/// A same-size (stride 1) convolution's geometry for the kernel-level measurements.
fn geom(n: usize, c_in: usize, h: usize, w: usize, c_out: usize, k: usize, pad: usize) -> Geom {
    Geom {
        n, c_in, h, w, c_out, kh: k, kw: k,
        stride: (1, 1), padding: (pad, pad), dilation: (1, 1), groups: 1, ho: h, wo: w,
    }
}

fn bench(c: &mut Criterion) {
    let _g = ldm_engine::no_grad();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (name, n, ci, h, w, co, k, pad) in SHAPES {
        let x = Tensor::randn(&[n, ci, h, w], 0.0, 1.0, DType::F32, &mut rng);
        let wt = Tensor::randn(&[co, ci, k, k], 0.0, 0.05, DType::F32, &mut rng);
        let b = Tensor::randn(&[co], 0.0, 1.0, DType::F32, &mut rng);
        let p = Conv2dParams { padding: (pad, pad), ..Default::default() };
        let flops = 2 * n * co * ci * k * k * h * w;
        let run = || black_box(x.conv2d(&wt, Some(&b), p).unwrap());
        let ms = median_ms(|| drop(run()), 10);
        println!("{name}: {ms:.2} ms, {:.1} GFLOP/s", flops as f64 / ms / 1e6);
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(name, |bch| bch.iter(run));
    }
    group.finish();

    // Training: both backward kernels (dx then dw) for the 3×3 shapes, as one number to put
    // next to torch's convolution_backward with output_mask [dx, dw].
    for (name, n, ci, h, w, co, k, pad) in &SHAPES[..3] {
        let g = geom(*n, *ci, *h, *w, *co, *k, *pad);
        let x = Tensor::randn(&[n * ci * h * w], 0.0, 1.0, DType::F32, &mut rng).to_vec::<f32>().unwrap();
        let wt = Tensor::randn(&[co * ci * k * k], 0.0, 0.05, DType::F32, &mut rng).to_vec::<f32>().unwrap();
        let dy = Tensor::randn(&[n * co * h * w], 0.0, 1.0, DType::F32, &mut rng).to_vec::<f32>().unwrap();
        let ms = median_ms(
            || {
                black_box(conv2d_backward_data(&dy, &wt, None, &g));
                black_box(conv2d_backward_weight(&x, &dy, &g));
            },
            5,
        );
        println!("{name} backward (dx+dw): {ms:.2} ms, {:.1} GFLOP/s", 4.0 * (n * co * ci * k * k * h * w) as f64 / ms / 1e6);
        if std::env::var_os("CONV_SWEEP").is_some() {
            let dx_ms = median_ms(|| drop(black_box(conv2d_backward_data(&dy, &wt, None, &g))), 5);
            let dw_ms = median_ms(|| drop(black_box(conv2d_backward_weight(&x, &dy, &g))), 5);
            println!("{name} backward split: dx {dx_ms:.2} ms, dw {dw_ms:.2} ms");
        }
    }

    if std::env::var_os("CONV_SWEEP").is_some() {
        for (name, n, ci, h, w, co, k, pad) in &SHAPES[..3] {
            let g = geom(*n, *ci, *h, *w, *co, *k, *pad);
            let x = Tensor::randn(&[n * ci * h * w], 0.0, 1.0, DType::F32, &mut rng).to_vec::<f32>().unwrap();
            let wt = Tensor::randn(&[co * ci * k * k], 0.0, 0.05, DType::F32, &mut rng).to_vec::<f32>().unwrap();
            for budget_kib in [2048, 4096, 8192, 16384, 32768, 1 << 20] {
                let ms = median_ms(|| drop(black_box(conv2d_forward_with(&x, &wt, None, &g, budget_kib << 10))), 7);
                println!("tile sweep {name} budget {budget_kib} KiB: {ms:.2} ms");
            }
            // The GEMM alone (same M, N, K as a 1×1 conv over C_in·9 channels): the ceiling
            // im2col-based conv can reach.
            let kk = ci * k * k;
            let g1 = Geom { c_in: kk, kh: 1, kw: 1, padding: (0, 0), ..g };
            let x1 = Tensor::randn(&[n * kk * h * w], 0.0, 1.0, DType::F32, &mut rng).to_vec::<f32>().unwrap();
            let ms = median_ms(|| drop(black_box(conv2d_forward_with(&x1, &wt, None, &g1, 0))), 7);
            println!("tile sweep {name} gemm only [{co}x{kk}]·[{kk}x{}]: {ms:.2} ms", h * w);
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
