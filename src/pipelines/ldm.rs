//! The paper's latent diffusion sampling for models conditioned on nothing or on a class label
//! (celeba256, ffhq256, lsun_*, cin256): the UNet in the first stage's latent space, classifier-free
//! guidance against the null class (the embedder's last row, cin256-v2's convention) with both
//! halves in one batch (null first, as CompVis' DDIM sampler does), then the first-stage decoder
//! (VQ models quantize first, as CompVis `decode_first_stage` does).

use crate::diffusion::{self, NoiseSource, SamplerOptions, SchedulerConfig};
use crate::models::autoencoder::AutoencoderKL;
use crate::models::checkpoint::SingleFile;
use crate::models::embedders::ClassEmbedder;
use crate::models::presets::{CondStageConfig, FirstStageConfig, LdmPreset};
use crate::models::unet::UNet;
use crate::models::vq::VQModel;
use crate::{DType, Error, Result, Tensor};

pub enum FirstStage {
    Kl(AutoencoderKL),
    Vq(VQModel),
}

impl FirstStage {
    /// Latents (already divided by the scale factor) → images in [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        match self {
            FirstStage::Kl(vae) => vae.decode(z),
            FirstStage::Vq(vq) => vq.decode(z),
        }
    }
}

pub struct LatentDiffusion {
    pub unet: UNet,
    pub first_stage: FirstStage,
    /// class-conditional models (context = the label's embedding)
    pub class_embedder: Option<ClassEmbedder>,
    pub scheduler: SchedulerConfig,
    pub scale_factor: f64,
}

#[derive(Clone, Debug)]
pub struct LdmRequest {
    /// one label per image for class-conditional models, empty otherwise
    pub labels: Vec<i64>,
    /// classifier-free guidance scale against the null class; 1 = conditional only
    pub guidance: f64,
    pub sampler: SamplerOptions,
}

impl LatentDiffusion {
    /// A CompVis single file of a paper model whose preset needs no text (unconditional or class).
    pub fn from_single_file(file: &SingleFile, p: &LdmPreset, dtype: DType) -> Result<Self> {
        let class_embedder = match &p.cond_stage {
            CondStageConfig::None => None,
            CondStageConfig::Class { n_classes, embed_dim } => Some(file.class_embedder(*n_classes, *embed_dim, dtype)?),
            other => return Err(Error::invalid("ldm", format!("preset '{}' is conditioned on {other:?}: not an unconditional or class model", p.name))),
        };
        let first_stage = match &p.first_stage {
            FirstStageConfig::Kl(c) => FirstStage::Kl(file.vae(c, dtype)?),
            FirstStageConfig::Vq { cfg, n_embed } => FirstStage::Vq(file.vq(cfg, *n_embed, dtype)?),
        };
        let d = &p.diffusion;
        Ok(LatentDiffusion {
            unet: file.unet(&p.unet, dtype)?,
            first_stage,
            class_embedder,
            scheduler: SchedulerConfig::compvis(d.linear_start, d.linear_end, d.timesteps),
            scale_factor: file.scale_factor()?.unwrap_or(d.scale_factor),
        })
    }

    /// Final latents from standard-normal `initial` [N, C, h, w]; `on_step` after every UNet call.
    pub fn latents(&self, req: &LdmRequest, initial: &Tensor, noise: &mut dyn NoiseSource, on_step: &mut dyn FnMut()) -> Result<Tensor> {
        let n = initial.dim(0)?;
        let _g = crate::no_grad();
        let (context, guided) = match &self.class_embedder {
            None if !req.labels.is_empty() => return Err(Error::invalid("ldm", "this model is unconditional: it takes no class labels")),
            None => (None, false),
            Some(emb) => {
                if req.labels.len() != n {
                    return Err(Error::invalid("ldm", format!("{} class labels for {n} images", req.labels.len())));
                }
                let cond = emb.forward(&Tensor::from_vec(req.labels.clone(), &[n])?)?;
                if req.guidance == 1.0 {
                    (Some(cond), false)
                } else {
                    let null = emb.forward(&Tensor::from_vec(vec![emb.num_classes() as i64 - 1; n], &[n])?)?;
                    (Some(Tensor::cat(&[&null, &cond], 0)?), true)
                }
            }
        };
        let mut model = super::guided_unet(&self.unet, context.as_ref(), guided.then_some(req.guidance), None, on_step);
        diffusion::sample(&self.scheduler, &req.sampler, &mut model, initial, noise)
    }

    /// Latents → images in [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let _g = crate::no_grad();
        self.first_stage.decode(&latents.mul_scalar(1.0 / self.scale_factor)?)
    }
}
