//! AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization") as torch.optim.AdamW
//! computes it on the CPU (`_single_tensor_adam` with decoupled weight decay), operation by
//! operation in f32 so a run follows torch's to the last bits: decay p ← p·(1 − lr·wd), then
//! m ← lerp(m, g, 1 − β1), v ← β2·v + (1 − β2)·g·g, p ← p − (lr / (1 − β1ᵗ))·m / (√v / √(1 − β2ᵗ) + ε).
//! Plus torch's clip_grad_norm_ (one global L2 norm) and a linear learning-rate warm-up.
//!
//! The update itself is `tensor::fused::adamw_update`: one pass per parameter, on the CPU or as a
//! CUDA kernel that rounds each operation the same way, with the moments on the parameter's device.
//!
//! The moments live next to the parameters by name, so a checkpoint stores and restores them
//! (`state` / `load_state`) and a resumed run continues exactly.

use std::collections::HashMap;

use crate::autograd::GradStore;
use crate::tensor::fused::{adamw_update, AdamWStep};
use crate::{DType, Device, Error, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// torch's defaults.
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2 }
    }
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    params: Vec<(String, Tensor)>,
    /// the moments, f32 on each parameter's device
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    /// steps taken per parameter (torch counts per parameter: one without a gradient is skipped)
    steps: Vec<u64>,
}

impl AdamW {
    pub fn new(params: Vec<(String, Tensor)>, cfg: AdamWConfig) -> Result<Self> {
        for (name, p) in &params {
            if p.dtype() != DType::F32 {
                return Err(Error::invalid("adamw", format!("parameter {name} is {:?}: train in f32", p.dtype())));
            }
            // refuse now, not at the first step, what cannot be updated in place
            updatable(p).map_err(|e| Error::invalid("adamw", format!("parameter {name}: {e}")))?;
        }
        let zeros = |p: &Tensor| Tensor::zeros_on(p.shape(), DType::F32, p.device());
        Ok(AdamW {
            exp_avg: params.iter().map(|(_, p)| zeros(p)).collect::<Result<_>>()?,
            exp_avg_sq: params.iter().map(|(_, p)| zeros(p)).collect::<Result<_>>()?,
            steps: vec![0; params.len()],
            params,
            cfg,
        })
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// One update with learning rate `lr` (warm-up applied by the caller), each gradient first
    /// multiplied by `grad_scale` (clip_grad_norm's coefficient; 1 for none). Parameters without
    /// a gradient in `grads` are left alone, as torch does.
    pub fn step(&mut self, grads: &GradStore, lr: f64, grad_scale: f32) -> Result<()> {
        let c = self.cfg;
        for (i, (name, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p) else { continue };
            if g.shape() != p.shape() {
                return Err(Error::bad_shape("adamw", format!("the gradient of {name} must be shaped like it, {:?}", p.shape()), g.shape()));
            }
            self.steps[i] += 1;
            let t = self.steps[i] as i32;
            // the scalars as torch forms them: Python floats, cast to f32 inside each op
            let s = AdamWStep {
                grad_scale,
                decay: (1.0 - lr * c.weight_decay) as f32,
                w1: (1.0 - c.beta1) as f32,
                b2: c.beta2 as f32,
                w2: (1.0 - c.beta2) as f32,
                step_size: (lr / (1.0 - c.beta1.powi(t))) as f32,
                bc2_sqrt: (1.0 - c.beta2.powi(t)).sqrt() as f32,
                eps: c.eps as f32,
            };
            adamw_update(p, g, &self.exp_avg[i], &self.exp_avg_sq[i], &s)?;
        }
        Ok(())
    }

    /// The optimiser state as named tensors under `prefix` (for a checkpoint):
    /// `{prefix}{param}.exp_avg`, `.exp_avg_sq`, `.step`.
    pub fn state(&self, prefix: &str) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(3 * self.params.len());
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("{prefix}{name}.exp_avg"), self.exp_avg[i].clone()));
            out.push((format!("{prefix}{name}.exp_avg_sq"), self.exp_avg_sq[i].clone()));
            out.push((format!("{prefix}{name}.step"), Tensor::from_vec(vec![self.steps[i] as i64], &[1])?));
        }
        Ok(out)
    }

    /// Restores what `state` saved; every parameter's three entries must be there with the
    /// right shapes (one error lists the first problem by name).
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            let get = |what: &str| -> Result<&Tensor> {
                let key = format!("{prefix}{name}.{what}");
                tensors.get(&key).ok_or_else(|| Error::Weights(format!("the checkpoint has no optimiser state '{key}'")))
            };
            for (what, slot) in [("exp_avg", &mut self.exp_avg[i]), ("exp_avg_sq", &mut self.exp_avg_sq[i])] {
                let t = get(what)?;
                if t.shape() != p.shape() {
                    return Err(Error::Weights(format!("optimiser state '{prefix}{name}.{what}' has shape {:?}, the parameter {:?}", t.shape(), p.shape())));
                }
                // an owned f32 copy on the parameter's device (a loaded file may be memory-mapped)
                *slot = Tensor::from_vec(t.to_vec::<f32>()?, p.shape())?.to_device(p.device())?;
            }
            self.steps[i] = get("step")?.to_vec::<i64>()?.first().copied().unwrap_or(0).max(0) as u64;
        }
        Ok(())
    }
}

/// Whether `p` can be updated in place: owned f32 on the CPU, contiguous f32 on a device.
pub(crate) fn updatable(p: &Tensor) -> Result<()> {
    if p.device() == Device::Cpu {
        return p.update_f32(|_| Ok(()));
    }
    if p.dtype() != DType::F32 || !p.is_contiguous() {
        return Err(Error::invalid("update", format!("only contiguous f32 tensors can be updated in place, this one is {} {:?}", p.dtype(), p.shape())));
    }
    Ok(())
}

/// ‖t‖₂ summed in f64 and rounded to f32, as torch's norm of an f32 tensor comes out.
pub fn l2_norm(t: &Tensor) -> Result<f32> {
    Ok(t.to_vec::<f32>()?.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt() as f32)
}

/// The global L2 norm of the parameters' gradients and the factor torch's `clip_grad_norm_`
/// multiplies them by: min(1, max_norm / (norm + 1e-6)).
pub fn clip_grad_norm(grads: &GradStore, params: &[(String, Tensor)], max_norm: f64) -> Result<(f64, f32)> {
    let mut sq = 0f64;
    for (_, p) in params {
        if let Some(g) = grads.get(p) {
            // per-tensor norms in f32, then the norm of the norms, as torch stacks them
            let n = l2_norm(g)?;
            sq += f64::from(n) * f64::from(n);
        }
    }
    let norm = sq.sqrt() as f32;
    if !norm.is_finite() {
        return Err(Error::invalid("clip_grad_norm", format!("the gradient norm is {norm}: the loss has diverged (NaN or infinite gradients)")));
    }
    let coef = (max_norm as f32 / (norm + 1e-6)).min(1.0);
    Ok((f64::from(norm), coef))
}

/// The learning rate at `step` (from 0) with a linear warm-up over `warmup` steps to `base`.
pub fn warmup_lr(base: f64, step: u64, warmup: u64) -> f64 {
    if warmup == 0 {
        return base;
    }
    base * ((step + 1) as f64 / warmup as f64).min(1.0)
}
