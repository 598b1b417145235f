//! The pre-norm transformer encoder layer the text conditioners share (CLIP's text tower and the
//! paper's LDMBert): x += Attn(LN(x)); x += FC2(act(FC1(LN(x)))). Only the checkpoint key names,
//! the q/k/v bias and the activation differ between them: the sizes are the layer's spec, and the
//! caller hands each part its own VarBuilder (`LayerParts`).

use crate::nn::{LayerNorm, Linear, Module, VarBuilder};
use crate::{Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// x·σ(1.702x): OpenAI CLIP (SD1.x's ViT-L/14)
    QuickGelu,
    /// exact GELU: OpenCLIP (SD2.x), BERT-style models
    Gelu,
}

/// Sizes and options of one encoder layer.
#[derive(Clone, Copy, Debug)]
pub struct EncoderLayerSpec {
    pub qkv_bias: bool,
    pub d_model: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub ffn_dim: usize,
    pub activation: Activation,
}

pub struct EncoderLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    attn_norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    ffn_norm: LayerNorm,
    spec: EncoderLayerSpec,
}

/// Where each part of a layer lives in a checkpoint's key tree.
pub struct LayerParts {
    pub q: VarBuilder,
    pub k: VarBuilder,
    pub v: VarBuilder,
    pub out: VarBuilder,
    pub attn_norm: VarBuilder,
    pub fc1: VarBuilder,
    pub fc2: VarBuilder,
    pub ffn_norm: VarBuilder,
}

impl EncoderLayer {
    pub fn new(p: &LayerParts, spec: EncoderLayerSpec) -> Result<Self> {
        let (d, inner) = (spec.d_model, spec.heads * spec.head_dim);
        Ok(EncoderLayer {
            q: Linear::new(&p.q, d, inner, spec.qkv_bias)?,
            k: Linear::new(&p.k, d, inner, spec.qkv_bias)?,
            v: Linear::new(&p.v, d, inner, spec.qkv_bias)?,
            out: Linear::new(&p.out, inner, d, true)?,
            attn_norm: LayerNorm::new(&p.attn_norm, d, 1e-5)?,
            fc1: Linear::new(&p.fc1, d, spec.ffn_dim, true)?,
            fc2: Linear::new(&p.fc2, spec.ffn_dim, d, true)?,
            ffn_norm: LayerNorm::new(&p.ffn_norm, d, 1e-5)?,
            spec,
        })
    }

    /// x [N, L, d_model], optional additive mask broadcastable to [N, H, L, L].
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (n, l) = (x.dim(0)?, x.dim(1)?);
        let (h, hd) = (self.spec.heads, self.spec.head_dim);
        let y = self.attn_norm.forward(x)?;
        let split = |t: Tensor| t.reshape(&[n, l, h, hd])?.transpose(1, 2); // [N, H, L, D]
        let (q, k, v) = (split(self.q.forward(&y)?)?, split(self.k.forward(&y)?)?, split(self.v.forward(&y)?)?);
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, mask, None)?;
        let x = x.add(&self.out.forward(&a.transpose(1, 2)?.reshape(&[n, l, h * hd])?)?)?;
        let y = self.fc1.forward(&self.ffn_norm.forward(&x)?)?;
        let y = match self.spec.activation {
            Activation::QuickGelu => y.quick_gelu()?,
            Activation::Gelu => y.gelu()?,
        };
        x.add(&self.fc2.forward(&y)?)
    }
}
