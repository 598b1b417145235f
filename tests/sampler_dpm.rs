//! DPM-Solver++ 2M against diffusers' DPMSolverMultistepScheduler (fixtures from
//! tools/gen_sampler_fixtures_dpm.py): the model's timesteps exactly, the final latents to 1e-5
//! relative (the issue asks 1e-3; both sides compute in f32 and round the per-step
//! coefficients alike, so what is left is rounding: about 3e-7 on every fixture; a 0.1% error in
//! the 2M ratio r0 already shows as 2e-5 to 1e-4).

mod common;

use common::sampler::{analytic_model, SamplerFixture};
use ldm_engine::diffusion::{build, sample, SamplerKind, SamplerOptions, SchedulerConfig, SeededNoise, TimestepSpacing};
use ldm_engine::{DType, Tensor};

const TOL: f64 = 1e-5;

macro_rules! parity {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test]
        fn $test() {
            SamplerFixture::open($name).check(TOL);
        })*
    };
}

parity!(
    sd15_linspace_20 => "dpmpp2m_sd15_linspace_20",
    sd15_leading_20 => "dpmpp2m_sd15_leading_20",
    sd15_linspace_10_lower_order_final => "dpmpp2m_sd15_linspace_10",
    sd15_karras_15 => "dpmpp2m_sd15_karras_15",
    v_prediction_trailing_12 => "dpmpp2m_vpred_trailing_12",
    ldm_schedule_leading_25 => "dpmpp2m_ldm_leading_25",
    sample_prediction_linear_7 => "dpmpp2m_sample_linear_7",
    cosine_8 => "dpmpp2m_cosine_8",
    single_step => "dpmpp2m_sd15_linspace_1",
);

fn opts(steps: usize) -> SamplerOptions {
    SamplerOptions { kind: SamplerKind::DpmPP2M, steps, eta: 0.0 }
}

#[test]
fn initial_sigma_is_one_and_timesteps_follow_the_schedulers_own_spacing() {
    let cfg = SchedulerConfig { spacing: TimestepSpacing::Linspace, ..SchedulerConfig::sd15() };
    let s = build(&cfg, &opts(20)).unwrap();
    assert_eq!(s.init_noise_sigma(), 1.0);
    let ts = s.timesteps();
    assert_eq!((ts.len(), ts[0], ts[10], ts[19]), (20, 999.0, 500.0, 50.0));
    // leading spaces steps + 1 points: n // 21 = 47
    let s = build(&SchedulerConfig::sd15(), &opts(20)).unwrap();
    assert_eq!((s.timesteps()[0], s.timesteps()[19]), (941.0, 48.0));
}

#[test]
fn bad_step_counts_are_errors_not_panics() {
    let cfg = SchedulerConfig::sd15();
    for steps in [0, 1001] {
        let err = build(&cfg, &opts(steps)).err().unwrap().to_string();
        assert!(err.contains(&format!("{steps} steps")), "{err}");
    }
    // 1000 leading steps: n // 1001 = 0 puts every timestep at the offset
    let cfg = SchedulerConfig { steps_offset: 0, ..SchedulerConfig::sd15() };
    let err = build(&cfg, &opts(1000)).err().unwrap().to_string();
    assert!(err.contains("repeat the first timestep"), "{err}");
}

#[test]
fn a_model_output_of_the_wrong_shape_is_an_error() {
    let x = Tensor::zeros(&[1, 4, 3, 5], DType::F32);
    let mut model = |_: &Tensor, _: f64| Ok(Tensor::zeros(&[1, 4, 3, 4], DType::F32).into());
    let err = sample(&SchedulerConfig::sd15(), &opts(5), &mut model, &x, &mut SeededNoise::new(0)).unwrap_err().to_string();
    assert!(err.contains("model output must be shaped like the latents"), "{err}");
    let mut model = |x: &Tensor, t: f64| analytic_model(x, t);
    assert!(sample(&SchedulerConfig::sd15(), &opts(5), &mut model, &x, &mut SeededNoise::new(0)).is_ok());
}

#[test]
fn timesteps_match_diffusers_for_every_spacing_and_karras() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/samplers/dpmpp2m_timesteps.json");
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 35);
    for case in cases {
        let mut v = serde_json::json!({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012});
        for (key, field) in [("timestep_spacing", "spacing"), ("steps_offset", "steps_offset"), ("use_karras_sigmas", "karras")] {
            v[key] = case[field].clone();
        }
        let cfg = SchedulerConfig::from_diffusers(&v).unwrap();
        let steps = case["steps"].as_u64().unwrap() as usize;
        let want: Vec<f64> = case["timesteps"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap()).collect();
        assert_eq!(build(&cfg, &opts(steps)).unwrap().timesteps(), want, "{case}");
    }
}
