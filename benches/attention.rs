//! Fused attention on SD1.5's shapes: self-attention of the 64×64 latent (4096 tokens, 8 heads of
//! 40 = 320 channels), of the 32×32 level (1024 tokens, heads of 80), and cross-attention to the
//! 77 CLIP tokens. Throughput counts the two matrix products, 4·B·H·Lq·Lk·D flops.
//!
//! Compare with tools/torch_bench/attention.py run right before/after (shared machine: compare
//! ratios, not absolute times). `ATTN_SWEEP=1` also times forward tile sizes on the 4096 shape.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ldm_engine::backend::cpu::attention::{self as cpu, Dims, Src, Tiles};
use ldm_engine::{DType, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SHAPES: [(&str, usize, usize, usize, usize, usize); 3] = [
    ("self 4096 hd40", 1, 8, 4096, 4096, 40),
    ("self 1024 hd80", 1, 8, 1024, 1024, 80),
    ("cross 4096x77 hd40", 1, 8, 4096, 77, 40),
];

fn inputs(b: usize, h: usize, lq: usize, lk: usize, d: usize) -> (Tensor, Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(0);
    (
        Tensor::randn(&[b, h, lq, d], 0.0, 1.0, DType::F32, &mut rng),
        Tensor::randn(&[b, h, lk, d], 0.0, 1.0, DType::F32, &mut rng),
        Tensor::randn(&[b, h, lk, d], 0.0, 1.0, DType::F32, &mut rng),
    )
}

fn flops(b: usize, h: usize, lq: usize, lk: usize, d: usize) -> f64 {
    4.0 * (b * h * lq * lk * d) as f64
}

/// Median wall time of `runs` calls after one warm-up call.
fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn plain_timings() {
    println!("threads: {}", rayon::current_num_threads());
    for &(name, b, h, lq, lk, d) in &SHAPES {
        let (q, k, v) = inputs(b, h, lq, lk, d);
        let t = median_time(10, || {
            black_box(Tensor::scaled_dot_product_attention(&q, &k, &v, None, None).unwrap());
        });
        let ms = t.as_secs_f64() * 1e3;
        println!("attn {name}: {ms:.2} ms, {:.1} GFLOP/s", flops(b, h, lq, lk, d) / t.as_secs_f64() / 1e9);
    }
    // Training path: forward + backward (backward alone is ~2.5× the forward's flops).
    for &(name, b, h, lq, lk, d) in &SHAPES[1..2] {
        let (q, k, v) = inputs(b, h, lq, lk, d);
        let (q, k, v) = (q.requires_grad(), k.requires_grad(), v.requires_grad());
        let t = median_time(5, || {
            let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None, None).unwrap();
            black_box(y.sum_all().unwrap().backward().unwrap());
        });
        println!("attn fwd+bwd {name}: {:.2} ms", t.as_secs_f64() * 1e3);
    }
}

/// Forward time per tile size on the 4096 self-attention shape (the backend called directly). The
/// minimum of 3 runs, tile sizes interleaved over 2 rounds: on a shared machine the minimum is the
/// run least disturbed by other load.
fn tile_sweep() {
    let (b, h, lq, lk, d) = (1, 8, 4096, 4096, 40);
    let (q, k, v) = inputs(b, h, lq, lk, d);
    let (qv, kv, vv) = (q.to_vec::<f32>().unwrap(), k.to_vec::<f32>().unwrap(), v.to_vec::<f32>().unwrap());
    let st = [h * lq * d, lq * d, d, 1];
    let src = |data| Src { data, offset: 0, strides: st };
    let dims = Dims { b, h, lq, lk, d, dv: d };
    let tiles: Vec<Tiles> = [32, 64, 128, 256].iter().flat_map(|&bq| [128, 256, 512, 1024, 4096].map(|bk| Tiles { bq, bk })).collect();
    let mut best = vec![f64::INFINITY; tiles.len()];
    for _round in 0..2 {
        for (t, b) in tiles.iter().zip(&mut best) {
            for _ in 0..3 {
                let s = Instant::now();
                black_box(cpu::forward(dims, src(&qv), src(&kv), src(&vv), None, 0.158, *t));
                *b = b.min(s.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    for (t, b) in tiles.iter().zip(&best) {
        println!("tiles bq {:4} bk {:5}: min {b:.1} ms", t.bq, t.bk);
    }
}

fn bench(c: &mut Criterion) {
    plain_timings();
    if std::env::var_os("ATTN_SWEEP").is_some() {
        tile_sweep();
    }
    let mut g = c.benchmark_group("attention");
    for &(name, b, h, lq, lk, d) in &SHAPES {
        let (q, k, v) = inputs(b, h, lq, lk, d);
        // Elements = flops, so criterion's "Gelem/s" reads as GFLOP/s.
        g.throughput(Throughput::Elements(flops(b, h, lq, lk, d) as u64));
        g.bench_function(name.replace(' ', "_"), |bn| {
            bn.iter(|| black_box(Tensor::scaled_dot_product_attention(&q, &k, &v, None, None).unwrap()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
