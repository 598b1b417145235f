//! The noise schedule and scheduler settings every sampler shares, as diffusers' schedulers read
//! them from `scheduler/scheduler_config.json` (and as the CompVis configs set them).

use serde_json::Value;

use super::SamplerKind;
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum BetaSchedule {
    /// betas evenly spaced from beta_start to beta_end
    Linear,
    /// sqrt(betas) evenly spaced, squared (CompVis' "linear": every LDM and SD)
    ScaledLinear,
    /// Nichol & Dhariwal's cosine schedule (diffusers "squaredcos_cap_v2")
    SquaredCosCapV2,
    Trained(Vec<f64>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
    Sample,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub prediction: Prediction,
    pub spacing: TimestepSpacing,
    pub steps_offset: usize,
    /// DDIM/PNDM: the "previous" alpha at the last step is 1 (else alphas_cumprod[0])
    pub set_alpha_to_one: bool,
    /// clip predicted x0 to ±range (DDIM/DDPM `clip_sample`)
    pub clip_sample: Option<f64>,
    /// k-diffusion samplers: Karras et al. (2022) sigma spacing
    pub karras_sigmas: bool,
    /// Whether the spacing was set (a config key or code); if not, each sampler uses its diffusers
    /// class's default (leading for DDPM/DDIM/PNDM, linspace for Euler/Heun/DPM-Solver), as
    /// diffusers does when it builds a scheduler from a config without `timestep_spacing`.
    pub spacing_given: bool,
    /// Options the config sets that some samplers do not implement: (the samplers, the option).
    pub unsupported: Vec<(&'static [SamplerKind], String)>,
    /// PNDM: skip the Runge–Kutta warm-up (PLMS from the first step), as every SD config sets;
    /// the engine implements only this form
    pub skip_prk_steps: bool,
}

impl SchedulerConfig {
    /// Stable Diffusion v1's scheduler (PNDM/DDIM configs of runwayml/stable-diffusion-v1-5).
    pub fn sd15() -> Self {
        SchedulerConfig {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            prediction: Prediction::Epsilon,
            spacing: TimestepSpacing::Leading,
            steps_offset: 1,
            set_alpha_to_one: false,
            clip_sample: None,
            karras_sigmas: false,
            spacing_given: true,
            unsupported: vec![],
            skip_prk_steps: true,
        }
    }

    /// A CompVis `LatentDiffusion` (linear_start, linear_end, timesteps): its "linear" schedule
    /// is diffusers' scaled_linear, and its DDIM steps are leading with offset 1.
    pub fn compvis(linear_start: f64, linear_end: f64, timesteps: usize) -> Self {
        SchedulerConfig { num_train_timesteps: timesteps, beta_start: linear_start, beta_end: linear_end, ..Self::sd15() }
    }

    /// diffusers `scheduler_config.json`. Keys a scheduler does not use are ignored; values the
    /// engine does not implement are an error naming the key.
    pub fn from_diffusers(v: &Value) -> std::result::Result<Self, String> {
        let num = |k: &str, d: f64| -> std::result::Result<f64, String> {
            match &v[k] {
                Value::Null => Ok(d),
                x => x.as_f64().ok_or_else(|| format!("'{k}' = {x} is not a number")),
            }
        };
        let text = |k: &str, d: &'static str| -> String { v[k].as_str().unwrap_or(d).to_string() };
        let n = num("num_train_timesteps", 1000.0)? as usize;
        let beta_schedule = match &v["trained_betas"] {
            Value::Array(a) => {
                let b: Vec<f64> = a.iter().map(|x| x.as_f64().ok_or(format!("'trained_betas' holds {x}"))).collect::<std::result::Result<_, _>>()?;
                if b.len() != n {
                    return Err(format!("'trained_betas' has {} values for {n} training steps", b.len()));
                }
                BetaSchedule::Trained(b)
            }
            _ => match text("beta_schedule", "linear").as_str() {
                "linear" => BetaSchedule::Linear,
                "scaled_linear" => BetaSchedule::ScaledLinear,
                "squaredcos_cap_v2" => BetaSchedule::SquaredCosCapV2,
                s => return Err(format!("'beta_schedule' = \"{s}\" is not supported")),
            },
        };
        let prediction = match text("prediction_type", "epsilon").as_str() {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::VPrediction,
            "sample" => Prediction::Sample,
            s => return Err(format!("'prediction_type' = \"{s}\" is not supported")),
        };
        let spacing_given = v["timestep_spacing"].is_string();
        let spacing = match text("timestep_spacing", "leading").as_str() {
            "leading" => TimestepSpacing::Leading,
            "trailing" => TimestepSpacing::Trailing,
            "linspace" => TimestepSpacing::Linspace,
            s => return Err(format!("'timestep_spacing' = \"{s}\" is not supported")),
        };
        for unsupported in ["thresholding", "rescale_betas_zero_snr", "use_exponential_sigmas", "use_beta_sigmas"] {
            if v[unsupported].as_bool() == Some(true) {
                return Err(format!("'{unsupported}: true' is not supported"));
            }
        }
        let clip_sample = (v["clip_sample"].as_bool() == Some(true)).then(|| num("clip_sample_range", 1.0)).transpose()?;
        Ok(SchedulerConfig {
            num_train_timesteps: n,
            beta_start: num("beta_start", 0.0001)?,
            beta_end: num("beta_end", 0.02)?,
            beta_schedule,
            prediction,
            spacing,
            steps_offset: num("steps_offset", 0.0)? as usize,
            set_alpha_to_one: v["set_alpha_to_one"].as_bool().unwrap_or(true),
            clip_sample,
            karras_sigmas: v["use_karras_sigmas"].as_bool().unwrap_or(false),
            spacing_given,
            unsupported: unsupported_options(v),
            // absent in other schedulers' configs: then PLMS runs as SD's PNDM config asks
            skip_prk_steps: v["skip_prk_steps"].as_bool().unwrap_or(true),
        })
    }

    /// The config a sampler runs with: the class-default spacing filled in, and an error if the
    /// config sets an option this sampler does not implement.
    pub fn for_sampler(&self, kind: SamplerKind) -> Result<SchedulerConfig> {
        if let Some((_, opt)) = self.unsupported.iter().find(|(kinds, _)| kinds.contains(&kind)) {
            return Err(Error::invalid("scheduler", format!("{opt} is not supported by the {} sampler", kind.name())));
        }
        let mut cfg = self.clone();
        if !cfg.spacing_given {
            use SamplerKind::*;
            cfg.spacing = if matches!(kind, Euler | EulerAncestral | Heun | DpmPP2M) { TimestepSpacing::Linspace } else { TimestepSpacing::Leading };
            cfg.spacing_given = true;
        }
        Ok(cfg)
    }

    /// β_t for t in 0..num_train_timesteps, computed in f32 as diffusers does (torch.linspace
    /// in float32), so the schedule matches to the last bit that matters.
    pub fn betas(&self) -> Vec<f64> {
        let n = self.num_train_timesteps;
        let lin = |a: f32, b: f32| -> Vec<f32> {
            // torch.linspace: a + i·step for the first half, b − (n−1−i)·step for the second
            let step = (b - a) / (n.max(2) - 1) as f32;
            (0..n).map(|i| if i < n / 2 { a + step * i as f32 } else { b - step * (n - 1 - i) as f32 }).collect()
        };
        match &self.beta_schedule {
            BetaSchedule::Linear => lin(self.beta_start as f32, self.beta_end as f32).into_iter().map(f64::from).collect(),
            BetaSchedule::ScaledLinear => lin(self.beta_start.sqrt() as f32, self.beta_end.sqrt() as f32).into_iter().map(|b| f64::from(b * b)).collect(),
            BetaSchedule::SquaredCosCapV2 => {
                let abar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n).map(|i| (1.0 - abar((i + 1) as f64 / n as f64) / abar(i as f64 / n as f64)).min(0.999) as f32 as f64).collect()
            }
            BetaSchedule::Trained(b) => b.clone(),
        }
    }

    /// ᾱ_t = ∏ (1 − β) as torch.cumprod computes it on the f32 alphas: a double accumulator,
    /// each output rounded to f32.
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        let mut acc = 1f64;
        self.betas()
            .into_iter()
            .map(|b| {
                acc *= f64::from(1.0 - b as f32);
                f64::from(acc as f32)
            })
            .collect()
    }

    /// σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) of every training timestep, in f32 as torch computes it on the
    /// f32 alphas_cumprod (the k-diffusion and DPM-Solver schedulers' sigma table).
    pub fn train_sigmas(&self) -> Vec<f32> {
        self.alphas_cumprod()
            .into_iter()
            .map(|a| {
                let a = a as f32;
                ((1.0 - a) / a).sqrt()
            })
            .collect()
    }

    /// The integer timesteps of an `steps`-step schedule, first (noisiest) first, as DDIM, DDPM
    /// and the k-diffusion schedulers compute them for each spacing.
    pub fn discrete_timesteps(&self, steps: usize) -> Result<Vec<usize>> {
        let n = self.num_train_timesteps;
        if steps == 0 || steps > n {
            return Err(Error::invalid("scheduler", format!("{steps} steps: must be between 1 and the {n} training steps")));
        }
        let ts: Vec<i64> = match self.spacing {
            TimestepSpacing::Linspace => (0..steps).rev().map(|i| round_half_even(i as f64 * (n - 1) as f64 / (steps.max(2) - 1) as f64) as i64).collect(),
            TimestepSpacing::Leading => {
                let ratio = n / steps;
                (0..steps).rev().map(|i| (i * ratio + self.steps_offset) as i64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = n as f64 / steps as f64;
                (0..steps).map(|i| round_half_even(n as f64 - i as f64 * ratio) as i64 - 1).collect()
            }
        };
        if let Some(bad) = ts.iter().find(|&&t| t < 0 || t as usize >= n) {
            return Err(Error::invalid("scheduler", format!("timestep {bad} falls outside 0..{n} (steps_offset {} with {steps} steps)", self.steps_offset)));
        }
        Ok(ts.into_iter().map(|t| t as usize).collect())
    }
}

/// Scheduler-class options the samplers do not implement, when a config sets them to anything
/// but their default (keys of other classes' configs are simply absent).
fn unsupported_options(v: &Value) -> Vec<(&'static [SamplerKind], String)> {
    use SamplerKind::*;
    const SIGMA_SAMPLERS: &[SamplerKind] = &[Euler, EulerAncestral, Heun, DpmPP2M];
    const DPM: &[SamplerKind] = &[DpmPP2M];
    const DDPM: &[SamplerKind] = &[Ddpm];
    let mut out = Vec::new();
    let mut check = |kinds: &'static [SamplerKind], key: &str, ok: &[Value]| {
        let x = &v[key];
        if !x.is_null() && !ok.contains(x) {
            out.push((kinds, format!("'{key}' = {x}")));
        }
    };
    use serde_json::json;
    check(SIGMA_SAMPLERS, "timestep_type", &[json!("discrete")]);
    check(SIGMA_SAMPLERS, "final_sigmas_type", &[json!("zero")]);
    check(SIGMA_SAMPLERS, "interpolation_type", &[json!("linear")]);
    check(SIGMA_SAMPLERS, "sigma_min", &[]);
    check(SIGMA_SAMPLERS, "sigma_max", &[]);
    check(SIGMA_SAMPLERS, "use_flow_sigmas", &[json!(false)]);
    check(SIGMA_SAMPLERS, "use_dynamic_shifting", &[json!(false)]);
    check(DPM, "algorithm_type", &[json!("dpmsolver++")]);
    check(DPM, "solver_order", &[json!(2)]);
    check(DPM, "solver_type", &[json!("midpoint")]);
    check(DPM, "lower_order_final", &[json!(true)]);
    check(DPM, "euler_at_final", &[json!(false)]);
    check(DPM, "use_lu_lambdas", &[json!(false)]);
    check(DPM, "lambda_min_clipped", &[]);
    check(DPM, "variance_type", &[]);
    check(DDPM, "variance_type", &[json!("fixed_small"), json!("fixed_small_log")]);
    out
}

/// numpy's round: halves go to the even neighbour.
pub fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - x.signum() } else { r }
}
