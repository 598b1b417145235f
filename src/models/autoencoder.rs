//! The first stage: CompVis ldm/modules/diffusionmodules/model.py Encoder/Decoder and
//! ldm/models/autoencoder.py AutoencoderKL, under the CompVis key tree (encoder.down.{i}.block.{j},
//! encoder.mid.{block_1,attn_1,block_2}, decoder.up.{level}.…, quant_conv, post_quant_conv).

use crate::autograd::PadMode;
use crate::nn::{Conv2d, GroupNorm, Module, VarBuilder};
use crate::tensor::conv::Conv2dParams;
use crate::{Error, Result, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct AutoencoderConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// levels (0 = full resolution) with attention after each block (SD: none)
    pub attn_levels: Vec<usize>,
    pub z_channels: usize,
    pub embed_dim: usize,
    pub groups: usize,
    /// The middle block's self-attention; false for CompVis `attn_type: none` (e.g. the
    /// vq-f4-noattn first stage), which also drops every per-level attention.
    pub mid_attn: bool,
}

impl AutoencoderConfig {
    /// Image pixels per latent along each side: 2^(levels − 1) (8 for SD's VAE).
    pub fn downsampling(&self) -> usize {
        1 << self.ch_mult.len().saturating_sub(1)
    }

    /// Stable Diffusion's KL-f8 VAE (configs/stable-diffusion/v1-inference.yaml first_stage_config).
    pub fn sd_kl_f8() -> Self {
        AutoencoderConfig { in_channels: 3, out_channels: 3, ch: 128, ch_mult: vec![1, 2, 4, 4], num_res_blocks: 2, attn_levels: vec![], z_channels: 4, embed_dim: 4, groups: 32, mid_attn: true }
    }
}

const EPS: f64 = 1e-6;

/// norm → SiLU → conv, twice, with a 1×1 `nin_shortcut` when channels change (no time input).
struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    fn new(vb: &VarBuilder, cin: usize, cout: usize, groups: usize) -> Result<Self> {
        Ok(ResnetBlock {
            norm1: GroupNorm::new(&vb.pp("norm1"), groups, cin, EPS)?,
            conv1: Conv2d::same(&vb.pp("conv1"), cin, cout, 3)?,
            norm2: GroupNorm::new(&vb.pp("norm2"), groups, cout, EPS)?,
            conv2: Conv2d::same(&vb.pp("conv2"), cout, cout, 3)?,
            shortcut: (cin != cout).then(|| Conv2d::same(&vb.pp("nin_shortcut"), cin, cout, 1)).transpose()?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.shortcut {
            Some(s) => {
                // the shortcut conv gets x from norm1's launch in the layout it reads, and runs
                // first, so that copy is freed before conv1's output exists
                let (hn, x) = self.norm1.forward_silu_and_input(x)?;
                let shortcut = s.forward(&x)?;
                drop(x);
                let h = self.norm2.forward_silu(&self.conv1.forward(&hn)?)?;
                self.conv2.forward_add(&h, &shortcut)
            }
            None => {
                let h = self.norm2.forward_silu(&self.conv1.forward(&self.norm1.forward_silu(x)?)?)?;
                self.conv2.forward_add(&h, x)
            }
        }
    }
}

/// Single-head self-attention over pixels, with 1×1-conv projections.
struct AttnBlock {
    norm: GroupNorm,
    q: Conv2d,
    k: Conv2d,
    v: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    fn new(vb: &VarBuilder, c: usize, groups: usize) -> Result<Self> {
        let one = |n: &str| Conv2d::same(&vb.pp(n), c, c, 1);
        Ok(AttnBlock { norm: GroupNorm::new(&vb.pp("norm"), groups, c, EPS)?, q: one("q")?, k: one("k")?, v: one("v")?, proj_out: one("proj_out")? })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = (x.dim(0)?, x.dim(1)?, x.dim(2)?, x.dim(3)?);
        let hn = self.norm.forward(x)?;
        let tokens = |t: Tensor| t.reshape(&[n, 1, c, h * w])?.transpose(2, 3); // [N, 1, HW, C]
        let (q, k, v) = (tokens(self.q.forward(&hn)?)?, tokens(self.k.forward(&hn)?)?, tokens(self.v.forward(&hn)?)?);
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, None, None)?;
        let a = a.transpose(2, 3)?.reshape(&[n, c, h, w])?;
        self.proj_out.forward_add(&a, x)
    }
}

struct Level {
    blocks: Vec<ResnetBlock>,
    attns: Vec<AttnBlock>,
    resample: Option<Conv2d>,
}

struct Mid {
    block_1: ResnetBlock,
    attn_1: Option<AttnBlock>,
    block_2: ResnetBlock,
}

impl Mid {
    fn new(vb: &VarBuilder, c: usize, cfg: &AutoencoderConfig) -> Result<Self> {
        let g = cfg.groups;
        Ok(Mid {
            block_1: ResnetBlock::new(&vb.pp("block_1"), c, c, g)?,
            attn_1: cfg.mid_attn.then(|| AttnBlock::new(&vb.pp("attn_1"), c, g)).transpose()?,
            block_2: ResnetBlock::new(&vb.pp("block_2"), c, c, g)?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.block_1.forward(x)?;
        let h = match &self.attn_1 {
            Some(a) => a.forward(&h)?,
            None => h,
        };
        self.block_2.forward(&h)
    }
}

fn run_level(l: &Level, mut h: Tensor) -> Result<Tensor> {
    for (i, b) in l.blocks.iter().enumerate() {
        h = b.forward(&h)?;
        if let Some(a) = l.attns.get(i) {
            h = a.forward(&h)?;
        }
    }
    Ok(h)
}

pub struct Encoder {
    conv_in: Conv2d,
    down: Vec<Level>,
    mid: Mid,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    /// `double_z`: output mean and log-variance (KL) rather than z alone (VQ).
    pub fn new(vb: &VarBuilder, cfg: &AutoencoderConfig, double_z: bool) -> Result<Self> {
        let mut block_in = cfg.ch;
        let mut down = Vec::new();
        for (i, &mult) in cfg.ch_mult.iter().enumerate() {
            let lv = vb.pp("down").pp(i);
            let out = cfg.ch * mult;
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for j in 0..cfg.num_res_blocks {
                blocks.push(ResnetBlock::new(&lv.pp("block").pp(j), block_in, out, cfg.groups)?);
                block_in = out;
                if cfg.mid_attn && cfg.attn_levels.contains(&i) {
                    attns.push(AttnBlock::new(&lv.pp("attn").pp(j), out, cfg.groups)?);
                }
            }
            // CompVis pads right/bottom by one, then a valid stride-2 conv
            let resample = (i + 1 < cfg.ch_mult.len())
                .then(|| Conv2d::new(&lv.pp("downsample").pp("conv"), block_in, block_in, 3, Conv2dParams { stride: (2, 2), ..Default::default() }, true))
                .transpose()?;
            down.push(Level { blocks, attns, resample });
        }
        let zc = if double_z { 2 * cfg.z_channels } else { cfg.z_channels };
        Ok(Encoder {
            conv_in: Conv2d::same(&vb.pp("conv_in"), cfg.in_channels, cfg.ch, 3)?,
            down,
            mid: Mid::new(&vb.pp("mid"), block_in, cfg)?,
            norm_out: GroupNorm::new(&vb.pp("norm_out"), cfg.groups, block_in, EPS)?,
            conv_out: Conv2d::same(&vb.pp("conv_out"), block_in, zc, 3)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        for l in &self.down {
            h = run_level(l, h)?;
            if let Some(c) = &l.resample {
                h = c.forward(&h.pad2d([0, 1, 0, 1], PadMode::Zero)?)?;
            }
        }
        let h = self.mid.forward(&h)?;
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}

pub struct Decoder {
    conv_in: Conv2d,
    mid: Mid,
    /// indexed by level (up.{0} is full resolution), run deepest first
    up: Vec<Level>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    /// Where the weights live.
    pub fn device(&self) -> crate::Device {
        self.conv_in.weight.device()
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> crate::DType {
        self.conv_in.weight.dtype()
    }

    pub fn new(vb: &VarBuilder, cfg: &AutoencoderConfig) -> Result<Self> {
        let levels = cfg.ch_mult.len();
        let mut block_in = cfg.ch * cfg.ch_mult[levels - 1];
        let conv_in = Conv2d::same(&vb.pp("conv_in"), cfg.z_channels, block_in, 3)?;
        let mid = Mid::new(&vb.pp("mid"), block_in, cfg)?;
        let mut up: Vec<Option<Level>> = (0..levels).map(|_| None).collect();
        for i in (0..levels).rev() {
            let lv = vb.pp("up").pp(i);
            let out = cfg.ch * cfg.ch_mult[i];
            let mut blocks = Vec::new();
            let mut attns = Vec::new();
            for j in 0..=cfg.num_res_blocks {
                blocks.push(ResnetBlock::new(&lv.pp("block").pp(j), block_in, out, cfg.groups)?);
                block_in = out;
                if cfg.mid_attn && cfg.attn_levels.contains(&i) {
                    attns.push(AttnBlock::new(&lv.pp("attn").pp(j), out, cfg.groups)?);
                }
            }
            let resample = (i > 0).then(|| Conv2d::same(&lv.pp("upsample").pp("conv"), block_in, block_in, 3)).transpose()?;
            up[i] = Some(Level { blocks, attns, resample });
        }
        Ok(Decoder {
            conv_in,
            mid,
            up: up.into_iter().map(|l| l.expect("every level built")).collect(),
            norm_out: GroupNorm::new(&vb.pp("norm_out"), cfg.groups, block_in, EPS)?,
            conv_out: Conv2d::same(&vb.pp("conv_out"), block_in, cfg.out_channels, 3)?,
        })
    }

    /// The final conv's weight: the "last layer" the GAN loss's adaptive weight is measured at.
    pub fn last_layer(&self) -> &Tensor {
        &self.conv_out.weight
    }

    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = self.mid.forward(&self.conv_in.forward(z)?)?;
        for l in self.up.iter().rev() {
            h = run_level(l, h)?;
            if let Some(c) = &l.resample {
                h = c.forward(&h.upsample_nearest2d(2 * h.dim(2)?, 2 * h.dim(3)?)?)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}

/// The diagonal Gaussian the KL encoder outputs.
pub struct Posterior {
    pub mean: Tensor,
    /// clamped to [−30, 20] as CompVis does
    pub logvar: Tensor,
}

impl Posterior {
    pub fn mode(&self) -> &Tensor {
        &self.mean
    }
    /// mean + σ·ε with ε ~ N(0, 1) from the caller's RNG.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> Result<Tensor> {
        let eps = Tensor::randn(self.mean.shape(), 0.0, 1.0, self.mean.dtype(), rng).to_device(self.mean.device())?;
        self.mean.add(&self.logvar.mul_scalar(0.5)?.exp()?.mul(&eps)?)
    }
    /// KL(q ‖ N(0, I)) summed over C, H, W: one value per sample.
    pub fn kl(&self) -> Result<Tensor> {
        let var = self.logvar.exp()?;
        self.mean.sqr()?.add(&var)?.sub(&self.logvar)?.add_scalar(-1.0)?.mul_scalar(0.5)?.sum(&[1, 2, 3])
    }
}

pub struct AutoencoderKL {
    pub encoder: Encoder,
    pub decoder: Decoder,
    quant_conv: Conv2d,
    post_quant_conv: Conv2d,
    cfg: AutoencoderConfig,
}

impl AutoencoderKL {
    pub fn new(vb: &VarBuilder, cfg: &AutoencoderConfig) -> Result<Self> {
        if cfg.ch_mult.is_empty() || cfg.groups == 0 {
            return Err(Error::invalid("AutoencoderKL", format!("bad config: ch_mult {:?}, groups {}", cfg.ch_mult, cfg.groups)));
        }
        Ok(AutoencoderKL {
            encoder: Encoder::new(&vb.pp("encoder"), cfg, true)?,
            decoder: Decoder::new(&vb.pp("decoder"), cfg)?,
            quant_conv: Conv2d::same(&vb.pp("quant_conv"), 2 * cfg.z_channels, 2 * cfg.embed_dim, 1)?,
            post_quant_conv: Conv2d::same(&vb.pp("post_quant_conv"), cfg.embed_dim, cfg.z_channels, 1)?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &AutoencoderConfig {
        &self.cfg
    }

    /// x [N, C, H, W] in [−1, 1] → the posterior over latents [N, embed_dim, ⌈H/f⌉, ⌈W/f⌉].
    pub fn encode(&self, x: &Tensor) -> Result<Posterior> {
        let moments = self.quant_conv.forward(&self.encoder.forward(x)?)?;
        let parts = moments.chunk(2, 1)?;
        Ok(Posterior { mean: parts[0].contiguous()?, logvar: parts[1].clamp(-30.0, 20.0)? })
    }

    /// z [N, embed_dim, h, w] → image [N, C_out, h·f, w·f].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.post_quant_conv.forward(z)?)
    }

    /// `decode` in overlapping latent tiles of `tile`×`tile`, so the decoder's activations never
    /// cover more than one tile (memory for them does not grow with the image; the output and one
    /// row of decoded tiles do). Tiles
    /// step by `tile·(1 − overlap)`; each is blended linearly into the finished tile above and then
    /// the one to its left over `overlap` of a decoded tile, then cropped: the scheme and result of
    /// diffusers' `AutoencoderKL.tiled_decode`. Only the previous row of tiles is kept.
    pub fn decode_tiled(&self, z: &Tensor, tile: usize, overlap: f64) -> Result<Tensor> {
        if z.rank() != 4 {
            return Err(Error::bad_shape("decode_tiled", "latents must be [N, C, H, W]", z.shape()));
        }
        let step = (tile as f64 * (1.0 - overlap)) as usize;
        if tile == 0 || step == 0 || !(0.0..1.0).contains(&overlap) {
            return Err(Error::invalid("decode_tiled", format!("tile {tile} with overlap {overlap} gives no progress")));
        }
        let f = self.cfg.downsampling();
        let sample_tile = tile * f;
        let blend = (sample_tile as f64 * overlap) as usize;
        let keep = sample_tile - blend;
        let (h, w) = (z.dim(2)?, z.dim(3)?);
        // as diffusers: a latent that fits in one tile is decoded whole
        if h <= tile && w <= tile {
            return self.decode(z);
        }
        let mut prev: Vec<Tensor> = Vec::new();
        let mut rows = Vec::new();
        for i in (0..h).step_by(step) {
            let mut cur: Vec<Tensor> = Vec::new();
            for (jj, j) in (0..w).step_by(step).enumerate() {
                let t = z.narrow(2, i, tile.min(h - i))?.narrow(3, j, tile.min(w - j))?;
                let mut d = self.decode(&t)?;
                if let Some(above) = prev.get(jj) {
                    d = blend_edge(above, &d, blend, 2)?;
                }
                if let Some(left) = cur.last() {
                    d = blend_edge(left, &d, blend, 3)?;
                }
                cur.push(d);
            }
            let cropped = cur
                .iter()
                .map(|t| t.narrow(2, 0, keep.min(t.dim(2)?))?.narrow(3, 0, keep.min(t.dim(3)?)))
                .collect::<Result<Vec<_>>>()?;
            rows.push(Tensor::cat(&cropped.iter().collect::<Vec<_>>(), 3)?);
            prev = cur;
        }
        Tensor::cat(&rows.iter().collect::<Vec<_>>(), 2)
    }
}

/// Ramps from the end of `a` into the start of `b` along `dim` over `extent` rows (or columns):
/// row y of b becomes a[len_a − e + y]·(1 − y/e) + b[y]·(y/e).
fn blend_edge(a: &Tensor, b: &Tensor, extent: usize, dim: usize) -> Result<Tensor> {
    let e = extent.min(a.dim(dim as isize)?).min(b.dim(dim as isize)?);
    if e == 0 {
        return Ok(b.clone());
    }
    let mut wshape = vec![1; 4];
    wshape[dim] = e;
    let w = Tensor::from_vec((0..e).map(|y| y as f32 / e as f32).collect(), &wshape)?.to_dtype(b.dtype())?.to_device(b.device())?;
    let a_end = a.narrow(dim as isize, a.dim(dim as isize)? - e, e)?;
    let b_start = b.narrow(dim as isize, 0, e)?;
    let mixed = a_end.mul(&w.affine(-1.0, 1.0)?)?.add(&b_start.mul(&w)?)?;
    let rest = b.narrow(dim as isize, e, b.dim(dim as isize)? - e)?;
    Tensor::cat(&[&mixed, &rest], dim as isize)
}
