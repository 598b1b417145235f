//! The noise schedule and timestep spacings against diffusers (tools/gen_schedule_fixture.py).

use ldm_engine::diffusion::{BetaSchedule, SamplerKind, SchedulerConfig, TimestepSpacing};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/samplers/schedules.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn alphas_cumprod_match_diffusers_for_every_beta_schedule() {
    for case in fixture()["alphas_cumprod"].as_array().unwrap() {
        let mut v = case["config"].clone();
        v["num_train_timesteps"] = 1000.into();
        let cfg = SchedulerConfig::from_diffusers(&v).unwrap();
        let ours = cfg.alphas_cumprod();
        let want: Vec<f64> = case["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let worst = ours.iter().zip(&want).map(|(a, b)| (a - b).abs() / b).fold(0f64, f64::max);
        assert!(worst <= 1e-6, "{}: worst relative difference {worst:e}", case["config"]);
    }
}

#[test]
fn timesteps_match_diffusers_for_every_spacing() {
    let mut n_cases = 0;
    for case in fixture()["timesteps"].as_array().unwrap() {
        let spacing = match case["spacing"].as_str().unwrap() {
            "leading" => TimestepSpacing::Leading,
            "trailing" => TimestepSpacing::Trailing,
            _ => TimestepSpacing::Linspace,
        };
        let cfg = SchedulerConfig { spacing, steps_offset: case["steps_offset"].as_u64().unwrap() as usize, ..SchedulerConfig::sd15() };
        let want: Vec<usize> = case["values"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(cfg.discrete_timesteps(case["steps"].as_u64().unwrap() as usize).unwrap(), want, "{case}");
        n_cases += 1;
    }
    assert_eq!(n_cases, 30);
}

#[test]
fn bad_settings_are_errors_that_name_them() {
    let cfg = SchedulerConfig::sd15();
    assert!(cfg.discrete_timesteps(0).unwrap_err().to_string().contains("0 steps"));
    assert!(cfg.discrete_timesteps(1001).unwrap_err().to_string().contains("1001 steps"));
    let v = serde_json::json!({"beta_schedule": "sigmoid"});
    assert_eq!(SchedulerConfig::from_diffusers(&v).unwrap_err(), "'beta_schedule' = \"sigmoid\" is not supported");
    let v = serde_json::json!({"trained_betas": [0.1, 0.2], "num_train_timesteps": 3});
    assert!(SchedulerConfig::from_diffusers(&v).unwrap_err().contains("2 values for 3"));
    let v = serde_json::json!({"trained_betas": [0.1, 0.2], "num_train_timesteps": 2});
    assert_eq!(SchedulerConfig::from_diffusers(&v).unwrap().beta_schedule, BetaSchedule::Trained(vec![0.1, 0.2]));
    assert!("dpm++2m".parse::<SamplerKind>().is_ok());
    let prk = SchedulerConfig::from_diffusers(&serde_json::json!({"skip_prk_steps": false})).unwrap();
    let opts = ldm_engine::diffusion::SamplerOptions { kind: SamplerKind::Plms, steps: 5, eta: 0.0 };
    assert!(ldm_engine::diffusion::build(&prk, &opts).err().unwrap().to_string().contains("'skip_prk_steps: false'"));
    assert!("lms".parse::<SamplerKind>().unwrap_err().to_string().contains("unknown sampler 'lms' (one of: ddpm, ddim, plms"));
}
