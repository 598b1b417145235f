//! An engine-trained latent diffusion model as one file a user samples from: a CompVis-style
//! single file (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*`, the
//! measured `scale_factor`) whose metadata carries the two training configs, so the loader knows
//! the shapes without a preset (format `ldm-engine-model-1`). The UNet and embedder weights are
//! the EMA ones when the run kept them.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::ae_trainer::{AeTrainConfig, FirstStageKind};
use super::ldm_config::{LdmCond, LdmTrainConfig, Objective};
use super::ldm_trainer::LdmTrainer;
use crate::diffusion::Prediction;
use crate::io::safetensors::SafeTensorsFile;
use crate::models::checkpoint::SingleFile;
use crate::models::presets::{CondStageConfig, ConditioningKey, DiffusionConfig, FirstStageConfig, LdmPreset};
use crate::pipelines::ldm::LatentDiffusion;
use crate::{DType, Error, Result, Tensor};

pub const MODEL_FORMAT: &str = "ldm-engine-model-1";

/// Writes the trainer's model (EMA weights if kept) to `path`, stored as `dtype` (F32, or F16 to
/// halve the file).
pub fn export_model(t: &LdmTrainer, path: &Path, dtype: DType) -> Result<()> {
    if !t.scale_known {
        return Err(Error::invalid("export", "the scale factor was never measured: train at least one step first"));
    }
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (n, p) in t.inference_params() {
        tensors.push((n.clone(), p.to_dtype(dtype)?));
    }
    for (n, p) in t.first_stage_params() {
        tensors.push((format!("first_stage_model.{n}"), p.to_dtype(dtype)?));
    }
    tensors.push(("scale_factor".into(), Tensor::from_vec(vec![t.model.scale_factor as f32], &[1])?));
    let meta: HashMap<String, String> = [
        ("format", MODEL_FORMAT.to_string()),
        ("config", t.cfg.to_json().to_string()),
        ("autoencoder_config", t.ae_cfg.to_json().to_string()),
        ("step", t.step.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    crate::io::safetensors::save(path, &refs, Some(meta))
}

/// An engine-trained model, everything in it as it was trained.
pub struct EngineModel {
    pub ldm: LatentDiffusion,
    pub config: LdmTrainConfig,
    pub autoencoder: AeTrainConfig,
    /// the training step it was exported at
    pub step: u64,
}

impl EngineModel {
    pub fn open(path: &Path, dtype: DType) -> Result<Self> {
        Self::from_single_file(&SingleFile::open(path)?, &path.display().to_string(), dtype)
    }

    /// A model held in memory (the embedded default); `label` names it in messages. Its weights
    /// go to `device`.
    pub fn from_bytes(label: &str, bytes: &[u8], dtype: DType, device: crate::Device) -> Result<Self> {
        Self::from_single_file(&SingleFile::from_file(SafeTensorsFile::from_bytes(label, bytes)?).on_device(device), label, dtype)
    }

    /// Whether a single file is one of ours (else it is a CompVis / SD checkpoint).
    pub fn is_engine_model(file: &SingleFile) -> bool {
        file.metadata().get("format").map(String::as_str) == Some(MODEL_FORMAT)
    }

    pub fn from_single_file(file: &SingleFile, label: &str, dtype: DType) -> Result<Self> {
        let bad = |msg: String| Error::File { path: label.to_string(), msg };
        if !Self::is_engine_model(file) {
            return Err(bad(format!("not an ldm-engine trained model (metadata format {:?}, expected {MODEL_FORMAT:?})", file.metadata().get("format"))));
        }
        let json = |k: &str| -> Result<Value> {
            let text = file.metadata().get(k).ok_or_else(|| bad(format!("no '{k}' in the metadata")))?;
            serde_json::from_str(text).map_err(|e| bad(format!("metadata '{k}' is not JSON: {e}")))
        };
        let autoencoder = AeTrainConfig::from_json(&json("autoencoder_config")?)?;
        let config = LdmTrainConfig::from_json(&json("config")?, autoencoder.model.embed_dim, autoencoder.model.in_channels)?;
        let preset = preset_of(&config, &autoencoder);
        let mut ldm = LatentDiffusion::from_single_file(file, &preset, dtype)?;
        if let LdmCond::Text { .. } = config.cond {
            // trained on the built-in bert-base-uncased vocabulary
            ldm = ldm.with_tokenizer(crate::models::bert_tokenizer::BertTokenizer::builtin()?)?;
        }
        if config.objective == Objective::V {
            ldm.scheduler.prediction = Prediction::VPrediction;
        }
        let step = file.metadata().get("step").and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok(EngineModel { ldm, config, autoencoder, step })
    }

    /// The class count of a class-conditional model (without the null class).
    pub fn num_classes(&self) -> Option<usize> {
        match self.config.cond {
            LdmCond::Class { n_classes, .. } => Some(n_classes),
            _ => None,
        }
    }
}

/// The shapes of a trained model as a preset the single-file loader reads.
pub fn preset_of(c: &LdmTrainConfig, ae: &AeTrainConfig) -> LdmPreset {
    let (cond_stage, key) = match c.cond {
        LdmCond::Unconditional => (CondStageConfig::None, ConditioningKey::None),
        LdmCond::Class { n_classes, embed_dim, .. } => (CondStageConfig::Class { n_classes: n_classes + 1, embed_dim }, ConditioningKey::CrossAttn),
        LdmCond::LowRes => (CondStageConfig::Identity, ConditioningKey::Concat),
        LdmCond::Inpaint => (CondStageConfig::FirstStage, ConditioningKey::Concat),
        LdmCond::Text { .. } => (CondStageConfig::Bert(c.cond.bert().expect("a text config")), ConditioningKey::CrossAttn),
    };
    let first_stage = match ae.kind {
        FirstStageKind::Kl => FirstStageConfig::Kl(ae.model.clone()),
        FirstStageKind::Vq { n_embed, .. } => FirstStageConfig::Vq { cfg: ae.model.clone(), n_embed },
    };
    LdmPreset {
        name: "engine-trained",
        unet: c.unet.clone(),
        first_stage,
        cond_stage,
        diffusion: DiffusionConfig {
            linear_start: c.linear_start,
            linear_end: c.linear_end,
            timesteps: c.timesteps,
            conditioning_key: key,
            image_size: ae.image_size / ae.model.downsampling(),
            channels: ae.model.embed_dim,
            scale_factor: c.scale_factor.unwrap_or(1.0),
        },
    }
}
