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

/// diffusers builds each scheduler class from a config with that class's defaults: without
/// `timestep_spacing`, DDIM/PNDM/DDPM space leading and Euler/Heun/DPM-Solver linspace (SD1.5's
/// own scheduler_config.json has no such key). Options one class sets that a sampler does not
/// implement fail for that sampler only.
#[test]
fn class_defaults_and_unsupported_options_follow_the_sampler() {
    use ldm_engine::diffusion::{build, SamplerOptions};
    let sd15_json = serde_json::json!({"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "steps_offset": 1, "set_alpha_to_one": false, "skip_prk_steps": true, "clip_sample": false});
    let cfg = SchedulerConfig::from_diffusers(&sd15_json).unwrap();
    let first = |kind: &str| build(&cfg, &SamplerOptions { kind: kind.parse().unwrap(), steps: 20, eta: 0.0 }).unwrap().timesteps()[0];
    assert_eq!(first("ddim"), 951.0); // leading: 50·19 + offset 1
    assert_eq!(first("euler"), 999.0); // linspace
    assert_eq!(first("dpm++2m"), 999.0);
    let mut dpm3 = sd15_json.clone();
    dpm3["solver_order"] = 3.into();
    let cfg = SchedulerConfig::from_diffusers(&dpm3).unwrap();
    let opts = |kind: &str| SamplerOptions { kind: kind.parse().unwrap(), steps: 10, eta: 0.0 };
    let e = build(&cfg, &opts("dpm++2m")).err().unwrap().to_string();
    assert!(e.contains("'solver_order' = 3 is not supported by the dpm++2m sampler"), "{e}");
    assert!(build(&cfg, &opts("euler")).is_ok());
    let mut sigma = sd15_json.clone();
    sigma["final_sigmas_type"] = "sigma_min".into();
    let cfg = SchedulerConfig::from_diffusers(&sigma).unwrap();
    assert!(build(&cfg, &opts("heun")).err().unwrap().to_string().contains("'final_sigmas_type' = \"sigma_min\""));
    assert!(build(&cfg, &opts("ddim")).is_ok());
}
