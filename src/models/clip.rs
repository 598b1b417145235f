//! The CLIP text transformer (OpenAI CLIP / transformers `CLIPTextModel`), the conditioner of
//! Stable Diffusion v1.x, under the key tree real files carry: `text_model.embeddings.*`,
//! `text_model.encoder.layers.{i}.{self_attn.{q,k,v,out}_proj, layer_norm1, mlp.fc1, mlp.fc2,
//! layer_norm2}`, `text_model.final_layer_norm` (prefixed `cond_stage_model.transformer.` in SD
//! single files). Pre-norm blocks with a causal mask.

use crate::nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use crate::{DType, Error, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClipActivation {
    /// x·σ(1.702x): OpenAI CLIP (SD1.x's ViT-L/14)
    QuickGelu,
    /// exact GELU: OpenCLIP models (SD2.x)
    Gelu,
}

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

struct EncoderLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ln2: LayerNorm,
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
        let layers = (0..cfg.layers)
            .map(|i| {
                let l = tm.pp("encoder.layers").pp(i);
                let a = l.pp("self_attn");
                Ok(EncoderLayer {
                    q: Linear::new(&a.pp("q_proj"), w, w, true)?,
                    k: Linear::new(&a.pp("k_proj"), w, w, true)?,
                    v: Linear::new(&a.pp("v_proj"), w, w, true)?,
                    out: Linear::new(&a.pp("out_proj"), w, w, true)?,
                    ln1: LayerNorm::new(&l.pp("layer_norm1"), w, 1e-5)?,
                    fc1: Linear::new(&l.pp("mlp.fc1"), w, cfg.intermediate, true)?,
                    fc2: Linear::new(&l.pp("mlp.fc2"), cfg.intermediate, w, true)?,
                    ln2: LayerNorm::new(&l.pp("layer_norm2"), w, 1e-5)?,
                })
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
        let (n, l) = match ids.shape() {
            &[n, l] if l <= self.cfg.max_positions && l > 0 => (n, l),
            s => return Err(Error::bad_shape("ClipTextModel", format!("ids must be [N, L] with 0 < L <= {}", self.cfg.max_positions), s)),
        };
        if skip_last >= self.cfg.layers {
            return Err(Error::invalid("ClipTextModel", format!("cannot skip {skip_last} of {} layers", self.cfg.layers)));
        }
        let dtype = self.position_embedding.dtype();
        let mut x = self.token_embedding.forward(ids)?.add(&self.position_embedding.narrow(0, 0, l)?)?;
        let mask = causal_mask(l, dtype)?;
        let (h, d) = (self.cfg.heads, self.cfg.width / self.cfg.heads);
        for layer in &self.layers[..self.cfg.layers - skip_last] {
            let y = layer.ln1.forward(&x)?;
            let split = |t: Tensor| t.reshape(&[n, l, h, d])?.transpose(1, 2); // [N, H, L, D]
            let (q, k, v) = (split(layer.q.forward(&y)?)?, split(layer.k.forward(&y)?)?, split(layer.v.forward(&y)?)?);
            let a = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&mask), None)?;
            x = x.add(&layer.out.forward(&a.transpose(1, 2)?.reshape(&[n, l, h * d])?)?)?;
            let y = layer.fc1.forward(&layer.ln2.forward(&x)?)?;
            let y = match self.cfg.activation {
                ClipActivation::QuickGelu => y.quick_gelu()?,
                ClipActivation::Gelu => y.gelu()?,
            };
            x = x.add(&layer.fc2.forward(&y)?)?;
        }
        self.final_norm.forward(&x)
    }
}

/// Additive [L, L] mask: 0 on and below the diagonal, −∞ above (token i sees tokens ≤ i).
fn causal_mask(l: usize, dtype: DType) -> Result<Tensor> {
    let v: Vec<f32> = (0..l * l).map(|i| if i % l > i / l { f32::NEG_INFINITY } else { 0.0 }).collect();
    Tensor::from_vec(v, &[l, l])?.to_dtype(dtype)
}
