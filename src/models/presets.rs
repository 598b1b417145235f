//! The paper's released models as code (CompVis latent-diffusion models/ldm/*/config.yaml,
//! configs/latent-diffusion/{cin256-v2,txt2img-1p4B-eval}.yaml; Rombach et al. 2022, Tab. 12–15)
//! plus Stable Diffusion v1, and readers for CompVis config blocks (`unet_config.params`,
//! `first_stage_config.params`, `cond_stage_config`) given as JSON.
//!
//! tests/model_configs.rs checks every preset against tools/paper_configs.py, which transcribes
//! the same YAMLs and counts parameters with the CompVis classes.

use serde_json::Value;

use super::autoencoder::AutoencoderConfig;
use super::clip::ClipTextConfig;
use super::layout::LayoutConfig;
use super::ldm_bert::LdmBertConfig;
use super::unet::UNetConfig;
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub enum FirstStageConfig {
    Kl(AutoencoderConfig),
    Vq { cfg: AutoencoderConfig, n_embed: usize },
}

/// What turns the conditioning input into the UNet's context or extra channels.
#[derive(Clone, Debug, PartialEq)]
pub enum CondStageConfig {
    /// unconditional models
    None,
    Class { n_classes: usize, embed_dim: usize },
    /// the paper's BERT-tokenizer transformer over WordPiece ids (text)
    Bert(LdmBertConfig),
    /// the same transformer over the ids of `layout::LayoutTokenizer` (bounding boxes)
    Layout { bert: LdmBertConfig, layout: LayoutConfig },
    Clip(ClipTextConfig),
    /// the conditioning image goes through the first stage (inpainting's masked image)
    FirstStage,
    /// the conditioning image is used as is (super-resolution's low-res image)
    Identity,
    /// segmentation maps resized and remapped (semantic synthesis)
    Rescaler { n_stages: usize, in_channels: usize, out_channels: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditioningKey {
    None,
    CrossAttn,
    Concat,
}

/// The `LatentDiffusion` settings next to the networks.
#[derive(Clone, Debug, PartialEq)]
pub struct DiffusionConfig {
    pub linear_start: f64,
    pub linear_end: f64,
    pub timesteps: usize,
    pub conditioning_key: ConditioningKey,
    /// latent side length and channels at the training resolution
    pub image_size: usize,
    pub channels: usize,
    /// latents are multiplied by this before diffusion (`scale_by_std` models store a measured one
    /// in the checkpoint)
    pub scale_factor: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LdmPreset {
    pub name: &'static str,
    pub unet: UNetConfig,
    pub first_stage: FirstStageConfig,
    pub cond_stage: CondStageConfig,
    pub diffusion: DiffusionConfig,
}

/// A CompVis UNet as its YAML writes it: `attention_resolutions` are downsampling factors.
#[allow(clippy::too_many_arguments)]
fn unet(mc: usize, mult: &[usize], attn_ds: &[usize], cin: usize, cout: usize, heads: Heads, ctx: Option<(usize, usize)>, scale_shift: bool, updown: bool) -> UNetConfig {
    let attention_levels = (0..mult.len()).filter(|l| attn_ds.contains(&(1 << l))).collect();
    let heads = match heads {
        Heads::Count(n) => vec![n; mult.len()],
        Heads::Width(w) => UNetConfig::heads_for_head_channels(mc, mult, w),
    };
    UNetConfig {
        in_channels: cin,
        out_channels: cout,
        model_channels: mc,
        channel_mult: mult.to_vec(),
        num_res_blocks: 2,
        attention_levels,
        heads,
        spatial_transformer: ctx.is_some(),
        transformer_depth: ctx.map_or(1, |c| c.1),
        context_dim: ctx.map_or(0, |c| c.0),
        linear_proj: false,
        groups: 32,
        num_classes: None,
        conv_resample: true,
        scale_shift,
        resblock_updown: updown,
    }
}

#[derive(Clone, Copy)]
enum Heads {
    Count(usize),
    Width(usize),
}

fn vq_f4(attention: bool) -> FirstStageConfig {
    let cfg = AutoencoderConfig { in_channels: 3, out_channels: 3, ch: 128, ch_mult: vec![1, 2, 4], num_res_blocks: 2, attn_levels: vec![], z_channels: 3, embed_dim: 3, groups: 32, mid_attn: attention };
    FirstStageConfig::Vq { cfg, n_embed: 8192 }
}

fn vq_f8() -> FirstStageConfig {
    // attn_resolutions [32] at resolution 256: the level at 1/8, the last of four
    let cfg = AutoencoderConfig { in_channels: 3, out_channels: 3, ch: 128, ch_mult: vec![1, 2, 2, 4], num_res_blocks: 2, attn_levels: vec![3], z_channels: 4, embed_dim: 4, groups: 32, mid_attn: true };
    FirstStageConfig::Vq { cfg, n_embed: 16384 }
}

fn diffusion(linear_start: f64, linear_end: f64, key: ConditioningKey, image_size: usize, channels: usize, scale_factor: f64) -> DiffusionConfig {
    DiffusionConfig { linear_start, linear_end, timesteps: 1000, conditioning_key: key, image_size, channels, scale_factor }
}

fn bert(d: usize, layers: usize, vocab: usize, max_positions: usize) -> CondStageConfig {
    // x-transformers Encoder defaults: 8 heads of 64, feed-forward 4·dim
    CondStageConfig::Bert(LdmBertConfig { vocab, max_positions, layers, ffn_dim: 4 * d, heads: 8, head_dim: 64, d_model: d })
}

/// Every released paper model plus SD v1.x, by the name of its CompVis config directory.
pub fn paper_presets() -> Vec<LdmPreset> {
    use ConditioningKey::{Concat, CrossAttn, None as NoKey};
    use Heads::{Count, Width};
    let uncond_vq4 = unet(224, &[1, 2, 3, 4], &[8, 4, 2], 3, 3, Width(32), None, false, false);
    let kl_f8 = FirstStageConfig::Kl(AutoencoderConfig::sd_kl_f8());
    let face = |name| LdmPreset { name, unet: uncond_vq4.clone(), first_stage: vq_f4(true), cond_stage: CondStageConfig::None, diffusion: diffusion(0.0015, 0.0195, NoKey, 64, 3, 1.0) };
    let mut cin = unet(256, &[1, 2, 4], &[4, 2, 1], 4, 4, Width(32), Some((512, 1)), false, false);
    cin.num_classes = None; // the label goes through the ClassEmbedder into cross-attention
    vec![
        face("celeba256"),
        face("ffhq256"),
        face("lsun_beds256"),
        LdmPreset {
            name: "lsun_churches256",
            unet: unet(192, &[1, 2, 2, 4, 4], &[1, 2, 4, 8], 4, 4, Count(8), None, true, true),
            first_stage: kl_f8.clone(),
            cond_stage: CondStageConfig::None,
            diffusion: diffusion(0.0015, 0.0155, NoKey, 32, 4, 1.0),
        },
        LdmPreset { name: "cin256", unet: cin, first_stage: vq_f8(), cond_stage: CondStageConfig::Class { n_classes: 1000, embed_dim: 512 }, diffusion: diffusion(0.0015, 0.0195, CrossAttn, 32, 4, 1.0) },
        LdmPreset {
            name: "cin256_v2",
            unet: unet(192, &[1, 2, 3, 5], &[8, 4, 2], 3, 3, Count(1), Some((512, 1)), false, false),
            first_stage: vq_f4(true),
            cond_stage: CondStageConfig::Class { n_classes: 1001, embed_dim: 512 },
            diffusion: diffusion(0.0015, 0.0195, CrossAttn, 64, 3, 1.0),
        },
        LdmPreset {
            name: "text2img256",
            unet: unet(192, &[1, 2, 3, 5], &[8, 4, 2], 3, 3, Width(32), Some((640, 1)), false, false),
            first_stage: vq_f4(true),
            cond_stage: bert(640, 32, 30522, 77),
            diffusion: diffusion(0.0015, 0.0195, CrossAttn, 64, 3, 1.0),
        },
        LdmPreset {
            name: "txt2img_1p4b",
            unet: unet(320, &[1, 2, 4, 4], &[4, 2, 1], 4, 4, Count(8), Some((1280, 1)), false, false),
            first_stage: kl_f8.clone(),
            cond_stage: CondStageConfig::Bert(LdmBertConfig::text2img_large()),
            diffusion: diffusion(0.00085, 0.012, CrossAttn, 32, 4, 0.18215),
        },
        LdmPreset {
            name: "inpainting_big",
            unet: unet(256, &[1, 2, 3, 4], &[8, 4, 2], 7, 3, Count(8), None, false, true),
            first_stage: vq_f4(false),
            cond_stage: CondStageConfig::FirstStage,
            diffusion: diffusion(0.0015, 0.0205, Concat, 64, 3, 1.0),
        },
        LdmPreset {
            name: "bsr_sr",
            unet: unet(160, &[1, 2, 2, 4], &[16, 8], 6, 3, Width(32), None, false, false),
            first_stage: vq_f4(true),
            cond_stage: CondStageConfig::Identity,
            diffusion: diffusion(0.0015, 0.0155, Concat, 64, 3, 1.0),
        },
        LdmPreset {
            name: "semantic_synthesis256",
            unet: unet(128, &[1, 4, 8], &[32, 16, 8], 6, 3, Count(8), None, false, false),
            first_stage: vq_f4(true),
            cond_stage: CondStageConfig::Rescaler { n_stages: 2, in_channels: 182, out_channels: 3 },
            diffusion: diffusion(0.0015, 0.0205, Concat, 64, 3, 1.0),
        },
        LdmPreset {
            name: "layout2img_openimages256",
            unet: unet(128, &[1, 2, 3, 4], &[8, 4, 2], 3, 3, Width(32), Some((512, 3)), false, false),
            first_stage: vq_f4(true),
            cond_stage: CondStageConfig::Layout { bert: LdmBertConfig::layout2img_openimages256(), layout: LayoutConfig::layout2img_openimages256() },
            diffusion: diffusion(0.0015, 0.0205, CrossAttn, 64, 3, 1.0),
        },
        LdmPreset {
            name: "sd_v1",
            unet: UNetConfig::sd15(),
            first_stage: kl_f8,
            cond_stage: CondStageConfig::Clip(ClipTextConfig::sd15()),
            diffusion: diffusion(0.00085, 0.012, CrossAttn, 64, 4, 0.18215),
        },
    ]
}

/// A preset by name; an unknown name lists the known ones.
pub fn preset(name: &str) -> Result<LdmPreset> {
    let all = paper_presets();
    let names: Vec<&str> = all.iter().map(|p| p.name).collect();
    all.iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| Error::invalid("preset", format!("unknown model preset '{name}' (known: {})", names.join(", "))))
}

type Parse<T> = std::result::Result<T, String>;

fn get_usize(v: &Value, key: &str) -> Parse<usize> {
    v[key].as_u64().map(|n| n as usize).ok_or_else(|| format!("'{key}' is missing or not a count"))
}

fn opt_i64(v: &Value, key: &str, default: i64) -> Parse<i64> {
    match &v[key] {
        Value::Null => Ok(default),
        x => x.as_i64().ok_or_else(|| format!("'{key}' = {x} is not an integer")),
    }
}

fn usizes(v: &Value, key: &str) -> Parse<Vec<usize>> {
    match &v[key] {
        Value::Null => Ok(vec![]),
        Value::Array(a) => a.iter().map(|x| x.as_u64().map(|n| n as usize).ok_or_else(|| format!("'{key}' holds {x}"))).collect(),
        x => Err(format!("'{key}' = {x} is not a list")),
    }
}

fn flag(v: &Value, key: &str, default: bool) -> bool {
    v[key].as_bool().unwrap_or(default)
}

/// `unet_config.params` of a CompVis YAML (ldm openaimodel.UNetModel) → the engine's config.
pub fn unet_from_compvis(v: &Value) -> Parse<UNetConfig> {
    for unsupported in ["use_new_attention_order", "disable_middle_self_attn", "use_fp16"] {
        if flag(v, unsupported, false) {
            return Err(format!("'{unsupported}: true' is not supported"));
        }
    }
    for unsupported in ["num_attention_blocks", "disable_self_attentions", "n_embed"] {
        if !v[unsupported].is_null() {
            return Err(format!("'{unsupported}' is not supported"));
        }
    }
    if v["dims"].as_u64().is_some_and(|d| d != 2) {
        return Err("only 2-D UNets (dims: 2) are supported".into());
    }
    let mc = get_usize(v, "model_channels")?;
    let mult = match usizes(v, "channel_mult")? {
        m if m.is_empty() => vec![1, 2, 4, 8],
        m => m,
    };
    let (heads, head_ch) = (opt_i64(v, "num_heads", -1)?, opt_i64(v, "num_head_channels", -1)?);
    let up_heads = opt_i64(v, "num_heads_upsample", -1)?;
    if up_heads != -1 && up_heads != heads {
        return Err("'num_heads_upsample' different from 'num_heads' is not supported".into());
    }
    let heads = match (heads, head_ch) {
        (_, w) if w > 0 => Heads::Width(w as usize),
        (n, _) if n > 0 => Heads::Count(n as usize),
        _ => return Err("either 'num_heads' or 'num_head_channels' must be set".into()),
    };
    let spatial = flag(v, "use_spatial_transformer", false);
    let ctx = if spatial {
        let c = match &v["context_dim"] {
            Value::Array(a) => a.first().and_then(Value::as_u64),
            x => x.as_u64(),
        };
        Some((c.ok_or("a spatial-transformer UNet needs 'context_dim'")? as usize, v["transformer_depth"].as_u64().unwrap_or(1) as usize))
    } else {
        None
    };
    let mut cfg = unet(mc, &mult, &usizes(v, "attention_resolutions")?, get_usize(v, "in_channels")?, get_usize(v, "out_channels")?, heads, ctx, flag(v, "use_scale_shift_norm", false), flag(v, "resblock_updown", false));
    cfg.num_res_blocks = get_usize(v, "num_res_blocks")?;
    cfg.conv_resample = flag(v, "conv_resample", true);
    cfg.linear_proj = flag(v, "use_linear_in_transformer", false);
    cfg.num_classes = v["num_classes"].as_u64().map(|n| n as usize);
    Ok(cfg)
}

/// `first_stage_config.params` (AutoencoderKL / VQModel with its `ddconfig`) → the engine's
/// config. `vq` says which class the YAML's `target` names.
pub fn first_stage_from_compvis(v: &Value, vq: bool) -> Parse<FirstStageConfig> {
    let dd = &v["ddconfig"];
    let attn_type = dd["attn_type"].as_str().unwrap_or("vanilla");
    if !matches!(attn_type, "vanilla" | "none") {
        return Err(format!("attn_type '{attn_type}' is not supported"));
    }
    let mult = usizes(dd, "ch_mult")?;
    let resolution = get_usize(dd, "resolution")?;
    let attn_res = usizes(dd, "attn_resolutions")?;
    let cfg = AutoencoderConfig {
        in_channels: get_usize(dd, "in_channels")?,
        out_channels: get_usize(dd, "out_ch")?,
        ch: get_usize(dd, "ch")?,
        attn_levels: (0..mult.len()).filter(|l| attn_res.contains(&(resolution >> l))).collect(),
        ch_mult: mult,
        num_res_blocks: get_usize(dd, "num_res_blocks")?,
        z_channels: get_usize(dd, "z_channels")?,
        embed_dim: get_usize(v, "embed_dim")?,
        groups: 32,
        mid_attn: attn_type == "vanilla",
    };
    Ok(if vq { FirstStageConfig::Vq { cfg, n_embed: get_usize(v, "n_embed")? } } else { FirstStageConfig::Kl(cfg) })
}
