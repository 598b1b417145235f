//! GEMM throughput on the shapes a Stable Diffusion UNet step runs: the attention projections
//! (4096×320 · 320×320), the feed-forward (4096×320 · 320×2560) and square references.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ldm_engine::{DType, Tensor};
use rand::SeedableRng;
use std::time::{Duration, Instant};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(seed))
}

const SHAPES: [(usize, usize, usize); 4] = [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 320, 320), (4096, 320, 2560)];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    for (m, k, n) in SHAPES {
        let (a, b) = (randn(&[m, k], 1), randn(&[k, n], 2));
        let flops = 2 * m * n * k;
        // A plain line that is easy to read next to torch's numbers (median of 10).
        let mut ts: Vec<f64> = (0..10)
            .map(|_| {
                let t = Instant::now();
                a.matmul(&b).unwrap();
                t.elapsed().as_secs_f64()
            })
            .collect();
        ts.sort_by(f64::total_cmp);
        println!("gemm {m}x{k}x{n}: {:.3} ms, {:.1} GFLOP/s", ts[5] * 1e3, flops as f64 / ts[5] / 1e9);
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_function(format!("{m}x{k}x{n}"), |bch| bch.iter(|| a.matmul(&b).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
