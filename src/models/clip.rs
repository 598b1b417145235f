//! The CLIP text transformer (OpenAI CLIP / transformers `CLIPTextModel`), the conditioner of
//! Stable Diffusion v1.x, under the key tree real files carry: `text_model.embeddings.*`,
//! `text_model.encoder.layers.{i}.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2,
//! layer_norm2}`, `text_model.final_layer_norm` (prefixed `cond_stage_model.transformer.` in SD
//! single files). Pre-norm blocks with a causal mask.

use super::transformer::{Activation, EncoderLayer, EncoderLayerSpec, LayerParts};
use crate::nn::{Embedding, LayerNorm, Module, VarBuilder};
use crate::{DType, Error, Result, Tensor};

/// CLIP's MLP activation (QuickGelu for OpenAI CLIP, Gelu for OpenCLIP).
pub type ClipActivation = Activation;

#[derive(Clone, Debug, PartialEq)]
pub struct ClipTextConfig {
    pub vocab: usize,
    pub width: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_positions: usize,
    pub activation: ClipActivation,
}

impl ClipTextConfig {
    /// openai/clip-vit-large-patch14's text tower, as SD1.x uses it.
    pub fn sd15() -> Self {
        ClipTextConfig { vocab: 49408, width: 768, intermediate: 3072, layers: 12, heads: 12, max_positions: 77, activation: ClipActivation::QuickGelu }
    }
}

pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_norm: LayerNorm,
    cfg: ClipTextConfig,
}

impl ClipTextModel {
    /// `vb` at the model root (e.g. `cond_stage_model.transformer` in an SD single file).
    pub fn new(vb: &VarBuilder, cfg: &ClipTextConfig) -> Result<Self> {
        if cfg.heads == 0 || cfg.width % cfg.heads != 0 {
            return Err(Error::invalid("ClipTextModel", format!("width {} is not divisible by {} heads", cfg.width, cfg.heads)));
        }
        let tm = vb.pp("text_model");
        let emb = tm.pp("embeddings");
        let w = cfg.width;
        let spec = EncoderLayerSpec {
            qkv_bias: true,
            d_model: w,
            heads: cfg.heads,
            head_dim: w / cfg.heads,
            ffn_dim: cfg.intermediate,
            activation: cfg.activation,
        };
        let layers = (0..cfg.layers)
            .map(|i| {
                let l = tm.pp("encoder.layers").pp(i);
                let a = l.pp("self_attn");
                let parts = LayerParts {
                    q: a.pp("q_proj"),
                    k: a.pp("k_proj"),
                    v: a.pp("v_proj"),
                    out: a.pp("out_proj"),
                    attn_norm: l.pp("layer_norm1"),
                    fc1: l.pp("mlp.fc1"),
                    fc2: l.pp("mlp.fc2"),
                    ffn_norm: l.pp("layer_norm2"),
                };
                EncoderLayer::new(&parts, spec)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClipTextModel {
            token_embedding: Embedding::new(&emb.pp("token_embedding"), cfg.vocab, w)?,
            position_embedding: emb.pp("position_embedding").get(&[cfg.max_positions, w], "weight")?,
            layers,
            final_norm: LayerNorm::new(&tm.pp("final_layer_norm"), w, 1e-5)?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.cfg
    }

    /// Token ids [N, L] (I64, L ≤ max_positions) → hidden states [N, L, width] after the final
    /// layer norm. `skip_last` = 0 gives the last layer (SD1.x); 1 the penultimate layer, still
    /// through the final norm (diffusers' `clip_skip`, "CLIP skip 2" in other UIs).
    pub fn forward(&self, ids: &Tensor, skip_last: usize) -> Result<Tensor> {
        let l = match ids.shape() {
            &[_, l] if l <= self.cfg.max_positions && l > 0 => l,
            s => return Err(Error::bad_shape("ClipTextModel", format!("ids must be [N, L] with 0 < L <= {}", self.cfg.max_positions), s)),
        };
        if skip_last >= self.cfg.layers {
            return Err(Error::invalid("ClipTextModel", format!("cannot skip {skip_last} of {} layers", self.cfg.layers)));
        }
        // A tokenizer from another model hands out ids past this table; say so, not "index out of range".
        if let Some(bad) = ids.to_vec_f64()?.into_iter().find(|&id| id < 0.0 || id >= self.cfg.vocab as f64) {
            return Err(Error::invalid(
                "ClipTextModel",
                format!("token id {bad} is outside the text encoder's {}-token table: the tokenizer does not belong to this text encoder", self.cfg.vocab),
            ));
        }
        let dtype = self.position_embedding.dtype();
        let mut x = self.token_embedding.forward(ids)?.add(&self.position_embedding.narrow(0, 0, l)?)?;
        let mask = causal_mask_on(l, dtype, x.device())?;
        for layer in &self.layers[..self.cfg.layers - skip_last] {
            x = layer.forward(&x, Some(&mask))?;
        }
        self.final_norm.forward(&x)
    }
}

/// Additive [L, L] mask: 0 on and below the diagonal, −∞ above (token i sees tokens ≤ i).
fn causal_mask(l: usize, dtype: DType) -> Result<Tensor> {
    let v: Vec<f32> = (0..l * l).map(|i| if i % l > i / l { f32::NEG_INFINITY } else { 0.0 }).collect();
    Tensor::from_vec(v, &[l, l])?.to_dtype(dtype)
}

/// The causal mask on the device the activations are on.
fn causal_mask_on(l: usize, dtype: DType, device: crate::Device) -> Result<Tensor> {
    causal_mask(l, dtype)?.to_device(device)
}
