//! DDIM, DDPM and PLMS against diffusers' DDIMScheduler, DDPMScheduler and PNDMScheduler
//! (skip_prk_steps) on the analytic stand-in model (fixtures: tools/gen_sampler_fixtures_ddim.py).
//!
//! Tolerance 1e-4 relative on the final latents (the bar is 1e-3): diffusers keeps ᾱ and
//! every coefficient in f32 tensors, we form the coefficients in f64 from the same f32 ᾱ, so the
//! two differ by f32 rounding per step (observed ≲1e-6).

mod common;

use common::sampler::analytic_model;
use ldm_engine::diffusion::{build, sample, ModelOutput, NoiseSource, Prediction, RecordedNoise, SamplerKind, SamplerOptions, SchedulerConfig, SeededNoise, TimestepSpacing};
use ldm_engine::{DType, Result, Tensor};
use rand::SeedableRng;

const TOL: f64 = 1e-4;


common::sampler::sampler_fixture_tests!(TOL;
    ddim_sd15_20,
    ddim_sd15_eta1_6,
    ddim_v_trailing_15,
    ddim_linspace_20,
    ddim_linspace_eta05_7,
    ddim_ldm_50,
    ddim_clip_10,
    ddim_sample_clip_range2_10,
    ddpm_sd15_10,
    ddpm_default_50,
    ddpm_v_trailing_10,
    ddpm_linspace_clip_10,
    ddpm_sample_ldm_7,
    plms_sd15_5,
    plms_sd15_20,
    plms_sd15_1,
    plms_sd15_2,
    plms_v_20,
    plms_v_trailing_5,
    plms_linspace_ldm_20,
);

fn opts(kind: SamplerKind, steps: usize, eta: f64) -> SamplerOptions {
    SamplerOptions { kind, steps, eta }
}

fn latent() -> Tensor {
    Tensor::randn(&[2, 4, 3, 5], 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(7))
}

/// Counts the draws a sampler makes.
struct Counting(usize, SeededNoise);
impl NoiseSource for Counting {
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        self.0 += 1;
        self.1.noise_like(like)
    }
}

fn draws(cfg: &SchedulerConfig, o: SamplerOptions) -> usize {
    let mut n = Counting(0, SeededNoise::new(1));
    sample(cfg, &o, &mut analytic_model, &latent(), &mut n).unwrap();
    n.0
}

#[test]
fn only_the_stochastic_samplers_draw_noise() {
    let sd = SchedulerConfig::sd15();
    for (o, want) in [
        (opts(SamplerKind::Ddim, 10, 0.0), 0),
        (opts(SamplerKind::Ddim, 10, 0.3), 10),
        (opts(SamplerKind::Plms, 10, 0.0), 0),
        // leading with steps_offset 1 ends at t = 1: every step adds noise
        (opts(SamplerKind::Ddpm, 10, 0.0), 10),
    ] {
        assert_eq!(draws(&sd, o), want, "{o:?}");
        assert_eq!(o.kind.is_stochastic(o.eta), want > 0, "{o:?}");
    }
    // linspace ends at t = 0, where DDPM adds no noise
    let lin = SchedulerConfig { spacing: TimestepSpacing::Linspace, steps_offset: 0, ..SchedulerConfig::sd15() };
    assert_eq!(draws(&lin, opts(SamplerKind::Ddpm, 10, 0.0)), 9);
}

#[test]
fn plms_repeats_the_second_timestep_for_its_warm_up() {
    let s = build(&SchedulerConfig::sd15(), &opts(SamplerKind::Plms, 5, 0.0)).unwrap();
    assert_eq!(s.timesteps(), vec![801.0, 601.0, 601.0, 401.0, 201.0, 1.0]);
    let s = build(&SchedulerConfig::sd15(), &opts(SamplerKind::Ddim, 5, 0.0)).unwrap();
    assert_eq!(s.timesteps(), vec![801.0, 601.0, 401.0, 201.0, 1.0]);
    assert_eq!(s.init_noise_sigma(), 1.0);
}

#[test]
fn a_model_output_of_the_wrong_shape_is_an_error() {
    for kind in [SamplerKind::Ddim, SamplerKind::Ddpm, SamplerKind::Plms] {
        let mut bad = |x: &Tensor, _t: f64| x.narrow(1, 0, 3).map(Into::into);
        let e = sample(&SchedulerConfig::sd15(), &opts(kind, 4, 0.0), &mut bad, &latent(), &mut SeededNoise::new(0)).unwrap_err().to_string();
        assert!(e.contains("shaped like the latents") && !e.contains('\n'), "{kind:?}: {e}");
    }
}

/// A model that starts returning NaN (or Inf) stops every sampler at that step, naming its
/// timestep, instead of carrying NaN through to a black image.
#[test]
fn a_non_finite_model_output_stops_at_its_step() {
    let all = [SamplerKind::Ddim, SamplerKind::Ddpm, SamplerKind::Plms, SamplerKind::Euler, SamplerKind::EulerAncestral, SamplerKind::Heun, SamplerKind::DpmPP2M];
    for kind in all {
        for bad_value in [f32::NAN, f32::INFINITY] {
            let mut calls = 0;
            let mut ts = Vec::new();
            let mut model = |x: &Tensor, t: f64| -> Result<ModelOutput> {
                calls += 1;
                ts.push(t);
                if calls < 3 {
                    return Ok(x.mul_scalar(0.1)?.into());
                }
                let mut v = x.to_vec::<f32>()?;
                v[5] = bad_value;
                Ok(Tensor::from_vec(v, x.shape())?.into())
            };
            let e = sample(&SchedulerConfig::sd15(), &opts(kind, 6, 0.0), &mut model, &latent(), &mut SeededNoise::new(0)).unwrap_err().to_string();
            assert!(e.contains("is not finite") && !e.contains('\n'), "{kind:?}: {e}");
            assert_eq!(calls, 3, "{kind:?}: stopped at the first bad call");
            assert!(e.contains(&format!("at timestep {}", ts[2])), "{kind:?}: {e} (timesteps {ts:?})");
        }
    }
}

#[test]
fn running_out_of_recorded_noise_is_an_error() {
    let e = sample(&SchedulerConfig::sd15(), &opts(SamplerKind::Ddim, 4, 1.0), &mut analytic_model, &latent(), &mut RecordedNoise(Default::default()));
    assert!(e.unwrap_err().to_string().contains("ran out"));
}

#[test]
fn bad_options_are_errors() {
    let sd = SchedulerConfig::sd15();
    for (cfg, o, says) in [
        (sd.clone(), opts(SamplerKind::Ddim, 10, -0.5), "eta"),
        (sd.clone(), opts(SamplerKind::Ddim, 10, f64::NAN), "eta"),
        (sd.clone(), opts(SamplerKind::Ddim, 0, 0.0), "steps"),
        (sd.clone(), opts(SamplerKind::Ddpm, 1001, 0.0), "steps"),
        (SchedulerConfig { prediction: Prediction::Sample, ..sd.clone() }, opts(SamplerKind::Plms, 10, 0.0), "sample"),
    ] {
        let e = build(&cfg, &o).err().unwrap_or_else(|| panic!("{o:?} built")).to_string();
        assert!(e.contains(says), "{o:?}: {e}");
    }
}

/// DDIM and PLMS apply classifier-free guidance inside their one-pass update (ModelOutput::Guided
/// → tensor::fused::guided_step): the result equals guiding first and updating after, for ε and
/// v prediction, with and without η noise; Euler takes the combined output.
#[test]
fn guidance_inside_the_ddim_update_equals_guidance_before_it() {
    let uncond = |x: &Tensor, t: f64| -> Result<Tensor> { x.mul_scalar(0.1)?.add(&x.tanh()?.mul_scalar(0.5 * (0.01 * t).cos())?) };
    let cond = |x: &Tensor, t: f64| -> Result<Tensor> { x.mul_scalar(0.2)?.add(&x.sin()?.mul_scalar(0.3 * (0.02 * t).sin())?) };
    let scale = 7.5;
    for prediction in [Prediction::Epsilon, Prediction::VPrediction] {
        let cfg = SchedulerConfig { prediction, ..SchedulerConfig::sd15() };
        for (kind, eta) in [(SamplerKind::Ddim, 0.0), (SamplerKind::Ddim, 0.7), (SamplerKind::Plms, 0.0), (SamplerKind::Euler, 0.0)] {
            let mut split = |x: &Tensor, t: f64| -> Result<ModelOutput> { Ok(ModelOutput::Guided { uncond: uncond(x, t)?, cond: cond(x, t)?, scale }) };
            let mut joined = |x: &Tensor, t: f64| -> Result<ModelOutput> { ModelOutput::Guided { uncond: uncond(x, t)?, cond: cond(x, t)?, scale }.combined().map(Into::into) };
            let a = sample(&cfg, &opts(kind, 8, eta), &mut split, &latent(), &mut SeededNoise::new(3)).unwrap().to_vec_f64().unwrap();
            let b = sample(&cfg, &opts(kind, 8, eta), &mut joined, &latent(), &mut SeededNoise::new(3)).unwrap().to_vec_f64().unwrap();
            let scale_ref = b.iter().fold(0f64, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f64, f64::max);
            assert!(worst <= 1e-5 * scale_ref, "{prediction:?} {kind:?} eta {eta}: worst {worst:.3e} of {scale_ref:.3e}");
        }
    }
}

/// The fused DDIM update (no clipping) against the op-by-op one (clipping at a bound no value
/// reaches), for all three prediction types, with and without η noise.
#[test]
fn the_fused_ddim_update_equals_the_op_by_op_one_for_every_prediction() {
    for prediction in [Prediction::Epsilon, Prediction::VPrediction, Prediction::Sample] {
        for eta in [0.0, 0.7] {
            let run = |clip: Option<f64>| {
                let cfg = SchedulerConfig { prediction, clip_sample: clip, ..SchedulerConfig::sd15() };
                sample(&cfg, &opts(SamplerKind::Ddim, 8, eta), &mut analytic_model, &latent(), &mut SeededNoise::new(4)).unwrap().to_vec_f64().unwrap()
            };
            let (fused, ops) = (run(None), run(Some(1e30)));
            let scale = ops.iter().fold(0f64, |m, v| m.max(v.abs()));
            let worst = fused.iter().zip(&ops).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
            assert!(worst <= 1e-5 * scale, "{prediction:?} eta {eta}: worst {worst:.3e} of {scale:.3e}");
        }
    }
}
