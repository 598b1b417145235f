//! The configuration of a stage-2 run (`ldm-engine train ldm --config FILE`): the UNet, what it is
//! conditioned on, the noise schedule and objective (CompVis `LatentDiffusion`: linear_start,
//! linear_end, timesteps, parameterization) and the optimisation settings.
//!
//! The file is checked before anything starts: an unknown key (a typo would otherwise silently
//! fall back to a default), a missing one, a wrong type or an impossible size is one line naming
//! the key.
//!
//! ```json
//! {"unet": {"model_channels": 64, "channel_mult": [1, 2, 2], "num_res_blocks": 2,
//!           "attention_levels": [1, 2], "num_head_channels": 32},
//!  "cond": {"kind": "class", "n_classes": 10, "embed_dim": 64, "drop_prob": 0.1},
//!  "diffusion": {"linear_start": 0.0015, "linear_end": 0.0195, "timesteps": 1000, "parameterization": "eps"},
//!  "train": {"lr": 2e-4, "batch_size": 64, "steps": 5000}}
//! ```

use serde_json::{json, Map, Value};

use crate::models::unet::UNetConfig;
use crate::{DType, Error, Result};

/// What the UNet is conditioned on while training.
#[derive(Clone, Debug, PartialEq)]
pub enum LdmCond {
    Unconditional,
    /// CompVis `ClassEmbedder` into cross-attention (cin256-v2): `n_classes` real classes plus a
    /// null class (the embedder's last row) that `drop_prob` of the labels are replaced by, so
    /// one model learns p(x|y) and p(x) for classifier-free guidance.
    Class { n_classes: usize, embed_dim: usize, drop_prob: f64 },
    /// Super-resolution by concatenation (CompVis bsr_sr, cond stage Identity): the training image
    /// averaged down to the latents' size (f×f area mean), in [−1, 1], concatenated to the UNet's
    /// input at every call. The UNet takes latent + image channels.
    LowRes,
    /// Inpainting by concatenation (CompVis inpainting_big, cond stage = the first stage): a
    /// random mask per image and step (1–3 rectangles), the masked image (1 − m)·x encoded by the
    /// frozen first stage and the mask (as 2m − 1, nearest to the latents' size) concatenated to
    /// the UNet's input. The UNet takes 2 × latent + 1 channels. Masks change every step, so the
    /// latents are encoded per batch (train.cache_latents false).
    Inpaint,
    /// Text by cross-attention, the paper's text-to-image recipe: captions → BERT WordPiece ids
    /// (the built-in bert-base-uncased vocabulary, padded to `max_len`) → the LDMBert transformer,
    /// trained jointly with the UNet; `drop_prob` of the captions become "" (the unconditional
    /// prompt classifier-free guidance uses).
    Text { d_model: usize, layers: usize, heads: usize, max_len: usize, drop_prob: f64 },
}

impl LdmCond {
    /// The transformer of a text model (x-transformers Encoder: head width d_model / heads,
    /// feed-forward 4·d_model).
    pub fn bert(&self) -> Option<crate::models::ldm_bert::LdmBertConfig> {
        match *self {
            LdmCond::Text { d_model, layers, heads, max_len, .. } => Some(crate::models::ldm_bert::LdmBertConfig {
                vocab: crate::models::bert_tokenizer::BERT_VOCAB_SIZE,
                max_positions: max_len,
                layers,
                ffn_dim: 4 * d_model,
                heads,
                head_dim: d_model / heads.max(1),
                d_model,
            }),
            _ => None,
        }
    }
}

/// The network's target (CompVis `parameterization`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// the noise ε
    Eps,
    /// v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022)
    V,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LdmTrainConfig {
    pub unet: UNetConfig,
    pub cond: LdmCond,
    pub linear_start: f64,
    pub linear_end: f64,
    pub timesteps: usize,
    pub objective: Objective,
    /// latents are multiplied by this; None: 1/std of the training latents, measured before the
    /// first step (CompVis `scale_by_std`) and stored in the checkpoint
    pub scale_factor: Option<f64>,
    pub lr: f64,
    pub batch_size: usize,
    pub steps: u64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub grad_clip: Option<f64>,
    /// CompVis LitEma decay (with its warm-up min(decay, (1+n)/(10+n))); None: no EMA weights
    pub ema_decay: Option<f64>,
    /// encode the whole dataset once (posterior mean and log-variance, to RUN_DIR/latents.safetensors)
    /// instead of running the encoder every step
    pub cache_latents: bool,
    /// hold out every k-th sample (index % k == k − 1) from training, e.g. for a classifier that
    /// judges the samples; 0 trains on everything
    pub holdout_every: usize,
    pub save_every: u64,
    pub log_every: u64,
    pub image_every: u64,
    pub seed: u64,
    /// the UNet's and conditioner's compute dtype: F32, or BF16 mixed precision (f32 master
    /// weights, optimiser state and loss; activations and the layers' math in bf16)
    pub precision: DType,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("config", msg.into())
}

/// The section's object, with every key checked against `known`.
pub(crate) fn section<'a>(v: &'a Value, name: &str, known: &[&str], required: bool) -> Result<Option<&'a Map<String, Value>>> {
    let Some(s) = v.get(name) else {
        return if required { Err(bad(format!("missing section \"{name}\""))) } else { Ok(None) };
    };
    let obj = s.as_object().ok_or_else(|| bad(format!("\"{name}\" must be an object")))?;
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(bad(format!("unknown key \"{name}.{k}\" (known: {})", known.join(", "))));
    }
    Ok(Some(obj))
}

struct Reader<'a> {
    name: &'a str,
    obj: Option<&'a Map<String, Value>>,
}

impl Reader<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.obj.and_then(|o| o.get(key)).filter(|x| !x.is_null())
    }
    fn missing(&self, key: &str) -> Error {
        bad(format!("missing \"{}.{key}\"", self.name))
    }
    fn num(&self, key: &str, default: Option<f64>) -> Result<f64> {
        match self.get(key) {
            Some(x) => x.as_f64().filter(|x| x.is_finite()).ok_or_else(|| bad(format!("\"{}.{key}\" must be a number, not {x}", self.name))),
            None => default.ok_or_else(|| self.missing(key)),
        }
    }
    fn opt_num(&self, key: &str) -> Result<Option<f64>> {
        self.get(key).map(|_| self.num(key, None)).transpose()
    }
    fn uint(&self, key: &str, default: Option<u64>) -> Result<u64> {
        match self.get(key) {
            Some(x) => x.as_u64().ok_or_else(|| bad(format!("\"{}.{key}\" must be a non-negative integer, not {x}", self.name))),
            None => default.ok_or_else(|| self.missing(key)),
        }
    }
    fn size(&self, key: &str, default: Option<usize>) -> Result<usize> {
        Ok(self.uint(key, default.map(|d| d as u64))? as usize)
    }
    fn sizes(&self, key: &str, default: Option<Vec<usize>>) -> Result<Vec<usize>> {
        let wrong = || bad(format!("\"{}.{key}\" must be a list of non-negative integers", self.name));
        match self.get(key) {
            Some(x) => x.as_array().ok_or_else(wrong)?.iter().map(|e| e.as_u64().map(|n| n as usize).ok_or_else(wrong)).collect(),
            None => default.ok_or_else(|| self.missing(key)),
        }
    }
    fn flag(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            Some(x) => x.as_bool().ok_or_else(|| bad(format!("\"{}.{key}\" must be true or false, not {x}", self.name))),
            None => Ok(default),
        }
    }
    fn text(&self, key: &str, default: &str) -> Result<String> {
        match self.get(key) {
            Some(x) => x.as_str().map(str::to_string).ok_or_else(|| bad(format!("\"{}.{key}\" must be a string, not {x}", self.name))),
            None => Ok(default.to_string()),
        }
    }
}

const UNET_KEYS: &[&str] = &[
    "in_channels", "out_channels", "model_channels", "channel_mult", "num_res_blocks", "attention_levels", "num_heads", "num_head_channels", "heads",
    "transformer_depth", "groups", "scale_shift", "resblock_updown", "conv_resample", "linear_proj",
];
const COND_KEYS: &[&str] = &["kind", "n_classes", "embed_dim", "drop_prob", "d_model", "layers", "heads", "max_len"];
const DIFFUSION_KEYS: &[&str] = &["linear_start", "linear_end", "timesteps", "parameterization", "scale_factor"];
const TRAIN_KEYS: &[&str] = &[
    "lr", "batch_size", "steps", "warmup_steps", "weight_decay", "grad_clip", "ema_decay", "cache_latents", "holdout_every", "save_every", "log_every",
    "image_every", "seed", "precision",
];

impl LdmTrainConfig {
    /// Reads and checks a config. `latent_channels` and `image_channels` are the autoencoder's
    /// (the UNet takes the latents, plus the image's channels when conditioned on a low-res image).
    pub fn from_json(v: &Value, latent_channels: usize, image_channels: usize) -> Result<Self> {
        let top = v.as_object().ok_or_else(|| bad("the config must be a JSON object"))?;
        if let Some(k) = top.keys().find(|k| !["unet", "cond", "diffusion", "train"].contains(&k.as_str())) {
            return Err(bad(format!("unknown section \"{k}\" (known: unet, cond, diffusion, train)")));
        }
        let u = Reader { name: "unet", obj: section(v, "unet", UNET_KEYS, true)? };
        let c = Reader { name: "cond", obj: section(v, "cond", COND_KEYS, false)? };
        let d = Reader { name: "diffusion", obj: section(v, "diffusion", DIFFUSION_KEYS, false)? };
        let t = Reader { name: "train", obj: section(v, "train", TRAIN_KEYS, true)? };

        let cond = match c.text("kind", "none")?.as_str() {
            "none" => LdmCond::Unconditional,
            "class" => {
                let drop_prob = c.num("drop_prob", Some(0.1))?;
                if !(0.0..1.0).contains(&drop_prob) {
                    return Err(bad(format!("\"cond.drop_prob\" {drop_prob} must be in [0, 1)")));
                }
                LdmCond::Class { n_classes: c.size("n_classes", None)?, embed_dim: c.size("embed_dim", None)?, drop_prob }
            }
            "lowres" => LdmCond::LowRes,
            "inpaint" => LdmCond::Inpaint,
            "text" => {
                let drop_prob = c.num("drop_prob", Some(0.1))?;
                if !(0.0..1.0).contains(&drop_prob) {
                    return Err(bad(format!("\"cond.drop_prob\" {drop_prob} must be in [0, 1)")));
                }
                let (d_model, heads) = (c.size("d_model", Some(128))?, c.size("heads", Some(4))?);
                if heads == 0 || d_model == 0 || !d_model.is_multiple_of(heads) {
                    return Err(bad(format!("cond: d_model {d_model} must be a positive multiple of heads {heads}")));
                }
                let max_len = c.size("max_len", Some(16))?;
                if max_len < 3 {
                    return Err(bad("\"cond.max_len\" must leave room for [CLS], a word and [SEP] (≥ 3)"));
                }
                LdmCond::Text { d_model, layers: c.size("layers", Some(2))?, heads, max_len, drop_prob }
            }
            other => return Err(bad(format!("\"cond.kind\" {other:?} is not one of \"none\", \"class\", \"lowres\", \"inpaint\", \"text\""))),
        };
        let mc = u.size("model_channels", None)?;
        let mult = u.sizes("channel_mult", None)?;
        let levels = mult.len();
        let given = ["num_heads", "num_head_channels", "heads"].iter().filter(|k| u.get(k).is_some()).count();
        if given > 1 {
            return Err(bad("give one of \"unet.num_heads\", \"unet.num_head_channels\" and \"unet.heads\" (per level)"));
        }
        let heads = match (u.get("num_heads"), u.get("heads")) {
            (Some(_), _) => vec![u.size("num_heads", None)?; levels],
            (_, Some(_)) => {
                let h = u.sizes("heads", None)?;
                if h.len() != levels {
                    return Err(bad(format!("\"unet.heads\" has {} entries for {levels} levels", h.len())));
                }
                h
            }
            (None, None) => {
                let w = u.size("num_head_channels", Some(32))?;
                if w == 0 {
                    return Err(bad("\"unet.num_head_channels\" must be positive"));
                }
                UNetConfig::heads_for_head_channels(mc, &mult, w)
            }
        };
        let (context_dim, spatial) = match &cond {
            LdmCond::Class { embed_dim, .. } => (*embed_dim, true),
            LdmCond::Text { d_model, .. } => (*d_model, true),
            LdmCond::Unconditional | LdmCond::LowRes | LdmCond::Inpaint => (0, false),
        };
        let concat = match cond {
            LdmCond::LowRes => image_channels,
            LdmCond::Inpaint => latent_channels + 1,
            _ => 0,
        };
        let unet = UNetConfig {
            in_channels: u.size("in_channels", Some(latent_channels + concat))?,
            out_channels: u.size("out_channels", Some(latent_channels))?,
            model_channels: mc,
            channel_mult: mult,
            num_res_blocks: u.size("num_res_blocks", Some(2))?,
            attention_levels: u.sizes("attention_levels", Some(vec![]))?,
            heads,
            spatial_transformer: spatial,
            transformer_depth: u.size("transformer_depth", Some(1))?,
            context_dim,
            linear_proj: u.flag("linear_proj", false)?,
            groups: u.size("groups", Some(32))?,
            num_classes: None,
            conv_resample: u.flag("conv_resample", true)?,
            scale_shift: u.flag("scale_shift", false)?,
            resblock_updown: u.flag("resblock_updown", false)?,
        };
        let objective = match d.text("parameterization", "eps")?.as_str() {
            "eps" => Objective::Eps,
            "v" => Objective::V,
            other => return Err(bad(format!("\"diffusion.parameterization\" {other:?} is not \"eps\" or \"v\""))),
        };
        let cfg = LdmTrainConfig {
            cond,
            linear_start: d.num("linear_start", Some(0.0015))?,
            linear_end: d.num("linear_end", Some(0.0195))?,
            timesteps: d.size("timesteps", Some(1000))?,
            objective,
            scale_factor: d.opt_num("scale_factor")?,
            lr: t.num("lr", None)?,
            batch_size: t.size("batch_size", None)?,
            steps: t.uint("steps", None)?,
            warmup_steps: t.uint("warmup_steps", Some(0))?,
            weight_decay: t.num("weight_decay", Some(0.01))?,
            grad_clip: t.opt_num("grad_clip")?,
            ema_decay: if t.get("ema_decay").is_some() { Some(t.num("ema_decay", None)?) } else { None },
            cache_latents: t.flag("cache_latents", true)?,
            holdout_every: t.size("holdout_every", Some(0))?,
            save_every: t.uint("save_every", Some(500))?.max(1),
            log_every: t.uint("log_every", Some(10))?.max(1),
            image_every: t.uint("image_every", Some(1000))?.max(1),
            seed: t.uint("seed", Some(0))?,
            precision: match t.text("precision", "f32")?.as_str() {
                "f32" => DType::F32,
                "bf16" => DType::BF16,
                other => return Err(bad(format!("\"train.precision\" {other:?} is not one of \"f32\", \"bf16\""))),
            },
            unet,
        };
        cfg.check(latent_channels, concat)?;
        Ok(cfg)
    }

    /// Sizes that cannot work, said before any weight is made.
    fn check(&self, latent_channels: usize, concat: usize) -> Result<()> {
        let u = &self.unet;
        if u.model_channels == 0 || u.channel_mult.is_empty() || u.channel_mult.contains(&0) || u.num_res_blocks == 0 {
            return Err(bad("unet: model_channels, num_res_blocks and every channel_mult entry must be positive, channel_mult non-empty"));
        }
        if let Some(&l) = u.attention_levels.iter().find(|&&l| l >= u.channel_mult.len()) {
            return Err(bad(format!("unet.attention_levels: level {l} does not exist (the UNet has {} levels)", u.channel_mult.len())));
        }
        for (level, m) in u.channel_mult.iter().enumerate() {
            let ch = m * u.model_channels;
            if u.groups == 0 || !ch.is_multiple_of(u.groups) {
                return Err(bad(format!("unet: level {level}'s {ch} channels do not split into {} groups", u.groups)));
            }
            if u.attention_levels.contains(&level) && (u.heads[level] == 0 || !ch.is_multiple_of(u.heads[level])) {
                return Err(bad(format!("unet: level {level}'s {ch} channels do not split into {} attention heads", u.heads[level])));
            }
        }
        if u.in_channels != latent_channels + concat || u.out_channels != latent_channels {
            let what = match self.cond {
                LdmCond::LowRes => format!(" (+ the low-res image's {concat})"),
                LdmCond::Inpaint => format!(" (+ the masked image's {} latent channels and the mask)", concat - 1),
                _ => String::new(),
            };
            return Err(bad(format!("unet: in/out channels {}/{} must be the autoencoder's {latent_channels} latent channels{what}", u.in_channels, u.out_channels)));
        }
        if let LdmCond::Class { n_classes, embed_dim, .. } = self.cond
            && (n_classes == 0 || embed_dim == 0)
        {
            return Err(bad("cond: n_classes and embed_dim must be positive"));
        }
        if !(0.0 < self.linear_start && self.linear_start < self.linear_end && self.linear_end < 1.0) || self.timesteps < 2 {
            return Err(bad(format!("diffusion: need 0 < linear_start {} < linear_end {} < 1 and timesteps ≥ 2", self.linear_start, self.linear_end)));
        }
        if self.scale_factor.is_some_and(|s| s <= 0.0) {
            return Err(bad("diffusion.scale_factor must be positive"));
        }
        if self.lr <= 0.0 || self.batch_size == 0 || self.steps == 0 {
            return Err(bad(format!("train: lr {}, batch_size {} and steps {} must be positive", self.lr, self.batch_size, self.steps)));
        }
        if self.ema_decay.is_some_and(|d| !(0.0..1.0).contains(&d)) {
            return Err(bad("train.ema_decay must be in [0, 1)"));
        }
        if self.cond == LdmCond::Inpaint && self.cache_latents {
            return Err(bad("cond.kind \"inpaint\" draws a new mask every step, so the masked image is encoded per batch: set train.cache_latents to false"));
        }
        if matches!(self.cond, LdmCond::Text { .. }) && !self.cache_latents {
            return Err(bad("cond.kind \"text\" trains from cached latents and captions: set train.cache_latents to true"));
        }
        if self.holdout_every == 1 {
            return Err(bad("train.holdout_every 1 would hold out every sample: use 0 (none) or ≥ 2"));
        }
        Ok(())
    }

    /// The config as `from_json` reads it (what a checkpoint stores).
    pub fn to_json(&self) -> Value {
        let u = &self.unet;
        let cond = match &self.cond {
            LdmCond::Unconditional => json!({"kind": "none"}),
            LdmCond::Class { n_classes, embed_dim, drop_prob } => json!({"kind": "class", "n_classes": n_classes, "embed_dim": embed_dim, "drop_prob": drop_prob}),
            LdmCond::LowRes => json!({"kind": "lowres"}),
            LdmCond::Inpaint => json!({"kind": "inpaint"}),
            LdmCond::Text { d_model, layers, heads, max_len, drop_prob } => json!({"kind": "text", "d_model": d_model, "layers": layers, "heads": heads, "max_len": max_len, "drop_prob": drop_prob}),
        };
        json!({
            "unet": {"in_channels": u.in_channels, "out_channels": u.out_channels, "model_channels": u.model_channels, "channel_mult": u.channel_mult,
                     "num_res_blocks": u.num_res_blocks, "attention_levels": u.attention_levels, "heads": u.heads,
                     "transformer_depth": u.transformer_depth, "groups": u.groups, "scale_shift": u.scale_shift, "resblock_updown": u.resblock_updown,
                     "conv_resample": u.conv_resample, "linear_proj": u.linear_proj},
            "cond": cond,
            "diffusion": {"linear_start": self.linear_start, "linear_end": self.linear_end, "timesteps": self.timesteps,
                          "parameterization": match self.objective { Objective::Eps => "eps", Objective::V => "v" }, "scale_factor": self.scale_factor},
            "train": {"lr": self.lr, "batch_size": self.batch_size, "steps": self.steps, "warmup_steps": self.warmup_steps, "weight_decay": self.weight_decay,
                      "grad_clip": self.grad_clip, "ema_decay": self.ema_decay, "cache_latents": self.cache_latents, "holdout_every": self.holdout_every,
                      "save_every": self.save_every, "log_every": self.log_every, "image_every": self.image_every, "seed": self.seed,
                      "precision": if self.precision == DType::BF16 { "bf16" } else { "f32" }},
        })
    }
}
