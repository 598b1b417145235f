//! DDPM ancestral sampling (Ho et al. 2020, eq. 6–7) as diffusers' `DDPMScheduler.step` runs it
//! with the default `variance_type = "fixed_small"`: the posterior mean of q(x_prev | x_t, x0)
//! from the predicted x0 (clipped with `clip_sample`), plus σ·z with σ² = β̃ = (1−ᾱ_prev)/(1−ᾱ_t)·β
//! for every t > 0. With fewer steps than training steps, the "previous" timestep is the next one
//! in the schedule (diffusers' `previous_timestep`), β = 1 − ᾱ_t/ᾱ_prev, and ᾱ past the end is 1.
//!
//! SchedulerConfig does not carry `variance_type`; "fixed_small_log" equals "fixed_small" up to
//! rounding, "fixed_large" and the learned variances are not implemented.

use super::ddim::{alpha_at, call_model};
use super::{x0_and_eps, ModelFn, NoiseLevel, NoiseSource, Sampler, SamplerOptions, SchedulerConfig, StepHook};
use crate::{Result, Tensor};

pub struct Ddpm {
    cfg: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    timesteps: Vec<usize>,
}

pub fn new(cfg: &SchedulerConfig, opts: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    Ok(Box::new(Ddpm { cfg: cfg.clone(), alphas_cumprod: cfg.alphas_cumprod(), timesteps: cfg.discrete_timesteps(opts.steps)? }))
}

impl Sampler for Ddpm {
    fn timesteps(&self) -> Vec<f64> {
        self.timesteps.iter().map(|&t| t as f64).collect()
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, start: usize) -> Result<Tensor> {
        super::vp_add_noise("ddpm", &self.alphas_cumprod, &self.timesteps, x0, noise, start)
    }

    fn run_hooked(&mut self, model: &mut ModelFn, mut x: Tensor, noise: &mut dyn NoiseSource, start: usize, hook: &mut StepHook) -> Result<Tensor> {
        super::check_start("ddpm", start, self.timesteps.len())?;
        for (i, &t) in self.timesteps.iter().enumerate().skip(start) {
            let out = call_model("ddpm", model, &x, t as f64)?;
            let prev = self.timesteps.get(i + 1).map_or(-1, |&p| p as i64);
            let a_t = self.alphas_cumprod[t];
            let a_prev = alpha_at("ddpm", &self.alphas_cumprod, prev, 1.0)?;
            let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
            let cur_alpha = a_t / a_prev;
            let cur_beta = 1.0 - cur_alpha;
            let (mut x0, _) = x0_and_eps(self.cfg.prediction, &out, &x, a_t)?;
            if let Some(r) = self.cfg.clip_sample {
                x0 = x0.clamp(-r, r)?;
            }
            // posterior mean μ̃ = √ᾱ_prev·β/(1−ᾱ_t)·x0 + √α·(1−ᾱ_prev)/(1−ᾱ_t)·x_t
            x = x0.mul_scalar(a_prev.sqrt() * cur_beta / b_t)?.add(&x.mul_scalar(cur_alpha.sqrt() * b_prev / b_t)?)?;
            if t > 0 {
                // diffusers clamps the variance at 1e-20 (it may take its log)
                let variance = (b_prev / b_t * cur_beta).max(1e-20);
                let z = noise.noise_like(&x)?;
                x = x.add(&z.mul_scalar(variance.sqrt())?)?;
            }
            x = hook(x, self.timesteps.get(i + 1).map(|&t| NoiseLevel::vp(self.alphas_cumprod[t])))?;
        }
        Ok(x)
    }
}
