//! Heun's second-order sampler (Karras et al. 2022, Alg. 1 with γ = 0), step for step as
//! diffusers' `HeunDiscreteScheduler` runs it.
//!
//! diffusers doubles the timesteps ([t0, t1, t1, t2, t2, …]) and alternates a first-order
//! (Euler) half and a second-order correction inside `step`; here the same arithmetic is one loop
//! iteration per step: an Euler predictor from σ_i to σ_{i+1} evaluated at t_i, then the
//! corrector evaluated at t_{i+1} on the predicted sample, averaging the two slopes. The last
//! step goes to σ = 0 and is Euler only, so an n-step run calls the model 2n − 1 times, in
//! diffusers' order. The σ schedule (spacings, Karras) is Euler's (euler.rs).

use super::euler::{denoised, derivative, scale_model_input, SigmaSchedule};
use super::{ModelFn, NoiseSource, Prediction, Sampler, SamplerOptions, SchedulerConfig, StepHook, TimestepSpacing};
use crate::{Result, Tensor};

struct Heun {
    prediction: Prediction,
    clip: Option<f64>,
    spacing: TimestepSpacing,
    schedule: SigmaSchedule,
}

pub fn new(cfg: &SchedulerConfig, opts: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    let schedule = SigmaSchedule::new(cfg, opts.steps)?;
    Ok(Box::new(Heun { prediction: cfg.prediction, clip: cfg.clip_sample, spacing: cfg.spacing, schedule }))
}

impl Heun {
    /// The slope (x − x0)/σ of the probability-flow ODE at noise level σ.
    fn slope(&self, out: &Tensor, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let mut x0 = denoised(self.prediction, out, x, sigma)?;
        if let Some(r) = self.clip {
            x0 = x0.clamp(-r, r)?;
        }
        derivative(x, &x0, sigma)
    }
}

impl Sampler for Heun {
    fn init_noise_sigma(&self) -> f64 {
        self.schedule.init_noise_sigma(self.spacing)
    }

    /// One timestep per step (the model sees each but the first twice).
    fn timesteps(&self) -> Vec<f64> {
        self.schedule.timesteps.clone()
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, start: usize) -> Result<Tensor> {
        self.schedule.add_noise(x0, noise, start)
    }

    /// From step `start` (diffusers' doubled list from index 2·start, a first-order point).
    fn run_hooked(&mut self, model: &mut ModelFn, mut x: Tensor, _noise: &mut dyn NoiseSource, start: usize, hook: &mut StepHook) -> Result<Tensor> {
        let SigmaSchedule { timesteps, sigmas } = &self.schedule;
        let n = timesteps.len();
        super::check_start("heun", start, n)?;
        for i in start..n {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let dt = sigma_next - sigma;
            let d = self.slope(&super::ddim::call_model("heun", model, &scale_model_input(&x, sigma)?, timesteps[i])?, &x, sigma)?;
            let level = self.schedule.level(i + 1);
            // diffusers returns the predictor as the first half's output, so the hook sees it too
            let predicted = hook(x.add(&d.mul_scalar(dt)?)?, level)?;
            if i + 1 == n {
                x = predicted; // σ_next = 0: Euler only
                break;
            }
            let d2 = self.slope(&super::ddim::call_model("heun", model, &scale_model_input(&predicted, sigma_next)?, timesteps[i + 1])?, &predicted, sigma_next)?;
            x = hook(x.add(&d.add(&d2)?.mul_scalar(0.5)?.mul_scalar(dt)?)?, level)?;
        }
        Ok(x)
    }
}
