//! DDIM (Song et al. 2020, "Denoising Diffusion Implicit Models", eq. 12 and 16) as diffusers'
//! `DDIMScheduler.step` computes it, step for step: the previous point is a fixed stride
//! (num_train / steps) below the current timestep, whatever the spacing; past t = 0 the
//! "previous" ᾱ is `final_alpha_cumprod` (1 with `set_alpha_to_one`, else ᾱ_0). With η > 0 each
//! step adds σ_t·z with fresh noise z from the NoiseSource (where diffusers calls randn_tensor).
//!
//! Also home to the small helpers the DDPM and PNDM samplers share with it.

use super::{x0_and_eps, ModelFn, ModelOutput, NoiseLevel, NoiseSource, Prediction, Sampler, SamplerOptions, SchedulerConfig, StepHook};
use crate::{Error, Result, Tensor};

pub struct Ddim {
    cfg: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    timesteps: Vec<usize>,
    stride: i64,
    eta: f64,
}

pub fn new(cfg: &SchedulerConfig, opts: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    if !(opts.eta >= 0.0 && opts.eta.is_finite()) {
        return Err(Error::invalid("ddim", format!("eta = {} must be a finite number >= 0", opts.eta)));
    }
    let alphas_cumprod = cfg.alphas_cumprod();
    let final_alpha_cumprod = if cfg.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
    Ok(Box::new(Ddim {
        cfg: cfg.clone(),
        timesteps: cfg.discrete_timesteps(opts.steps)?,
        stride: (cfg.num_train_timesteps / opts.steps) as i64,
        alphas_cumprod,
        final_alpha_cumprod,
        eta: opts.eta,
    }))
}

/// ᾱ at timestep `t`: `below_zero` for t < 0 (the step past the end of the chain), an error for
/// t past the training schedule (a config whose offsets push a step out of range).
pub(super) fn alpha_at(op: &'static str, alphas_cumprod: &[f64], t: i64, below_zero: f64) -> Result<f64> {
    if t < 0 {
        return Ok(below_zero);
    }
    alphas_cumprod
        .get(t as usize)
        .copied()
        .ok_or_else(|| Error::invalid(op, format!("timestep {t} falls outside the {} training steps", alphas_cumprod.len())))
}

/// Calls the model and checks that its output is shaped like the latents it was given, with the
/// guidance halves still apart (see ModelOutput).
pub(super) fn call_model_parts(op: &'static str, model: &mut ModelFn, x: &Tensor, t: f64) -> Result<ModelOutput> {
    let out = model(x, t)?;
    let halves_match = match &out {
        ModelOutput::Guided { uncond, cond, .. } => uncond.shape() == cond.shape(),
        ModelOutput::Plain(_) => true,
    };
    if out.shape() != x.shape() || !halves_match {
        return Err(Error::bad_shape(op, format!("the model output must be shaped like the latents {:?} (at t={t})", x.shape()), out.shape()));
    }
    // A NaN or Inf would silently spread through every later step into a black or noisy image:
    // stop at the step where it appears. (The sum propagates both, and accumulates in f64; with
    // guidance, either half's NaN or Inf makes the sum of both non-finite.)
    let sum = match &out {
        ModelOutput::Plain(t) => t.sum_all()?.to_scalar()?,
        ModelOutput::Guided { uncond, cond, .. } => uncond.sum_all()?.add(&cond.sum_all()?)?.to_scalar()?,
    };
    if !sum.is_finite() {
        return Err(Error::invalid(op, format!("the model output at timestep {t} is not finite (NaN or Inf): the weights or the inputs are broken (a diverged checkpoint, an f16 overflow)")));
    }
    Ok(out)
}

/// `call_model_parts` with the guidance applied: the model output as the update formulas take it.
pub(super) fn call_model(op: &'static str, model: &mut ModelFn, x: &Tensor, t: f64) -> Result<Tensor> {
    call_model_parts(op, model, x, t)?.combined()
}

impl Sampler for Ddim {
    fn timesteps(&self) -> Vec<f64> {
        self.timesteps.iter().map(|&t| t as f64).collect()
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, start: usize) -> Result<Tensor> {
        super::vp_add_noise("ddim", &self.alphas_cumprod, &self.timesteps, x0, noise, start)
    }

    fn run_hooked(&mut self, model: &mut ModelFn, mut x: Tensor, noise: &mut dyn NoiseSource, start: usize, hook: &mut StepHook) -> Result<Tensor> {
        super::check_start("ddim", start, self.timesteps.len())?;
        for (i, &t) in self.timesteps.iter().enumerate().skip(start) {
            let out = call_model_parts("ddim", model, &x, t as f64)?;
            let prev = t as i64 - self.stride;
            let a_t = self.alphas_cumprod[t];
            let a_prev = alpha_at("ddim", &self.alphas_cumprod, prev, self.final_alpha_cumprod)?;
            // σ_t = η·sqrt((1−ᾱ_prev)/(1−ᾱ_t))·sqrt(1−ᾱ_t/ᾱ_prev)
            let variance = (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev);
            let std = self.eta * variance.sqrt();
            let dir = (1.0 - a_prev - std * std).sqrt();
            x = match self.cfg.clip_sample {
                // Without clipping the update is linear in x and the model output: guidance and
                // update in one pass.
                None => fused_update(self.cfg.prediction, out, &x, (a_t, a_prev, dir, std), self.eta > 0.0, noise)?,
                Some(r) => {
                    let (x0, eps) = x0_and_eps(self.cfg.prediction, &out.combined()?, &x, a_t)?;
                    // diffusers' pipelines call step() with use_clipped_model_output = False: ε
                    // stays the model's, only x0 is clipped (CompVis' DDIM sampler does the same).
                    let x0 = x0.clamp(-r, r)?;
                    let mut x = x0.mul_scalar(a_prev.sqrt())?.add(&eps.mul_scalar(dir)?)?;
                    if self.eta > 0.0 {
                        let z = noise.noise_like(&x)?;
                        x = x.add(&z.mul_scalar(std)?)?;
                    }
                    x
                }
            };
            x = hook(x, self.timesteps.get(i + 1).map(|&t| NoiseLevel::vp(self.alphas_cumprod[t])))?;
        }
        Ok(x)
    }
}

/// One DDIM step as a single fused pass: x_prev = √ᾱ_prev·x0 + dir·ε (+ σ·z), with x0 and ε both
/// linear in (x, model output) for every prediction type — x0 = p·x + q·m, ε = r·x + s·m — so
/// x_prev = (√ᾱ_prev·p + dir·r)·x + (√ᾱ_prev·q + dir·s)·m (+ σ·z), where m is the guided output
/// u + g·(c − u), formed in the same pass.
fn fused_update(prediction: Prediction, out: ModelOutput, x: &Tensor, (a_t, a_prev, dir, std): (f64, f64, f64, f64), noisy: bool, noise: &mut dyn NoiseSource) -> Result<Tensor> {
    let (sa, s1a) = (a_t.sqrt(), (1.0 - a_t).sqrt());
    let (p, q, r, s) = match prediction {
        Prediction::Epsilon => (1.0 / sa, -s1a / sa, 0.0, 1.0),
        Prediction::Sample => (0.0, 1.0, 1.0 / s1a, -sa / s1a),
        // v = √ᾱ·ε − √(1−ᾱ)·x0  ⇒  x0 = √ᾱ·x − √(1−ᾱ)·v,  ε = √ᾱ·v + √(1−ᾱ)·x
        Prediction::VPrediction => (sa, -s1a, s1a, sa),
    };
    let z = if noisy { Some(noise.noise_like(x)?) } else { None };
    Ok(out.fused_update(x, a_prev.sqrt() * p + dir * r, a_prev.sqrt() * q + dir * s, &[], z.as_ref().map(|z| (std, z)), false)?.0)
}
