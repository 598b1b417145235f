//! Euler and Euler ancestral (Karras et al. 2022, Alg. 1 with γ = 0; k-diffusion's
//! `sample_euler_ancestral`), step for step as diffusers' `EulerDiscreteScheduler` and
//! `EulerAncestralDiscreteScheduler` run them.
//!
//! These samplers work in σ-space: x_σ = x0 + σ·ε with σ_t = sqrt((1 − ᾱ_t)/ᾱ_t). The model was
//! trained on x_t = sqrt(ᾱ)·x_σ, so it is called on x / sqrt(σ² + 1) (`scale_model_input`).
//! The σ schedule (shared with Heun, heun.rs) is computed with diffusers' dtypes: the training
//! sigmas in f32, np.interp at the (float) timesteps in f64, Karras' ρ = 7 ramp in f64, each
//! result rounded to f32 as diffusers stores it; the model sees the f32 timesteps.

use super::{ModelFn, NoiseLevel, NoiseSource, Prediction, Sampler, SamplerKind, SamplerOptions, SchedulerConfig, StepHook, TimestepSpacing};
use crate::{Error, Result, Tensor};

/// The σ schedule of a k-diffusion-style scheduler: one timestep per step, one σ per step plus
/// the trailing σ = 0.
#[derive(Clone, Debug)]
pub(crate) struct SigmaSchedule {
    /// what the model sees (f32 values, fractional for linspace spacing and Karras sigmas)
    pub timesteps: Vec<f64>,
    /// f32 values, `timesteps.len() + 1` of them, the last 0
    pub sigmas: Vec<f64>,
}

impl SigmaSchedule {
    /// diffusers' `set_timesteps` of the Euler/Heun schedulers (interpolation_type "linear",
    /// final_sigmas_type "zero").
    pub fn new(cfg: &SchedulerConfig, steps: usize) -> Result<Self> {
        let n = cfg.num_train_timesteps;
        // the training sigmas, computed in f32 as torch does on the f32 alphas_cumprod
        let train = cfg.train_sigmas();
        if train.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::invalid("sampler", "the noise schedule gives a zero or non-finite sigma (an alphas_cumprod of 0 or 1)"));
        }
        let timesteps: Vec<f64> = match cfg.spacing {
            // np.linspace(0, n-1, steps, dtype=float32): i·step in f64, the last exactly n−1
            TimestepSpacing::Linspace => {
                cfg.discrete_timesteps(steps)?; // validates the step count
                let step = (n - 1) as f64 / (steps.max(2) - 1) as f64;
                (0..steps).rev().map(|i| if i == steps - 1 && steps > 1 { (n - 1) as f64 } else { i as f64 * step }).map(|t| t as f32 as f64).collect()
            }
            TimestepSpacing::Leading | TimestepSpacing::Trailing => cfg.discrete_timesteps(steps)?.into_iter().map(|t| t as f64).collect(),
        };
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        let timesteps = if cfg.karras_sigmas {
            sigmas = karras(sigmas[sigmas.len() - 1], sigmas[0], steps);
            let log_sigmas: Vec<f64> = train.iter().map(|s| f64::from(s.ln())).collect();
            sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas) as f32 as f64).collect()
        } else {
            timesteps
        };
        sigmas.push(0.0);
        let sigmas = sigmas.into_iter().map(|s| s as f32 as f64).collect();
        Ok(SigmaSchedule { timesteps, sigmas })
    }

    /// x0 + σ·ε at the σ where step `start` begins (diffusers' add_noise after set_begin_index).
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, start: usize) -> Result<Tensor> {
        super::check_start("sampler", start, self.timesteps.len())?;
        super::noised(x0, noise, 1.0, self.sigmas[start] as f32)
    }

    /// The level of latents at σ_i (x0 + σ·ε); None at the end, where σ = 0.
    pub fn level(&self, i: usize) -> Option<NoiseLevel> {
        (i < self.timesteps.len()).then(|| NoiseLevel { a: 1.0, s: self.sigmas[i] as f32 })
    }

    /// diffusers' `init_noise_sigma`: σ_max for linspace and trailing spacing, sqrt(σ_max² + 1)
    /// for leading (in f32).
    pub fn init_noise_sigma(&self, spacing: TimestepSpacing) -> f64 {
        let max = self.sigmas.iter().fold(0f32, |m, &s| m.max(s as f32));
        match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => f64::from(max),
            TimestepSpacing::Leading => f64::from((max * max + 1.0).sqrt()),
        }
    }
}

/// np.interp(t, arange(len), values) in f64.
fn interp(t: f64, values: &[f32]) -> f64 {
    let last = values.len() - 1;
    if t <= 0.0 {
        return f64::from(values[0]);
    }
    if t >= last as f64 {
        return f64::from(values[last]);
    }
    let j = t.floor() as usize;
    let (a, b) = (f64::from(values[j]), f64::from(values[j + 1]));
    if t == j as f64 { a } else { (b - a) * (t - j as f64) + a }
}

/// Karras et al. (2022) eq. 5 with ρ = 7, in f64 as diffusers' `_convert_to_karras` (numpy).
fn karras(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / RHO), sigma_max.powf(1.0 / RHO));
    let div = (steps.max(2) - 1) as f64;
    (0..steps)
        .map(|i| {
            let ramp = if i == steps - 1 && steps > 1 { 1.0 } else { i as f64 / div };
            (max_inv + ramp * (min_inv - max_inv)).powf(RHO)
        })
        .collect()
}

/// diffusers' `_sigma_to_t`: the fractional timestep whose log-sigma, linearly interpolated in
/// the training schedule, is log σ.
fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // argmax of the cumulative count of log_sigmas[j] <= log σ (first maximum), clipped
    let (mut count, mut best, mut low) = (0usize, 0usize, 0usize);
    for (j, &ls) in log_sigmas.iter().enumerate() {
        if log_sigma - ls >= 0.0 {
            count += 1;
        }
        if count > best {
            best = count;
            low = j;
        }
    }
    let low = low.min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// x / d, a true division as torch does it: multiplying by a rounded 1/d instead differs by an
/// ulp per step, which the first step of a schedule with a huge σ_max (squaredcos: 2·10⁴, then
/// 3.8) amplifies by σ_0/σ_1 into the 1e-4 range.
pub(crate) fn div_scalar(x: &Tensor, d: f64) -> Result<Tensor> {
    x.div(&Tensor::scalar(d, x.dtype()).to_device(x.device())?)
}

/// x / sqrt(σ² + 1), the scaling computed in f32 as diffusers does on its f32 sigmas.
pub(crate) fn scale_model_input(x: &Tensor, sigma: f64) -> Result<Tensor> {
    let s = sigma as f32;
    div_scalar(x, f64::from((s * s + 1.0).sqrt()))
}

/// The slope (x − x0)/σ of the probability-flow ODE.
pub(crate) fn derivative(x: &Tensor, x0: &Tensor, sigma: f64) -> Result<Tensor> {
    div_scalar(&x.sub(x0)?, sigma)
}

/// The denoised estimate x0 from the model output at noise level σ (diffusers' `step`, part 1).
pub(crate) fn denoised(prediction: Prediction, out: &Tensor, x: &Tensor, sigma: f64) -> Result<Tensor> {
    let s = sigma as f32;
    match prediction {
        Prediction::Epsilon => x.sub(&out.mul_scalar(sigma)?),
        // x0 = c_out·v + c_skip·x, c_out = −σ/sqrt(σ²+1), c_skip = 1/(σ²+1)
        Prediction::VPrediction => {
            let c_out = -s / (s * s + 1.0).sqrt();
            out.mul_scalar(f64::from(c_out))?.add(&div_scalar(x, f64::from(s * s + 1.0))?)
        }
        Prediction::Sample => Ok(out.clone()),
    }
}

struct Euler {
    ancestral: bool,
    prediction: Prediction,
    spacing: TimestepSpacing,
    schedule: SigmaSchedule,
}

pub fn new(cfg: &SchedulerConfig, opts: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    let ancestral = match opts.kind {
        SamplerKind::Euler => false,
        SamplerKind::EulerAncestral => true,
        k => return Err(Error::invalid("sampler", format!("the Euler sampler was asked to run as {}", k.name()))),
    };
    if ancestral && cfg.karras_sigmas {
        return Err(Error::invalid("sampler", "euler-a does not support use_karras_sigmas (diffusers' EulerAncestralDiscreteScheduler has no Karras option)"));
    }
    if ancestral && cfg.prediction == Prediction::Sample {
        return Err(Error::invalid("sampler", "euler-a does not support prediction_type \"sample\" (as in diffusers); use epsilon or v_prediction"));
    }
    let schedule = SigmaSchedule::new(cfg, opts.steps)?;
    Ok(Box::new(Euler { ancestral, prediction: cfg.prediction, spacing: cfg.spacing, schedule }))
}

impl Sampler for Euler {
    fn init_noise_sigma(&self) -> f64 {
        self.schedule.init_noise_sigma(self.spacing)
    }

    fn timesteps(&self) -> Vec<f64> {
        self.schedule.timesteps.clone()
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, start: usize) -> Result<Tensor> {
        self.schedule.add_noise(x0, noise, start)
    }

    fn run_hooked(&mut self, model: &mut ModelFn, mut x: Tensor, noise: &mut dyn NoiseSource, start: usize, hook: &mut StepHook) -> Result<Tensor> {
        let SigmaSchedule { timesteps, sigmas } = &self.schedule;
        super::check_start("euler", start, timesteps.len())?;
        for (i, &t) in timesteps.iter().enumerate().skip(start) {
            let (sigma, sigma_next) = (sigmas[i], sigmas[i + 1]);
            let out = super::ddim::call_model("euler", model, &scale_model_input(&x, sigma)?, t)?;
            let x0 = denoised(self.prediction, &out, &x, sigma)?;
            let derivative = derivative(&x, &x0, sigma)?;
            if !self.ancestral {
                x = hook(x.add(&derivative.mul_scalar(sigma_next - sigma)?)?, self.schedule.level(i + 1))?;
                continue;
            }
            // ancestral: step deterministically down to σ_down, then add fresh noise of σ_up
            // (σ_down² + σ_up² = σ_next²); diffusers draws on every step, the last included
            let (from, to) = (sigma as f32, sigma_next as f32);
            let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
            let down = (to * to - up * up).max(0.0).sqrt();
            x = x.add(&derivative.mul_scalar(f64::from(down - from))?)?;
            let z = noise.noise_like(&out)?;
            x = hook(x.add(&z.mul_scalar(f64::from(up))?)?, self.schedule.level(i + 1))?;
        }
        Ok(x)
    }
}
