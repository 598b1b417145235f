//! Text-to-image with a Stable Diffusion v1-style model (diffusers' StableDiffusionPipeline):
//! CLIP text embeddings for the prompts and the negative prompts, classifier-free guidance with
//! both halves in one UNet batch (negative first), any sampler, VAE decode.

use crate::diffusion::{self, NoiseSource, SamplerOptions, SchedulerConfig};
use crate::models::autoencoder::AutoencoderKL;
use crate::models::checkpoint::{DiffusersFolder, SingleFile};
use crate::models::clip::ClipTextModel;
use crate::models::clip_tokenizer::{ClipTokenizer, MAX_LEN};
use crate::models::presets::{preset, CondStageConfig, FirstStageConfig};
use crate::models::unet::UNet;
use crate::{DType, Error, Result, Tensor};

pub struct TextToImage {
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    pub unet: UNet,
    pub vae: AutoencoderKL,
    /// the folder's scheduler settings (the sampler is chosen per request)
    pub scheduler: SchedulerConfig,
    /// latents = VAE latents × this (vae/config.json `scaling_factor`)
    pub vae_scale: f64,
}

#[derive(Clone, Debug)]
pub struct TextToImageRequest {
    pub prompts: Vec<String>,
    /// one per prompt, or empty for "" (the unconditional embedding)
    pub negative_prompts: Vec<String>,
    /// classifier-free guidance scale; ≤ 1 runs the conditional half only, as diffusers does
    pub guidance: f64,
    pub sampler: SamplerOptions,
    pub height: usize,
    pub width: usize,
}

/// The schedule index img2img starts at for `strength` of `steps` (diffusers' get_timesteps:
/// init_timestep = min(int(steps · strength), steps), t_start = steps − init_timestep).
pub fn img2img_start(steps: usize, strength: f64) -> Result<usize> {
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(Error::invalid("img2img", format!("strength {strength} must be in (0, 1]")));
    }
    let init_steps = ((steps as f64 * strength) as usize).min(steps);
    if init_steps == 0 {
        return Err(Error::invalid("img2img", format!("strength {strength} with {steps} steps leaves no step to run")));
    }
    Ok(steps - init_steps)
}

impl TextToImage {
    pub fn from_diffusers(folder: &DiffusersFolder, dtype: DType) -> Result<Self> {
        let vae_cfg = folder.config("vae")?;
        Ok(TextToImage {
            tokenizer: folder.tokenizer()?,
            text_encoder: folder.text_encoder(dtype)?,
            unet: folder.unet(dtype)?,
            vae: folder.vae(dtype)?,
            scheduler: folder.scheduler()?,
            vae_scale: vae_cfg["scaling_factor"].as_f64().unwrap_or(0.18215),
        })
    }

    /// A Stable Diffusion v1 single-file checkpoint (CompVis key names, as v1-5-pruned ships):
    /// the SD v1 configs, the UNet's input channels read from the file (9 for an inpainting
    /// model), CLIP's built-in vocabulary, SD's scheduler, the stored scale factor if any.
    pub fn from_single_file(file: &SingleFile, dtype: DType) -> Result<Self> {
        if !file.is_sd_v1() {
            return Err(Error::invalid("txt2img", "not a Stable Diffusion v1 checkpoint: it has no cond_stage_model.transformer.text_model.* (CLIP) tensors"));
        }
        let p = preset("sd_v1")?;
        let (FirstStageConfig::Kl(vae_cfg), CondStageConfig::Clip(clip_cfg)) = (&p.first_stage, &p.cond_stage) else {
            return Err(Error::invalid("txt2img", "the sd_v1 preset lost its KL autoencoder or CLIP config"));
        };
        let mut unet_cfg = p.unet.clone();
        if let Some(s) = file.shape("model.diffusion_model.input_blocks.0.0.weight").filter(|s| s.len() == 4) {
            unet_cfg.in_channels = s[1];
        }
        Ok(TextToImage {
            tokenizer: ClipTokenizer::builtin()?,
            text_encoder: file.text_encoder(clip_cfg, dtype)?,
            unet: file.unet(&unet_cfg, dtype)?,
            vae: file.vae(vae_cfg, dtype)?,
            scheduler: SchedulerConfig::sd15(),
            vae_scale: file.scale_factor()?.unwrap_or(p.diffusion.scale_factor),
        })
    }

    /// Stable Diffusion v1 (the sd_v1 preset: CLIP ViT-L/14 text encoder, the 860M UNet, the
    /// KL-f8 VAE) with fresh random weights from `seed` on `device`: the work of the real model,
    /// to time or dry-run it where no pretrained weights exist. Its images are noise.
    pub fn seeded(seed: u64, dtype: DType, device: crate::Device) -> Result<Self> {
        let p = preset("sd_v1")?;
        let (FirstStageConfig::Kl(vae_cfg), CondStageConfig::Clip(clip_cfg)) = (&p.first_stage, &p.cond_stage) else {
            return Err(Error::invalid("txt2img", "the sd_v1 preset lost its KL autoencoder or CLIP config"));
        };
        let vb = crate::nn::VarBuilder::seeded_weights(dtype, seed).on_device(device);
        Ok(TextToImage {
            tokenizer: ClipTokenizer::builtin()?,
            text_encoder: ClipTextModel::new(&vb.pp("cond_stage_model"), clip_cfg)?,
            unet: UNet::new(&vb.pp("model.diffusion_model"), &p.unet)?,
            vae: AutoencoderKL::new(&vb.pp("first_stage_model"), vae_cfg)?,
            scheduler: SchedulerConfig::sd15(),
            vae_scale: p.diffusion.scale_factor,
        })
    }

    /// The last hidden states of the text encoder for each text, padded to 77 tokens: [N, 77, D].
    pub fn encode_text(&self, texts: &[String]) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(texts.len() * MAX_LEN);
        for t in texts {
            let (padded, _) = self.tokenizer.encode_padded(t, MAX_LEN)?;
            ids.extend(padded.into_iter().map(i64::from));
        }
        self.text_encoder.forward(&Tensor::from_vec(ids, &[texts.len(), MAX_LEN])?.to_device(self.device())?, 0)
    }

    /// Where the weights live (all three models are loaded onto one device), and so where the
    /// pipeline runs; inputs made on the host are moved there.
    pub fn device(&self) -> crate::Device {
        self.unet.device()
    }

    /// Checks a request and returns the latent shape [N, C, H/8, W/8].
    pub fn latent_shape(&self, req: &TextToImageRequest) -> Result<[usize; 4]> {
        let f = self.vae_factor();
        if req.height == 0 || req.width == 0 || !req.height.is_multiple_of(f) || !req.width.is_multiple_of(f) {
            return Err(Error::invalid("txt2img", format!("size {}x{} must be positive multiples of {f}", req.width, req.height)));
        }
        if req.prompts.is_empty() {
            return Err(Error::invalid("txt2img", "no prompt"));
        }
        if !req.negative_prompts.is_empty() && req.negative_prompts.len() != req.prompts.len() {
            return Err(Error::invalid("txt2img", format!("{} negative prompts for {} prompts", req.negative_prompts.len(), req.prompts.len())));
        }
        Ok([req.prompts.len(), self.vae.config().embed_dim, req.height / f, req.width / f])
    }

    /// Text-to-image and image-to-image need a UNet that takes the latents alone.
    fn check_plain_unet(&self) -> Result<()> {
        let (unet, latent) = (self.unet.config().in_channels, self.vae.config().embed_dim);
        if unet != latent {
            return Err(Error::invalid("txt2img", format!("the UNet takes {unet} input channels, not the {latent} latent channels: an inpainting model needs an init image and a mask")));
        }
        Ok(())
    }

    /// The cross-attention context: [negative; positive] embeddings when guided, else the
    /// prompts' alone.
    pub fn context(&self, req: &TextToImageRequest) -> Result<Tensor> {
        self.latent_shape(req)?;
        let _g = crate::no_grad();
        let cond = self.encode_text(&req.prompts)?;
        if req.guidance <= 1.0 {
            return Ok(cond);
        }
        let neg: Vec<String> = if req.negative_prompts.is_empty() { vec![String::new(); req.prompts.len()] } else { req.negative_prompts.clone() };
        Tensor::cat(&[&self.encode_text(&neg)?, &cond], 0)
    }

    /// Final latents (as the UNet sees them, before 1/vae_scale) from standard-normal `initial`.
    /// `on_step` is called after every UNet evaluation (progress).
    pub fn latents(&self, req: &TextToImageRequest, initial: &Tensor, noise: &mut dyn NoiseSource, on_step: &mut dyn FnMut()) -> Result<Tensor> {
        let context = self.context(req)?;
        self.denoise(req, &context, initial, noise, on_step)
    }

    /// The sampling loop on a ready context (see `context`).
    pub fn denoise(&self, req: &TextToImageRequest, context: &Tensor, initial: &Tensor, noise: &mut dyn NoiseSource, on_step: &mut dyn FnMut()) -> Result<Tensor> {
        let shape = self.latent_shape(req)?;
        if initial.shape() != shape {
            return Err(Error::bad_shape("txt2img", format!("initial noise must be {shape:?}"), initial.shape()));
        }
        self.check_plain_unet()?;
        let _g = crate::no_grad();
        let mut model = super::guided_unet(&self.unet, Some(context), (req.guidance > 1.0).then_some(req.guidance), None, on_step)?;
        diffusion::sample(&self.scheduler, &req.sampler, &mut model, &initial.to_device(self.device())?.to_dtype(DType::F32)?, noise)
    }

    /// Image-to-image (diffusers' StableDiffusionImg2ImgPipeline): `image` [N, 3, H, W] in
    /// [-1, 1] is encoded (a posterior sample, its noise the first draw), scaled, noised to the
    /// step where `strength` of the schedule remains (the second draw), then denoised from there.
    /// strength 1 starts from pure noise; lower keeps more of the image.
    pub fn img2img_latents(&self, req: &TextToImageRequest, context: &Tensor, image: &Tensor, strength: f64, noise: &mut dyn NoiseSource, on_step: &mut dyn FnMut()) -> Result<Tensor> {
        let shape = self.latent_shape(req)?;
        if image.shape() != [shape[0], 3, req.height, req.width] {
            return Err(Error::bad_shape("img2img", format!("the init image must be [{}, 3, {}, {}]", shape[0], req.height, req.width), image.shape()));
        }
        let start = img2img_start(req.sampler.steps, strength)?;
        self.check_plain_unet()?;
        let _g = crate::no_grad();
        let z = self.encode_sample(image, noise)?;
        let mut sampler = diffusion::build(&self.scheduler, &req.sampler)?;
        let x = sampler.add_noise(&z, &noise.noise_like(&z)?, start)?;
        let mut model = super::guided_unet(&self.unet, Some(context), (req.guidance > 1.0).then_some(req.guidance), None, on_step)?;
        sampler.run_from(&mut model, x, noise, start)
    }

    /// Images in [-1, 1] → scaled latents: a sample of the VAE posterior, its noise drawn from
    /// `noise` (diffusers' `retrieve_latents(sample_mode="sample")` × scaling_factor).
    /// The latents are f32 on the pipeline's device whatever the VAE's dtype.
    pub fn encode_sample(&self, image: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        let posterior = self.vae.encode(&image.to_device(self.device())?.to_dtype(self.vae.decoder.dtype())?)?;
        let (mean, logvar) = (posterior.mean.to_dtype(DType::F32)?, posterior.logvar.to_dtype(DType::F32)?);
        let eps = noise.noise_like(&mean)?;
        mean.add(&logvar.mul_scalar(0.5)?.exp()?.mul(&eps)?)?.mul_scalar(self.vae_scale)
    }

    /// The latent downsampling factor of the VAE (8 for SD).
    pub fn vae_factor(&self) -> usize {
        self.vae.config().downsampling()
    }

    /// Latents → images in [-1, 1], [N, 3, H, W], f32 on the pipeline's device.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let _g = crate::no_grad();
        let z = latents.to_device(self.device())?.mul_scalar(1.0 / self.vae_scale)?.to_dtype(self.vae.decoder.dtype())?;
        self.vae.decode(&z)?.to_dtype(DType::F32)
    }
}
