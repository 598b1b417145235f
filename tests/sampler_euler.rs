//! Euler, Euler ancestral and Heun against diffusers' EulerDiscreteScheduler,
//! EulerAncestralDiscreteScheduler and HeunDiscreteScheduler on the analytic stand-in model
//! (fixtures: tools/gen_sampler_fixtures_euler.py).
//!
//! Tolerance 1e-4 relative on the final latents (the bar is 1e-3): both sides hold the
//! sigmas in f32 and step in f32; we multiply by 1/σ where torch divides by σ, so the two differ
//! by f32 rounding per step. The model's timesteps must match diffusers' (fractional ones for
//! linspace spacing and Karras sigmas, Heun's repeated ones in diffusers' order).

mod common;

use common::sampler::analytic_model;
use ldm_engine::diffusion::{build, sample, NoiseSource, RecordedNoise, SamplerKind, SamplerOptions, SchedulerConfig, SeededNoise, TimestepSpacing};
use ldm_engine::{DType, Error, Result, Tensor};
use rand::SeedableRng;

const TOL: f64 = 1e-4;


common::sampler::sampler_fixture_tests!(TOL;
    euler_sd15_20,
    euler_karras_15,
    euler_v_trailing_12,
    euler_linspace_12,
    euler_karras_linspace_v_8,
    euler_sample_cosine_7,
    euler_sd15_1,
    euler_a_sd15_10,
    euler_a_v_trailing_8,
    euler_a_linspace_6,
    heun_sd15_10,
    heun_karras_10,
    heun_v_trailing_6,
    heun_linspace_clip_sample_7,
    heun_sd15_1,
);

fn opts(kind: SamplerKind, steps: usize) -> SamplerOptions {
    SamplerOptions { kind, steps, eta: 0.0 }
}

fn latent() -> Tensor {
    Tensor::randn(&[2, 4, 3, 5], 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(7))
}

fn err_line<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let s = e.to_string();
            assert!(!s.contains('\n'), "the error is one line: {s}");
            s
        }
    }
}

/// Counts the draws a sampler makes.
struct Counting(usize, SeededNoise);
impl NoiseSource for Counting {
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        self.0 += 1;
        self.1.noise_like(like)
    }
}

#[test]
fn euler_a_draws_once_per_step_and_euler_and_heun_never() {
    for (kind, draws) in [(SamplerKind::EulerAncestral, 6), (SamplerKind::Euler, 0), (SamplerKind::Heun, 0)] {
        let mut noise = Counting(0, SeededNoise::new(1));
        sample(&SchedulerConfig::sd15(), &opts(kind, 6), &mut analytic_model, &latent(), &mut noise).unwrap();
        assert_eq!(noise.0, draws, "{}", kind.name());
    }
}

#[test]
fn heun_calls_the_model_twice_per_step_but_the_last() {
    let mut calls = Vec::new();
    let mut model = |x: &Tensor, t: f64| {
        calls.push(t);
        analytic_model(x, t)
    };
    sample(&SchedulerConfig::sd15(), &opts(SamplerKind::Heun, 4), &mut model, &latent(), &mut SeededNoise::new(0)).unwrap();
    assert_eq!(calls, [751.0, 501.0, 501.0, 251.0, 251.0, 1.0, 1.0]);
    let s = build(&SchedulerConfig::sd15(), &opts(SamplerKind::Heun, 4)).unwrap();
    assert_eq!(s.timesteps(), [751.0, 501.0, 251.0, 1.0]);
}

#[test]
fn init_noise_sigma_follows_the_spacing() {
    // SD1.5: σ(999) = 14.6146 (trailing starts there); leading 20 steps starts at t = 951,
    // σ(951) = 11.0283, and scales by sqrt(σ² + 1) = 11.0736 (diffusers' values)
    let lead = build(&SchedulerConfig::sd15(), &opts(SamplerKind::Euler, 20)).unwrap();
    let trail = build(&SchedulerConfig { spacing: TimestepSpacing::Trailing, steps_offset: 0, ..SchedulerConfig::sd15() }, &opts(SamplerKind::Euler, 20)).unwrap();
    assert!((trail.init_noise_sigma() - 14.6146).abs() < 1e-3, "{}", trail.init_noise_sigma());
    assert!((lead.init_noise_sigma() - 11.0736).abs() < 1e-3, "{}", lead.init_noise_sigma());
}

#[test]
fn euler_a_rejects_karras_sigmas_and_sample_prediction() {
    let karras = SchedulerConfig { karras_sigmas: true, ..SchedulerConfig::sd15() };
    let e = err_line(build(&karras, &opts(SamplerKind::EulerAncestral, 10)));
    assert!(e.contains("karras"), "{e}");
    let v = serde_json::json!({"prediction_type": "sample"});
    let cfg = SchedulerConfig::from_diffusers(&v).unwrap();
    let e = err_line(build(&cfg, &opts(SamplerKind::EulerAncestral, 10)));
    assert!(e.contains("sample"), "{e}");
    // Euler and Heun take both
    build(&karras, &opts(SamplerKind::Euler, 10)).unwrap();
    build(&karras, &opts(SamplerKind::Heun, 10)).unwrap();
    build(&cfg, &opts(SamplerKind::Euler, 10)).unwrap();
    build(&cfg, &opts(SamplerKind::Heun, 10)).unwrap();
}

#[test]
fn bad_step_counts_are_errors() {
    for kind in [SamplerKind::Euler, SamplerKind::EulerAncestral, SamplerKind::Heun] {
        for steps in [0, 1001] {
            let e = err_line(build(&SchedulerConfig::sd15(), &opts(kind, steps)));
            assert!(e.contains("steps"), "{}: {e}", kind.name());
        }
        let linspace = SchedulerConfig { spacing: TimestepSpacing::Linspace, steps_offset: 0, ..SchedulerConfig::sd15() };
        err_line(build(&linspace, &opts(kind, 0)));
    }
}

#[test]
fn running_out_of_recorded_noise_is_an_error() {
    let draws = std::iter::repeat_with(latent).take(3).collect();
    let e = err_line(sample(&SchedulerConfig::sd15(), &opts(SamplerKind::EulerAncestral, 5), &mut analytic_model, &latent(), &mut RecordedNoise(draws)));
    assert!(e.contains("ran out"), "{e}");
}

#[test]
fn a_model_error_stops_the_run() {
    for kind in [SamplerKind::Euler, SamplerKind::EulerAncestral, SamplerKind::Heun] {
        let mut n = 0;
        let mut model = |x: &Tensor, t: f64| {
            n += 1;
            if n == 3 { Err(Error::invalid("test", "model failed")) } else { analytic_model(x, t) }
        };
        let e = err_line(sample(&SchedulerConfig::sd15(), &opts(kind, 5), &mut model, &latent(), &mut SeededNoise::new(0)));
        assert!(e.contains("model failed"), "{}: {e}", kind.name());
        assert_eq!(n, 3, "{}", kind.name());
    }
}

#[test]
fn a_model_output_of_the_wrong_shape_is_an_error() {
    for kind in [SamplerKind::Euler, SamplerKind::EulerAncestral, SamplerKind::Heun] {
        let mut model = |x: &Tensor, _t: f64| x.narrow(1, 0, 2).map(Into::into);
        err_line(sample(&SchedulerConfig::sd15(), &opts(kind, 3), &mut model, &latent(), &mut SeededNoise::new(0)));
    }
}
