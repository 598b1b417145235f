//! DPM-Solver++ 2M (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models", arXiv:2211.01095), step for step as diffusers'
//! `DPMSolverMultistepScheduler` runs it with the defaults SD pipelines use: algorithm_type
//! "dpmsolver++", solver_order 2, solver_type "midpoint", lower_order_final, final_sigmas_type
//! "zero", no thresholding.
//!
//! The solver works in σ = sqrt((1−ᾱ)/ᾱ) and λ = log(α/σ) with α = 1/sqrt(σ²+1): it turns each
//! model output into an x0 prediction and takes an exponential-integrator step from σ_s to σ_t,
//! first order (DDIM) on the first step and on the last (whose σ is zero, so it lands on x0),
//! second order with the previous step's x0 in between.
//!
//! diffusers computes σ in float32 and every per-step coefficient as float32 0-d tensors; the
//! scalars here are f32 for the same reason, so the two runs round alike.
//!
//! Not implemented (only the defaults above): algorithm_type dpmsolver / sde-dpmsolver /
//! sde-dpmsolver++, solver_order 1 or 3, solver_type "heun", lower_order_final false,
//! euler_at_final true, final_sigmas_type "sigma_min", thresholding, variance_type "learned",
//! use_lu_lambdas, use_exponential_sigmas, use_beta_sigmas, use_flow_sigmas, lambda_min_clipped,
//! custom timesteps.

use super::schedule::round_half_even;
use super::{BetaSchedule, ModelFn, NoiseLevel, NoiseSource, Prediction, Sampler, SamplerOptions, SchedulerConfig, StepHook, TimestepSpacing};
use crate::{Error, Result, Tensor};

pub fn new(cfg: &SchedulerConfig, opts: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    Ok(Box::new(DpmSolverPP2M::new(cfg, opts.steps)?))
}

pub struct DpmSolverPP2M {
    prediction: Prediction,
    /// The timesteps the model sees, noisiest first.
    timesteps: Vec<i64>,
    /// σ at each timestep, then the final σ = 0 (steps + 1 values).
    sigmas: Vec<f32>,
}

impl DpmSolverPP2M {
    /// The schedule of diffusers' `set_timesteps(steps)`.
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        let n = cfg.num_train_timesteps;
        if steps == 0 || steps > n {
            return Err(Error::invalid("dpm++2m", format!("{steps} steps: must be between 1 and the {n} training steps")));
        }
        // σ of every training timestep, in f32 as torch computes ((1 − ᾱ)/ᾱ) ** 0.5
        let train_sigmas = cfg.train_sigmas();
        // lambda_min_clipped = −inf clips nothing, so the last timestep is n
        let (timesteps, mut sigmas): (Vec<i64>, Vec<f32>) = if cfg.karras_sigmas {
            let sig = karras(train_sigmas[0] as f64, train_sigmas[n - 1] as f64, steps);
            let log_sigmas: Vec<f32> = train_sigmas.iter().map(|s| s.ln()).collect();
            let ts = sig
                .iter()
                .map(|&s| {
                    let t = sigma_to_t(s, &log_sigmas);
                    // rounded except for the cosine schedule; the int64 cast then truncates
                    (if cfg.beta_schedule == BetaSchedule::SquaredCosCapV2 { t } else { round_half_even(t) }) as i64
                })
                .collect();
            (ts, sig.into_iter().map(|s| s as f32).collect())
        } else {
            let ts = spaced_timesteps(cfg, steps);
            if let Some(bad) = ts.iter().find(|&&t| t < 0 || t as usize >= n) {
                return Err(Error::invalid("dpm++2m", format!("timestep {bad} falls outside 0..{n} (steps_offset {} with {steps} steps)", cfg.steps_offset)));
            }
            let sig = ts.iter().map(|&t| train_sigmas[t as usize]).collect();
            (ts, sig)
        };
        // diffusers starts at the *second* occurrence of the first timestep and then runs off the
        // end of its schedule: refuse what it cannot run either
        if timesteps.len() > 1 && timesteps[0] == timesteps[1] {
            return Err(Error::invalid("dpm++2m", format!("{steps} steps repeat the first timestep {}: use fewer steps", timesteps[0])));
        }
        sigmas.push(0.0); // final_sigmas_type "zero"
        Ok(DpmSolverPP2M { prediction: cfg.prediction, timesteps, sigmas })
    }

    /// `convert_model_output`: the x0 prediction DPM-Solver++ integrates.
    fn x0(&self, out: &Tensor, x: &Tensor, sigma: f32) -> Result<Tensor> {
        let (alpha_t, sigma_t) = alpha_sigma(sigma);
        match self.prediction {
            Prediction::Epsilon => x.sub(&out.mul_scalar(sigma_t as f64)?)?.mul_scalar((1.0 / alpha_t) as f64),
            Prediction::Sample => Ok(out.clone()),
            Prediction::VPrediction => x.mul_scalar(alpha_t as f64)?.sub(&out.mul_scalar(sigma_t as f64)?),
        }
    }
}

/// `_sigma_to_alpha_sigma_t`: α = 1/sqrt(σ² + 1), and the VP noise level σ_t = σ·α.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// λ = log α − log σ_t (+∞ at σ = 0, which makes the last step land on x0).
fn lambda(alpha: f32, sigma_t: f32) -> f32 {
    alpha.ln() - sigma_t.ln()
}

/// The integer timesteps of this scheduler's own `set_timesteps` (not the DDIM spacings: it
/// spaces steps + 1 points and drops the last).
fn spaced_timesteps(cfg: &SchedulerConfig, steps: usize) -> Vec<i64> {
    let n = cfg.num_train_timesteps;
    match cfg.spacing {
        // np.linspace(0, n − 1, steps + 1).round()[::-1][:-1]
        TimestepSpacing::Linspace => {
            let step = (n - 1) as f64 / steps as f64;
            (1..=steps).rev().map(|i| if i == steps { (n - 1) as i64 } else { round_half_even(i as f64 * step) as i64 }).collect()
        }
        // (arange(0, steps + 1) · (n // (steps + 1)))[::-1][:-1] + steps_offset
        TimestepSpacing::Leading => {
            let ratio = n / (steps + 1);
            (1..=steps).rev().map(|i| (i * ratio + cfg.steps_offset) as i64).collect()
        }
        // np.arange(n, 0, −n/steps).round() − 1
        TimestepSpacing::Trailing => {
            let ratio = n as f64 / steps as f64;
            let start = n as f64;
            let len = (-start / -ratio).ceil() as usize;
            let delta = (start - ratio) - start; // numpy fills start + i·(second − first)
            (0..len).map(|i| round_half_even(start + i as f64 * delta) as i64 - 1).collect()
        }
    }
}

/// `_convert_to_karras` with ρ = 7 between the schedule's σ_min and σ_max (f64, as numpy).
fn karras(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    let step = 1.0 / (steps.max(2) - 1) as f64; // np.linspace(0, 1, steps): i·step, the last exactly 1
    (0..steps)
        .map(|i| {
            let ramp = if i + 1 == steps && steps > 1 { 1.0 } else { i as f64 * step };
            (max_inv + ramp * (min_inv - max_inv)).powf(rho)
        })
        .collect()
}

/// `_sigma_to_t`: the fractional training timestep whose log σ the given σ interpolates to.
fn sigma_to_t(sigma: f64, log_sigmas: &[f32]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // the last index whose log σ is ≤ ours (0 if none), kept below the top
    let low = log_sigmas.iter().rposition(|&l| log_sigma - l as f64 >= 0.0).unwrap_or(0).min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo as f64 - log_sigma) / (lo - hi) as f64).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

impl Sampler for DpmSolverPP2M {
    fn timesteps(&self) -> Vec<f64> {
        self.timesteps.iter().map(|&t| t as f64).collect()
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, start: usize) -> Result<Tensor> {
        super::check_start("dpm++2m", start, self.timesteps.len())?;
        let (a, s) = alpha_sigma(self.sigmas[start]);
        NoiseLevel { a, s }.apply(x0, noise)
    }

    /// From step `start`; the multistep history starts empty there, as diffusers' does.
    fn run_hooked(&mut self, model: &mut ModelFn, mut x: Tensor, _noise: &mut dyn NoiseSource, start: usize, hook: &mut StepHook) -> Result<Tensor> {
        let steps = self.timesteps.len();
        super::check_start("dpm++2m", start, steps)?;
        let mut prev_x0: Option<Tensor> = None;
        for i in start..steps {
            // scale_model_input is the identity
            let out = super::ddim::call_model("dpm++2m", model, &x, self.timesteps[i] as f64)?;
            let x0 = self.x0(&out, &x, self.sigmas[i])?;
            let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i + 1]);
            let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[i]);
            let h = lambda(alpha_t, sigma_t) - lambda(alpha_s0, sigma_s0);
            let c_x0 = alpha_t * ((-h).exp() - 1.0);
            let xs = x.mul_scalar((sigma_t / sigma_s0) as f64)?;
            // first order on the first step and on the last (lower_order_final: its σ is zero)
            x = match prev_x0.as_ref().filter(|_| i + 1 < steps) {
                None => xs.sub(&x0.mul_scalar(c_x0 as f64)?)?,
                Some(m1) => {
                    let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[i - 1]);
                    let h_0 = lambda(alpha_s0, sigma_s0) - lambda(alpha_s1, sigma_s1);
                    let r0 = h_0 / h;
                    let d1 = x0.sub(m1)?.mul_scalar((1.0 / r0) as f64)?;
                    // midpoint: x_t = (σ_t/σ_s0)·x − c·D0 − ½·c·D1
                    xs.sub(&x0.mul_scalar(c_x0 as f64)?)?.sub(&d1.mul_scalar((0.5 * c_x0) as f64)?)?
                }
            };
            prev_x0 = Some(x0);
            let level = (i + 1 < steps).then(|| alpha_sigma(self.sigmas[i + 1])).map(|(a, s)| NoiseLevel { a, s });
            x = hook(x, level)?;
        }
        Ok(x)
    }
}
