//! The paper's latent diffusion sampling (CompVis ldm/models/diffusion/ddpm.py `LatentDiffusion`
//! with its DDIM sampler): the UNet in the first stage's latent space, conditioned as the model's
//! cond stage says (ldm_conditioning.rs: nothing, a class, text, a layout, or concatenated
//! channels for inpainting, super-resolution and semantic synthesis), then the first-stage
//! decoder (VQ models quantize first, as CompVis `decode_first_stage` does).
//!
//! Classifier-free guidance runs both halves in one batch, unconditional first, as CompVis' DDIM
//! sampler does: against the null class (the embedder's last row, cin256-v2's convention) or the
//! empty prompt. The UNet is convolutional, so latents of any size it can halve and double back
//! (not only the training size) can be sampled, as the paper does for semantic synthesis and
//! super-resolution.

pub use super::ldm_conditioning::{inpaint_paste, one_hot, CondStage, LdmCondition, UNetInputs};

use super::ldm_conditioning::Conditioner;
use crate::diffusion::{self, NoiseSource, SamplerOptions, SchedulerConfig};
use crate::models::autoencoder::AutoencoderKL;
use crate::models::bert_tokenizer::BertTokenizer;
use crate::models::checkpoint::{DiffusersFolder, SingleFile};
use crate::models::layout::LayoutTokenizer;
use crate::models::presets::{CondStageConfig, FirstStageConfig, LdmPreset};
use crate::models::unet::UNet;
use crate::models::vq::VQModel;
use crate::{DType, Error, Result, Tensor};

pub enum FirstStage {
    Kl(AutoencoderKL),
    Vq(VQModel),
}

impl FirstStage {
    /// Latents (already divided by the scale factor) → images in [-1, 1], f32. The latents
    /// arrive in f32 (the samplers keep them so) and run in the weights' dtype.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let z = &z.to_device(self.device())?.to_dtype(self.dtype())?;
        match self {
            FirstStage::Kl(vae) => vae.decode(z),
            FirstStage::Vq(vq) => vq.decode(z),
        }?
        .to_dtype(crate::DType::F32)
    }

    /// Images in [-1, 1] → latents as CompVis' `cond_stage_model.encode` gives them when the
    /// first stage is the cond stage: VQ the pre-quantisation h (VQModelInterface.encode), KL
    /// the posterior's mode (get_learned_conditioning). Not multiplied by the scale factor.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let x = &x.to_device(self.device())?.to_dtype(self.dtype())?;
        match self {
            FirstStage::Kl(vae) => Ok(vae.encode(x)?.mode().clone()),
            FirstStage::Vq(vq) => vq.encode(x),
        }?
        .to_dtype(crate::DType::F32)
    }

    /// Where the weights live.
    pub fn device(&self) -> crate::Device {
        match self {
            FirstStage::Kl(vae) => vae.decoder.device(),
            FirstStage::Vq(vq) => vq.decoder.device(),
        }
    }

    /// The weights' dtype (the decoder's; the encoder's is the same).
    pub fn dtype(&self) -> crate::DType {
        match self {
            FirstStage::Kl(vae) => vae.decoder.dtype(),
            FirstStage::Vq(vq) => vq.decoder.dtype(),
        }
    }

    /// Image pixels per latent along each side, 2^(levels − 1).
    pub fn factor(&self) -> usize {
        match self {
            FirstStage::Kl(vae) => vae.config().downsampling(),
            FirstStage::Vq(vq) => vq.config().downsampling(),
        }
    }
}

pub struct LatentDiffusion {
    pub unet: UNet,
    pub first_stage: FirstStage,
    pub cond_stage: CondStage,
    pub scheduler: SchedulerConfig,
    pub scale_factor: f64,
    /// the latent side length the model was trained at (the config's `image_size`): the default
    /// size, not a limit
    pub latent_size: usize,
}

#[derive(Clone, Debug)]
pub struct LdmRequest {
    pub condition: LdmCondition,
    /// classifier-free guidance scale against the null class or the empty prompt; 1 = conditional
    /// only (the only value models without an unconditional input take)
    pub guidance: f64,
    pub sampler: SamplerOptions,
}

impl LatentDiffusion {
    /// A CompVis single file of a paper model. Text models (text2img256, txt2img_1p4b) also need
    /// the BERT vocabulary: `with_tokenizer`. Stable Diffusion presets run in txt2img.
    pub fn from_single_file(file: &SingleFile, p: &LdmPreset, dtype: DType) -> Result<Self> {
        let cond_stage = match &p.cond_stage {
            CondStageConfig::None => CondStage::None,
            CondStageConfig::Class { n_classes, embed_dim } => CondStage::Class(file.class_embedder(*n_classes, *embed_dim, dtype)?),
            CondStageConfig::Bert(cfg) => CondStage::Text { bert: file.ldm_bert(cfg, dtype)?, tokenizer: None },
            CondStageConfig::Layout { bert, layout } => CondStage::Layout { bert: file.ldm_bert(bert, dtype)?, tokenizer: LayoutTokenizer::new(layout.clone())? },
            CondStageConfig::FirstStage => CondStage::MaskedImage,
            CondStageConfig::Identity => CondStage::LowRes,
            CondStageConfig::Rescaler { n_stages, in_channels, out_channels } => {
                CondStage::Segmentation { rescaler: file.spatial_rescaler(*n_stages, *in_channels, Some(*out_channels), dtype)?, n_classes: *in_channels }
            }
            CondStageConfig::Clip(_) => return Err(Error::invalid("ldm", format!("preset '{}' is a Stable Diffusion model: sample it with the txt2img pipeline", p.name))),
        };
        let first_stage = match &p.first_stage {
            FirstStageConfig::Kl(c) => FirstStage::Kl(file.vae(c, dtype)?),
            FirstStageConfig::Vq { cfg, n_embed } => FirstStage::Vq(file.vq(cfg, *n_embed, dtype)?),
        };
        let d = &p.diffusion;
        Ok(LatentDiffusion {
            unet: file.unet(&p.unet, dtype)?,
            first_stage,
            cond_stage,
            scheduler: SchedulerConfig::compvis(d.linear_start, d.linear_end, d.timesteps),
            scale_factor: file.scale_factor()?.unwrap_or(d.scale_factor),
            latent_size: d.image_size,
        })
    }

    /// A paper model with fresh random weights (each layer's torch-default init from `seed`) on
    /// `device`: the architecture and the work of the real one, for timing (the paper's Tab. 18
    /// throughputs, benches/paper_configs.rs) where no pretrained weights exist. Unconditional,
    /// class-conditional and concat-conditional presets; text and layout models need a tokenizer
    /// and are refused.
    pub fn seeded(p: &LdmPreset, seed: u64, dtype: DType, device: crate::Device) -> Result<Self> {
        let vb = crate::nn::VarBuilder::seeded_init(dtype, seed).on_device(device);
        let cond_stage = match &p.cond_stage {
            CondStageConfig::None => CondStage::None,
            CondStageConfig::Class { n_classes, embed_dim } => CondStage::Class(crate::models::embedders::ClassEmbedder::new(&vb.pp("cond_stage_model"), *n_classes, *embed_dim)?),
            CondStageConfig::FirstStage => CondStage::MaskedImage,
            CondStageConfig::Identity => CondStage::LowRes,
            _ => return Err(Error::invalid("ldm", format!("preset '{}': random weights are for unconditional, class and concat models (text and layout need a tokenizer)", p.name))),
        };
        let fs = vb.pp("first_stage_model");
        let first_stage = match &p.first_stage {
            FirstStageConfig::Kl(c) => FirstStage::Kl(AutoencoderKL::new(&fs, c)?),
            FirstStageConfig::Vq { cfg, n_embed } => FirstStage::Vq(VQModel::new(&fs, cfg, *n_embed, 0.25, true)?),
        };
        let d = &p.diffusion;
        Ok(LatentDiffusion {
            unet: UNet::new(&vb.pp("model.diffusion_model"), &p.unet)?,
            first_stage,
            cond_stage,
            scheduler: SchedulerConfig::compvis(d.linear_start, d.linear_end, d.timesteps),
            scale_factor: d.scale_factor,
            latent_size: d.image_size,
        })
    }

    /// A diffusers `LDMTextToImagePipeline` folder (CompVis/ldm-text2im-large-256: unet, vqvae —
    /// AutoencoderKL or VQModel by its config's class —, bert, tokenizer, scheduler). Latents are
    /// divided by the vqvae's `scaling_factor` before decoding, as the pipeline does.
    pub fn from_diffusers(folder: &DiffusersFolder, dtype: DType) -> Result<Self> {
        let vq_cfg = folder.config("vqvae")?;
        let first_stage = match vq_cfg["_class_name"].as_str() {
            Some("VQModel") => FirstStage::Vq(folder.vqvae(dtype)?),
            Some("AutoencoderKL") | None => FirstStage::Kl(folder.autoencoder_kl("vqvae", dtype)?),
            Some(other) => return Err(Error::invalid("ldm", format!("vqvae/config.json: class {other} is neither AutoencoderKL nor VQModel"))),
        };
        let unet = folder.unet(dtype)?;
        let latent_size = folder.config("unet")?["sample_size"].as_u64().unwrap_or(32) as usize;
        let tokenizer = BertTokenizer::from_dir(folder.root().join("tokenizer"))?;
        Ok(LatentDiffusion {
            unet,
            first_stage,
            cond_stage: CondStage::Text { bert: folder.ldm_bert(dtype)?, tokenizer: Some(Box::new(tokenizer)) },
            scheduler: folder.scheduler()?,
            scale_factor: vq_cfg["scaling_factor"].as_f64().unwrap_or(0.18215),
            latent_size,
        })
    }

    /// Gives a text model its WordPiece tokenizer (bert-base-uncased's vocab.txt for the paper's).
    pub fn with_tokenizer(mut self, tokenizer: BertTokenizer) -> Result<Self> {
        match &mut self.cond_stage {
            CondStage::Text { tokenizer: t, .. } => *t = Some(Box::new(tokenizer)),
            other => return Err(Error::invalid("ldm", format!("this model takes {}: it has no text tokenizer", other.expects()))),
        }
        Ok(self)
    }

    /// The latents' shape [N, C, h, w] for `images` images: from the condition's own image
    /// (inpainting: image / f; super-resolution: the low-res size; segmentation: / 2^stages),
    /// else from `image_size` (pixels, multiples of the first stage's factor) or the training size.
    pub fn latent_shape(&self, cond: &LdmCondition, images: usize, image_size: Option<(usize, usize)>) -> Result<[usize; 4]> {
        cond.check_batch(images)?;
        let f = self.first_stage.factor();
        let from_image = match (cond, &self.cond_stage) {
            (LdmCondition::Inpaint { image, .. }, _) => Some((image, f)),
            (LdmCondition::LowRes(image), _) => Some((image, 1)),
            (LdmCondition::Segmentation(labels), CondStage::Segmentation { rescaler, .. }) => Some((labels, 1 << rescaler.n_stages())),
            _ => None,
        };
        let (h, w) = match (from_image, image_size) {
            (Some((t, div)), size) => {
                let (hh, ww) = match t.dims() {
                    &[.., hh, ww] if hh > 0 && ww > 0 && hh % div == 0 && ww % div == 0 => (hh, ww),
                    s => return Err(Error::bad_shape("ldm", format!("{}: height and width must be positive multiples of {div}", cond.kind()), s)),
                };
                if let Some((sh, sw)) = size
                    && (sh, sw) != (hh / div * f, ww / div * f)
                {
                    return Err(Error::invalid("ldm", format!("image size {sw}x{sh} does not match {}: it gives {}x{}", cond.kind(), ww / div * f, hh / div * f)));
                }
                (hh / div, ww / div)
            }
            (None, Some((sh, sw))) => {
                if sh == 0 || sw == 0 || sh % f != 0 || sw % f != 0 {
                    return Err(Error::invalid("ldm", format!("image size {sw}x{sh} must be positive multiples of the first stage's factor {f}")));
                }
                (sh / f, sw / f)
            }
            (None, None) => (self.latent_size, self.latent_size),
        };
        Ok([images, self.unet.config().out_channels, h, w])
    }

    /// What the UNet gets besides latents of shape `latent` [N, C, h, w] for `req`: the
    /// cross-attention context or the concatenated channels (checked against the latents' size).
    pub fn unet_inputs(&self, req: &LdmRequest, latent: [usize; 4]) -> Result<UNetInputs> {
        let _g = crate::no_grad();
        Conditioner { stage: &self.cond_stage, first_stage: &self.first_stage }.build(&req.condition, req.guidance, latent)
    }

    /// Final latents from standard-normal `initial` [N, C, h, w]; `on_step` after every UNet call.
    pub fn latents(&self, req: &LdmRequest, initial: &Tensor, noise: &mut dyn NoiseSource, on_step: &mut dyn FnMut()) -> Result<Tensor> {
        let c = self.unet_inputs(req, self.noise_shape(initial)?)?;
        self.latents_from(req, &c, initial, noise, on_step)
    }

    /// The initial noise's shape, checked: [N, the UNet's latent channels, h, w].
    fn noise_shape(&self, initial: &Tensor) -> Result<[usize; 4]> {
        let shape = match initial.shape() {
            &[n, c, h, w] => [n, c, h, w],
            s => return Err(Error::bad_shape("ldm", "initial noise must be [N, C, h, w]", s)),
        };
        let out = self.unet.config().out_channels;
        if shape[1] != out {
            return Err(Error::bad_shape("ldm", format!("initial noise must have the UNet's {out} latent channels"), initial.shape()));
        }
        Ok(shape)
    }

    /// `latents` with the UNet inputs already built by `unet_inputs` (so a caller that times or
    /// checks the conditioning first does not encode it twice).
    pub fn latents_from(&self, req: &LdmRequest, c: &UNetInputs, initial: &Tensor, noise: &mut dyn NoiseSource, on_step: &mut dyn FnMut()) -> Result<Tensor> {
        let shape = self.noise_shape(initial)?;
        let cfg = self.unet.config();
        let _g = crate::no_grad();
        let extra = match &c.concat {
            Some(t) => t.dim(1)?,
            None => 0,
        };
        if shape[1] + extra != cfg.in_channels {
            let msg = format!("the UNet takes {} input channels, but the latents' {} and {}'s {extra} make {}", cfg.in_channels, shape[1], req.condition.kind(), shape[1] + extra);
            return Err(Error::invalid("ldm", msg));
        }
        // Everything the UNet reads goes to its device once, before the loop.
        let dev = self.unet.device();
        let on = |t: Option<&Tensor>| t.map(|t| t.to_device(dev)).transpose();
        let (context, concat) = (on(c.context.as_ref())?, on(c.concat.as_ref())?);
        let mut model = super::guided_unet(&self.unet, context.as_ref(), c.guided.then_some(req.guidance), concat.as_ref(), on_step)?;
        diffusion::sample(&self.scheduler, &req.sampler, &mut model, &initial.to_device(dev)?, noise)
    }

    /// Latents → images in [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let _g = crate::no_grad();
        self.first_stage.decode(&latents.mul_scalar(1.0 / self.scale_factor)?)
    }

    /// The whole task: latents, decoded, and for inpainting pasted into the known region (see
    /// `inpaint_paste`); images in [-1, 1].
    pub fn generate(&self, req: &LdmRequest, initial: &Tensor, noise: &mut dyn NoiseSource, on_step: &mut dyn FnMut()) -> Result<Tensor> {
        let x = self.decode(&self.latents(req, initial, noise, on_step)?)?;
        match &req.condition {
            LdmCondition::Inpaint { .. } => inpaint_paste(&req.condition, &x),
            _ => Ok(x),
        }
    }
}
