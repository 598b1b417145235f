//! group_norm / layer_norm forward throughput on the UNet's real shapes (SD1.x: 32 groups over
//! 320/640/1280 channels at 64²/32²/16² latents), a transformer-block layer_norm [4096, 320], and
//! LPIPS-VGG16's first 2×2 max pool (batch 4 at 256²: [4, 64, 256, 256]).
//! Bytes = input read + output written (f32); parameters are negligible.
//! Prints a plain table from its own timing loop (median of 15 runs), then the criterion runs.
//! Compare with tools/torch_bench/norm.py run at the same time (shared machine: ratios, not times).

use criterion::{Criterion, Throughput};
use ldm_engine::{DType, Tensor};
use rand::SeedableRng;
use std::hint::black_box;
use std::time::{Duration, Instant};

struct Case {
    name: String,
    x: Tensor,
    w: Tensor,
    b: Tensor,
    kind: Kind,
}

enum Kind {
    GroupNorm(usize),
    LayerNorm,
    MaxPool2x2,
}

impl Case {
    fn run(&self) -> Tensor {
        match self.kind {
            Kind::MaxPool2x2 => self.x.max_pool2d((2, 2), (2, 2)).unwrap(),
            Kind::GroupNorm(g) => self.x.group_norm(g, Some(&self.w), Some(&self.b), 1e-5).unwrap(),
            Kind::LayerNorm => self.x.layer_norm(Some(&self.w), Some(&self.b), 1e-5).unwrap(),
        }
    }
    fn bytes(&self) -> u64 {
        match self.kind {
            Kind::MaxPool2x2 => 4 * (self.x.numel() + self.x.numel() / 4) as u64, // a quarter written back
            _ => 2 * 4 * self.x.numel() as u64,
        }
    }
}

fn cases() -> Vec<Case> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut v = Vec::new();
    for n in [1, 2] {
        for (c, hw) in [(320, 64), (640, 32), (1280, 16)] {
            v.push(Case {
                name: format!("group_norm {n}x{c}x{hw}x{hw} g32"),
                x: Tensor::randn(&[n, c, hw, hw], 0.0, 1.0, DType::F32, &mut rng),
                w: Tensor::randn(&[c], 1.0, 0.1, DType::F32, &mut rng),
                b: Tensor::randn(&[c], 0.0, 0.1, DType::F32, &mut rng),
                kind: Kind::GroupNorm(32),
            });
        }
    }
    v.push(Case {
        name: "layer_norm 4096x320".into(),
        x: Tensor::randn(&[4096, 320], 0.0, 1.0, DType::F32, &mut rng),
        w: Tensor::randn(&[320], 1.0, 0.1, DType::F32, &mut rng),
        b: Tensor::randn(&[320], 0.0, 0.1, DType::F32, &mut rng),
        kind: Kind::LayerNorm,
    });
    v.push(Case {
        name: "max_pool2d 4x64x256x256 k2s2".into(),
        x: Tensor::randn(&[4, 64, 256, 256], 0.0, 1.0, DType::F32, &mut rng),
        w: Tensor::zeros(&[1], DType::F32),
        b: Tensor::zeros(&[1], DType::F32),
        kind: Kind::MaxPool2x2,
    });
    v
}

/// Median wall time of `runs` calls of `f` after a short warm-up.
fn median_of(runs: usize, f: impl Fn() -> Tensor) -> Duration {
    for _ in 0..3 {
        black_box(f());
    }
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            black_box(f());
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn main() {
    let cases = cases();
    println!("threads: {}", rayon::current_num_threads());
    for c in &cases {
        let t = median_of(15, || c.run());
        println!("{}: {:.3} ms, {:.2} GB/s", c.name, t.as_secs_f64() * 1e3, c.bytes() as f64 / t.as_secs_f64() / 1e9);
    }
    // The engine's own one-read-one-write pass (x·1 + 0.5) on the same tensors: the floor a
    // normalisation (which must also read x for its statistics) is measured against.
    for c in &cases {
        let t = median_of(15, || c.x.affine(1.0, 0.5).unwrap());
        println!("floor: affine on {}: {:.3} ms, {:.2} GB/s", c.name, t.as_secs_f64() * 1e3, c.bytes() as f64 / t.as_secs_f64() / 1e9);
    }
    let mut crit = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = crit.benchmark_group("norm");
    for c in &cases {
        group.throughput(Throughput::Bytes(c.bytes()));
        group.bench_function(c.name.replace(' ', "_"), |b| b.iter(|| black_box(c.run())));
    }
    group.finish();
    crit.final_summary();
}
