//! The paper's text conditioner for LDM text-to-image ("LDM-KL-8-G", text2img-large) and its
//! layout conditioner: a pre-norm transformer encoder over token ids with learned positions
//! (CompVis `BERTEmbedder`/`TransformerEmbedder`, an x-transformers `TransformerWrapper`; diffusers
//! ports it as `LDMBertModel`). The module tree is the CompVis one, under
//! `cond_stage_model.transformer`: `token_emb`, `pos_emb.emb`, `attn_layers.layers.{2i}` =
//! [LayerNorm, Attention{to_q,to_k,to_v,to_out}], `attn_layers.layers.{2i+1}` = [LayerNorm,
//! FeedForward{net.0.0, net.2}], `norm`, `to_logits`. diffusers names map in io/name_map.rs.

use super::transformer::{Activation, EncoderLayer, EncoderLayerSpec, LayerParts};
use crate::nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use crate::{Error, Result, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct LdmBertConfig {
    pub vocab: usize,
    pub max_positions: usize,
    pub layers: usize,
    pub ffn_dim: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub d_model: usize,
}

impl LdmBertConfig {
    /// CompVis/ldm-text2im-large-256's text model (configs/latent-diffusion/txt2img-1p4B-eval.yaml:
    /// n_embed 1280, n_layer 32).
    pub fn text2img_large() -> Self {
        LdmBertConfig { vocab: 30522, max_positions: 77, layers: 32, ffn_dim: 5120, heads: 8, head_dim: 64, d_model: 1280 }
    }

    /// The layout-to-image model's conditioner (models/ldm/layout2img-openimages256/config.yaml:
    /// n_embed 512, n_layer 16, vocab_size 8192, max_seq_len 92, over the ids of
    /// `layout::LayoutTokenizer`). The rest are x-transformers' defaults in CompVis
    /// x_transformer.py, as for text2img_large: 8 heads of DEFAULT_DIM_HEAD 64, feed-forward mult 4
    /// with exact GELU, pre-norm LayerNorm (eps 1e-5), q/k/v without bias, learned absolute positions.
    pub fn layout2img_openimages256() -> Self {
        LdmBertConfig { vocab: 8192, max_positions: 92, layers: 16, ffn_dim: 2048, heads: 8, head_dim: 64, d_model: 512 }
    }
}

pub struct LdmBert {
    embed_tokens: Embedding,
    embed_positions: Embedding,
    layers: Vec<EncoderLayer>,
    final_norm: LayerNorm,
    /// the token-prediction head (`to_logits`) of the pre-trained model, when the file has it;
    /// conditioning uses the hidden states only
    to_logits: Option<Linear>,
    cfg: LdmBertConfig,
}

impl LdmBert {
    /// `vb` at the TransformerWrapper (`cond_stage_model.transformer` in a CompVis file).
    pub fn new(vb: &VarBuilder, cfg: &LdmBertConfig) -> Result<Self> {
        let d = cfg.d_model;
        let spec = EncoderLayerSpec {
            qkv_bias: false,
            d_model: d,
            heads: cfg.heads,
            head_dim: cfg.head_dim,
            ffn_dim: cfg.ffn_dim,
            activation: Activation::Gelu,
        };
        let layers = (0..cfg.layers)
            .map(|i| {
                let (attn, ff) = (vb.pp("attn_layers.layers").pp(2 * i), vb.pp("attn_layers.layers").pp(2 * i + 1));
                let a = attn.pp(1);
                let parts = LayerParts {
                    q: a.pp("to_q"),
                    k: a.pp("to_k"),
                    v: a.pp("to_v"),
                    out: a.pp("to_out"),
                    attn_norm: attn.pp(0),
                    fc1: ff.pp("1.net.0.0"),
                    fc2: ff.pp("1.net.2"),
                    ffn_norm: ff.pp(0),
                };
                EncoderLayer::new(&parts, spec)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LdmBert {
            embed_tokens: Embedding::new(&vb.pp("token_emb"), cfg.vocab, d)?,
            embed_positions: Embedding::new(&vb.pp("pos_emb.emb"), cfg.max_positions, d)?,
            layers,
            final_norm: LayerNorm::new(&vb.pp("norm"), d, 1e-5)?,
            to_logits: vb.contains("to_logits.weight").then(|| Linear::new(&vb.pp("to_logits"), d, cfg.vocab, true)).transpose()?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &LdmBertConfig {
        &self.cfg
    }

    /// Token ids [N, L] (I64) → [N, L, d_model]. No padding mask: the LDM pipeline attends to
    /// pad tokens too, and so does this.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let l = match ids.shape() {
            &[_, l] if l > 0 && l <= self.cfg.max_positions => l,
            s => return Err(Error::bad_shape("LdmBert", format!("ids must be [N, L] with 0 < L <= {}", self.cfg.max_positions), s)),
        };
        let pos = Tensor::arange(0.0, l as f64, 1.0, crate::DType::I64)?;
        let mut x = self.embed_tokens.forward(ids)?.add(&self.embed_positions.forward(&pos)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, None)?;
        }
        self.final_norm.forward(&x)
    }

    /// Token logits [N, L, vocab] from hidden states, when the checkpoint has the head.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        match &self.to_logits {
            Some(h) => h.forward(hidden),
            None => Err(Error::invalid("LdmBert", "this checkpoint has no to_logits head")),
        }
    }
}
