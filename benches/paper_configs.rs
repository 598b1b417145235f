//! Sampling throughput of the paper's configs (LDM paper Tab. 18 / Tab. 6) in samples/s, next to
//! the A100 figures the issue quotes: the released architectures with random weights
//! (`LatentDiffusion::seeded`; no pretrained weights exist offline), DDIM with the paper's step
//! counts, the first-stage decode included.
//!
//! Method: for each batch size (doubling from 1 until the device runs out of memory, throughput
//! stops growing, or the time budget ends) two short runs of the whole sampler (S₁ and S₂ = 2·S₁
//! DDIM steps + decode) give the fixed cost F and the per-step cost P (T(S) = F + S·P); the
//! samples/s of an N-step run is batch / (F + N·P). With `--full` the best batch is then also run
//! for the real N steps and that measured figure is printed beside the estimate.
//!
//!     cargo bench --bench paper_configs -- [--device cuda|cpu] [--dtype f16|bf16|f32]
//!         [--budget-s 240] [--full] [--only celeba256] [--max-batch 64]
//! Default device: CUDA when one is present, else the CPU (1 and 2 steps, batch 1: a smoke run
//! of the code path, not a throughput). Default dtype: f16 on CUDA (the tensor-core kernels; f32
//! convs take the im2col + FMA path), f32 on the CPU.

use ldm_engine::backend::{cuda, synchronize};
use ldm_engine::diffusion::{SamplerKind, SamplerOptions, SeededNoise};
use ldm_engine::models::presets::preset;
use ldm_engine::pipelines::ldm::{LatentDiffusion, LdmCondition, LdmRequest};
use ldm_engine::{DType, Device, Tensor};
use std::time::Instant;

/// (preset, DDIM steps, guidance, the A100 samples/s for it)
const CONFIGS: [(&str, usize, f64, f64); 5] = [
    ("celeba256", 500, 1.0, 6.80),
    ("lsun_churches256", 100, 1.0, 1.07),
    ("lsun_beds256", 200, 1.0, 0.43),
    ("cin256_v2", 250, 1.0, 0.7),
    ("cin256_v2", 250, 1.5, 0.4),
];

struct Args {
    device: Device,
    dtype: Option<DType>,
    budget_s: f64,
    full: bool,
    only: Option<String>,
    max_batch: usize,
}

fn args() -> Args {
    let mut a = Args { device: if cuda::device_count() > 0 { Device::Cuda(0) } else { Device::Cpu }, dtype: None, budget_s: 240.0, full: false, only: None, max_batch: 64 };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = |i: usize| v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--device" => a.device = next(i).parse().expect("--device cpu|cuda|cuda:N"),
            "--dtype" => a.dtype = Some(next(i).parse().expect("--dtype f16|bf16|f32")),
            "--budget-s" => a.budget_s = next(i).parse().expect("--budget-s seconds"),
            "--only" => a.only = Some(next(i)),
            "--max-batch" => a.max_batch = next(i).parse().expect("--max-batch N"),
            "--full" => {
                a.full = true;
                i -= 1;
            }
            _ => {
                i -= 1; // cargo bench passes --bench; ignore what is not ours
            }
        }
        i += 2;
    }
    a
}

/// Seconds for one whole `steps`-step sampling of `batch` images (decode included, synchronised).
fn run(model: &LatentDiffusion, steps: usize, batch: usize, guidance: f64, device: Device) -> ldm_engine::Result<f64> {
    let condition = match model.cond_stage {
        ldm_engine::pipelines::ldm::CondStage::Class(_) => LdmCondition::Class((0..batch as i64).map(|i| (i * 37) % 1000).collect()),
        _ => LdmCondition::None,
    };
    let req = LdmRequest { condition, guidance, sampler: SamplerOptions { kind: SamplerKind::Ddim, steps, eta: 0.0 } };
    let shape = model.latent_shape(&req.condition, batch, None)?;
    let initial = Tensor::randn(&shape, 0.0, 1.0, DType::F32, &mut rand::rng()).to_device(device)?;
    synchronize(device)?;
    let t = Instant::now();
    let images = model.generate(&req, &initial, &mut SeededNoise::new(0), &mut || {})?;
    synchronize(device)?;
    drop(images);
    Ok(t.elapsed().as_secs_f64())
}

fn main() {
    let a = args();
    let on_gpu = a.device.is_cuda();
    let dtype = a.dtype.unwrap_or(if on_gpu { DType::F16 } else { DType::F32 });
    if let Device::Cuda(i) = a.device {
        let d = cuda::device(i).expect("CUDA device");
        if let Some(dry) = d.dry_run() {
            // the host side of every config, in `dtype`, at one step: nothing to time
            println!("paper_configs: a dry run (LDM_CUDA_DRY_RUN): each config samples one step at batch 1 with its launches checked; nothing is timed");
            for (name, _, guidance, _) in CONFIGS {
                let model = LatentDiffusion::seeded(&preset(name).expect("preset"), 0, dtype, a.device).expect("model");
                dry.reset();
                run(&model, 1, 1, guidance, a.device).unwrap_or_else(|e| panic!("{name}: {e}"));
                println!("{name} (guidance {guidance}): ran dry, {} launches", dry.launches());
            }
            return;
        }
        println!("device: {} ({:.1} GiB), weights and activations {dtype:?}", d.name(), d.total_memory() as f64 / (1u64 << 30) as f64);
    } else {
        println!("device: cpu — a smoke run (batch 1, 1 and 2 steps): the code path, not a throughput");
    }
    println!("| config | DDIM steps | guidance | best batch | fixed s | s/step | samples/s (estimate) | samples/s (measured, --full) | A100 (issue) | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, steps, guidance, paper) in CONFIGS {
        if a.only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let p = preset(name).expect("preset");
        let model = LatentDiffusion::seeded(&p, 0, dtype, a.device).expect("model");
        let (s1, max_batch) = if on_gpu { (4, a.max_batch) } else { (1, 1) };
        let started = Instant::now();
        let mut best: Option<(usize, f64, f64, f64)> = None; // batch, F, P, samples/s
        let mut batch = 1;
        while batch <= max_batch && started.elapsed().as_secs_f64() < a.budget_s {
            // warm-up at this size (kernel compilation, allocator)
            if let Err(e) = run(&model, 1, batch, guidance, a.device) {
                eprintln!("{name} at batch {batch}: {e}");
                break; // out of memory: the previous batch was the largest
            }
            let (Ok(t1), Ok(t2)) = (run(&model, s1, batch, guidance, a.device), run(&model, 2 * s1, batch, guidance, a.device)) else { break };
            let per_step = ((t2 - t1) / s1 as f64).max(0.0);
            let fixed = (t1 - s1 as f64 * per_step).max(0.0);
            let rate = batch as f64 / (fixed + steps as f64 * per_step);
            if best.is_some_and(|(_, _, _, r)| rate < r * 1.02) {
                break; // throughput stopped growing
            }
            best = Some((batch, fixed, per_step, rate));
            batch *= 2;
        }
        let Some((b, fixed, per_step, rate)) = best else {
            println!("| {name} | {steps} | {guidance} | — | — | — | failed at batch 1 | | {paper} | |");
            continue;
        };
        let measured = if a.full && on_gpu { run(&model, steps, b, guidance, a.device).ok().map(|t| b as f64 / t) } else { None };
        let shown = measured.unwrap_or(rate);
        println!(
            "| {name} | {steps} | {guidance} | {b} | {fixed:.3} | {per_step:.4} | {rate:.3} | {} | {paper} | {:.2}× |",
            measured.map(|m| format!("{m:.3}")).unwrap_or_else(|| "—".into()),
            shown / paper
        );
    }
}
