//! Training the paper's second stage (CompVis ldm/models/diffusion/ddpm.py `LatentDiffusion`): a
//! UNet learns to denoise the frozen autoencoder's latents, z = scale_factor · (a posterior
//! sample), with the simple reweighted objective of Eq. 1–2,
//!   L = E_{z, ε, t} ‖target − ε_θ(√ᾱ_t·z + √(1−ᾱ_t)·ε, t, c)‖²  (mean over the latent's elements),
//! target = ε or v = √ᾱ_t·ε − √(1−ᾱ_t)·z, t uniform in 0..T (CompVis `p_losses` with
//! l_simple_weight 1, original_elbo_weight 0, no learned log-variance).
//!
//! Class conditioning is CompVis' cin256-v2 recipe: a trainable `ClassEmbedder` whose extra last
//! row is the null class, cross-attended by the UNet; a fraction `drop_prob` of the labels is
//! replaced by the null class so the same model also learns the unconditional score for
//! classifier-free guidance. AdamW (torch defaults: β 0.9/0.999, weight decay 0.01, as
//! `configure_optimizers` builds it) over the UNet and the embedder, optional warm-up, gradient
//! clipping and LitEma weights (ema.rs). One deliberate difference: CompVis averages the UNet
//! only and samples with the raw conditioner; here the jointly trained conditioner is averaged
//! with it, so the exported UNet and embedder come from the same averaged trajectory.
//!
//! Every random draw (t, ε, the posterior sample, the label dropout) is a function of the seed and
//! the step, so a run resumed from step k takes exactly the steps an uninterrupted run takes.

use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::ae_trainer::{AeTrainConfig, FirstStageKind};
use super::checkpoint::{save_checkpoint, Checkpoint};
use super::ema::Ema;
use super::ldm_config::{LdmCond, LdmTrainConfig, Objective};
use super::optim::{clip_grad_norm, warmup_lr, AdamW, AdamWConfig};
use crate::diffusion::{SamplerKind, SamplerOptions, SchedulerConfig, SeededNoise};
use crate::models::autoencoder::AutoencoderKL;
use crate::models::embedders::ClassEmbedder;
use crate::models::unet::UNet;
use crate::models::vq::VQModel;
use crate::nn::VarBuilder;
use crate::pipelines::ldm::{CondStage, FirstStage, LatentDiffusion, LdmCondition, LdmRequest};
use crate::{DType, Device, Error, Result, Tensor};

/// A batch of encoded training images.
#[derive(Clone, Debug)]
pub struct LatentBatch {
    /// posterior mean (KL) or pre-quantisation latents (VQ), not scaled, [B, C, h, w]
    pub mean: Tensor,
    /// KL posterior log-variance, clamped as CompVis does (VQ: None)
    pub logvar: Option<Tensor>,
    /// [B] I64 class labels
    pub labels: Option<Tensor>,
    /// the low-resolution image [B, C_img, h, w] in [−1, 1] (super-resolution models)
    pub concat: Option<Tensor>,
    /// the captions' WordPiece ids [B, L] (text models)
    pub tokens: Option<Tensor>,
}

/// The random draws of one step (the trainer makes them from the seed and step; the parity test
/// passes torch's).
#[derive(Clone, Debug)]
pub struct StepDraws {
    pub t: Vec<usize>,
    /// ε [B, C, h, w]
    pub eps: Tensor,
    /// the posterior sample's standard-normal draw, for KL latents
    pub posterior: Option<Tensor>,
    /// which labels become the null class
    pub drop: Vec<bool>,
}

/// What one step did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LdmStepLog {
    pub step: u64,
    pub lr: f64,
    pub loss: f64,
    pub grad_norm: f64,
}

impl LdmStepLog {
    pub const CSV_HEADER: &'static str = "step,lr,loss,grad_norm";

    /// The values after `step`, in the header's order.
    pub fn values(&self) -> [f64; 3] {
        [self.lr, self.loss, self.grad_norm]
    }

    pub fn csv_row(&self) -> String {
        super::csv_line(self.step, &self.values())
    }
}

pub struct LdmTrainer {
    /// where the weights live and the steps run
    pub device: Device,
    pub cfg: LdmTrainConfig,
    /// the first stage's own training config (its shape, image size and channels)
    pub ae_cfg: AeTrainConfig,
    pub model: LatentDiffusion,
    /// trained: `model.diffusion_model.*` and `cond_stage_model.*` (CompVis single-file names)
    params: Vec<(String, Tensor)>,
    /// frozen, under the autoencoder's own names (no prefix)
    first_stage_params: Vec<(String, Tensor)>,
    opt: AdamW,
    ema: Option<Ema>,
    alphas_cumprod: Vec<f64>,
    /// whether `model.scale_factor` is settled (given, measured, or restored)
    pub scale_known: bool,
    pub step: u64,
}

/// The layers CompVis creates with `zero_module` (each ResBlock's last conv, the transformers' and
/// attention blocks' output projections, the UNet's final conv): a fresh UNet starts as identity
/// residual blocks and predicts 0.
fn is_zero_init(name: &str) -> bool {
    name.contains(".out_layers.3.") || name.contains(".proj_out.") || name.starts_with("model.diffusion_model.out.2.")
}

impl LdmTrainer {
    /// Fresh UNet (and class embedder) from a config (ldm_config.rs), over the autoencoder of a
    /// `train autoencoder` checkpoint.
    pub fn new(config: &Value, autoencoder: &std::path::Path, device: Device) -> Result<Self> {
        let ck = Checkpoint::load(autoencoder)?;
        let ae_cfg = ae_config(&ck, autoencoder)?;
        let cfg = LdmTrainConfig::from_json(config, ae_cfg.model.embed_dim, ae_cfg.model.in_channels)?;
        let mut t = Self::build(cfg, ae_cfg, device)?;
        ck.restore_params("ae", &t.first_stage_params)?;
        t.restart_ema()?;
        Ok(t)
    }

    /// A fresh model over a first stage of the given shape with random weights, for callers that
    /// bring their own latents or load the weights themselves (then `restart_ema`).
    pub fn with_autoencoder_config(config: &Value, ae_cfg: AeTrainConfig, device: Device) -> Result<Self> {
        let cfg = LdmTrainConfig::from_json(config, ae_cfg.model.embed_dim, ae_cfg.model.in_channels)?;
        let mut t = Self::build(cfg, ae_cfg, device)?;
        t.restart_ema()?;
        Ok(t)
    }

    /// Continues a run from `save`'s checkpoint (on any device: the checkpoint is device-free).
    pub fn resume(path: &std::path::Path, device: Device) -> Result<Self> {
        let ck = Checkpoint::load(path)?;
        let meta = |k: &str| ck.metadata.get(k).ok_or_else(|| Error::File { path: path.display().to_string(), msg: format!("not a stage-2 checkpoint: no '{k}' in its metadata") });
        let ae_cfg = AeTrainConfig::from_json(&json_of(meta("autoencoder_config")?, path)?)?;
        let cfg = LdmTrainConfig::from_json(&json_of(meta("config")?, path)?, ae_cfg.model.embed_dim, ae_cfg.model.in_channels)?;
        let mut t = Self::build(cfg, ae_cfg, device)?;
        ck.restore_params("first_stage", &t.first_stage_params)?;
        ck.restore_params("ldm", &t.params)?;
        ck.restore_optimiser("ldm", &mut t.opt)?;
        t.restart_ema()?;
        if let Some(ema) = &mut t.ema {
            ck.restore_params("ema", ema.shadow())?;
            ema.num_updates = meta("ema_updates")?.parse().unwrap_or(0);
        }
        if let Some(s) = ck.metadata.get("scale_factor").and_then(|s| s.parse().ok()) {
            t.model.scale_factor = s;
            t.scale_known = true;
        }
        t.step = ck.step;
        Ok(t)
    }

    /// Every weight is made on the CPU from the seeded init (so a run starts the same on any
    /// device) and handed out on `device`.
    fn build(cfg: LdmTrainConfig, ae_cfg: AeTrainConfig, device: Device) -> Result<Self> {
        let fs_vb = VarBuilder::seeded_init(DType::F32, 0).on_device(device);
        let first_stage = match ae_cfg.kind {
            FirstStageKind::Kl => FirstStage::Kl(AutoencoderKL::new(&fs_vb, &ae_cfg.model)?),
            FirstStageKind::Vq { n_embed, beta, .. } => FirstStage::Vq(VQModel::new(&fs_vb, &ae_cfg.model, n_embed, beta, true)?),
        };
        let vb = VarBuilder::seeded_init(DType::F32, cfg.seed).on_device(device);
        let unet = UNet::new(&vb.pp("model.diffusion_model"), &cfg.unet)?;
        let cond_stage = match &cfg.cond {
            LdmCond::Unconditional => CondStage::None,
            LdmCond::Class { n_classes, embed_dim, .. } => CondStage::Class(ClassEmbedder::new(&vb.pp("cond_stage_model"), n_classes + 1, *embed_dim)?),
            LdmCond::LowRes => CondStage::LowRes,
            LdmCond::Inpaint => CondStage::MaskedImage,
            LdmCond::Text { .. } => {
                let bert = crate::models::ldm_bert::LdmBert::new(&vb.pp("cond_stage_model").pp("transformer"), &cfg.cond.bert().expect("a text config"))?;
                CondStage::Text { bert, tokenizer: Some(Box::new(crate::models::bert_tokenizer::BertTokenizer::builtin()?)) }
            }
        };
        let params = vb.params();
        for (name, p) in &params {
            if is_zero_init(name) {
                crate::tensor::fused::copy_values(p, &Tensor::zeros_on(p.shape(), DType::F32, p.device())?)?;
            }
        }
        let mut scheduler = SchedulerConfig::compvis(cfg.linear_start, cfg.linear_end, cfg.timesteps);
        if cfg.objective == Objective::V {
            scheduler.prediction = crate::diffusion::Prediction::VPrediction;
        }
        let f = ae_cfg.model.downsampling();
        let model = LatentDiffusion { unet, first_stage, cond_stage, scale_factor: cfg.scale_factor.unwrap_or(1.0), latent_size: ae_cfg.image_size / f, scheduler };
        let adam = AdamWConfig { lr: cfg.lr, weight_decay: cfg.weight_decay, ..AdamWConfig::default() };
        Ok(LdmTrainer {
            device,
            opt: AdamW::new(params.clone(), adam)?,
            ema: None,
            alphas_cumprod: model.scheduler.alphas_cumprod(),
            first_stage_params: fs_vb.params(),
            scale_known: cfg.scale_factor.is_some(),
            params,
            model,
            ae_cfg,
            cfg,
            step: 0,
        })
    }

    /// (Re)starts the EMA from the current weights.
    pub fn restart_ema(&mut self) -> Result<()> {
        self.ema = self.cfg.ema_decay.map(|d| Ema::new(&self.params, d)).transpose()?;
        Ok(())
    }

    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// Images [B, C, S, S] in [−1, 1] → the batch's latents (no graph), and for super-resolution
    /// models the low-res image (the f×f area mean: S/f, the latents' size), for text models the
    /// captions' ids (`captions`: one per image; a missing one is an error naming the sample).
    pub fn encode(&self, images: &Tensor, labels: Option<Tensor>, captions: &[Option<String>]) -> Result<LatentBatch> {
        let _g = crate::no_grad();
        let tokens = match &self.model.cond_stage {
            CondStage::Text { tokenizer: Some(tok), bert } => {
                let len = bert.config().max_positions;
                let n = images.dim(0)?;
                if captions.len() != n {
                    return Err(Error::invalid("train", format!("a text model needs a caption per image: {} captions for {n} images (image folders: a .txt beside each image)", captions.len())));
                }
                let mut ids = Vec::with_capacity(n * len);
                for (i, c) in captions.iter().enumerate() {
                    let c = c.as_deref().ok_or_else(|| Error::invalid("train", format!("training image {i} of the batch has no caption (image folders: a .txt beside each image)")))?;
                    ids.extend(tok.encode_padded(c, len)?.0.into_iter().map(i64::from));
                }
                Some(Tensor::from_vec(ids, &[n, len])?)
            }
            _ => None,
        };
        let concat = match self.cfg.cond {
            LdmCond::LowRes => {
                let f = self.model.first_stage.factor();
                Some(images.avg_pool2d((f, f), (f, f))?)
            }
            _ => None,
        };
        // encoded on the model's device, kept on the host (the latent cache, any batch size)
        let host = |t: Tensor| t.to_device(Device::Cpu);
        let images = &images.to_device(self.device)?;
        Ok(match &self.model.first_stage {
            FirstStage::Kl(vae) => {
                let post = vae.encode(images)?;
                LatentBatch { mean: host(post.mean)?, logvar: Some(host(post.logvar)?), labels, concat, tokens }
            }
            FirstStage::Vq(vq) => LatentBatch { mean: host(vq.encode(images)?)?, logvar: None, labels, concat, tokens },
        })
    }

    /// An inpainting model's batch: images [B, C, S, S] in [−1, 1] and masks [B, 1, S, S] (1 =
    /// repaint) → the latents, plus the concatenated conditioning built exactly as sampling builds
    /// it (the pipeline's conditioner: the masked image (1 − m)·x through the frozen first stage,
    /// the mask as 2m − 1 at the latents' size).
    pub fn encode_inpainting(&self, images: &Tensor, masks: &Tensor, labels: Option<Tensor>) -> Result<LatentBatch> {
        let _g = crate::no_grad();
        let mut batch = self.encode(images, labels, &[])?;
        let latent = match batch.mean.shape() {
            &[n, c, h, w] => [n, c, h, w],
            s => return Err(Error::bad_shape("train", "latents must be [N, C, h, w]", s)),
        };
        let req = LdmRequest { condition: LdmCondition::Inpaint { image: images.affine(0.5, 0.5)?, mask: masks.clone() }, guidance: 1.0, sampler: SamplerOptions { kind: SamplerKind::Ddim, steps: 1, eta: 0.0 } };
        let inputs = self.model.unet_inputs(&req, latent)?;
        batch.concat = inputs.concat.map(|c| c.to_device(Device::Cpu)).transpose()?;
        Ok(batch)
    }

    /// Inpaints `images` [N, C, S, S] in [−1, 1] where `masks` [N, 1, S, S] is 1, with the EMA
    /// weights (DDIM, `steps`), pasted into the kept region; images in [−1, 1] on the host.
    pub fn sample_inpainting(&self, images: &Tensor, masks: &Tensor, steps: usize, seed: u64) -> Result<Tensor> {
        let condition = LdmCondition::Inpaint { image: images.affine(0.5, 0.5)?, mask: masks.clone() };
        self.generate_with_ema(condition, images.dim(0)?, 1.0, steps, seed)
    }

    /// `n` images for `condition` with the EMA weights (DDIM, `steps`, guidance `guidance`), the
    /// initial noise and the sampler's noise from `seed`; in [−1, 1] on the host.
    fn generate_with_ema(&self, condition: LdmCondition, n: usize, guidance: f64, steps: usize, seed: u64) -> Result<Tensor> {
        let req = LdmRequest { condition, guidance, sampler: SamplerOptions { kind: SamplerKind::Ddim, steps, eta: 0.0 } };
        self.with_ema(|m| {
            let shape = m.latent_shape(&req.condition, n, None)?;
            let x0 = Tensor::randn(&shape, 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(seed));
            m.generate(&req, &x0, &mut SeededNoise(rand::rngs::StdRng::seed_from_u64(seed.wrapping_add(1))), &mut || {})?.to_device(Device::Cpu)
        })
    }

    /// CompVis `scale_by_std`: 1 / std of the posterior samples of `batch` (drawn with the seed).
    pub fn measure_scale_factor(&mut self, batch: &LatentBatch) -> Result<f64> {
        let noise = batch.logvar.as_ref().map(|_| Tensor::randn(batch.mean.shape(), 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(self.cfg.seed ^ 0x5CA1E)));
        let z = sample_posterior(batch, noise.as_ref())?.to_vec_f64()?;
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (z.len().max(2) - 1) as f64;
        if !(var > 0.0 && var.is_finite()) {
            return Err(Error::invalid("train", format!("the training latents have variance {var}: cannot set the scale factor (is the autoencoder trained?)")));
        }
        self.model.scale_factor = 1.0 / var.sqrt();
        self.scale_known = true;
        Ok(self.model.scale_factor)
    }

    /// The draws of the current step for a batch of `b` latents shaped `shape`.
    pub fn draws(&self, shape: &[usize], kl: bool) -> StepDraws {
        let seed = self.cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(self.step);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let b = shape[0];
        let t = (0..b).map(|_| rng.random_range(0..self.cfg.timesteps)).collect();
        let drop_prob = match self.cfg.cond {
            LdmCond::Class { drop_prob, .. } | LdmCond::Text { drop_prob, .. } => drop_prob,
            LdmCond::Unconditional | LdmCond::LowRes | LdmCond::Inpaint => 0.0,
        };
        let drop = (0..b).map(|_| rng.random::<f64>() < drop_prob).collect();
        let eps = Tensor::randn(shape, 0.0, 1.0, DType::F32, &mut rng);
        let posterior = kl.then(|| Tensor::randn(shape, 0.0, 1.0, DType::F32, &mut rng));
        StepDraws { t, eps, posterior, drop }
    }

    /// The loss of `batch` with `draws`, recorded for backward (no update).
    pub fn loss(&self, batch: &LatentBatch, d: &StepDraws) -> Result<Tensor> {
        let z = sample_posterior(batch, d.posterior.as_ref())?.mul_scalar(self.model.scale_factor)?;
        let b = z.dim(0)?;
        if d.t.len() != b || d.drop.len() != b || d.eps.shape() != z.shape() {
            return Err(Error::bad_shape("train", format!("the step's draws must match the batch of {b}"), d.eps.shape()));
        }
        // The batch lives on the host; the step runs on the model's device.
        let dev = self.device;
        let (z, eps) = (z.to_device(dev)?, d.eps.to_device(dev)?);
        let coef = |f: &dyn Fn(f64) -> f64| -> Vec<f32> { d.t.iter().map(|&t| f(self.alphas_cumprod[t]) as f32).collect() };
        let (a, s) = (coef(&|ac| ac.sqrt()), coef(&|ac| (1.0 - ac).sqrt()));
        // x_t = √ᾱ·z + √(1−ᾱ)·ε in one pass (the same rounding as the two products and the sum)
        let x_t = crate::tensor::fused::q_sample(&z, &eps, &a, &s)?;
        let target = match self.cfg.objective {
            Objective::Eps => eps.clone(),
            Objective::V => {
                let col = |v: &[f32]| Tensor::from_vec(v.to_vec(), &[b, 1, 1, 1])?.to_device(dev);
                eps.mul(&col(&a)?)?.sub(&z.mul(&col(&s)?)?)?
            }
        };
        let context = match (&self.model.cond_stage, &batch.labels) {
            (CondStage::None, _) => None,
            (CondStage::Class(emb), Some(labels)) => {
                let null = emb.num_classes() as i64 - 1;
                let labels = labels.to_vec::<i64>()?;
                if let Some(bad) = labels.iter().find(|&&l| l < 0 || l >= null) {
                    return Err(Error::invalid("train", format!("class label {bad} is outside the config's 0..{null} (cond.n_classes)")));
                }
                let labels: Vec<i64> = labels.into_iter().zip(&d.drop).map(|(l, &drop)| if drop { null } else { l }).collect();
                Some(emb.forward(&Tensor::from_vec(labels, &[b])?)?)
            }
            (CondStage::Class(_), None) => return Err(Error::invalid("train", "a class-conditional model needs labelled data (mnist, fashion-mnist)")),
            (CondStage::LowRes | CondStage::MaskedImage, _) => None,
            (CondStage::Text { bert, tokenizer: Some(tok) }, _) => {
                let ids = batch.tokens.as_ref().ok_or_else(|| Error::invalid("train", "a text model needs each batch's caption ids"))?;
                let len = bert.config().max_positions;
                if ids.shape() != [b, len] {
                    return Err(Error::bad_shape("train", format!("caption ids must be [{b}, {len}]"), ids.shape()));
                }
                // a dropped caption becomes the empty prompt, as at sampling time
                let empty: Vec<i64> = tok.encode_padded("", len)?.0.into_iter().map(i64::from).collect();
                let mut v = ids.to_vec::<i64>()?;
                for row in (0..b).filter(|&r| d.drop[r]) {
                    v[row * len..(row + 1) * len].copy_from_slice(&empty);
                }
                Some(bert.forward(&Tensor::from_vec(v, &[b, len])?)?)
            }
            (other, _) => return Err(Error::invalid("train", format!("training a model that takes {} is not supported", other.expects()))),
        };
        let x_in = match (&self.model.cond_stage, &batch.concat) {
            (CondStage::LowRes, Some(lr)) => Tensor::cat(&[&x_t, &lr.to_device(dev)?], 1)?,
            (CondStage::LowRes, None) => return Err(Error::invalid("train", "a super-resolution model needs each batch's low-res image")),
            (CondStage::MaskedImage, Some(c)) => Tensor::cat(&[&x_t, &c.to_device(dev)?], 1)?,
            (CondStage::MaskedImage, None) => return Err(Error::invalid("train", "an inpainting model needs each batch's masked-image latents and mask (encode_inpainting)")),
            _ => x_t,
        };
        // the timesteps stay on the host: the UNet reads them there for its sinusoidal embedding
        let t = Tensor::from_vec(d.t.iter().map(|&t| t as f32).collect(), &[b])?;
        // bf16 mixed precision: the UNet runs in bf16 (its layers cast the f32 weights per call),
        // the loss is taken in f32.
        let out = self.model.unet.forward(&x_in.to_dtype(self.cfg.precision)?, &t, context.as_ref(), None)?.to_dtype(DType::F32)?;
        let diff = out.sub(&target)?;
        diff.mul(&diff)?.mean_all()
    }

    /// One optimisation step on `batch`.
    pub fn train_step(&mut self, batch: &LatentBatch) -> Result<LdmStepLog> {
        let draws = self.draws(batch.mean.shape(), batch.logvar.is_some());
        self.train_step_with(batch, &draws)
    }

    /// One step with given draws (what the parity test feeds from torch).
    pub fn train_step_with(&mut self, batch: &LatentBatch, draws: &StepDraws) -> Result<LdmStepLog> {
        if !self.scale_known {
            return Err(Error::invalid("train", "the scale factor is not set: measure it on the data first (measure_scale_factor)"));
        }
        let step = self.step;
        let lr = warmup_lr(self.cfg.lr, step, self.cfg.warmup_steps);
        let loss = self.loss(batch, draws)?;
        let value = loss.to_scalar()?;
        if !value.is_finite() {
            return Err(Error::invalid("train", format!("step {step}: the loss is {value} (diverged); the last checkpoint is kept — lower train.lr or set train.grad_clip")));
        }
        let grads = loss.backward()?;
        let (norm, coef) = clip_grad_norm(&grads, &self.params, self.cfg.grad_clip.unwrap_or(f64::INFINITY))?;
        if !norm.is_finite() {
            return Err(Error::invalid("train", format!("step {step}: the gradient norm is {norm} (diverged); the last checkpoint is kept — lower train.lr or set train.grad_clip")));
        }
        self.opt.step(&grads, lr, if self.cfg.grad_clip.is_some() { coef } else { 1.0 })?;
        if let Some(ema) = &mut self.ema {
            ema.update(&self.params)?;
        }
        self.step += 1;
        Ok(LdmStepLog { step, lr, loss: value, grad_norm: norm })
    }

    /// The gradients of one step's loss, by parameter name (for the parity test), no update.
    pub fn gradients(&self, batch: &LatentBatch, draws: &StepDraws) -> Result<(f64, Vec<(String, Tensor)>)> {
        let loss = self.loss(batch, draws)?;
        let grads = loss.backward()?;
        let named = self.params.iter().filter_map(|(n, p)| grads.get(p).map(|g| (n.clone(), g.clone()))).collect();
        Ok((loss.to_scalar()?, named))
    }

    /// Runs `f` with the EMA weights in the model (the trained ones without EMA).
    pub fn with_ema<R>(&self, f: impl FnOnce(&LatentDiffusion) -> Result<R>) -> Result<R> {
        match &self.ema {
            Some(ema) => ema.scope(&self.params, || f(&self.model)),
            None => f(&self.model),
        }
    }

    /// Samples with the EMA weights: one image per label (or `n` unconditional ones, or one per
    /// low-res image [N, C, h, w] in [−1, 1] for super-resolution models), DDIM with `steps`
    /// steps and guidance `scale` against the null class; images in [−1, 1].
    pub fn sample(&self, labels: Option<&[i64]>, lowres: Option<&Tensor>, n: usize, steps: usize, scale: f64, seed: u64) -> Result<Tensor> {
        self.sample_prompts(labels, lowres, None, n, steps, scale, seed)
    }

    /// `sample` for text models too: one image per prompt, guided against the empty prompt.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_prompts(&self, labels: Option<&[i64]>, lowres: Option<&Tensor>, prompts: Option<&[String]>, n: usize, steps: usize, scale: f64, seed: u64) -> Result<Tensor> {
        let (condition, n, guidance) = match (prompts, labels, lowres) {
            (Some(p), _, _) => (LdmCondition::Text(p.to_vec()), p.len(), scale),
            (None, Some(l), _) => (LdmCondition::Class(l.to_vec()), l.len(), scale),
            (None, None, Some(lr)) => (LdmCondition::LowRes(lr.affine(0.5, 0.5)?), lr.dim(0)?, 1.0),
            (None, None, None) => (LdmCondition::None, n, 1.0),
        };
        self.generate_with_ema(condition, n, guidance, steps, seed)
    }

    /// Writes weights, EMA, optimiser state, step, configs and scale factor, atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let empty = Vec::new();
        let ema = self.ema.as_ref().map_or(&empty[..], |e| e.shadow());
        let groups: [(&str, &[(String, Tensor)]); 3] = [("ldm", &self.params), ("ema", ema), ("first_stage", &self.first_stage_params)];
        let mut extra = vec![("config", self.cfg.to_json().to_string()), ("autoencoder_config", self.ae_cfg.to_json().to_string())];
        if let Some(e) = &self.ema {
            extra.push(("ema_updates", e.num_updates.to_string()));
        }
        if self.scale_known {
            extra.push(("scale_factor", format!("{:e}", self.model.scale_factor)));
        }
        let extra: Vec<(&str, String)> = extra.into_iter().collect();
        save_checkpoint(path, self.step, &groups, &[("ldm", &self.opt)], &extra)
    }

    /// The frozen first stage's weights (autoencoder names, no prefix).
    pub fn first_stage_params(&self) -> &[(String, Tensor)] {
        &self.first_stage_params
    }

    /// The EMA weights if kept, else the trained ones.
    pub fn inference_params(&self) -> &[(String, Tensor)] {
        self.ema.as_ref().map_or(&self.params, |e| e.shadow())
    }
}

/// z = mean + exp(logvar / 2)·n for KL latents (n given), the latents themselves for VQ.
fn sample_posterior(batch: &LatentBatch, noise: Option<&Tensor>) -> Result<Tensor> {
    match (&batch.logvar, noise) {
        (Some(lv), Some(n)) => batch.mean.add(&lv.mul_scalar(0.5)?.exp()?.mul(n)?),
        (Some(_), None) => Err(Error::invalid("train", "KL latents need the posterior sample's noise")),
        (None, _) => Ok(batch.mean.clone()),
    }
}

fn json_of(text: &str, path: &std::path::Path) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| Error::File { path: path.display().to_string(), msg: format!("its stored config is not JSON: {e}") })
}

/// The autoencoder config a `train autoencoder` checkpoint was saved with.
fn ae_config(ck: &Checkpoint, path: &std::path::Path) -> Result<AeTrainConfig> {
    let text = ck.metadata.get("config").ok_or_else(|| Error::File { path: path.display().to_string(), msg: "not a `train autoencoder` checkpoint (no config in its metadata)".into() })?;
    let v = json_of(text, path)?;
    if v.get("unet").is_some() {
        return Err(Error::File { path: path.display().to_string(), msg: "this is a stage-2 (ldm) checkpoint; --autoencoder wants a `train autoencoder` checkpoint".into() });
    }
    AeTrainConfig::from_json(&v)
}
