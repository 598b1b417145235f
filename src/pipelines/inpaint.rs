//! Inpainting with a Stable Diffusion model, as diffusers' StableDiffusionInpaintPipeline runs it,
//! for both kinds of model:
//! - a 9-channel inpainting UNet (SD-inpainting): every UNet call sees the latents plus the mask
//!   (nearest-downsampled to the latent grid) and the VAE latents of the masked image;
//! - an ordinary 4-channel UNet: after every sampler step the known region is pasted back from
//!   the image latents, noised to the level the latents are at (mask blending).
//!
//! The mask is 1 where the image is repainted and 0 where it is kept, binarised at 0.5 as
//! diffusers' mask processor does. With strength < 1 the run starts from the image latents noised
//! to the start step (as img2img does) instead of from pure noise.

use super::txt2img::{img2img_start, TextToImage, TextToImageRequest};
use crate::diffusion::{self, NoiseLevel, NoiseSource};
use crate::{DType, Error, Result, Tensor};

/// What to repaint and how much of the original to keep.
#[derive(Clone, Debug)]
pub struct InpaintInput {
    /// [N or 1, 3, H, W] in [-1, 1]
    pub image: Tensor,
    /// [N or 1, 1, H, W] in [0, 1]; ≥ 0.5 is repainted
    pub mask: Tensor,
    /// 1 = start from pure noise (diffusers' default for inpainting)
    pub strength: f64,
}

/// The model's inpainting mode, from its UNet's input channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InpaintMode {
    /// latents + mask + masked-image latents (in_channels = 2·latent + 1)
    Concat,
    /// an ordinary model: mask blending after every step
    Blend,
}

impl TextToImage {
    pub fn inpaint_mode(&self) -> Result<InpaintMode> {
        let (unet, latent) = (self.unet.config().in_channels, self.vae.config().embed_dim);
        match unet {
            c if c == latent => Ok(InpaintMode::Blend),
            c if c == 2 * latent + 1 => Ok(InpaintMode::Concat),
            c => Err(Error::invalid("inpaint", format!("the UNet takes {c} input channels: inpainting needs {latent} (mask blending) or {} (an inpainting UNet)", 2 * latent + 1))),
        }
    }

    /// Final latents of an inpainting run. `initial` replaces the standard-normal draw of the
    /// initial noise (diffusers' `latents=` for strength 1; with strength < 1 it is the noise
    /// added to the image latents). Fresh draws come from `noise` in diffusers' order: the image
    /// posterior (blend mode or strength < 1), the initial noise (unless given), the masked-image
    /// posterior (concat mode).
    pub fn inpaint_latents(&self, req: &TextToImageRequest, context: &Tensor, input: &InpaintInput, initial: Option<&Tensor>, noise: &mut dyn NoiseSource, on_step: &mut dyn FnMut()) -> Result<Tensor> {
        let shape = self.latent_shape(req)?;
        let mode = self.inpaint_mode()?;
        let n = shape[0];
        let dev = self.device();
        let (image, mask) = (batch_of(&input.image, n, &[3, req.height, req.width], "image")?.to_device(dev)?, batch_of(&input.mask, n, &[1, req.height, req.width], "mask")?.to_device(dev)?);
        if let Some(t) = initial.filter(|t| t.shape() != shape) {
            return Err(Error::bad_shape("inpaint", format!("initial noise must be {shape:?}"), t.shape()));
        }
        let start = img2img_start(req.sampler.steps, input.strength)?;
        let full_strength = input.strength == 1.0;
        let _g = crate::no_grad();
        let mask = super::binarize_mask(&mask)?;
        let mut sampler = diffusion::build(&self.scheduler, &req.sampler)?;
        let image_latents = if mode == InpaintMode::Blend || !full_strength { Some(self.encode_sample(&image, noise)?) } else { None };
        let eps = match initial {
            Some(t) => t.to_device(dev)?.to_dtype(DType::F32)?,
            None => noise.noise_like(&Tensor::zeros_on(&shape, DType::F32, dev)?)?,
        };
        let x = match &image_latents {
            Some(z) if !full_strength => sampler.add_noise(z, &eps, start)?,
            _ => eps.mul_scalar(sampler.init_noise_sigma())?,
        };
        // F.interpolate(mask, size=latents', mode="nearest"): the top-left pixel of each f×f cell
        let mask_latents = mask.upsample_nearest2d(shape[2], shape[3])?;
        let guidance = (req.guidance > 1.0).then_some(req.guidance);
        match mode {
            InpaintMode::Concat => {
                let keep = mask.affine(-1.0, 1.0)?; // diffusers: image · (mask < 0.5)
                let masked = self.encode_sample(&image.mul(&keep)?, noise)?;
                let concat = Tensor::cat(&[&mask_latents, &masked], 1)?;
                let mut model = super::guided_unet(&self.unet, Some(context), guidance, Some(&concat), on_step)?;
                sampler.run_from(&mut model, x, noise, start)
            }
            InpaintMode::Blend => {
                let known = image_latents.ok_or_else(|| Error::invalid("inpaint", "blend mode lost its image latents"))?;
                let keep = mask_latents.affine(-1.0, 1.0)?;
                // x ← (1 − m)·(known region at the current noise level) + m·x
                let mut blend = |x: Tensor, level: Option<NoiseLevel>| -> Result<Tensor> {
                    let known = match level {
                        Some(l) => l.apply(&known, &eps)?,
                        None => known.clone(),
                    };
                    keep.mul(&known)?.add(&mask_latents.mul(&x)?)
                };
                let mut model = super::guided_unet(&self.unet, Some(context), guidance, None, on_step)?;
                sampler.run_hooked(&mut model, x, noise, start, &mut blend)
            }
        }
    }
}

/// `t` as a batch of `n`: [n, ..rest] as given, or [1, ..rest] repeated.
fn batch_of(t: &Tensor, n: usize, rest: &[usize], what: &str) -> Result<Tensor> {
    let s = t.shape();
    if s.len() == 1 + rest.len() && &s[1..] == rest && (s[0] == n || s[0] == 1) {
        return if s[0] == n { Ok(t.clone()) } else { Tensor::cat(&vec![t; n], 0) };
    }
    let mut want = vec![n];
    want.extend_from_slice(rest);
    Err(Error::bad_shape("inpaint", format!("the {what} must be {want:?} (or a batch of 1) to match the request"), s))
}
