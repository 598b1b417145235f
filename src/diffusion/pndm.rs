//! PLMS: diffusers' `PNDMScheduler` with `skip_prk_steps = True`, the configuration every Stable
//! Diffusion pipeline ships (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on
//! Manifolds", eq. 9 for the transfer step, eq. 12 for the linear multistep). It is CompVis'
//! PLMS sampler except for the warm-up: diffusers runs the first step twice — once as a plain
//! step from t0 with ε0, then again from x_t0 with the average of ε0 and ε(x_t1, t1) (a
//! second-order Heun-like start) — so the timestep list holds t1 twice and there are steps + 1
//! model calls. After that, Adams–Bashforth of growing order (2, 3, then 4 terms) on the stored ε.
//!
//! The PRK warm-up (`skip_prk_steps = False`, diffusers' default for a bare PNDMScheduler) is
//! not implemented; SchedulerConfig does not carry that flag, so PLMS always runs as above.

use super::ddim::{alpha_at, call_model_parts};
use super::schedule::Prediction;
use super::{ModelFn, ModelOutput, NoiseLevel, NoiseSource, Sampler, SamplerOptions, SchedulerConfig, StepHook};
use crate::{Error, Result, Tensor};

pub struct Plms {
    cfg: SchedulerConfig,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    /// diffusers' plms_timesteps: t0, t1, t1, t2, …, t_{n−1}
    timesteps: Vec<usize>,
    stride: i64,
}

pub fn new(cfg: &SchedulerConfig, opts: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    if cfg.prediction == Prediction::Sample {
        return Err(Error::invalid("plms", "prediction_type \"sample\" is not supported by PNDM/PLMS (epsilon or v_prediction)"));
    }
    if !cfg.skip_prk_steps {
        return Err(Error::invalid("plms", "'skip_prk_steps: false' (PNDM's Runge-Kutta warm-up) is not supported: set it to true for PLMS"));
    }
    let alphas_cumprod = cfg.alphas_cumprod();
    let final_alpha_cumprod = if cfg.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
    let mut timesteps = cfg.discrete_timesteps(opts.steps)?;
    if timesteps.len() >= 2 {
        timesteps.insert(2, timesteps[1]);
    }
    Ok(Box::new(Plms { cfg: cfg.clone(), alphas_cumprod, final_alpha_cumprod, timesteps, stride: (cfg.num_train_timesteps / opts.steps) as i64 }))
}

impl Plms {
    /// x_{t−δ} from x_t and ε (PNDM eq. 9, diffusers `_get_prev_sample`) in one fused pass
    /// (ModelOutput::fused_update), with ε = w·m + Σ wₖ·eₖ for this call's output m — guided
    /// inside the pass when `out` holds the two halves — and earlier outputs eₖ. A v-prediction
    /// output becomes ε = √ᾱ_t·v + √(1−ᾱ_t)·x first; all of it is linear in (x, m, eₖ):
    /// x_{t−δ} = (c_x − d·√(1−ᾱ_t)·[v])·x − d·(√ᾱ_t if v, else 1)·(w·m + Σ wₖ·eₖ),
    /// c_x = √(ᾱ_prev/ᾱ_t), d = (ᾱ_prev − ᾱ_t) / (ᾱ_t·√(1−ᾱ_prev) + √(ᾱ_t·(1−ᾱ_t)·ᾱ_prev)).
    /// Returns the new latents and, when `keep`, m (the history the next steps read).
    #[allow(clippy::too_many_arguments)]
    fn fused_step(&self, x: &Tensor, t: i64, prev: i64, out: ModelOutput, w: f64, earlier: &[(f64, &Tensor)], keep: bool) -> Result<(Tensor, Option<Tensor>)> {
        let a_t = alpha_at("plms", &self.alphas_cumprod, t, self.final_alpha_cumprod)?;
        let a_prev = alpha_at("plms", &self.alphas_cumprod, prev, self.final_alpha_cumprod)?;
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let d = (a_prev - a_t) / (a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt());
        let (c_x, c_eps) = match self.cfg.prediction {
            Prediction::VPrediction => ((a_prev / a_t).sqrt() - d * b_t.sqrt(), -d * a_t.sqrt()),
            _ => ((a_prev / a_t).sqrt(), -d),
        };
        let earlier: Vec<(f64, &Tensor)> = earlier.iter().map(|&(wk, ek)| (c_eps * wk, ek)).collect();
        out.fused_update(x, c_x, c_eps * w, &earlier, None, keep)
    }
}

impl Sampler for Plms {
    fn timesteps(&self) -> Vec<f64> {
        self.timesteps.iter().map(|&t| t as f64).collect()
    }

    fn add_noise(&self, x0: &Tensor, noise: &Tensor, start: usize) -> Result<Tensor> {
        super::vp_add_noise("plms", &self.alphas_cumprod, &self.timesteps, x0, noise, start)
    }

    /// From `start` in the model-call list (which repeats the second timestep, as diffusers'
    /// does); the warm-up restarts there, as diffusers' step counter does.
    fn run_hooked(&mut self, model: &mut ModelFn, mut x: Tensor, _noise: &mut dyn NoiseSource, start: usize, hook: &mut StepHook) -> Result<Tensor> {
        super::check_start("plms", start, self.timesteps.len())?;
        // the (guided) model outputs of the last three steps, oldest first (diffusers' `ets`
        // without the current one, which the fused step forms itself)
        let mut ets: Vec<Tensor> = Vec::with_capacity(4);
        let mut first_sample: Option<Tensor> = None;
        for (counter, &t) in self.timesteps.clone()[start..].iter().enumerate() {
            let out = call_model_parts("plms", model, &x, t as f64)?;
            let t = t as i64;
            let (mut cur_t, mut prev) = (t, t - self.stride);
            // ε = w·(this output) + Σ wₖ·(earlier outputs): Adams–Bashforth of growing order
            let (sample, w, earlier): (Tensor, f64, Vec<(f64, &Tensor)>) = match (counter, ets.len()) {
                (0, _) => {
                    first_sample = Some(x.clone());
                    (x.clone(), 1.0, vec![])
                }
                // the warm-up's second half: redo the first step from x_t0 (and t1 + stride,
                // which diffusers uses as "t0" whatever the spacing) with the averaged ε
                (1, _) => {
                    cur_t = t + self.stride;
                    prev = t;
                    let x0 = first_sample.take().ok_or_else(|| Error::invalid("plms", "the warm-up lost its first sample"))?;
                    (x0, 0.5, vec![(0.5, &ets[0])])
                }
                (_, 1) => (x.clone(), 1.5, vec![(-0.5, &ets[0])]),
                (_, 2) => (x.clone(), 23.0 / 12.0, vec![(-16.0 / 12.0, &ets[1]), (5.0 / 12.0, &ets[0])]),
                _ => (x.clone(), 55.0 / 24.0, vec![(-59.0 / 24.0, &ets[2]), (37.0 / 24.0, &ets[1]), (-9.0 / 24.0, &ets[0])]),
            };
            let (next, guided) = self.fused_step(&sample, cur_t, prev, out, w, &earlier, counter != 1)?;
            if let Some(m) = guided {
                if ets.len() == 3 {
                    ets.remove(0);
                }
                ets.push(m);
            }
            // the latents now sit at the next entry of the call list (t1 after both warm-up calls)
            x = hook(next, self.timesteps.get(start + counter + 1).map(|&t| NoiseLevel::vp(self.alphas_cumprod[t])))?;
        }
        Ok(x)
    }
}
