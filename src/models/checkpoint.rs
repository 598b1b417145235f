//! Loading the checkpoints people have: diffusers pipeline folders (model_index.json, one folder
//! per component with config.json and .safetensors weights, optionally a "fp16" variant or
//! sharded) and CompVis/SD single files (model.diffusion_model.*, first_stage_model.*,
//! cond_stage_model.transformer.*). Configs come from config.json for folders and from the caller
//! (a preset such as `UNetConfig::sd15()`) for single files, which carry none.

use super::autoencoder::{AutoencoderConfig, AutoencoderKL};
use super::clip::{ClipActivation, ClipTextConfig, ClipTextModel};
use super::embedders::{ClassEmbedder, SpatialRescaler};
use super::ldm_bert::{LdmBert, LdmBertConfig};
use super::unet::{UNet, UNetConfig};
use super::vq::VQModel;
use crate::io::name_map::{ldm_bert_to_compvis, unet_to_compvis, vae_fix_shape, vae_to_compvis, UNetLayout};
use crate::io::safetensors::SafeTensorsFile;
use crate::nn::VarBuilder;
use crate::{DType, Error, Result, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn err(path: &Path, msg: impl Into<String>) -> Error {
    Error::File { path: path.display().to_string(), msg: msg.into() }
}

fn read_json(p: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(p).map_err(|e| err(p, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| err(p, format!("invalid JSON: {e}")))
}

/// A diffusers pipeline folder.
pub struct DiffusersFolder {
    root: PathBuf,
    /// weight-file variant to prefer, e.g. "fp16" for `diffusion_pytorch_model.fp16.safetensors`
    pub variant: Option<String>,
    /// where the components' weights are put (and so where they run)
    device: crate::Device,
}

impl DiffusersFolder {
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let index = root.join("model_index.json");
        let text = std::fs::read_to_string(&index).map_err(|e| err(&index, format!("not a diffusers pipeline folder: {e}")))?;
        serde_json::from_str::<Value>(&text).map_err(|e| err(&index, format!("invalid JSON: {e}")))?;
        Ok(DiffusersFolder { root, variant: None, device: crate::Device::Cpu })
    }

    /// Components built from this folder put their weights on `device` (and so run there).
    pub fn on_device(self, device: crate::Device) -> Self {
        DiffusersFolder { device, ..self }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self, component: &str) -> Result<Value> {
        read_json(&self.root.join(component).join("config.json"))
    }

    /// The component's .safetensors files: the preferred variant if present, else the plain
    /// file; a sharded checkpoint's shards from its index.
    pub fn weight_files(&self, component: &str) -> Result<Vec<PathBuf>> {
        let dir = self.root.join(component);
        let mut tried = Vec::new();
        for stem in ["diffusion_pytorch_model", "model"] {
            let variants: Vec<String> = match &self.variant {
                Some(v) => vec![format!("{stem}.{v}.safetensors"), format!("{stem}.safetensors")],
                None => vec![format!("{stem}.safetensors")],
            };
            for name in variants {
                let single = dir.join(&name);
                if single.is_file() {
                    return Ok(vec![single]);
                }
                let index = dir.join(format!("{name}.index.json"));
                if index.is_file() {
                    let v = read_json(&index)?;
                    let map = v["weight_map"].as_object().ok_or_else(|| err(&index, "no weight_map"))?;
                    let mut shards: Vec<PathBuf> = map.values().filter_map(|s| s.as_str()).map(|s| dir.join(s)).collect();
                    shards.sort();
                    shards.dedup();
                    return Ok(shards);
                }
                tried.push(name);
            }
        }
        let bin = dir.join("diffusion_pytorch_model.bin").is_file() || dir.join("pytorch_model.bin").is_file();
        let hint = if bin { " (only PyTorch .bin weights are there: convert them to .safetensors first)" } else { "" };
        Err(err(&dir, format!("no weights found: tried {}{hint}", tried.join(", "))))
    }

    pub fn unet(&self, dtype: DType) -> Result<UNet> {
        let cfg = unet_config(&self.config("unet")?).map_err(|m| err(&self.root.join("unet/config.json"), m))?;
        let layout = UNetLayout { levels: cfg.channel_mult.len(), num_res_blocks: cfg.num_res_blocks, attention_levels: cfg.attention_levels.clone() };
        let vb = VarBuilder::from_safetensors_mapped(&self.weight_files("unet")?, dtype, |n| Some(unet_to_compvis(n, &layout)), None)?.on_device(self.device);
        let unet = UNet::new(&vb, &cfg)?;
        vb.finish(false)?;
        Ok(unet)
    }

    pub fn vae(&self, dtype: DType) -> Result<AutoencoderKL> {
        self.autoencoder_kl("vae", dtype)
    }

    /// A diffusers `AutoencoderKL` in folder `component` (`vae/` in SD pipelines; `vqvae/` in the
    /// paper's LDMTextToImagePipeline, whose first stage is KL despite the name).
    pub fn autoencoder_kl(&self, component: &str, dtype: DType) -> Result<AutoencoderKL> {
        let cfg = vae_config(&self.config(component)?).map_err(|m| err(&self.root.join(component).join("config.json"), m))?;
        let levels = cfg.ch_mult.len();
        let fix: crate::nn::Fixer = Box::new(vae_fix_shape);
        let vb = VarBuilder::from_safetensors_mapped(&self.weight_files(component)?, dtype, |n| Some(vae_to_compvis(n, levels)), Some(fix))?.on_device(self.device);
        let vae = AutoencoderKL::new(&vb, &cfg)?;
        vb.finish(false)?;
        Ok(vae)
    }

    /// `tokenizer/`: CLIP's BPE from vocab.json + merges.txt (or tokenizer.json).
    pub fn tokenizer(&self) -> Result<super::clip_tokenizer::ClipTokenizer> {
        super::clip_tokenizer::ClipTokenizer::from_dir(self.root.join("tokenizer"))
    }

    /// `scheduler/scheduler_config.json`.
    pub fn scheduler(&self) -> Result<crate::diffusion::SchedulerConfig> {
        let p = self.root.join("scheduler/scheduler_config.json");
        crate::diffusion::SchedulerConfig::from_diffusers(&read_json(&p)?).map_err(|m| err(&p, m))
    }

    /// The VQ first stage of the paper's diffusers pipelines (`vqvae/`, diffusers `VQModel`).
    pub fn vqvae(&self, dtype: DType) -> Result<VQModel> {
        let path = self.root.join("vqvae/config.json");
        let v = self.config("vqvae")?;
        let (cfg, n_embed) = vq_config(&v).map_err(|m| err(&path, m))?;
        let levels = cfg.ch_mult.len();
        let fix: crate::nn::Fixer = Box::new(vae_fix_shape);
        let vb = VarBuilder::from_safetensors_mapped(&self.weight_files("vqvae")?, dtype, |n| Some(vae_to_compvis(n, levels)), Some(fix))?.on_device(self.device);
        let vq = VQModel::new(&vb, &cfg, n_embed, 0.25, true)?;
        vb.finish(false)?;
        Ok(vq)
    }

    /// The paper's text model (`bert/`, diffusers `LDMBertModel`).
    pub fn ldm_bert(&self, dtype: DType) -> Result<LdmBert> {
        let cfg = ldm_bert_config(&self.config("bert")?).map_err(|m| err(&self.root.join("bert/config.json"), m))?;
        let vb = VarBuilder::from_safetensors_mapped(&self.weight_files("bert")?, dtype, |n| Some(ldm_bert_to_compvis(n)), None)?.on_device(self.device);
        let bert = LdmBert::new(&vb, &cfg)?;
        vb.finish(false)?;
        Ok(bert)
    }

    pub fn text_encoder(&self, dtype: DType) -> Result<ClipTextModel> {
        let cfg = clip_config(&self.config("text_encoder")?).map_err(|m| err(&self.root.join("text_encoder/config.json"), m))?;
        let vb = VarBuilder::from_safetensors_mapped(&self.weight_files("text_encoder")?, dtype, clip_key, None)?.on_device(self.device);
        let clip = ClipTextModel::new(&vb, &cfg)?;
        vb.finish(false)?;
        Ok(clip)
    }
}

/// transformers 4 writes `text_model.embeddings…`, transformers 5 `embeddings…`: one name.
/// `position_ids` is a buffer some files carry, not a parameter.
impl DiffusersFolder {
    /// Writes the folder's UNet, VAE and CLIP text encoder as one CompVis-style single file (the
    /// layout SD1.x .safetensors checkpoints ship in), tensors in their stored dtype. The VAE's
    /// attention projections stay Linear [C, C] (SingleFile::vae accepts both shapes).
    pub fn to_single_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let ucfg = unet_config(&self.config("unet")?).map_err(|m| err(&self.root.join("unet"), m))?;
        let layout = UNetLayout { levels: ucfg.channel_mult.len(), num_res_blocks: ucfg.num_res_blocks, attention_levels: ucfg.attention_levels.clone() };
        let vae_levels = vae_config(&self.config("vae")?).map_err(|m| err(&self.root.join("vae"), m))?.ch_mult.len();
        let mut all: Vec<(String, Tensor)> = Vec::new();
        let unet_name = |n: &str| Some(format!("model.diffusion_model.{}", unet_to_compvis(n, &layout)));
        let vae_name = |n: &str| Some(format!("first_stage_model.{}", vae_to_compvis(n, vae_levels)));
        let clip_name = |n: &str| clip_key(n).map(|k| format!("cond_stage_model.transformer.{k}"));
        // each component's tensor names → CompVis names (None: not stored)
        type Rename<'a> = &'a dyn Fn(&str) -> Option<String>;
        let components: [(&str, Rename); 3] = [("unet", &unet_name), ("vae", &vae_name), ("text_encoder", &clip_name)];
        for (component, rename) in components {
            for file in self.weight_files(component)? {
                let f = SafeTensorsFile::open(&file)?;
                for e in f.entries() {
                    if let Some(name) = rename(&e.name) {
                        all.push((name, f.get(&e.name)?));
                    }
                }
            }
        }
        let refs: Vec<(&str, &Tensor)> = all.iter().map(|(n, t)| (n.as_str(), t)).collect();
        crate::io::safetensors::save(path, &refs, None)
    }
}

fn clip_key(n: &str) -> Option<String> {
    if n.ends_with("position_ids") {
        None
    } else if n.starts_with("text_model.") {
        Some(n.to_string())
    } else {
        Some(format!("text_model.{n}"))
    }
}

fn usize_of(v: &Value, key: &str) -> std::result::Result<usize, String> {
    v[key].as_u64().map(|x| x as usize).ok_or_else(|| format!("'{key}' must be a non-negative integer, got {}", v[key]))
}

fn usize_list(v: &Value, key: &str) -> std::result::Result<Vec<usize>, String> {
    v[key].as_array().and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect()).ok_or_else(|| format!("'{key}' must be a list of integers, got {}", v[key]))
}

/// Fails on a set option the engine does not implement, rather than silently computing
/// something else.
fn reject(v: &Value, key: &str, allowed: &[Value]) -> std::result::Result<(), String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(x) if allowed.contains(x) => Ok(()),
        Some(x) => Err(format!("'{key}' = {x} is not supported")),
    }
}

/// diffusers `UNet2DConditionModel` config.json → the engine's config.
pub fn unet_config(v: &Value) -> std::result::Result<UNetConfig, String> {
    use serde_json::json;
    for (k, ok) in [
        ("resnet_time_scale_shift", vec![json!("default")]),
        ("class_embed_type", vec![]),
        ("addition_embed_type", vec![]),
        ("time_embedding_type", vec![json!("positional")]),
        ("act_fn", vec![json!("silu")]),
        ("mid_block_type", vec![json!("UNetMidBlock2DCrossAttn")]),
        ("flip_sin_to_cos", vec![json!(true)]),
        ("freq_shift", vec![json!(0)]),
        ("conv_in_kernel", vec![json!(3)]),
        ("conv_out_kernel", vec![json!(3)]),
        ("upcast_attention", vec![json!(false)]),
        ("only_cross_attention", vec![json!(false)]),
        ("dual_cross_attention", vec![json!(false)]),
        ("encoder_hid_dim", vec![]),
        ("time_cond_proj_dim", vec![]),
    ] {
        reject(v, k, &ok)?;
    }
    let blocks = usize_list(v, "block_out_channels")?;
    let mc = *blocks.first().ok_or("'block_out_channels' is empty")?;
    if mc == 0 || blocks.iter().any(|b| b % mc != 0) {
        return Err(format!("block_out_channels {blocks:?} are not multiples of the first"));
    }
    let down = v["down_block_types"].as_array().ok_or("'down_block_types' must be a list")?;
    let mut attention_levels = Vec::new();
    for (i, t) in down.iter().enumerate() {
        match t.as_str() {
            Some("CrossAttnDownBlock2D") => attention_levels.push(i),
            Some("DownBlock2D") => {}
            _ => return Err(format!("down block type {t} is not supported")),
        }
    }
    if down.len() != blocks.len() {
        return Err(format!("{} down blocks for {} block_out_channels", down.len(), blocks.len()));
    }
    // diffusers' legacy naming: `attention_head_dim` holds the head *count* unless
    // `num_attention_heads` is given
    let heads_v = if v["num_attention_heads"].is_null() { &v["attention_head_dim"] } else { &v["num_attention_heads"] };
    let heads: Vec<usize> = match heads_v {
        Value::Number(n) => vec![n.as_u64().ok_or("bad head count")? as usize; blocks.len()],
        Value::Array(_) => usize_list(v, if v["num_attention_heads"].is_null() { "attention_head_dim" } else { "num_attention_heads" })?,
        x => return Err(format!("attention heads {x} not understood")),
    };
    let depth = match &v["transformer_layers_per_block"] {
        Value::Null => 1,
        Value::Number(n) => n.as_u64().unwrap_or(1) as usize,
        x => return Err(format!("'transformer_layers_per_block' = {x}: per-level depths are not supported")),
    };
    Ok(UNetConfig {
        in_channels: usize_of(v, "in_channels")?,
        out_channels: usize_of(v, "out_channels")?,
        model_channels: mc,
        channel_mult: blocks.iter().map(|b| b / mc).collect(),
        num_res_blocks: usize_of(v, "layers_per_block")?,
        attention_levels,
        heads,
        transformer_depth: depth,
        context_dim: usize_of(v, "cross_attention_dim")?,
        linear_proj: v["use_linear_projection"].as_bool().unwrap_or(false),
        groups: v.get("norm_num_groups").and_then(Value::as_u64).unwrap_or(32) as usize,
        num_classes: v["num_class_embeds"].as_u64().map(|n| n as usize),
        conv_resample: true,
        spatial_transformer: true,
        scale_shift: false,
        resblock_updown: false,
    })
}

/// diffusers `AutoencoderKL` config.json → the engine's config.
pub fn vae_config(v: &Value) -> std::result::Result<AutoencoderConfig, String> {
    use serde_json::json;
    reject(v, "use_quant_conv", &[json!(true)])?;
    reject(v, "use_post_quant_conv", &[json!(true)])?;
    let blocks = usize_list(v, "block_out_channels")?;
    let ch = *blocks.first().ok_or("'block_out_channels' is empty")?;
    if ch == 0 || blocks.iter().any(|b| b % ch != 0) {
        return Err(format!("block_out_channels {blocks:?} are not multiples of the first"));
    }
    let latent = usize_of(v, "latent_channels")?;
    Ok(AutoencoderConfig {
        in_channels: usize_of(v, "in_channels")?,
        out_channels: usize_of(v, "out_channels")?,
        ch,
        ch_mult: blocks.iter().map(|b| b / ch).collect(),
        num_res_blocks: usize_of(v, "layers_per_block")?,
        attn_levels: vec![],
        z_channels: latent,
        embed_dim: latent,
        groups: v.get("norm_num_groups").and_then(Value::as_u64).unwrap_or(32) as usize,
        mid_attn: v["mid_block_add_attention"].as_bool().unwrap_or(true),
    })
}

/// diffusers `VQModel` config.json → the engine's config and the codebook size.
pub fn vq_config(v: &Value) -> std::result::Result<(AutoencoderConfig, usize), String> {
    use serde_json::json;
    reject(v, "norm_type", &[json!("group")])?;
    reject(v, "lookup_from_codebook", &[json!(false)])?;
    let mut cfg = vae_config(v)?;
    cfg.embed_dim = usize_of(v, "vq_embed_dim").or_else(|_| usize_of(v, "latent_channels"))?;
    Ok((cfg, usize_of(v, "num_vq_embeddings")?))
}

/// diffusers `LDMBertConfig` config.json → the engine's config.
pub fn ldm_bert_config(v: &Value) -> std::result::Result<LdmBertConfig, String> {
    use serde_json::json;
    reject(v, "activation_function", &[json!("gelu")])?;
    reject(v, "scale_embedding", &[json!(false)])?;
    Ok(LdmBertConfig {
        vocab: usize_of(v, "vocab_size")?,
        max_positions: usize_of(v, "max_position_embeddings")?,
        layers: usize_of(v, "encoder_layers")?,
        ffn_dim: usize_of(v, "encoder_ffn_dim")?,
        heads: usize_of(v, "encoder_attention_heads")?,
        head_dim: usize_of(v, "head_dim")?,
        d_model: usize_of(v, "d_model")?,
    })
}

/// transformers `CLIPTextConfig` config.json → the engine's config.
pub fn clip_config(v: &Value) -> std::result::Result<ClipTextConfig, String> {
    let activation = match v["hidden_act"].as_str() {
        Some("quick_gelu") => ClipActivation::QuickGelu,
        Some("gelu") => ClipActivation::Gelu,
        other => return Err(format!("hidden_act {other:?} is not supported (quick_gelu or gelu)")),
    };
    Ok(ClipTextConfig {
        vocab: usize_of(v, "vocab_size")?,
        width: usize_of(v, "hidden_size")?,
        intermediate: usize_of(v, "intermediate_size")?,
        layers: usize_of(v, "num_hidden_layers")?,
        heads: usize_of(v, "num_attention_heads")?,
        max_positions: usize_of(v, "max_position_embeddings")?,
        activation,
    })
}

/// The components of a CompVis single-file checkpoint (a `LatentDiffusion` state dict), each
/// under its prefix: `model.diffusion_model.` (UNet), `first_stage_model.` (KL or VQ
/// autoencoder), `cond_stage_model.` (CLIP, LDMBert, class embedder or spatial rescaler).
pub struct SingleFile {
    /// opened once; each component's builder shares the map
    file: SafeTensorsFile,
    /// where the components' weights are placed as they are built
    device: crate::Device,
}

impl SingleFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(SingleFile { file: SafeTensorsFile::open(path)?, device: crate::Device::Cpu })
    }

    /// An already opened file (e.g. one held in memory).
    pub fn from_file(file: SafeTensorsFile) -> Self {
        SingleFile { file, device: crate::Device::Cpu }
    }

    /// Components built from this file put their weights on `device` (and so run there).
    pub fn on_device(self, device: crate::Device) -> Self {
        SingleFile { device, ..self }
    }

    /// The file's `__metadata__`.
    pub fn metadata(&self) -> &std::collections::HashMap<String, String> {
        self.file.metadata()
    }

    /// The shape of a stored tensor, if there is one by that name.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.file.entries().iter().find(|e| e.name == name).map(|e| e.shape.as_slice())
    }

    /// Whether any tensor name starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.file.entries().iter().any(|e| e.name.starts_with(prefix))
    }

    /// A Stable Diffusion v1 checkpoint: a CLIP text model as its conditioner.
    pub fn is_sd_v1(&self) -> bool {
        self.has_prefix("cond_stage_model.transformer.text_model.")
    }

    fn builder(&self, prefix: &'static str, dtype: DType, fix: Option<crate::nn::Fixer>) -> Result<VarBuilder> {
        let vb = VarBuilder::from_files_mapped(vec![self.file.clone()], dtype, move |n| n.strip_prefix(prefix).map(str::to_string), fix)?;
        Ok(vb.on_device(self.device).with_file_prefix(prefix))
    }

    pub fn unet(&self, cfg: &UNetConfig, dtype: DType) -> Result<UNet> {
        let vb = self.builder("model.diffusion_model.", dtype, None)?;
        let unet = UNet::new(&vb, cfg)?;
        vb.finish(false)?;
        Ok(unet)
    }

    pub fn vae(&self, cfg: &AutoencoderConfig, dtype: DType) -> Result<AutoencoderKL> {
        // some converters store the VAE attention projections as Linear [C, C]
        let fix: crate::nn::Fixer = Box::new(vae_fix_shape);
        let vb = self.builder("first_stage_model.", dtype, Some(fix))?;
        let vae = AutoencoderKL::new(&vb, cfg)?;
        vb.finish(false)?;
        Ok(vae)
    }

    pub fn vq(&self, cfg: &AutoencoderConfig, n_embed: usize, dtype: DType) -> Result<VQModel> {
        let vb = self.builder("first_stage_model.", dtype, None)?;
        // β only shapes the training loss; 0.25 with the legacy convention is CompVis' default
        let vq = VQModel::new(&vb, cfg, n_embed, 0.25, true)?;
        vb.finish(false)?;
        Ok(vq)
    }

    /// The paper's text (or layout) transformer, `cond_stage_model.transformer.*`.
    pub fn ldm_bert(&self, cfg: &LdmBertConfig, dtype: DType) -> Result<LdmBert> {
        let vb = self.builder("cond_stage_model.transformer.", dtype, None)?;
        let bert = LdmBert::new(&vb, cfg)?;
        vb.finish(false)?;
        Ok(bert)
    }

    pub fn class_embedder(&self, n_classes: usize, embed_dim: usize, dtype: DType) -> Result<ClassEmbedder> {
        let vb = self.builder("cond_stage_model.", dtype, None)?;
        let emb = ClassEmbedder::new(&vb, n_classes, embed_dim)?;
        vb.finish(false)?;
        Ok(emb)
    }

    pub fn spatial_rescaler(&self, n_stages: usize, in_channels: usize, out_channels: Option<usize>, dtype: DType) -> Result<SpatialRescaler> {
        let vb = self.builder("cond_stage_model.", dtype, None)?;
        let r = SpatialRescaler::new(&vb, n_stages, in_channels, out_channels)?;
        vb.finish(false)?;
        Ok(r)
    }

    /// The latent scale factor a `scale_by_std` model measured and stored as a buffer, if any.
    pub fn scale_factor(&self) -> Result<Option<f64>> {
        if !self.file.entries().iter().any(|e| e.name == "scale_factor") {
            return Ok(None);
        }
        let t = self.file.get("scale_factor")?;
        if t.numel() != 1 {
            return Err(Error::Weights(format!("'scale_factor' has shape {:?}, expected a scalar", t.shape())));
        }
        Ok(Some(t.to_scalar()?))
    }

    pub fn text_encoder(&self, cfg: &ClipTextConfig, dtype: DType) -> Result<ClipTextModel> {
        let vb = VarBuilder::from_files_mapped(vec![self.file.clone()], dtype, |n| n.strip_prefix("cond_stage_model.transformer.").and_then(clip_key), None)?
            .on_device(self.device)
            .with_file_prefix("cond_stage_model.transformer.");
        let clip = ClipTextModel::new(&vb, cfg)?;
        vb.finish(false)?;
        Ok(clip)
    }
}
