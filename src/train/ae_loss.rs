//! The first stage's training losses, as CompVis writes them (ldm/modules/losses/contperceptual.py
//! `LPIPSWithDiscriminator`, with taming's `hinge_d_loss` and `adopt_weight`):
//!
//! - generator (autoencoder) step: rec = |x − x̂| + w_p·LPIPS(x, x̂) per pixel;
//!   nll = Σ(rec / e^logvar + logvar) / N; kl = Σ KL(q(z|x) ‖ N(0, I)) / N;
//!   g = −mean(D(x̂)); loss = nll + w_kl·kl + λ·f·g, where f is the discriminator factor (0 before
//!   `disc_start`) and λ the adaptive weight ‖∇_L nll‖ / (‖∇_L g‖ + 1e-4), clamped to [0, 10⁴],
//!   × disc_weight, with the gradients taken at the decoder's last layer L (Esser et al. 2021);
//! - discriminator step: f · ½(mean(relu(1 − D(x))) + mean(relu(1 + D(x̂)))) on detached x̂.
//!
//! For a VQ first stage (ldm/modules/losses/vqperceptual.py `VQLPIPSWithDiscriminator`) the
//! reconstruction term is mean(rec) with no logvar, the regulariser is the quantiser's codebook +
//! commitment loss × codebook_weight, and the adaptive weight is always computed.
//!
//! `logvar` is a parameter in CompVis but no optimiser holds it, so it stays at its initial value:
//! here it is a number.

use super::discriminator::Discriminator;
use super::optim::l2_norm;
use crate::models::autoencoder::Posterior;
use crate::{Error, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossConfig {
    pub disc_start: u64,
    pub kl_weight: f64,
    /// VQ models: the weight of the quantiser's loss
    pub codebook_weight: f64,
    pub disc_weight: f64,
    pub disc_factor: f64,
    pub perceptual_weight: f64,
    pub logvar_init: f64,
}

impl Default for LossConfig {
    /// CompVis' kl-f8 config (disc_start 50001, kl_weight 1e-6, disc_weight 0.5; codebook_weight 1).
    fn default() -> Self {
        LossConfig { disc_start: 50001, kl_weight: 1e-6, codebook_weight: 1.0, disc_weight: 0.5, disc_factor: 1.0, perceptual_weight: 1.0, logvar_init: 0.0 }
    }
}

/// taming's adopt_weight: `weight` from step `threshold` on, 0 before.
pub fn adopt_weight(weight: f64, step: u64, threshold: u64) -> f64 {
    if step < threshold { 0.0 } else { weight }
}

/// ½(mean(relu(1 − real)) + mean(relu(1 + fake))).
pub fn hinge_d_loss(logits_real: &Tensor, logits_fake: &Tensor) -> Result<Tensor> {
    let real = logits_real.neg()?.add_scalar(1.0)?.relu()?.mean_all()?;
    let fake = logits_fake.add_scalar(1.0)?.relu()?.mean_all()?;
    real.add(&fake)?.mul_scalar(0.5)
}

/// The generator step's loss and the terms CompVis logs.
pub struct GeneratorLoss {
    pub loss: Tensor,
    pub nll: f64,
    pub rec: f64,
    /// the KL term, or the VQ codebook loss
    pub reg: f64,
    pub g: f64,
    pub d_weight: f64,
    pub disc_factor: f64,
}

/// What regularises the latents.
#[derive(Clone, Copy)]
pub enum Regulariser<'a> {
    /// the KL model's posterior
    Kl(&'a Posterior),
    /// the VQ model's codebook + commitment loss (a scalar)
    Vq(&'a Tensor),
}

/// One autoencoder pass over a batch: inputs, reconstructions, the regulariser, and optionally
/// the per-image perceptual distance LPIPS(x, x̂) [N, 1, 1, 1].
pub struct Reconstruction<'a> {
    pub x: &'a Tensor,
    pub xrec: &'a Tensor,
    pub reg: Regulariser<'a>,
    pub perceptual: Option<&'a Tensor>,
}

/// The generator loss of a reconstruction; `last_layer` is the decoder's final conv weight (a
/// variable the reconstruction depends on).
pub fn generator_loss(cfg: &LossConfig, r: &Reconstruction, disc: &Discriminator, last_layer: &Tensor, step: u64) -> Result<GeneratorLoss> {
    let Reconstruction { x, xrec, reg, perceptual } = *r;
    if x.shape() != xrec.shape() {
        return Err(Error::bad_shape("ae_loss", format!("reconstructions must be shaped like the inputs {:?}", x.shape()), xrec.shape()));
    }
    let n = x.dim(0)? as f64;
    let mut rec = x.sub(xrec)?.abs()?;
    if let Some(p) = perceptual.filter(|_| cfg.perceptual_weight > 0.0) {
        rec = rec.add(&p.mul_scalar(cfg.perceptual_weight)?)?;
    }
    let (nll, reg_loss, reg_weight, always_weigh) = match reg {
        Regulariser::Kl(posterior) => {
            let nll = rec.mul_scalar((-cfg.logvar_init).exp())?.add_scalar(cfg.logvar_init)?.sum_all()?.mul_scalar(1.0 / n)?;
            (nll, posterior.kl()?.sum_all()?.mul_scalar(1.0 / n)?, cfg.kl_weight, false)
        }
        Regulariser::Vq(codebook) => (rec.mean_all()?, codebook.mean_all()?, cfg.codebook_weight, true),
    };
    let g = disc.forward(xrec)?.mean_all()?.neg()?;
    let disc_factor = adopt_weight(cfg.disc_factor, step, cfg.disc_start);
    // CompVis computes the adaptive weight also before disc_start (where it is multiplied by 0):
    // the KL loss whenever the configured factor is positive, the VQ loss always
    let d_weight = if always_weigh || cfg.disc_factor > 0.0 { adaptive_weight(&nll, &g, last_layer)? * cfg.disc_weight } else { 0.0 };
    let mut loss = nll.add(&reg_loss.mul_scalar(reg_weight)?)?;
    if d_weight * disc_factor != 0.0 {
        loss = loss.add(&g.mul_scalar(d_weight * disc_factor)?)?;
    }
    Ok(GeneratorLoss {
        nll: nll.to_scalar()?,
        rec: rec.mean_all()?.to_scalar()?,
        reg: reg_loss.to_scalar()?,
        g: g.to_scalar()?,
        loss,
        d_weight,
        disc_factor,
    })
}

/// ‖∇_L nll‖ / (‖∇_L g‖ + 1e-4), clamped to [0, 10⁴], computed in f32 as torch does.
fn adaptive_weight(nll: &Tensor, g: &Tensor, last_layer: &Tensor) -> Result<f64> {
    let norm = |loss: &Tensor| -> Result<f32> {
        let grads = loss.grad_for(&[last_layer])?; // only the last layer's backward, as torch.autograd.grad
        let gr = grads.get(last_layer).ok_or_else(|| Error::invalid("ae_loss", "the loss does not reach the decoder's last layer"))?;
        l2_norm(gr)
    };
    let w = norm(nll)? / (norm(g)? + 1e-4);
    Ok(f64::from(w.clamp(0.0, 1e4)))
}

/// The discriminator step's loss: `disc_factor`·hinge on the real images and detached
/// reconstructions, and the mean logits CompVis logs.
pub fn discriminator_loss(cfg: &LossConfig, x: &Tensor, xrec: &Tensor, disc: &Discriminator, step: u64) -> Result<(Tensor, f64, f64)> {
    let real = disc.forward(&x.detach())?;
    let fake = disc.forward(&xrec.detach())?;
    let f = adopt_weight(cfg.disc_factor, step, cfg.disc_start);
    let loss = hinge_d_loss(&real, &fake)?.mul_scalar(f)?;
    Ok((loss, real.mean_all()?.to_scalar()?, fake.mean_all()?.to_scalar()?))
}
