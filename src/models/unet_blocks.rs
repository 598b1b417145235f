//! UNet building blocks, after CompVis ldm/modules/diffusionmodules/openaimodel.py (ResBlock) and
//! ldm/modules/attention.py (SpatialTransformer, BasicTransformerBlock, CrossAttention, GEGLU
//! FeedForward). Parameter names are the CompVis ones, so a block built under
//! `vb.pp("model.diffusion_model.input_blocks.1.0")` loads an SD1.x single-file checkpoint as is;
//! diffusers names are mapped in io/name_map.rs.

use crate::nn::in_dtype;
use crate::nn::{Conv2d, GroupNorm, LayerNorm, Linear, Module, VarBuilder};
use crate::tensor::conv::Conv2dParams;
use crate::{Result, Tensor};
use std::sync::Mutex;

/// A UNet's cross-attention context for one or many calls: the context tokens [N, L, C_ctx] and
/// each cross-attention's keys and values of them, projected on first use and kept. They depend
/// only on the tokens and the weights, and a sampling run changes neither from step to step, so a
/// run that keeps one `CrossContext` projects them once instead of at every step (SD1.5: 16
/// stacked k/v products per step). Nothing is kept where a gradient is recorded. Valid while
/// the weights stay as they are: make one per sampling run.
pub struct CrossContext {
    tokens: Tensor,
    /// (the stacked k/v weight, its product with the tokens), one per cross-attention
    projected: Mutex<Vec<(Tensor, Tensor)>>,
}

impl CrossContext {
    pub fn new(tokens: &Tensor) -> Self {
        CrossContext { tokens: tokens.clone(), projected: Mutex::new(Vec::new()) }
    }

    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }

    /// How many cross-attentions' keys and values it holds.
    pub fn kept(&self) -> usize {
        self.projected.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// `proj`'s product with the tokens, the kept one where there is one.
    fn project(&self, proj: &Linear) -> Result<Tensor> {
        if crate::Tensor::will_record(&[&self.tokens, &proj.weight]) {
            return proj.forward(&self.tokens);
        }
        let same = |w: &Tensor| w.same_storage(&proj.weight) && w.layout() == proj.weight.layout();
        let mut kept = self.projected.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, kv)) = kept.iter().find(|(w, _)| same(w)) {
            return Ok(kv.clone());
        }
        let kv = proj.forward(&self.tokens)?;
        kept.push((proj.weight.clone(), kv.clone()));
        Ok(kv)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResBlockConfig {
    pub groups: usize,
    pub eps: f64,
    /// FiLM-style conditioning: emb gives (scale, shift) applied after out_layers' norm.
    pub scale_shift: bool,
    /// A 3×3 conv skip when channels change (CompVis `use_conv`), else 1×1.
    pub conv_skip: bool,
    /// `resblock_updown`: this block also halves (2×2 average pool) or doubles (nearest) the
    /// resolution, between its first norm and first conv, on both paths.
    pub resample: Option<ResBlockResample>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResBlockResample {
    Down,
    Up,
}

impl Default for ResBlockConfig {
    fn default() -> Self {
        ResBlockConfig { groups: 32, eps: 1e-5, scale_shift: false, conv_skip: false, resample: None }
    }
}

/// The time embedding as a UNet's ResBlocks take it in one forward: SiLU applied once for all of
/// them, and, where the UNet stacked their projections (`stack_emb_projections`), every block's
/// projection from one product ([N, Σ E_out]).
pub struct TimeEmbedding {
    pub act: Tensor,
    pub projected: Option<Tensor>,
}

/// Stacks the time-embedding projections of `blocks` into one Linear (`Linear::stack_rows`: row
/// views, no extra memory) and records where each block's columns sit in its output, when they
/// are all loaded inference weights: a UNet step then projects the embedding for all its
/// ResBlocks with one product instead of one per block.
pub fn stack_emb_projections(blocks: &mut [&mut ResBlock]) -> Result<Option<Linear>> {
    let Some(stacked) = Linear::stack_rows(&mut blocks.iter_mut().map(|b| &mut b.emb_proj).collect::<Vec<_>>())? else {
        return Ok(None);
    };
    let mut offset = 0;
    for b in blocks.iter_mut() {
        let len = b.emb_proj.weight.dim(0)?;
        b.emb_cols = Some((offset, len));
        offset += len;
    }
    Ok(Some(stacked))
}

/// x + F(x, emb): norm → SiLU → conv, plus the projected time embedding, norm → SiLU → conv.
pub struct ResBlock {
    in_norm: GroupNorm,
    in_conv: Conv2d,
    emb_proj: Linear,
    /// Where this block's projection sits in a stacked product's columns (`stack_emb_projections`).
    emb_cols: Option<(usize, usize)>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    skip: Option<Conv2d>,
    scale_shift: bool,
    resample: Option<ResBlockResample>,
}

impl ResBlock {
    pub fn new(vb: &VarBuilder, in_ch: usize, out_ch: usize, emb_ch: usize, cfg: ResBlockConfig) -> Result<Self> {
        let emb_out = if cfg.scale_shift { 2 * out_ch } else { out_ch };
        let skip = match (in_ch == out_ch, cfg.conv_skip) {
            (true, _) => None,
            (false, true) => Some(Conv2d::same(&vb.pp("skip_connection"), in_ch, out_ch, 3)?),
            (false, false) => Some(Conv2d::same(&vb.pp("skip_connection"), in_ch, out_ch, 1)?),
        };
        Ok(ResBlock {
            in_norm: GroupNorm::new(&vb.pp("in_layers.0"), cfg.groups, in_ch, cfg.eps)?,
            in_conv: Conv2d::same(&vb.pp("in_layers.2"), in_ch, out_ch, 3)?,
            emb_proj: Linear::new(&vb.pp("emb_layers.1"), emb_ch, emb_out, true)?,
            emb_cols: None,
            out_norm: GroupNorm::new(&vb.pp("out_layers.0"), cfg.groups, out_ch, cfg.eps)?,
            out_conv: Conv2d::same(&vb.pp("out_layers.3"), out_ch, out_ch, 3)?,
            skip,
            scale_shift: cfg.scale_shift,
            resample: cfg.resample,
        })
    }

    /// x [N, C_in, H, W], emb [N, E] → [N, C_out, H, W]
    pub fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        self.forward_to(x, &TimeEmbedding { act: emb.silu()?, projected: None }, None)
    }

    /// Like `forward`, with the embedding as the UNet shares it among its blocks; an upsampling
    /// block resizes to `up_to` (the skip's size, so odd sizes work) instead of exactly 2×.
    pub fn forward_to(&self, x: &Tensor, emb: &TimeEmbedding, up_to: Option<(usize, usize)>) -> Result<Tensor> {
        let resize = |t: &Tensor| -> Result<Tensor> {
            match self.resample {
                None => Ok(t.clone()),
                Some(ResBlockResample::Down) => t.avg_pool2d((2, 2), (2, 2)),
                Some(ResBlockResample::Up) => {
                    let (hh, ww) = up_to.unwrap_or((t.dim(2)? * 2, t.dim(3)? * 2));
                    t.upsample_nearest2d(hh, ww)
                }
            }
        };
        // a 1×1 skip conv on an unresized x gets it from the norm's launch in the layout it reads
        let (hn, x) = match (&self.skip, self.resample) {
            (Some(_), None) => self.in_norm.forward_silu_and_input(x)?,
            _ => (self.in_norm.forward_silu(x)?, resize(x)?),
        };
        let h = self.in_conv.forward(&resize(&hn)?)?;
        let x = &x;
        let e = match (&emb.projected, self.emb_cols) {
            (Some(all), Some((offset, len))) => all.narrow(1, offset, len)?,
            _ => self.emb_proj.forward(&emb.act)?,
        };
        let h = if self.scale_shift {
            let e = e.reshape(&[e.dim(0)?, e.dim(1)?, 1, 1])?; // [N, 2C, 1, 1]
            let parts = e.chunk(2, 1)?;
            self.out_norm.forward(&h)?.mul(&parts[0].add_scalar(1.0)?)?.add(&parts[1])?.silu()?
        } else {
            self.out_norm.forward_silu_shifted(&h, &e)? // silu(norm(h + e)), e [N, C]
        };
        match &self.skip {
            Some(s) => self.out_conv.forward_add(&h, &s.forward(x)?),
            None => self.out_conv.forward_add(&h, x),
        }
    }
}

/// The UNet's self-attention over pixels when it has no SpatialTransformer (CompVis
/// `AttentionBlock` with `QKVAttentionLegacy`, the unconditional and concat-conditioned LDMs):
/// GroupNorm, one fused 1×1 qkv projection whose channels are grouped per head as [q | k | v],
/// softmax(q·k/√d)·v, 1×1 proj_out, residual.
pub struct AttentionBlock {
    norm: GroupNorm,
    qkv_w: Tensor,
    qkv_b: Tensor,
    out_w: Tensor,
    out_b: Tensor,
    heads: usize,
}

impl AttentionBlock {
    pub fn new(vb: &VarBuilder, channels: usize, heads: usize, groups: usize) -> Result<Self> {
        if heads == 0 || !channels.is_multiple_of(heads) {
            return Err(crate::Error::invalid("AttentionBlock", format!("{channels} channels do not split into {heads} heads")));
        }
        let c = channels;
        // stored as conv1d weights [out, in, 1]; used as linear maps over the channel axis
        let qkv_w = vb.get(&[3 * c, c, 1], "qkv.weight")?.reshape(&[3 * c, c])?;
        let out_w = vb.get(&[c, c, 1], "proj_out.weight")?.reshape(&[c, c])?;
        Ok(AttentionBlock {
            norm: GroupNorm::new(&vb.pp("norm"), groups, c, 1e-5)?,
            qkv_w,
            qkv_b: vb.get(&[3 * c], "qkv.bias")?,
            out_w,
            out_b: vb.get(&[c], "proj_out.bias")?,
            heads,
        })
    }

    /// x [N, C, H, W] → [N, C, H, W]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = (x.dim(0)?, x.dim(1)?, x.dim(2)?, x.dim(3)?);
        let (heads, t) = (self.heads, h * w);
        let d = c / heads;
        let tokens = self.norm.forward(x)?.reshape(&[n, c, t])?.transpose(1, 2)?; // [N, T, C]
        // the conv1d weights meet the activations in their dtype (mixed precision), as Linear's do
        let dt = tokens.dtype();
        let qkv = tokens.linear(&in_dtype(&self.qkv_w, dt)?, Some(&in_dtype(&self.qkv_b, dt)?))?.reshape(&[n, t, heads, 3, d])?;
        let part = |i: usize| qkv.narrow(3, i, 1)?.squeeze(3)?.transpose(1, 2); // [N, heads, T, d]
        let a = Tensor::scaled_dot_product_attention(&part(0)?, &part(1)?, &part(2)?, None, None)?;
        let a = a.transpose(1, 2)?.reshape(&[n, t, c])?; // heads back in head-major channel order
        let out = a.linear(&in_dtype(&self.out_w, dt)?, Some(&in_dtype(&self.out_b, dt)?))?.transpose(1, 2)?.reshape(&[n, c, h, w])?;
        out.add(x)
    }
}

/// Multi-head attention with separate query and context inputs (self-attention when the
/// context is the input itself).
pub struct CrossAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    /// Inference weights stacked so one product gives several projections (one launch instead of
    /// two or three on a GPU, no extra memory: the separate weights become row views of it):
    /// to_q, to_k, to_v as [3·inner, dim] when query and context have one width (self-attention
    /// reads q, k, v from one output), else to_k, to_v as [2·inner, context_dim] (cross-attention).
    to_qkv: Option<Linear>,
    to_kv: Option<Linear>,
    to_out: Linear,
    heads: usize,
}

impl CrossAttention {
    pub fn new(vb: &VarBuilder, query_dim: usize, context_dim: usize, heads: usize, head_dim: usize) -> Result<Self> {
        let inner = heads * head_dim;
        let mut to_q = Linear::new(&vb.pp("to_q"), query_dim, inner, false)?;
        let mut to_k = Linear::new(&vb.pp("to_k"), context_dim, inner, false)?;
        let mut to_v = Linear::new(&vb.pp("to_v"), context_dim, inner, false)?;
        let (to_qkv, to_kv) = if query_dim == context_dim {
            (Linear::stack_rows(&mut [&mut to_q, &mut to_k, &mut to_v])?, None)
        } else {
            (None, Linear::stack_rows(&mut [&mut to_k, &mut to_v])?)
        };
        Ok(CrossAttention { to_q, to_k, to_v, to_qkv, to_kv, to_out: Linear::new(&vb.pp("to_out.0"), inner, query_dim, true)?, heads })
    }

    /// x [N, L, Cq], context [N, Lc, Cc] (None: x) → [N, L, Cq]
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let context = context.map(CrossContext::new);
        self.to_out.forward(&self.attend(x, context.as_ref())?)
    }

    /// forward(x, context) + residual, the sum fused into the output projection where the device
    /// allows (`Tensor::linear_add`).
    pub fn forward_add(&self, x: &Tensor, context: Option<&Tensor>, residual: &Tensor) -> Result<Tensor> {
        let context = context.map(CrossContext::new);
        self.forward_add_in(x, context.as_ref(), residual)
    }

    /// `forward_add` with the context's projections kept in `context` (see `CrossContext`).
    pub fn forward_add_in(&self, x: &Tensor, context: Option<&CrossContext>, residual: &Tensor) -> Result<Tensor> {
        self.to_out.forward_add(&self.attend(x, context)?, residual)
    }

    /// The attention output with the heads merged back, [N, L, H·D]: what to_out projects.
    fn attend(&self, x: &Tensor, context: Option<&CrossContext>) -> Result<Tensor> {
        let ctx = context.map_or(x, CrossContext::tokens);
        let split = |t: Tensor| -> Result<Tensor> {
            let (n, l, c) = (t.dim(0)?, t.dim(1)?, t.dim(2)?);
            t.reshape(&[n, l, self.heads, c / self.heads])?.transpose(1, 2) // [N, H, L, D]
        };
        // the i-th of the projections side by side in a stacked product's output
        let part = |t: &Tensor, i: usize| -> Result<Tensor> {
            let inner = self.to_q.weight.dim(0)?;
            split(t.narrow(2, i * inner, inner)?)
        };
        let (q, k, v) = match (&self.to_qkv, &self.to_kv, context) {
            (Some(qkv), _, None) => {
                let qkv = qkv.forward(x)?; // [N, L, 3·inner]
                (part(&qkv, 0)?, part(&qkv, 1)?, part(&qkv, 2)?)
            }
            (_, Some(kv), Some(c)) => {
                let kv = c.project(kv)?; // [N, Lc, 2·inner]
                (split(self.to_q.forward(x)?)?, part(&kv, 0)?, part(&kv, 1)?)
            }
            _ => (split(self.to_q.forward(x)?)?, split(self.to_k.forward(ctx)?)?, split(self.to_v.forward(ctx)?)?),
        };
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, None, None)?; // [N, H, L, D]
        let (n, l) = (x.dim(0)?, x.dim(1)?);
        a.transpose(1, 2)?.reshape(&[n, l, q.dim(1)? * q.dim(3)?])
    }
}

/// GEGLU feed-forward: Linear(dim → 2·inner), a·GELU(gate), Linear(inner → dim).
pub struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    pub fn new(vb: &VarBuilder, dim: usize, mult: usize) -> Result<Self> {
        let inner = dim * mult;
        Ok(FeedForward { proj_in: Linear::new(&vb.pp("net.0.proj"), dim, 2 * inner, true)?, proj_out: Linear::new(&vb.pp("net.2"), inner, dim, true)? })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj_out.forward(&self.proj_in.forward_geglu(x)?)
    }

    /// forward(x) + residual, the sum fused into the output projection where the device allows.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.proj_out.forward_add(&self.proj_in.forward_geglu(x)?, residual)
    }
}

/// Pre-norm transformer block: self-attention, cross-attention to the context, GEGLU FF.
pub struct BasicTransformerBlock {
    attn1: CrossAttention,
    attn2: CrossAttention,
    ff: FeedForward,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
}

impl BasicTransformerBlock {
    pub fn new(vb: &VarBuilder, dim: usize, heads: usize, head_dim: usize, context_dim: usize) -> Result<Self> {
        Ok(BasicTransformerBlock {
            attn1: CrossAttention::new(&vb.pp("attn1"), dim, dim, heads, head_dim)?,
            attn2: CrossAttention::new(&vb.pp("attn2"), dim, context_dim, heads, head_dim)?,
            ff: FeedForward::new(&vb.pp("ff"), dim, 4)?,
            norm1: LayerNorm::new(&vb.pp("norm1"), dim, 1e-5)?,
            norm2: LayerNorm::new(&vb.pp("norm2"), dim, 1e-5)?,
            norm3: LayerNorm::new(&vb.pp("norm3"), dim, 1e-5)?,
        })
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        self.forward_in(x, &CrossContext::new(context))
    }

    /// `forward` with the context's projections kept in `context` (see `CrossContext`).
    pub fn forward_in(&self, x: &Tensor, context: &CrossContext) -> Result<Tensor> {
        // each residual sum joins its output projection's epilogue where the device allows
        let x = self.attn1.forward_add_in(&self.norm1.forward(x)?, None, x)?;
        let x = self.attn2.forward_add_in(&self.norm2.forward(&x)?, Some(context), &x)?;
        self.ff.forward_add(&self.norm3.forward(&x)?, &x)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpatialTransformerConfig {
    pub heads: usize,
    pub head_dim: usize,
    pub depth: usize,
    pub context_dim: usize,
    /// SD2-style linear proj_in/proj_out instead of 1×1 convs
    pub linear_proj: bool,
    pub groups: usize,
}

/// Attention over the pixels of a feature map, conditioned on a context sequence.
pub struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Proj,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Proj,
}

enum Proj {
    Conv(Conv2d),
    Linear(Linear),
}

impl SpatialTransformer {
    pub fn new(vb: &VarBuilder, channels: usize, cfg: SpatialTransformerConfig) -> Result<Self> {
        let inner = cfg.heads * cfg.head_dim;
        let proj = |name: &str, i: usize, o: usize| -> Result<Proj> {
            Ok(if cfg.linear_proj {
                Proj::Linear(Linear::new(&vb.pp(name), i, o, true)?)
            } else {
                Proj::Conv(Conv2d::new(&vb.pp(name), i, o, 1, Conv2dParams::default(), true)?)
            })
        };
        let blocks = (0..cfg.depth)
            .map(|i| BasicTransformerBlock::new(&vb.pp("transformer_blocks").pp(i), inner, cfg.heads, cfg.head_dim, cfg.context_dim))
            .collect::<Result<Vec<_>>>()?;
        Ok(SpatialTransformer {
            norm: GroupNorm::new(&vb.pp("norm"), cfg.groups, channels, 1e-6)?,
            proj_in: proj("proj_in", channels, inner)?,
            blocks,
            proj_out: proj("proj_out", inner, channels)?,
        })
    }

    /// x [N, C, H, W], context [N, Lc, Cc] → [N, C, H, W]
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        self.forward_in(x, &CrossContext::new(context))
    }

    /// `forward` with the context's projections kept in `context` (see `CrossContext`).
    pub fn forward_in(&self, x: &Tensor, context: &CrossContext) -> Result<Tensor> {
        let (n, h, w) = (x.dim(0)?, x.dim(2)?, x.dim(3)?);
        let to_tokens = |t: &Tensor| -> Result<Tensor> {
            let ch = t.dim(1)?;
            t.reshape(&[n, ch, h * w])?.transpose(1, 2) // [N, HW, C]
        };
        let normed = self.norm.forward(x)?;
        let mut t = match &self.proj_in {
            // a channels-last norm output (CUDA inference) makes the 1×1 proj_in a Linear over
            // contiguous tokens: the blocks then get contiguous tokens (no copy before norm1, and
            // the first residual sum fuses into attn1's output projection)
            Proj::Conv(conv) => match conv.pointwise_on_tokens(&to_tokens(&normed)?)? {
                Some(t) => t,
                None => to_tokens(&conv.forward(&normed)?)?,
            },
            Proj::Linear(lin) => lin.forward(&to_tokens(&normed)?)?,
        };
        for b in &self.blocks {
            t = b.forward_in(&t, context)?;
        }
        let to_map = |t: &Tensor| -> Result<Tensor> {
            let ch = t.dim(2)?;
            t.transpose(1, 2)?.reshape(&[n, ch, h, w])
        };
        match &self.proj_out {
            Proj::Conv(conv) => conv.forward_add(&to_map(&t)?, x),
            Proj::Linear(lin) => to_map(&lin.forward(&t)?)?.add(x),
        }
    }
}
