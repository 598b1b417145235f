//! The time-conditional UNet with cross-attention (CompVis openaimodel.py `UNetModel`), under the
//! CompVis key tree: time_embed, label_emb, input_blocks.{i}.{j}, middle_block.{0,1,2},
//! output_blocks.{i}.{j}, out.{0,2}. Like diffusers, an upsampler resizes to the skip's size, so
//! odd latent sizes (and sizes not divisible by 2^levels) work.

use super::unet_blocks::{
    stack_emb_projections, AttentionBlock, CrossContext, ResBlock, ResBlockConfig, ResBlockResample, SpatialTransformer, SpatialTransformerConfig, TimeEmbedding,
};
use crate::nn::{Conv2d, Embedding, GroupNorm, Linear, Module, VarBuilder};
use crate::tensor::conv::Conv2dParams;
use crate::{DType, Error, Result, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub model_channels: usize,
    pub channel_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Levels (0 = full resolution) whose blocks carry attention.
    pub attention_levels: Vec<usize>,
    /// Attention heads per level (the middle block uses the last level's).
    pub heads: Vec<usize>,
    /// SpatialTransformer with cross-attention (true) or the context-free `AttentionBlock` of the
    /// unconditional / concat-conditioned LDMs (CompVis `use_spatial_transformer`).
    pub spatial_transformer: bool,
    pub transformer_depth: usize,
    /// Width of the cross-attention context (ignored without spatial transformers).
    pub context_dim: usize,
    pub linear_proj: bool,
    pub groups: usize,
    /// Class-conditional models: the number of classes of `label_emb`.
    pub num_classes: Option<usize>,
    /// Resample with convs (a strided conv down, a conv after the nearest 2× up) or without them
    /// (2×2 average pooling down, plain nearest up).
    pub conv_resample: bool,
    /// ResBlocks apply the time embedding as scale and shift (CompVis `use_scale_shift_norm`).
    pub scale_shift: bool,
    /// Resolution changes happen inside ResBlocks instead of separate resamplers.
    pub resblock_updown: bool,
}

impl UNetConfig {
    /// Stable Diffusion v1.x (configs/stable-diffusion/v1-inference.yaml).
    pub fn sd15() -> Self {
        UNetConfig {
            in_channels: 4,
            out_channels: 4,
            model_channels: 320,
            channel_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            attention_levels: vec![0, 1, 2],
            heads: vec![8; 4],
            spatial_transformer: true,
            transformer_depth: 1,
            context_dim: 768,
            linear_proj: false,
            groups: 32,
            num_classes: None,
            conv_resample: true,
            scale_shift: false,
            resblock_updown: false,
        }
    }

    /// Heads per level for a fixed head width (CompVis `num_head_channels`): ch / head_channels.
    pub fn heads_for_head_channels(model_channels: usize, channel_mult: &[usize], head_channels: usize) -> Vec<usize> {
        channel_mult.iter().map(|m| (m * model_channels / head_channels.max(1)).max(1)).collect()
    }
}

/// Attention inside a UNet slot.
enum Attention {
    Spatial(SpatialTransformer),
    Legacy(AttentionBlock),
}

impl Attention {
    fn forward(&self, x: &Tensor, ctx: Option<&CrossContext>) -> Result<Tensor> {
        match self {
            Attention::Legacy(a) => a.forward(x),
            Attention::Spatial(st) => match ctx {
                Some(c) => st.forward_in(x, c),
                None => Err(Error::invalid("UNet", "this model cross-attends to a context: pass one")),
            },
        }
    }
}

/// Resolution change between levels.
enum Resample {
    Down(Conv2d),
    DownPool,
    Up(Conv2d),
    /// `conv_resample: false`: nearest 2× with no conv
    UpNearest,
    /// `resblock_updown`: a ResBlock that resizes
    DownRes(ResBlock),
    UpRes(ResBlock),
}

/// One `TimestepEmbedSequential` slot: a ResBlock, then optionally attention, then optionally a
/// resampler (or just the input conv / a lone downsampler).
struct Slot {
    conv_in: Option<Conv2d>,
    res: Option<ResBlock>,
    attn: Option<Attention>,
    resample: Option<Resample>,
}

impl Slot {
    fn forward(&self, x: &Tensor, emb: &TimeEmbedding, ctx: Option<&CrossContext>, up_to: Option<(usize, usize)>) -> Result<Tensor> {
        let mut h = match &self.conv_in {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        if let Some(r) = &self.res {
            h = r.forward_to(&h, emb, None)?;
        }
        if let Some(a) = &self.attn {
            h = a.forward(&h, ctx)?;
        }
        match &self.resample {
            Some(Resample::Down(c)) => c.forward(&h),
            Some(Resample::DownPool) => h.avg_pool2d((2, 2), (2, 2)),
            Some(Resample::Up(c)) => {
                let (hh, ww) = up_to.unwrap_or((h.dim(2)? * 2, h.dim(3)? * 2));
                c.forward(&h.upsample_nearest2d(hh, ww)?)
            }
            Some(Resample::UpNearest) => {
                let (hh, ww) = up_to.unwrap_or((h.dim(2)? * 2, h.dim(3)? * 2));
                h.upsample_nearest2d(hh, ww)
            }
            Some(Resample::DownRes(r)) => r.forward_to(&h, emb, None),
            Some(Resample::UpRes(r)) => r.forward_to(&h, emb, up_to),
            None => Ok(h),
        }
    }
}

pub struct UNet {
    cfg: UNetConfig,
    time_embed: (Linear, Linear),
    label_emb: Option<Embedding>,
    input_blocks: Vec<Slot>,
    middle: (ResBlock, Attention, ResBlock),
    output_blocks: Vec<Slot>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    /// Every ResBlock's time-embedding projection as one product, for loaded inference weights
    /// (`stack_emb_projections`).
    emb_projections: Option<Linear>,
}

impl UNet {
    pub fn new(vb: &VarBuilder, cfg: &UNetConfig) -> Result<Self> {
        let levels = cfg.channel_mult.len();
        if levels == 0 || cfg.heads.len() != levels || cfg.attention_levels.iter().any(|&l| l >= levels) {
            return Err(Error::invalid("UNet", format!("channel_mult {:?}, heads {:?} and attention_levels {:?} disagree", cfg.channel_mult, cfg.heads, cfg.attention_levels)));
        }
        let mc = cfg.model_channels;
        let emb_dim = 4 * mc;
        let rcfg = ResBlockConfig { groups: cfg.groups, scale_shift: cfg.scale_shift, ..Default::default() };
        let attention = |vb: &VarBuilder, ch: usize, level: usize| -> Result<Attention> {
            let heads = cfg.heads[level];
            if heads == 0 || !ch.is_multiple_of(heads) {
                return Err(Error::invalid("UNet", format!("level {level}: {ch} channels do not split into {heads} heads")));
            }
            Ok(if cfg.spatial_transformer {
                let st = SpatialTransformerConfig { heads, head_dim: ch / heads, depth: cfg.transformer_depth, context_dim: cfg.context_dim, linear_proj: cfg.linear_proj, groups: cfg.groups };
                Attention::Spatial(SpatialTransformer::new(vb, ch, st)?)
            } else {
                Attention::Legacy(AttentionBlock::new(vb, ch, heads, cfg.groups)?)
            })
        };
        let te = vb.pp("time_embed");
        let time_embed = (Linear::new(&te.pp(0), mc, emb_dim, true)?, Linear::new(&te.pp(2), emb_dim, emb_dim, true)?);
        let label_emb = cfg.num_classes.map(|n| Embedding::new(&vb.pp("label_emb"), n, emb_dim)).transpose()?;

        let ib = vb.pp("input_blocks");
        let same3 = Conv2dParams { padding: (1, 1), ..Default::default() };
        let mut input_blocks = vec![Slot { conv_in: Some(Conv2d::new(&ib.pp(0).pp(0), cfg.in_channels, mc, 3, same3, true)?), res: None, attn: None, resample: None }];
        let mut skip_chans = vec![mc];
        let mut ch = mc;
        for (level, &mult) in cfg.channel_mult.iter().enumerate() {
            for _ in 0..cfg.num_res_blocks {
                let slot = ib.pp(input_blocks.len());
                let out = mult * mc;
                let res = ResBlock::new(&slot.pp(0), ch, out, emb_dim, rcfg)?;
                ch = out;
                let attn = cfg.attention_levels.contains(&level).then(|| attention(&slot.pp(1), ch, level)).transpose()?;
                input_blocks.push(Slot { conv_in: None, res: Some(res), attn, resample: None });
                skip_chans.push(ch);
            }
            if level + 1 < levels {
                let slot = ib.pp(input_blocks.len());
                let down = if cfg.resblock_updown {
                    let r = ResBlockConfig { resample: Some(ResBlockResample::Down), ..rcfg };
                    Resample::DownRes(ResBlock::new(&slot.pp(0), ch, ch, emb_dim, r)?)
                } else if cfg.conv_resample {
                    let p = Conv2dParams { stride: (2, 2), padding: (1, 1), ..Default::default() };
                    Resample::Down(Conv2d::new(&slot.pp(0).pp("op"), ch, ch, 3, p, true)?)
                } else {
                    Resample::DownPool
                };
                input_blocks.push(Slot { conv_in: None, res: None, attn: None, resample: Some(down) });
                skip_chans.push(ch);
            }
        }

        let mb = vb.pp("middle_block");
        let mut middle = (
            ResBlock::new(&mb.pp(0), ch, ch, emb_dim, rcfg)?,
            attention(&mb.pp(1), ch, levels - 1)?,
            ResBlock::new(&mb.pp(2), ch, ch, emb_dim, rcfg)?,
        );

        let ob = vb.pp("output_blocks");
        let mut output_blocks = Vec::new();
        for (level, &mult) in cfg.channel_mult.iter().enumerate().rev() {
            for i in 0..=cfg.num_res_blocks {
                let slot = ob.pp(output_blocks.len());
                let skip = skip_chans.pop().expect("one skip per input block");
                let out = mult * mc;
                let res = ResBlock::new(&slot.pp(0), ch + skip, out, emb_dim, rcfg)?;
                ch = out;
                let attn = cfg.attention_levels.contains(&level).then(|| attention(&slot.pp(1), ch, level)).transpose()?;
                let resample = if level > 0 && i == cfg.num_res_blocks {
                    let at = slot.pp(if attn.is_some() { 2 } else { 1 });
                    Some(if cfg.resblock_updown {
                        let r = ResBlockConfig { resample: Some(ResBlockResample::Up), ..rcfg };
                        Resample::UpRes(ResBlock::new(&at, ch, ch, emb_dim, r)?)
                    } else if cfg.conv_resample {
                        Resample::Up(Conv2d::new(&at.pp("conv"), ch, ch, 3, same3, true)?)
                    } else {
                        Resample::UpNearest
                    })
                } else {
                    None
                };
                output_blocks.push(Slot { conv_in: None, res: Some(res), attn, resample });
            }
        }
        let mut blocks: Vec<&mut ResBlock> = vec![&mut middle.0, &mut middle.2];
        for slot in input_blocks.iter_mut().chain(output_blocks.iter_mut()) {
            blocks.extend(slot.res.as_mut());
            if let Some(Resample::DownRes(r) | Resample::UpRes(r)) = &mut slot.resample {
                blocks.push(r);
            }
        }
        let emb_projections = stack_emb_projections(&mut blocks)?;
        Ok(UNet {
            cfg: cfg.clone(),
            time_embed,
            label_emb,
            input_blocks,
            middle,
            output_blocks,
            out_norm: GroupNorm::new(&vb.pp("out").pp(0), cfg.groups, ch, 1e-5)?,
            out_conv: Conv2d::new(&vb.pp("out").pp(2), ch, cfg.out_channels, 3, same3, true)?,
            emb_projections,
        })
    }

    /// Where the weights live (and so where the UNet runs).
    pub fn device(&self) -> crate::Device {
        self.out_conv.weight.device()
    }

    /// The weights' dtype: the dtype its inputs must have (pipelines cast to it).
    pub fn dtype(&self) -> crate::DType {
        self.out_conv.weight.dtype()
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// ε (or v) prediction. x [N, C_in, H, W], t [N] (float timesteps), context [N, L, C_ctx]
    /// for cross-attending models (None for the others), labels [N] (I64) for class-conditional
    /// models → [N, C_out, H, W].
    pub fn forward(&self, x: &Tensor, t: &Tensor, context: Option<&Tensor>, labels: Option<&Tensor>) -> Result<Tensor> {
        // computed on the host from the timestep values (wherever `t` is), then put beside x
        let temb = self.timestep_features(t, x.dtype())?.to_device(x.device())?;
        self.forward_embedded(x, &temb, context, labels)
    }

    /// The sinusoidal features of timesteps `t` [N] for `forward_embedded`: [N, model_channels]
    /// in `dtype`, on the host.
    pub fn timestep_features(&self, t: &Tensor, dtype: DType) -> Result<Tensor> {
        timestep_embedding(t, self.cfg.model_channels, dtype)
    }

    /// `forward` with the timestep features already on x's device: everything it queues stays on
    /// the device (no host copy, no wait), so it can be recorded as a CUDA graph.
    pub fn forward_embedded(&self, x: &Tensor, temb: &Tensor, context: Option<&Tensor>, labels: Option<&Tensor>) -> Result<Tensor> {
        let context = context.map(CrossContext::new);
        self.forward_embedded_in(x, temb, context.as_ref(), labels)
    }

    /// `forward_embedded` with the context's cross-attention keys and values kept in `context`
    /// across calls (a sampling run makes one `CrossContext` for all its steps). Its tokens should
    /// be in x's dtype: others are converted at every call, and nothing is kept.
    pub fn forward_embedded_in(&self, x: &Tensor, temb: &Tensor, context: Option<&CrossContext>, labels: Option<&Tensor>) -> Result<Tensor> {
        if x.rank() != 4 || x.dim(1)? != self.cfg.in_channels {
            return Err(Error::bad_shape("UNet", format!("expected [N, {}, H, W]", self.cfg.in_channels), x.shape()));
        }
        if temb.shape() != [x.dim(0)?, self.cfg.model_channels] {
            return Err(Error::bad_shape("UNet", format!("timestep features must be [{}, {}]", x.dim(0)?, self.cfg.model_channels), temb.shape()));
        }
        let temb = if temb.dtype() == x.dtype() { temb.clone() } else { temb.to_dtype(x.dtype())? };
        let mut emb = self.time_embed.1.forward(&self.time_embed.0.forward(&temb)?.silu()?)?;
        // Mixed precision: everything that joins the activations is in their dtype (x's).
        let converted = match context {
            Some(c) if c.tokens().dtype() != x.dtype() => Some(CrossContext::new(&c.tokens().to_dtype(x.dtype())?)),
            _ => None,
        };
        let context = converted.as_ref().or(context);
        match (&self.label_emb, labels) {
            (Some(le), Some(y)) => emb = emb.add(&le.forward(y)?.to_dtype(emb.dtype())?)?,
            (Some(_), None) => return Err(Error::invalid("UNet", "this model is class-conditional: pass class labels")),
            (None, Some(_)) => return Err(Error::invalid("UNet", "this model takes no class labels")),
            (None, None) => {}
        }
        // SiLU once for every ResBlock, and their projections in one product where stacked
        let act = emb.silu()?;
        let projected = self.emb_projections.as_ref().map(|p| p.forward(&act)).transpose()?;
        let emb = TimeEmbedding { act, projected };
        let mut skips = Vec::with_capacity(self.input_blocks.len());
        let mut h = x.clone();
        for slot in &self.input_blocks {
            h = slot.forward(&h, &emb, context, None)?;
            skips.push(h.clone());
        }
        h = self.middle.0.forward_to(&h, &emb, None)?;
        h = self.middle.1.forward(&h, context)?;
        h = self.middle.2.forward_to(&h, &emb, None)?;
        for slot in &self.output_blocks {
            let skip = skips.pop().expect("one skip per output block");
            h = Tensor::cat(&[&h, &skip], 1)?;
            // an upsampler targets the size of the skip the next block concatenates
            let up_to = match skips.last() {
                Some(s) => Some((s.dim(2)?, s.dim(3)?)),
                None => None,
            };
            h = slot.forward(&h, &emb, context, up_to)?;
        }
        self.out_conv.forward(&self.out_norm.forward_silu(&h)?)
    }
}

/// Sinusoidal timestep embedding, [cos | sin] halves (CompVis `timestep_embedding`, diffusers
/// `Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)`): t [N] → [N, dim].
pub fn timestep_embedding(t: &Tensor, dim: usize, dtype: DType) -> Result<Tensor> {
    let half = dim / 2;
    let ts = t.to_vec::<f32>()?;
    let mut v = Vec::with_capacity(ts.len() * dim);
    for &tv in &ts {
        let args: Vec<f64> = (0..half).map(|i| tv as f64 * (-(10000f64.ln()) * i as f64 / half as f64).exp()).collect();
        v.extend(args.iter().map(|a| a.cos() as f32));
        v.extend(args.iter().map(|a| a.sin() as f32));
        if dim % 2 == 1 {
            v.push(0.0);
        }
    }
    Tensor::from_vec(v, &[ts.len(), dim])?.to_dtype(dtype)
}
