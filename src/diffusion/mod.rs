//! Sampling: the noise schedule (schedule.rs), the samplers that walk it, and the interface they
//! share. A sampler calls the model as diffusers' pipelines do: on the model input it prepares
//! (`scale_model_input`) and the timestep the UNet sees, and gets the raw model output (ε, v or
//! x0, per the config's prediction type) back.

pub mod ddim;
pub mod ddpm;
pub mod dpm_solver;
pub mod euler;
pub mod heun;
pub mod pndm;
pub mod schedule;

use std::collections::VecDeque;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::SeedableRng;

pub use schedule::{BetaSchedule, Prediction, SchedulerConfig, TimestepSpacing};

use crate::tensor::fused::{guided_step, StepCoeffs};
use crate::{DType, Error, Result, Tensor};

/// The model as a sampler sees it: (model input, timestep) → model output.
pub type ModelFn<'a> = dyn FnMut(&Tensor, f64) -> Result<ModelOutput> + 'a;

/// What one model call returns. `Guided` keeps classifier-free guidance's two halves apart, so a
/// sampler whose update is linear in the model output can apply the guidance inside it (DDIM
/// and PLMS: one fused pass, `tensor::fused::guided_step`); the others take `combined()`.
#[derive(Clone, Debug)]
pub enum ModelOutput {
    Plain(Tensor),
    /// The unconditional and conditional outputs and the guidance scale.
    Guided { uncond: Tensor, cond: Tensor, scale: f64 },
}

impl ModelOutput {
    /// The output with guidance applied: u + scale·(c − u), as diffusers' pipelines form it.
    pub fn combined(self) -> Result<Tensor> {
        match self {
            ModelOutput::Plain(t) => Ok(t),
            ModelOutput::Guided { uncond, cond, scale } => uncond.add(&cond.sub(&uncond)?.mul_scalar(scale)?),
        }
    }
    /// c_x·x + c_model·m + Σ cₖ·eₖ (+ c_z·z) in one pass (tensor::fused::guided_step), m being
    /// this output with the guidance applied inside the pass: a sampler update that is linear in
    /// the latents, this output and earlier outputs eₖ (at most 3). The coefficients are rounded
    /// to f32 as the kernel takes them. Returns the result and, when `keep`, m.
    pub(crate) fn fused_update(self, x: &Tensor, c_x: f64, c_model: f64, earlier: &[(f64, &Tensor)], noise: Option<(f64, &Tensor)>, keep: bool) -> Result<(Tensor, Option<Tensor>)> {
        let (uncond, cond, scale) = match self {
            ModelOutput::Plain(m) => (m, None, 0.0),
            ModelOutput::Guided { uncond, cond, scale } => (uncond, Some(cond), scale),
        };
        let mut history = [0f32; 3];
        let mut tensors: [Option<&Tensor>; 3] = [None; 3];
        for (k, (ck, ek)) in earlier.iter().enumerate() {
            history[k] = *ck as f32;
            tensors[k] = Some(*ek);
        }
        let c = StepCoeffs { guidance: scale as f32, x: c_x as f32, model: c_model as f32, history, noise: noise.map_or(0.0, |(c, _)| c as f32) };
        guided_step(x, &uncond, cond.as_ref(), tensors, noise.map(|(_, z)| z), &c, keep)
    }

    /// The shape of the (combined) output.
    pub fn shape(&self) -> &[usize] {
        match self {
            ModelOutput::Plain(t) | ModelOutput::Guided { uncond: t, .. } => t.shape(),
        }
    }
}

impl From<Tensor> for ModelOutput {
    fn from(t: Tensor) -> Self {
        ModelOutput::Plain(t)
    }
}

/// Where stochastic samplers (DDPM, DDIM with η > 0, Euler ancestral) get their fresh noise.
pub trait NoiseSource {
    /// Standard-normal noise shaped like `like`.
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor>;
}

/// Seeded standard-normal draws: same seed, same images.
pub struct SeededNoise(pub StdRng);

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        SeededNoise(StdRng::seed_from_u64(seed))
    }
}

impl NoiseSource for SeededNoise {
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        // drawn on the host (the seeded stream is the same whatever the device), then moved
        Tensor::randn(like.shape(), 0.0, 1.0, DType::F32, &mut self.0).to_device(like.device())
    }
}

/// Noise given in advance, in order (e.g. the draws a reference run made).
pub struct RecordedNoise(pub VecDeque<Tensor>);

impl NoiseSource for RecordedNoise {
    fn noise_like(&mut self, like: &Tensor) -> Result<Tensor> {
        let t = self.0.pop_front().ok_or_else(|| Error::invalid("sampler", "the recorded noise ran out"))?;
        if t.shape() != like.shape() {
            return Err(Error::bad_shape("sampler", format!("recorded noise must be shaped like the latents {:?}", like.shape()), t.shape()));
        }
        t.to_device(like.device())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    Ddpm,
    Ddim,
    Plms,
    Euler,
    EulerAncestral,
    Heun,
    DpmPP2M,
}

impl SamplerKind {
    pub const NAMES: [&'static str; 7] = ["ddpm", "ddim", "plms", "euler", "euler-a", "heun", "dpm++2m"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Whether the sampler draws fresh noise (then only the seed, not the reference's RNG,
    /// makes it reproducible).
    pub fn is_stochastic(self, eta: f64) -> bool {
        matches!(self, SamplerKind::Ddpm | SamplerKind::EulerAncestral) || (self == SamplerKind::Ddim && eta > 0.0)
    }
}

impl FromStr for SamplerKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        use SamplerKind::*;
        let all = [Ddpm, Ddim, Plms, Euler, EulerAncestral, Heun, DpmPP2M];
        all.into_iter()
            .find(|k| k.name() == s.to_ascii_lowercase())
            .ok_or_else(|| Error::invalid("sampler", format!("unknown sampler '{s}' (one of: {})", Self::NAMES.join(", "))))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerOptions {
    pub kind: SamplerKind,
    pub steps: usize,
    /// DDIM's η (0 = deterministic)
    pub eta: f64,
}

/// The noise level latents are at after a step: x = a·x0 + s·ε (f32 scalars, as diffusers'
/// `add_noise` computes them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseLevel {
    pub a: f32,
    pub s: f32,
}

impl NoiseLevel {
    /// The VP level √ᾱ, √(1−ᾱ) of a cumulative alpha (DDPM, DDIM, PNDM).
    pub(crate) fn vp(alpha_prod: f64) -> Self {
        let a = alpha_prod as f32;
        NoiseLevel { a: a.sqrt(), s: (1.0 - a).sqrt() }
    }

    /// Clean latents `x0` noised with `noise` to this level.
    pub fn apply(&self, x0: &Tensor, noise: &Tensor) -> Result<Tensor> {
        noised(x0, noise, self.a, self.s)
    }
}

/// Called after every model call's update with the latents and the noise level they are now at
/// (None after the last call, where they are clean); returns the latents to go on with. Mask
/// blending for inpainting with an ordinary model lives here: diffusers' 4-channel inpainting
/// pastes the known region, noised to that level, back after every `scheduler.step`.
pub type StepHook<'a> = dyn FnMut(Tensor, Option<NoiseLevel>) -> Result<Tensor> + 'a;

/// One sampler run over a fixed schedule.
pub trait Sampler {
    /// What the initial standard-normal latent is multiplied by (diffusers' `init_noise_sigma`):
    /// 1 for the samplers that work on x_t itself, σ-scaled for the k-diffusion ones.
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// The timesteps of the schedule, noisiest first, one per step.
    fn timesteps(&self) -> Vec<f64>;
    /// Runs every step from the scaled initial latent `x`, returning the final latent.
    fn run(&mut self, model: &mut ModelFn, x: Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        self.run_from(model, x, noise, 0)
    }
    /// Runs the steps from index `start` on (img2img: diffusers' `timesteps[start·order:]`).
    fn run_from(&mut self, model: &mut ModelFn, x: Tensor, noise: &mut dyn NoiseSource, start: usize) -> Result<Tensor> {
        self.run_hooked(model, x, noise, start, &mut |x, _| Ok(x))
    }
    /// `run_from` with `hook` applied after every model call's update (see StepHook). Samplers
    /// with two calls per step (Heun) call it after each, on the state the next call sees.
    fn run_hooked(&mut self, model: &mut ModelFn, x: Tensor, noise: &mut dyn NoiseSource, start: usize, hook: &mut StepHook) -> Result<Tensor>;
    /// Clean latents noised to the point where step `start` begins (diffusers' `add_noise` at
    /// `timesteps[start·order]`).
    fn add_noise(&self, x0: &Tensor, noise: &Tensor, start: usize) -> Result<Tensor>;
}

/// a·x0 + s·ε, the forward process at one noise level (scalars in f32, as diffusers has them).
pub(crate) fn noised(x0: &Tensor, noise: &Tensor, a: f32, s: f32) -> Result<Tensor> {
    if noise.shape() != x0.shape() {
        return Err(Error::bad_shape("add_noise", format!("noise must be shaped like the latents {:?}", x0.shape()), noise.shape()));
    }
    x0.mul_scalar(f64::from(a))?.add(&noise.mul_scalar(f64::from(s))?)
}

/// √ᾱ·x0 + √(1−ᾱ)·ε at the ᾱ of `timesteps[start]` (DDPM, DDIM, PNDM).
pub(crate) fn vp_add_noise(op: &'static str, alphas_cumprod: &[f64], timesteps: &[usize], x0: &Tensor, noise: &Tensor, start: usize) -> Result<Tensor> {
    check_start(op, start, timesteps.len())?;
    NoiseLevel::vp(alphas_cumprod[timesteps[start]]).apply(x0, noise)
}

/// The start index checked against a schedule of `len` steps.
pub(crate) fn check_start(op: &'static str, start: usize, len: usize) -> Result<()> {
    if start >= len {
        return Err(Error::invalid(op, format!("start step {start} is past the {len} steps of the schedule")));
    }
    Ok(())
}

pub fn build(cfg: &SchedulerConfig, opts: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    let cfg = &cfg.for_sampler(opts.kind)?;
    cfg.discrete_timesteps(opts.steps)?; // the step count and offset are valid for every sampler
    match opts.kind {
        SamplerKind::Ddpm => ddpm::new(cfg, opts),
        SamplerKind::Ddim => ddim::new(cfg, opts),
        SamplerKind::Plms => pndm::new(cfg, opts),
        SamplerKind::Euler | SamplerKind::EulerAncestral => euler::new(cfg, opts),
        SamplerKind::Heun => heun::new(cfg, opts),
        SamplerKind::DpmPP2M => dpm_solver::new(cfg, opts),
    }
}

/// Samples from standard-normal `initial` [N, C, h, w]: scales it by the sampler's initial sigma
/// (as diffusers' pipelines do with `latents=`) and runs every step.
pub fn sample(cfg: &SchedulerConfig, opts: &SamplerOptions, model: &mut ModelFn, initial: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
    let mut s = build(cfg, opts)?;
    let x = initial.mul_scalar(s.init_noise_sigma())?;
    s.run(model, x, noise)
}

/// (x0, ε) from a model output at a point with cumulative alpha `alpha_prod`, for the three
/// prediction types (the DDIM/DDPM/PNDM conversions).
pub fn x0_and_eps(prediction: Prediction, out: &Tensor, x: &Tensor, alpha_prod: f64) -> Result<(Tensor, Tensor)> {
    let (a, s) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
    Ok(match prediction {
        Prediction::Epsilon => (x.sub(&out.mul_scalar(s)?)?.mul_scalar(1.0 / a)?, out.clone()),
        Prediction::Sample => (out.clone(), x.sub(&out.mul_scalar(a)?)?.mul_scalar(1.0 / s)?),
        // v = a·ε − s·x0  ⇒  x0 = a·x − s·v,  ε = a·v + s·x
        Prediction::VPrediction => (x.mul_scalar(a)?.sub(&out.mul_scalar(s)?)?, out.mul_scalar(a)?.add(&x.mul_scalar(s)?)?),
    })
}
