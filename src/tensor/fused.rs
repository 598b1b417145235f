//! Fused one-pass ops for the sampling loop and the optimiser, each with a CPU twin
//! (backend/cpu/fused.rs) and a CUDA kernel (kernels/schedule.cu, kernels/optim.cu) that compute
//! the same f32 operations in the same order. None of them is recorded by autograd: they update
//! latents between model calls and weights after backward.

use super::{DType, Tensor};
use crate::backend::cpu::fused as cpu;
use crate::backend::cuda::fused as cuda;
use crate::{Error, Result};

/// The coefficients of one sampler update with classifier-free guidance:
/// m = uncond + guidance·(cond − uncond), then
/// out = x·latents + model·m + Σ history[k]·h_k + noise·z.
/// DDIM (ε-prediction, σ_t): x = √ᾱ_prev/√ᾱ_t, model = √(1−ᾱ_prev−σ²) − √ᾱ_prev·√(1−ᾱ_t)/√ᾱ_t,
/// noise = σ. PLMS: the same with the model term spread over the current and three earlier ε.
/// Euler: x = 1, model = σ_next − σ.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepCoeffs {
    pub guidance: f32,
    pub x: f32,
    pub model: f32,
    pub history: [f32; 3],
    pub noise: f32,
}

/// The f32 scalars of one AdamW step as torch forms them (see train::optim::AdamW::step).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AdamWStep {
    pub grad_scale: f32,
    pub decay: f32,
    pub w1: f32,
    pub b2: f32,
    pub w2: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
}

fn same(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    Tensor::same_device(op, a, b)?;
    if a.shape() != b.shape() {
        return Err(Error::ShapeMismatch { op, lhs: a.shape().to_vec(), rhs: b.shape().to_vec() });
    }
    Ok(())
}

/// The forward process for a batch of timesteps: x_t[b] = a[b]·x0[b] + s[b]·ε[b] with
/// a = √ᾱ_t, s = √(1−ᾱ_t) per sample (CompVis `q_sample`), in one pass.
pub fn q_sample(x0: &Tensor, eps: &Tensor, a: &[f32], s: &[f32]) -> Result<Tensor> {
    const OP: &str = "q_sample";
    x0.require_float(OP)?;
    Tensor::same_dtype(OP, x0, eps)?;
    same(OP, x0, eps)?;
    let b = *x0.shape().first().ok_or_else(|| Error::bad_shape(OP, "x0 must be [B, ...]", x0.shape()))?;
    if a.len() != b || s.len() != b {
        return Err(Error::invalid(OP, format!("{} and {} coefficients for a batch of {b}", a.len(), s.len())));
    }
    if x0.device().is_cuda() {
        return cuda::q_sample(x0, eps, a, s);
    }
    let per = if b == 0 { 0 } else { x0.numel() / b };
    let out = cpu::q_sample(&x0.f32_data()?, &eps.f32_data()?, a, s, per);
    Ok(Tensor::from_f32_values(out, x0.shape(), x0.dtype(), None))
}

/// One sampler update with classifier-free guidance in one pass (see StepCoeffs). `cond` None
/// means no guidance (m = uncond). Returns the new latents and, when `want_guided`, the guided
/// model output m (the history PLMS keeps). All tensors share x's shape, dtype and device.
pub fn guided_step(
    x: &Tensor,
    uncond: &Tensor,
    cond: Option<&Tensor>,
    history: [Option<&Tensor>; 3],
    noise: Option<&Tensor>,
    c: &StepCoeffs,
    want_guided: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    const OP: &str = "guided_step";
    x.require_float(OP)?;
    for t in std::iter::once(uncond).chain(cond).chain(history.iter().flatten().copied()).chain(noise) {
        Tensor::same_dtype(OP, x, t)?;
        same(OP, x, t)?;
    }
    if x.device().is_cuda() {
        return cuda::guided_step(x, uncond, cond, history, noise, c, want_guided);
    }
    let data = |t: &Tensor| t.f32_data().map(|d| d.into_vec());
    let (xv, mu) = (data(x)?, data(uncond)?);
    let mc = cond.map(data).transpose()?;
    let hv: Vec<Option<Vec<f32>>> = history.iter().map(|h| h.map(data).transpose()).collect::<Result<_>>()?;
    let zv = noise.map(data).transpose()?;
    let (out, m) = cpu::guided_step(&xv, &mu, mc.as_deref(), [hv[0].as_deref(), hv[1].as_deref(), hv[2].as_deref()], zv.as_deref(), c);
    let out = Tensor::from_f32_values(out, x.shape(), x.dtype(), None);
    Ok((out, want_guided.then(|| Tensor::from_f32_values(m, x.shape(), x.dtype(), None))))
}

/// Checks an in-place operand: contiguous f32 (the optimiser's master copies).
fn check_inplace(op: &'static str, what: &str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return Err(Error::invalid(op, format!("{what} must be f32, it is {}", t.dtype())));
    }
    if !t.is_contiguous() {
        return Err(Error::invalid(op, format!("{what} must be contiguous to be updated in place")));
    }
    Ok(())
}

/// One AdamW step in place on the weights `w` and the moments `m`, `v` (f32, contiguous, one
/// device); `g` may be f32, f16 or bf16.
pub fn adamw_update(w: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: &AdamWStep) -> Result<()> {
    const OP: &str = "adamw";
    for (what, t) in [("the weight", w), ("exp_avg", m), ("exp_avg_sq", v)] {
        check_inplace(OP, what, t)?;
        same(OP, w, t)?;
    }
    g.require_float(OP)?;
    same(OP, w, g)?;
    if w.device().is_cuda() {
        return cuda::adamw(w, g, m, v, s);
    }
    let g = g.f32_data()?.into_vec();
    w.update_f32(|w| m.update_f32(|m| v.update_f32(|v| {
        cpu::adamw(w, &g, m, v, s);
        Ok(())
    })))
}

/// shadow ← shadow − one_minus·(shadow − p), in place (an EMA update; shadow f32 contiguous).
pub fn ema_update(shadow: &Tensor, p: &Tensor, one_minus: f32) -> Result<()> {
    const OP: &str = "ema";
    check_inplace(OP, "the shadow weight", shadow)?;
    p.require_float(OP)?;
    same(OP, shadow, p)?;
    if shadow.device().is_cuda() {
        return cuda::ema(shadow, p, one_minus);
    }
    let p = p.f32_data()?.into_vec();
    shadow.update_f32(|s| {
        cpu::ema(s, &p, one_minus);
        Ok(())
    })
}

/// Overwrites `dst`'s values with `src`'s, in place (every handle of dst sees them): swapping EMA
/// weights in and out of a model. Both f32 contiguous, one shape and device.
pub fn copy_values(dst: &Tensor, src: &Tensor) -> Result<()> {
    const OP: &str = "copy_values";
    check_inplace(OP, "the destination", dst)?;
    Tensor::same_dtype(OP, dst, src)?;
    same(OP, dst, src)?;
    if dst.device().is_cuda() {
        return cuda::copy_values(dst, src);
    }
    let s = src.f32_data()?.into_vec();
    dst.update_f32(|d| {
        d.copy_from_slice(&s);
        Ok(())
    })
}
