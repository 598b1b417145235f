//! Training a KL or VQ first stage the way CompVis' `AutoencoderKL` / `VQModel.training_step` run
//! under Lightning:
//! per batch, optimiser 0 updates the autoencoder on the generator loss (ae_loss.rs), then
//! optimiser 1 updates the PatchGAN on a fresh forward of the updated autoencoder. Both are
//! AdamW(β = 0.5, 0.9; CompVis uses Adam, which is AdamW with weight decay 0), with an optional
//! linear warm-up and global-norm gradient clipping.
//!
//! Reproducible by construction: every random draw (initial weights, posterior samples) comes
//! from a seed and the step number, so a run resumed from a checkpoint at step k takes exactly
//! the steps an uninterrupted run takes from k.

use serde_json::{json, Value};

use super::ae_loss::{discriminator_loss, generator_loss, LossConfig, Reconstruction, Regulariser};
use super::checkpoint::{save_checkpoint, Checkpoint};
use super::discriminator::{init_weights, Discriminator, DiscriminatorConfig};
use super::ldm_config::section;
use super::optim::{clip_grad_norm, warmup_lr, AdamW, AdamWConfig};
use crate::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use crate::models::vq::{VQModel, VectorQuantizer};
use crate::nn::VarBuilder;
use crate::{DType, Device, Error, Result, Tensor};

/// The regulariser of the first stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FirstStageKind {
    Kl,
    /// `n_embed` codes; β weighs the codebook term (taming's legacy convention, CompVis' default).
    /// `ema_decay`: the codebook follows moving averages of the encoder outputs (taming's
    /// EMAVectorQuantizer, `model.codebook_ema_decay`) and β weighs the commitment term alone.
    Vq { n_embed: usize, beta: f64, ema_decay: Option<f64> },
}

/// Everything a run is configured by (the JSON config file, see `from_json`).
#[derive(Clone, Debug, PartialEq)]
pub struct AeTrainConfig {
    pub kind: FirstStageKind,
    pub model: AutoencoderConfig,
    pub loss: LossConfig,
    pub disc: DiscriminatorConfig,
    /// the learning rate of both optimisers (CompVis: base_learning_rate × batch size)
    pub lr: f64,
    pub batch_size: usize,
    pub image_size: usize,
    pub steps: u64,
    pub warmup_steps: u64,
    /// clip each optimiser's gradients to this global L2 norm
    pub grad_clip: Option<f64>,
    pub save_every: u64,
    pub log_every: u64,
    pub image_every: u64,
    pub seed: u64,
    /// the autoencoder's compute dtype: F32, or BF16 mixed precision (f32 master weights,
    /// optimiser state, regulariser and losses; encoder and decoder activations in bf16)
    pub precision: DType,
}

fn field<'a>(v: &'a Value, section: &str, key: &str) -> Result<&'a Value> {
    v.get(section).and_then(|s| s.get(key)).ok_or_else(|| Error::invalid("config", format!("missing \"{section}.{key}\"")))
}

fn num(v: &Value, section: &str, key: &str) -> Result<f64> {
    field(v, section, key)?.as_f64().ok_or_else(|| Error::invalid("config", format!("\"{section}.{key}\" must be a number")))
}

fn uint(v: &Value, section: &str, key: &str) -> Result<u64> {
    field(v, section, key)?.as_u64().ok_or_else(|| Error::invalid("config", format!("\"{section}.{key}\" must be a non-negative integer")))
}

fn uints(v: &Value, section: &str, key: &str) -> Result<Vec<usize>> {
    let bad = || Error::invalid("config", format!("\"{section}.{key}\" must be a list of non-negative integers"));
    field(v, section, key)?.as_array().ok_or_else(bad)?.iter().map(|x| x.as_u64().map(|x| x as usize).ok_or_else(bad)).collect()
}

/// A value from `section` or its default.
fn or<T>(v: &Value, section: &str, key: &str, default: T, read: impl Fn(&Value, &str, &str) -> Result<T>) -> Result<T> {
    if v.get(section).and_then(|s| s.get(key)).is_some() { read(v, section, key) } else { Ok(default) }
}

impl AeTrainConfig {
    /// Reads the config JSON: `{"model": {...}, "loss": {...}, "disc": {...}, "train": {...}}`
    /// (the keys of `to_json`; everything but the model's shape has a default: CompVis' kl-f4/f8
    /// loss settings, taming's discriminator).
    pub fn from_json(v: &Value) -> Result<Self> {
        // a misspelt key would silently fall back to its default: refuse unknown ones
        let top = v.as_object().ok_or_else(|| Error::invalid("config", "the config must be a JSON object"))?;
        if let Some(k) = top.keys().find(|k| !["model", "loss", "disc", "train"].contains(&k.as_str())) {
            return Err(Error::invalid("config", format!("unknown section \"{k}\" (known: model, loss, disc, train)")));
        }
        let model_keys = ["kind", "in_channels", "ch", "ch_mult", "num_res_blocks", "attn_levels", "z_channels", "embed_dim", "groups", "mid_attn", "n_embed", "beta", "codebook_ema_decay"];
        let loss_keys = ["disc_start", "kl_weight", "codebook_weight", "disc_weight", "disc_factor", "perceptual_weight", "logvar_init"];
        let train_keys = ["lr", "batch_size", "image_size", "steps", "warmup_steps", "grad_clip", "save_every", "log_every", "image_every", "seed", "precision"];
        section(v, "model", &model_keys, true)?;
        section(v, "loss", &loss_keys, false)?;
        section(v, "disc", &["ndf", "n_layers"], false)?;
        section(v, "train", &train_keys, true)?;
        let d = LossConfig::default();
        let dd = DiscriminatorConfig::default();
        let model = AutoencoderConfig {
            in_channels: or(v, "model", "in_channels", 3, |v, s, k| uint(v, s, k).map(|x| x as usize))?,
            out_channels: or(v, "model", "in_channels", 3, |v, s, k| uint(v, s, k).map(|x| x as usize))?,
            ch: uint(v, "model", "ch")? as usize,
            ch_mult: uints(v, "model", "ch_mult")?,
            num_res_blocks: uint(v, "model", "num_res_blocks")? as usize,
            attn_levels: or(v, "model", "attn_levels", vec![], uints)?,
            z_channels: uint(v, "model", "z_channels")? as usize,
            embed_dim: uint(v, "model", "embed_dim")? as usize,
            groups: or(v, "model", "groups", 32, |v, s, k| uint(v, s, k).map(|x| x as usize))?,
            mid_attn: or(v, "model", "mid_attn", true, |v, s, k| field(v, s, k)?.as_bool().ok_or_else(|| Error::invalid("config", format!("\"{s}.{k}\" must be true or false"))))?,
        };
        if model.ch_mult.is_empty() || model.ch == 0 || model.groups == 0 || !model.ch.is_multiple_of(model.groups) {
            return Err(Error::invalid("config", format!("model: ch {} must be a positive multiple of groups {} and ch_mult non-empty", model.ch, model.groups)));
        }
        let loss = LossConfig {
            disc_start: or(v, "loss", "disc_start", d.disc_start, uint)?,
            kl_weight: or(v, "loss", "kl_weight", d.kl_weight, num)?,
            codebook_weight: or(v, "loss", "codebook_weight", d.codebook_weight, num)?,
            disc_weight: or(v, "loss", "disc_weight", d.disc_weight, num)?,
            disc_factor: or(v, "loss", "disc_factor", d.disc_factor, num)?,
            perceptual_weight: or(v, "loss", "perceptual_weight", d.perceptual_weight, num)?,
            logvar_init: or(v, "loss", "logvar_init", d.logvar_init, num)?,
        };
        let disc = DiscriminatorConfig {
            in_channels: model.out_channels,
            ndf: or(v, "disc", "ndf", dd.ndf as u64, uint)? as usize,
            n_layers: or(v, "disc", "n_layers", dd.n_layers as u64, uint)? as usize,
        };
        let kind = match or(v, "model", "kind", "kl".to_string(), |v, s, k| Ok(field(v, s, k)?.as_str().unwrap_or("").to_string()))?.as_str() {
            "kl" => FirstStageKind::Kl,
            "vq" => {
                let ema_decay = match v.get("model").and_then(|m| m.get("codebook_ema_decay")) {
                    None | Some(Value::Null) => None,
                    Some(_) => {
                        let d = num(v, "model", "codebook_ema_decay")?;
                        if !(0.0..1.0).contains(&d) {
                            return Err(Error::invalid("config", format!("model.codebook_ema_decay {d} must be in [0, 1)")));
                        }
                        Some(d)
                    }
                };
                FirstStageKind::Vq { n_embed: uint(v, "model", "n_embed")? as usize, beta: or(v, "model", "beta", 0.25, num)?, ema_decay }
            }
            other => return Err(Error::invalid("config", format!("model.kind {other:?}: expected \"kl\" or \"vq\""))),
        };
        let cfg = AeTrainConfig {
            kind,
            model,
            loss,
            disc,
            lr: num(v, "train", "lr")?,
            batch_size: uint(v, "train", "batch_size")? as usize,
            image_size: uint(v, "train", "image_size")? as usize,
            steps: uint(v, "train", "steps")?,
            warmup_steps: or(v, "train", "warmup_steps", 0, uint)?,
            grad_clip: if v.get("train").and_then(|t| t.get("grad_clip")).is_some_and(|x| !x.is_null()) { Some(num(v, "train", "grad_clip")?) } else { None },
            save_every: or(v, "train", "save_every", 500, uint)?.max(1),
            log_every: or(v, "train", "log_every", 10, uint)?.max(1),
            image_every: or(v, "train", "image_every", 500, uint)?.max(1),
            seed: or(v, "train", "seed", 0, uint)?,
            precision: match or(v, "train", "precision", "f32".to_string(), |v, s, k| Ok(field(v, s, k)?.as_str().unwrap_or("").to_string()))?.as_str() {
                "f32" => DType::F32,
                "bf16" => DType::BF16,
                other => return Err(Error::invalid("config", format!("train.precision {other:?}: expected \"f32\" or \"bf16\""))),
            },
        };
        let f = cfg.model.downsampling();
        if cfg.batch_size == 0 || cfg.image_size == 0 || !cfg.image_size.is_multiple_of(f) {
            return Err(Error::invalid("config", format!("train: batch_size must be ≥ 1 and image_size a positive multiple of {f} (the model's downsampling)")));
        }
        if !(cfg.lr > 0.0 && cfg.lr.is_finite()) {
            return Err(Error::invalid("config", format!("train.lr {} must be a positive number", cfg.lr)));
        }
        Ok(cfg)
    }

    pub fn to_json(&self) -> Value {
        let (m, l) = (&self.model, &self.loss);
        let mut model = json!({"kind": "kl", "in_channels": m.in_channels, "ch": m.ch, "ch_mult": m.ch_mult, "num_res_blocks": m.num_res_blocks,
                      "attn_levels": m.attn_levels, "z_channels": m.z_channels, "embed_dim": m.embed_dim, "groups": m.groups, "mid_attn": m.mid_attn});
        if let FirstStageKind::Vq { n_embed, beta, ema_decay } = self.kind {
            model["kind"] = json!("vq");
            model["n_embed"] = json!(n_embed);
            model["beta"] = json!(beta);
            if let Some(d) = ema_decay {
                model["codebook_ema_decay"] = json!(d);
            }
        }
        json!({
            "model": model,
            "loss": {"disc_start": l.disc_start, "kl_weight": l.kl_weight, "codebook_weight": l.codebook_weight, "disc_weight": l.disc_weight, "disc_factor": l.disc_factor,
                     "perceptual_weight": l.perceptual_weight, "logvar_init": l.logvar_init},
            "disc": {"ndf": self.disc.ndf, "n_layers": self.disc.n_layers},
            "train": {"lr": self.lr, "batch_size": self.batch_size, "image_size": self.image_size, "steps": self.steps,
                      "warmup_steps": self.warmup_steps, "grad_clip": self.grad_clip, "save_every": self.save_every,
                      "log_every": self.log_every, "image_every": self.image_every, "seed": self.seed,
                      "precision": if self.precision == DType::BF16 { "bf16" } else { "f32" }},
        })
    }
}

/// What one step did, as CompVis logs it (plus the gradient norms and the learning rate).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepLog {
    pub step: u64,
    pub lr: f64,
    pub total: f64,
    pub rec: f64,
    pub nll: f64,
    /// the KL term, or the VQ codebook loss
    pub reg: f64,
    pub g: f64,
    pub d_weight: f64,
    pub disc_factor: f64,
    pub disc_loss: f64,
    pub logits_real: f64,
    pub logits_fake: f64,
    pub grad_norm_ae: f64,
    pub grad_norm_disc: f64,
}

impl StepLog {
    pub const CSV_HEADER: &'static str = "step,lr,total,rec,nll,reg,g,d_weight,disc_factor,disc_loss,logits_real,logits_fake,grad_norm_ae,grad_norm_disc";

    /// The values after `step`, in the header's order.
    pub fn values(&self) -> [f64; 13] {
        [self.lr, self.total, self.rec, self.nll, self.reg, self.g, self.d_weight, self.disc_factor, self.disc_loss, self.logits_real, self.logits_fake, self.grad_norm_ae, self.grad_norm_disc]
    }

    pub fn csv_row(&self) -> String {
        super::csv_line(self.step, &self.values())
    }
}

/// A perceptual distance per image pair [N, 1, 1, 1] (LPIPS), differentiable in its inputs.
pub type Perceptual = Box<dyn Fn(&Tensor, &Tensor) -> Result<Tensor>>;

/// The model being trained.
pub enum FirstStageModel {
    Kl(AutoencoderKL),
    Vq(VQModel),
}

pub struct AeTrainer {
    /// where the weights live and the steps run
    pub device: Device,
    pub cfg: AeTrainConfig,
    pub ae: FirstStageModel,
    pub disc: Discriminator,
    ae_params: Vec<(String, Tensor)>,
    disc_params: Vec<(String, Tensor)>,
    opt_ae: AdamW,
    opt_disc: AdamW,
    /// steps taken so far
    pub step: u64,
    perceptual: Option<Perceptual>,
}

impl AeTrainer {
    /// Fresh weights: the autoencoder with torch's default inits, the discriminator with taming's.
    pub fn new(cfg: AeTrainConfig) -> Result<Self> {
        Self::new_on(cfg, Device::Cpu)
    }

    /// `new` with the weights, optimiser state and steps on `device` (made on the CPU from the
    /// seeded init, so a run starts the same anywhere).
    pub fn new_on(cfg: AeTrainConfig, device: Device) -> Result<Self> {
        let ae_vb = VarBuilder::seeded_init(DType::F32, cfg.seed).on_device(device);
        let ae = match cfg.kind {
            FirstStageKind::Kl => FirstStageModel::Kl(AutoencoderKL::new(&ae_vb, &cfg.model)?),
            FirstStageKind::Vq { n_embed, beta, ema_decay: None } => FirstStageModel::Vq(VQModel::new(&ae_vb, &cfg.model, n_embed, beta, true)?),
            FirstStageKind::Vq { n_embed, beta, ema_decay: Some(d) } => FirstStageModel::Vq(VQModel::new_ema(&ae_vb, &cfg.model, n_embed, beta, d)?),
        };
        let disc_vb = init_weights(cfg.seed.wrapping_add(1)).on_device(device);
        let disc = Discriminator::new(&disc_vb, cfg.disc)?;
        let adam = AdamWConfig { lr: cfg.lr, beta1: 0.5, beta2: 0.9, weight_decay: 0.0, ..AdamWConfig::default() };
        let (ae_params, disc_params) = (ae_vb.params(), disc_vb.params());
        // The EMA codebook updates itself: the optimiser trains everything else.
        let trained: Vec<(String, Tensor)> = ae_params
            .iter()
            .filter(|(n, _)| !matches!(cfg.kind, FirstStageKind::Vq { ema_decay: Some(_), .. }) || !VectorQuantizer::EMA_STATE.iter().any(|s| *n == format!("quantize.{s}")))
            .cloned()
            .collect();
        Ok(AeTrainer {
            device,
            opt_ae: AdamW::new(trained, adam)?,
            opt_disc: AdamW::new(disc_params.clone(), adam)?,
            ae_params,
            disc_params,
            ae,
            disc,
            step: 0,
            perceptual: None,
            cfg,
        })
    }

    /// Continues from a checkpoint written by `save` (with the config it was saved with).
    pub fn resume(path: &std::path::Path) -> Result<Self> {
        Self::resume_on(path, Device::Cpu)
    }

    /// `resume` onto `device` (checkpoints are device-free).
    pub fn resume_on(path: &std::path::Path, device: Device) -> Result<Self> {
        let ck = Checkpoint::load(path)?;
        let cfg_json = ck.metadata.get("config").ok_or_else(|| Error::File { path: path.display().to_string(), msg: "the checkpoint has no config".into() })?;
        let v: Value = serde_json::from_str(cfg_json).map_err(|e| Error::File { path: path.display().to_string(), msg: format!("its config is not JSON: {e}") })?;
        let mut t = AeTrainer::new_on(AeTrainConfig::from_json(&v)?, device)?;
        ck.restore_params("ae", &t.ae_params)?;
        ck.restore_params("disc", &t.disc_params)?;
        ck.restore_params("disc_buffers", &t.disc_buffers()?)?;
        ck.restore_optimiser("ae", &mut t.opt_ae)?;
        ck.restore_optimiser("disc", &mut t.opt_disc)?;
        t.step = ck.step;
        Ok(t)
    }

    /// The BatchNorm running statistics (num_batches_tracked is not needed to train on).
    fn disc_buffers(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.disc.buffers()?.into_iter().filter(|(n, _)| n.contains("running_")).collect())
    }

    /// Sets the perceptual term (LPIPS); without it the loss has none, whatever its weight.
    pub fn set_perceptual(&mut self, p: Perceptual) {
        self.perceptual = Some(p);
    }

    /// Writes weights, optimiser state, step and config, atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let buffers = self.disc_buffers()?;
        let groups: [(&str, &[(String, Tensor)]); 3] = [("ae", &self.ae_params), ("disc", &self.disc_params), ("disc_buffers", &buffers)];
        save_checkpoint(path, self.step, &groups, &[("ae", &self.opt_ae), ("disc", &self.opt_disc)], &[("config", self.cfg.to_json().to_string())])
    }

    /// The posterior sample's noise for `step` and pass `k` (0: autoencoder, 1: discriminator).
    fn noise(&self, like: &[usize], k: u64) -> Result<Tensor> {
        use rand::SeedableRng;
        let seed = self.cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(self.step.wrapping_mul(2).wrapping_add(k));
        Tensor::randn(like, 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(seed)).to_device(self.device)
    }

    /// The decoder's final conv weight (where the adaptive GAN weight is measured).
    fn last_layer(&self) -> &Tensor {
        match &self.ae {
            FirstStageModel::Kl(m) => m.decoder.last_layer(),
            FirstStageModel::Vq(m) => m.decoder.last_layer(),
        }
    }

    /// x → (x̂, the regulariser's input): for KL the posterior sampled with pass `k`'s noise, for
    /// VQ the quantiser's loss.
    /// Mixed precision: the encoder and decoder run in `train.precision` (their layers cast the
    /// f32 weights per call); the posterior, the quantiser and everything after the decoder in f32.
    fn forward(&self, x: &Tensor, k: u64) -> Result<(Tensor, Reg)> {
        let (low, f32) = (self.cfg.precision, DType::F32);
        let x = &x.to_dtype(low)?;
        match &self.ae {
            FirstStageModel::Kl(m) => {
                let post = m.encode(x)?;
                let post = crate::models::autoencoder::Posterior { mean: post.mean.to_dtype(f32)?, logvar: post.logvar.to_dtype(f32)? };
                let eps = self.noise(post.mean.shape(), k)?;
                let z = post.mean.add(&post.logvar.mul_scalar(0.5)?.exp()?.mul(&eps)?)?;
                Ok((m.decode(&z.to_dtype(low)?)?.to_dtype(f32)?, Reg::Kl(post)))
            }
            FirstStageModel::Vq(m) => {
                let h = m.encode(x)?.to_dtype(f32)?;
                let q = m.quantize.forward(&h)?;
                // taming updates the EMA codebook in every training forward — Lightning runs one
                // per optimiser, so twice a step, and so does this (no-op without EMA)
                m.quantize.ema_update(&h, &q.indices)?;
                Ok((m.decode_code(&q.z_q.to_dtype(low)?)?.to_dtype(f32)?, Reg::Vq(q.loss)))
            }
        }
    }

    /// One training step on a batch [B, C, S, S] in [−1, 1].
    pub fn train_step(&mut self, x: &Tensor) -> Result<StepLog> {
        // the batch comes from the host; the step runs where the weights are
        let x = &x.to_device(self.device)?;
        let step = self.step;
        let lr = warmup_lr(self.cfg.lr, step, self.cfg.warmup_steps);
        let clip = |grads: &crate::autograd::GradStore, params: &[(String, Tensor)]| -> Result<(f64, f32)> {
            match self.cfg.grad_clip {
                Some(max) => clip_grad_norm(grads, params, max),
                None => Ok((clip_grad_norm(grads, params, f64::INFINITY)?.0, 1.0)),
            }
        };
        // optimiser 0: the autoencoder
        let (xrec, reg) = self.forward(x, 0)?;
        let p = match (&self.perceptual, self.cfg.loss.perceptual_weight > 0.0) {
            (Some(f), true) => Some(f(x, &xrec)?),
            _ => None,
        };
        let reg = match &reg {
            Reg::Kl(post) => Regulariser::Kl(post),
            Reg::Vq(loss) => Regulariser::Vq(loss),
        };
        let r = Reconstruction { x, xrec: &xrec, reg, perceptual: p.as_ref() };
        let gl = generator_loss(&self.cfg.loss, &r, &self.disc, self.last_layer(), step)?;
        let total = gl.loss.to_scalar()?;
        if !total.is_finite() {
            return Err(Error::invalid("train", format!("step {step}: the autoencoder loss is {total} (diverged); lower train.lr or set train.grad_clip")));
        }
        let grads = gl.loss.backward()?;
        let (norm_ae, coef) = clip(&grads, &self.ae_params)?;
        self.opt_ae.step(&grads, lr, coef)?;
        drop(grads);
        // optimiser 1: the discriminator, on the updated autoencoder
        let (xrec, _) = {
            let _g = crate::no_grad();
            self.forward(x, 1)?
        };
        let (d_loss, logits_real, logits_fake) = discriminator_loss(&self.cfg.loss, x, &xrec, &self.disc, step)?;
        let grads = d_loss.backward()?;
        let (norm_d, coef) = clip(&grads, &self.disc_params)?;
        self.opt_disc.step(&grads, lr, coef)?;
        self.step += 1;
        Ok(StepLog {
            step,
            lr,
            total,
            rec: gl.rec,
            nll: gl.nll,
            reg: gl.reg,
            g: gl.g,
            d_weight: gl.d_weight,
            disc_factor: gl.disc_factor,
            disc_loss: d_loss.to_scalar()?,
            logits_real,
            logits_fake,
            grad_norm_ae: norm_ae,
            grad_norm_disc: norm_d,
        })
    }

    /// Reconstructions (KL: from the posterior mode; VQ: quantised), without recording a graph.
    /// (On the host, whatever the device.)
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        let _g = crate::no_grad();
        let x = &x.to_device(self.device)?;
        match &self.ae {
            FirstStageModel::Kl(m) => m.decode(m.encode(x)?.mode()),
            FirstStageModel::Vq(m) => m.decode(&m.encode(x)?),
        }?
        .to_device(Device::Cpu)
    }
}

/// What `forward` hands the loss besides the reconstruction.
enum Reg {
    Kl(crate::models::autoencoder::Posterior),
    Vq(Tensor),
}
