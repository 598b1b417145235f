//! The VQ-regularised first stage: CompVis taming-transformers `VectorQuantizer2` (nearest-code
//! lookup, straight-through gradients, both β conventions) or its `EMAVectorQuantizer` (the
//! codebook follows moving averages of the encoder outputs instead of gradients), and
//! ldm/models/autoencoder.py `VQModel` (encoder → quant_conv → quantize → post_quant_conv →
//! decoder).

use super::autoencoder::{AutoencoderConfig, Decoder, Encoder};
use crate::nn::{Conv2d, Module, VarBuilder};
use crate::{Error, Result, Tensor};

pub struct VectorQuantizer {
    /// [n_embed, embed_dim]
    pub codebook: Tensor,
    pub beta: f64,
    /// `legacy = true` (CompVis' default) puts β on the codebook term, false on the commitment term.
    pub legacy: bool,
    /// Some: the EMA codebook (taming `EmbeddingEMA`); the loss is then β·commitment only.
    pub ema: Option<CodebookEma>,
}

/// taming's `EmbeddingEMA` state, f32, stored as `embedding.cluster_size` [K] and
/// `embedding.embed_avg` [K, D] next to `embedding.weight` (taming's names). Each training
/// forward: N_k ← d·N_k + (1−d)·n_k (the codes' counts), m_k ← d·m_k + (1−d)·Σ_{z→k} z, then
/// e_k = m_k / ((N_k + ε)/(N + K·ε)·N) with N = Σ N_k (Laplace smoothing keeps unused codes finite).
pub struct CodebookEma {
    pub decay: f64,
    pub eps: f64,
    pub cluster_size: Tensor,
    pub embed_avg: Tensor,
}

/// What quantisation gives: the codes, their indices (row-major over N, H, W) and the VQ loss.
pub struct Quantized {
    /// [N, embed_dim, H, W], straight-through: its gradient flows to the encoder output
    pub z_q: Tensor,
    /// [N·H·W] I64
    pub indices: Tensor,
    pub loss: Tensor,
}

impl VectorQuantizer {
    pub fn new(vb: &VarBuilder, n_embed: usize, embed_dim: usize, beta: f64, legacy: bool) -> Result<Self> {
        // CompVis initialises the codebook uniform in ±1/n_embed: FanInUniform's bound is 1/√fan_in
        let init = crate::nn::Init::FanInUniform { fan_in: n_embed * n_embed };
        let codebook = vb.get_with_init(&[n_embed, embed_dim], "embedding.weight", init)?;
        Ok(VectorQuantizer { codebook, beta, legacy, ema: None })
    }

    /// The EMA codebook (taming `EMAVectorQuantizer`): codes start standard-normal as taming's
    /// do, the averages at the codes, the counts at 0.
    pub fn new_ema(vb: &VarBuilder, n_embed: usize, embed_dim: usize, beta: f64, decay: f64) -> Result<Self> {
        use crate::nn::Init;
        let codebook = vb.get_with_init(&[n_embed, embed_dim], "embedding.weight", Init::Normal { std: 1.0 })?;
        let cluster_size = vb.get_with_init(&[n_embed], "embedding.cluster_size", Init::Zeros)?;
        let embed_avg = vb.get_with_init(&[n_embed, embed_dim], "embedding.embed_avg", Init::Zeros)?;
        crate::tensor::fused::copy_values(&embed_avg, &codebook)?;
        Ok(VectorQuantizer { codebook, beta, legacy: true, ema: Some(CodebookEma { decay, eps: 1e-5, cluster_size, embed_avg }) })
    }

    /// Names of the tensors the EMA codebook updates itself (not by gradients): an optimiser
    /// must leave them alone.
    pub const EMA_STATE: [&'static str; 3] = ["embedding.weight", "embedding.cluster_size", "embedding.embed_avg"];

    /// One EMA step from a training forward's encoder outputs z [N, D, H, W] and their code
    /// `indices` [N·H·W]; a no-op without the EMA codebook.
    pub fn ema_update(&self, z: &Tensor, indices: &Tensor) -> Result<()> {
        let Some(ema) = &self.ema else { return Ok(()) };
        let _g = crate::no_grad();
        let (k, d) = (self.codebook.dim(0)?, self.codebook.dim(1)?);
        let dev = self.codebook.device();
        let flat = z.detach().permute(&[0, 2, 3, 1])?.reshape(&[indices.numel(), d])?.to_dtype(crate::DType::F32)?; // [P, D]
        let codes = Tensor::arange(0.0, k as f64, 1.0, crate::DType::I64)?.to_device(dev)?.reshape(&[1, k])?;
        let onehot = indices.to_device(dev)?.reshape(&[indices.numel(), 1])?.eq(&codes)?.to_dtype(crate::DType::F32)?; // [P, K]
        let counts = onehot.sum(&[0])?; // [K]
        let sums = onehot.t()?.matmul(&flat)?; // [K, D]
        let one_minus = (1.0 - ema.decay) as f32;
        crate::tensor::fused::ema_update(&ema.cluster_size, &counts, one_minus)?;
        crate::tensor::fused::ema_update(&ema.embed_avg, &sums, one_minus)?;
        let n = ema.cluster_size.sum_all()?; // []
        let smoothed = ema.cluster_size.add_scalar(ema.eps)?.div(&n.add_scalar(k as f64 * ema.eps)?)?.mul(&n)?; // [K]
        let codebook = ema.embed_avg.div(&smoothed.reshape(&[k, 1])?)?;
        crate::tensor::fused::copy_values(&self.codebook, &codebook)
    }

    /// Nearest codebook entry (Euclidean) for every position of z [N, C, H, W].
    pub fn indices(&self, z: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = match z.shape() {
            &[n, c, h, w] if c == self.codebook.dim(1)? => (n, c, h, w),
            s => return Err(Error::bad_shape("VectorQuantizer", format!("expected [N, {}, H, W]", self.codebook.dim(1)?), s)),
        };
        let _g = crate::no_grad();
        let flat = z.permute(&[0, 2, 3, 1])?.reshape(&[n * h * w, c])?; // [P, C]
        // |z − e|² = |z|² − 2 z·e + |e|²; |z|² is the same for every code of a row, so it is dropped
        let e2 = self.codebook.sqr()?.sum(&[1])?; // [K]
        let d = flat.matmul(&self.codebook.t()?)?.mul_scalar(-2.0)?.add(&e2)?; // [P, K]
        d.neg()?.argmax(1, false)
    }

    pub fn forward(&self, z: &Tensor) -> Result<Quantized> {
        let indices = self.indices(z)?;
        let (n, c, h, w) = (z.dim(0)?, z.dim(1)?, z.dim(2)?, z.dim(3)?);
        let zq = self.codebook.embedding(&indices)?.reshape(&[n, h, w, c])?.permute(&[0, 3, 1, 2])?.contiguous()?;
        let commit = zq.detach().sub(z)?.sqr()?.mean_all()?; // pulls the encoder to its code
        if self.ema.is_some() {
            // the codes move by their averages, not by gradients: only the commitment term
            let z_q = z.add(&zq.sub(z)?.detach())?;
            return Ok(Quantized { z_q, indices, loss: commit.mul_scalar(self.beta)? });
        }
        let codebook = zq.sub(&z.detach())?.sqr()?.mean_all()?; // pulls the code to the encoder
        let loss = if self.legacy {
            commit.add(&codebook.mul_scalar(self.beta)?)?
        } else {
            commit.mul_scalar(self.beta)?.add(&codebook)?
        };
        // straight-through estimator: value of z_q, gradient of z
        let z_q = z.add(&zq.sub(z)?.detach())?;
        Ok(Quantized { z_q, indices, loss })
    }

    /// Codes for given indices [N, H, W] → [N, embed_dim, H, W].
    pub fn lookup(&self, indices: &Tensor) -> Result<Tensor> {
        let (n, h, w) = match indices.shape() {
            &[n, h, w] => (n, h, w),
            s => return Err(Error::bad_shape("VectorQuantizer::lookup", "indices must be [N, H, W]", s)),
        };
        let c = self.codebook.dim(1)?;
        self.codebook.embedding(indices)?.reshape(&[n, h, w, c])?.permute(&[0, 3, 1, 2])?.contiguous()
    }
}

pub struct VQModel {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub quantize: VectorQuantizer,
    quant_conv: Conv2d,
    post_quant_conv: Conv2d,
    cfg: AutoencoderConfig,
}

impl VQModel {
    pub fn new(vb: &VarBuilder, cfg: &AutoencoderConfig, n_embed: usize, beta: f64, legacy: bool) -> Result<Self> {
        Self::with_quantizer(vb, cfg, |vb| VectorQuantizer::new(vb, n_embed, cfg.embed_dim, beta, legacy))
    }

    /// A VQ model with taming's EMA codebook (decay `decay`).
    pub fn new_ema(vb: &VarBuilder, cfg: &AutoencoderConfig, n_embed: usize, beta: f64, decay: f64) -> Result<Self> {
        Self::with_quantizer(vb, cfg, |vb| VectorQuantizer::new_ema(vb, n_embed, cfg.embed_dim, beta, decay))
    }

    /// The model around a quantizer built under `quantize.` (parameters requested in CompVis'
    /// order: encoder, decoder, quantizer, the 1×1 convs).
    fn with_quantizer(vb: &VarBuilder, cfg: &AutoencoderConfig, quantizer: impl FnOnce(&VarBuilder) -> Result<VectorQuantizer>) -> Result<Self> {
        Ok(VQModel {
            encoder: Encoder::new(&vb.pp("encoder"), cfg, false)?,
            decoder: Decoder::new(&vb.pp("decoder"), cfg)?,
            quantize: quantizer(&vb.pp("quantize"))?,
            quant_conv: Conv2d::same(&vb.pp("quant_conv"), cfg.z_channels, cfg.embed_dim, 1)?,
            post_quant_conv: Conv2d::same(&vb.pp("post_quant_conv"), cfg.embed_dim, cfg.z_channels, 1)?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &AutoencoderConfig {
        &self.cfg
    }

    /// x → pre-quantisation latents h [N, embed_dim, H/f, W/f] (what LDMs on VQ models diffuse).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.quant_conv.forward(&self.encoder.forward(x)?)
    }

    /// Latents → image, quantising first (as CompVis `decode` does unless told otherwise).
    pub fn decode(&self, h: &Tensor) -> Result<Tensor> {
        let q = self.quantize.forward(h)?;
        self.decode_code(&q.z_q)
    }

    /// Already-quantised codes → image.
    pub fn decode_code(&self, z_q: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.post_quant_conv.forward(z_q)?)
    }
}
