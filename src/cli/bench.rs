//! `ldm-engine bench`: a quick timing of the core ops on Stable Diffusion shapes, for a first
//! look on a new machine. The criterion benches in benches/ are the careful measurement.

use ldm_engine::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use ldm_engine::models::unet::{UNet, UNetConfig};
use ldm_engine::nn::VarBuilder;
use ldm_engine::tensor::conv::Conv2dParams;
use ldm_engine::{DType, Result, Tensor};
use rand::SeedableRng;
use std::time::Instant;

struct Case {
    name: String,
    /// FLOPs (or bytes, when `bytes` is set) of one run
    work: f64,
    bytes: bool,
    /// whole-model case: report runs per second instead of a work rate
    steps: bool,
    run: Box<dyn Fn() -> Result<Tensor>>,
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(seed))
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for n in [1024usize, 2048] {
        let (a, b) = (randn(&[n, n], 1), randn(&[n, n], 2));
        v.push(Case { name: format!("gemm {n}x{n}x{n}"), work: 2.0 * (n * n * n) as f64, bytes: false, steps: false, run: Box::new(move || a.matmul(&b)) });
    }
    for (c, hw) in [(320usize, 64usize), (640, 32), (1280, 16)] {
        let (x, w) = (randn(&[1, c, hw, hw], 3), randn(&[c, c, 3, 3], 4));
        let p = Conv2dParams { padding: (1, 1), ..Default::default() };
        let work = 2.0 * (c * c * 9 * hw * hw) as f64;
        v.push(Case { name: format!("conv3x3 1x{c}x{hw}x{hw}->{c}"), work, bytes: false, steps: false, run: Box::new(move || x.conv2d(&w, None, p)) });
    }
    {
        let (x, w) = (randn(&[1, 320, 64, 64], 5), randn(&[320, 320, 1, 1], 6));
        let work = 2.0 * (320 * 320 * 64 * 64) as f64;
        v.push(Case { name: "conv1x1 1x320x64x64->320".into(), work, bytes: false, steps: false, run: Box::new(move || x.conv2d(&w, None, Conv2dParams::default())) });
    }
    for (lq, lk, d) in [(4096usize, 4096usize, 40usize), (1024, 1024, 80), (4096, 77, 40)] {
        let (q, k, val) = (randn(&[1, 8, lq, d], 7), randn(&[1, 8, lk, d], 8), randn(&[1, 8, lk, d], 9));
        let work = 4.0 * (8 * lq * lk * d) as f64;
        v.push(Case {
            name: format!("attention h8 {lq}x{lk} hd{d}"),
            work,
            bytes: false,
            steps: false,
            run: Box::new(move || Tensor::scaled_dot_product_attention(&q, &k, &val, None, None)),
        });
    }
    // Whole models with seeded random weights (no pretrained weights exist offline); built lazily
    // on first run so `--filter conv` does not pay for a 3.4 GB UNet.
    {
        let unet = std::sync::OnceLock::new();
        let (x, t, ctx) = (randn(&[2, 4, 64, 64], 11), Tensor::from_vec(vec![999f32, 999.0], &[2]).unwrap(), randn(&[2, 77, 768], 12));
        v.push(Case {
            name: "sd15 unet 64x64 b2".into(),
            work: 1.0,
            bytes: false,
            steps: true,
            run: Box::new(move || {
                let unet = unet.get_or_init(|| UNet::new(&VarBuilder::seeded_init(DType::F32, 1), &UNetConfig::sd15()));
                let _g = ldm_engine::no_grad();
                unet.as_ref().map_err(|e| ldm_engine::Error::invalid("bench", e.to_string()))?.forward(&x, &t, Some(&ctx), None)
            }),
        });
        let vae = std::sync::OnceLock::new();
        let z = randn(&[1, 4, 64, 64], 13);
        v.push(Case {
            name: "sd vae decode 512x512".into(),
            work: 1.0,
            bytes: false,
            steps: true,
            run: Box::new(move || {
                let vae = vae.get_or_init(|| AutoencoderKL::new(&VarBuilder::seeded_init(DType::F32, 2), &AutoencoderConfig::sd_kl_f8()));
                let _g = ldm_engine::no_grad();
                vae.as_ref().map_err(|e| ldm_engine::Error::invalid("bench", e.to_string()))?.decode(&z)
            }),
        });
    }
    {
        let x = randn(&[1, 320, 64, 64], 10);
        let work = 2.0 * 4.0 * x.numel() as f64;
        v.push(Case { name: "group_norm 1x320x64x64 g32".into(), work, bytes: true, steps: false, run: Box::new(move || x.group_norm(32, None, None, 1e-5)) });
    }
    v
}

pub fn run(filter: Option<&str>, reps: usize) -> Result<()> {
    let (cases, others): (Vec<Case>, Vec<Case>) = cases().into_iter().partition(|c| filter.is_none_or(|f| c.name.contains(f)));
    if cases.is_empty() {
        // a misspelt filter used to run nothing and succeed
        let names: Vec<&str> = others.iter().map(|c| c.name.as_str()).collect();
        return Err(ldm_engine::Error::invalid("bench", format!("--filter {:?} matches no bench (the benches: {})", filter.unwrap_or(""), names.join(", "))));
    }
    drop(others);
    println!("threads: {}", rayon::current_num_threads());
    for c in cases {
        if let Err(e) = (c.run)() {
            println!("{:<32} unavailable: {e}", c.name);
            continue;
        }
        // whole models take seconds a run: three runs give a stable median
        let runs = if c.steps { reps.clamp(1, 3) } else { reps.max(1) };
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let _ = (c.run)();
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        let med = times[times.len() / 2];
        let (rate, unit) = match (c.steps, c.bytes) {
            (true, _) => (1.0 / med, "runs/s"),
            (false, true) => (c.work / med / 1e9, "GB/s"),
            (false, false) => (c.work / med / 1e9, "GFLOP/s"),
        };
        println!("{:<32} {:>9.3} ms  {:>8.3} {unit}", c.name, med * 1e3, rate);
    }
    Ok(())
}
