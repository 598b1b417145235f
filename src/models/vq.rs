//! The VQ-regularised first stage: CompVis taming-transformers `VectorQuantizer2` (nearest-code
//! lookup, straight-through gradients, both β conventions) and ldm/models/autoencoder.py
//! `VQModel` (encoder → quant_conv → quantize → post_quant_conv → decoder).

use super::autoencoder::{AutoencoderConfig, Decoder, Encoder};
use crate::nn::{Conv2d, Module, VarBuilder};
use crate::{Error, Result, Tensor};

pub struct VectorQuantizer {
    /// [n_embed, embed_dim]
    pub codebook: Tensor,
    pub beta: f64,
    /// `legacy = true` (CompVis' default) puts β on the codebook term, false on the commitment term.
    pub legacy: bool,
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
        Ok(VectorQuantizer { codebook, beta, legacy })
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
        Ok(VQModel {
            encoder: Encoder::new(&vb.pp("encoder"), cfg, false)?,
            decoder: Decoder::new(&vb.pp("decoder"), cfg)?,
            quantize: VectorQuantizer::new(&vb.pp("quantize"), n_embed, cfg.embed_dim, beta, legacy)?,
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
