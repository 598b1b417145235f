//! The PatchGAN discriminator of taming-transformers (`NLayerDiscriminator`, after pix2pix): 4×4
//! convolutions, stride 2 for the first `n_layers`, then two stride-1 ones, BatchNorm and
//! LeakyReLU(0.2) between them; it scores overlapping patches (one logit per patch), which the
//! first stage's adversarial loss uses to push reconstructions towards sharp local texture.
//!
//! Key tree as taming names it (`main.{i}`, the Sequential's indices, weightless layers counted),
//! and taming's `weights_init`: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0.
//! BatchNorm runs in training mode as the reference trains it: batch statistics (biased variance)
//! normalise, and the running statistics (unbiased variance, momentum 0.1) are kept as buffers.

use std::sync::Mutex;

use crate::nn::{Conv2d, Init, Module, VarBuilder};
use crate::tensor::conv::Conv2dParams;
use crate::{DType, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscriminatorConfig {
    pub in_channels: usize,
    /// width of the first layer (taming: 64)
    pub ndf: usize,
    /// stride-2 layers (taming / CompVis: 3)
    pub n_layers: usize,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        DiscriminatorConfig { in_channels: 3, ndf: 64, n_layers: 3 }
    }
}

/// BatchNorm2d in training mode.
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    /// torch's num_batches_tracked
    batches: Mutex<i64>,
}

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f32 = 0.1;

impl BatchNorm {
    fn new(vb: &VarBuilder, c: usize) -> Result<Self> {
        Ok(BatchNorm {
            weight: vb.get_with_init(&[c], "weight", Init::Ones)?,
            bias: vb.get_with_init(&[c], "bias", Init::Zeros)?,
            running_mean: Tensor::zeros_on(&[c], DType::F32, vb.device())?,
            running_var: Tensor::full_on(1.0, &[c], DType::F32, vb.device())?,
            batches: Mutex::new(0),
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = (x.dim(0)?, x.dim(1)?, x.dim(2)?, x.dim(3)?);
        let mean = x.mean_keepdim(&[0, 2, 3])?; // [1, C, 1, 1]
        let centered = x.sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(&[0, 2, 3])?; // biased, as the normalisation uses
        let y = centered.mul(&var.add_scalar(BN_EPS)?.rsqrt()?)?;
        let out = y.mul(&self.weight.reshape(&[1, c, 1, 1])?)?.add(&self.bias.reshape(&[1, c, 1, 1])?)?;
        // running statistics: not part of the graph
        let count = (n * h * w) as f32;
        let unbias = if count > 1.0 { count / (count - 1.0) } else { 1.0 };
        *self.batches.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        if self.running_mean.device() != crate::Device::Cpu {
            // on a device: the same update as tensor ops, written into the buffers in place
            let _g = crate::no_grad();
            let upd = |r: &Tensor, batch: Tensor, scale: f64| -> Result<()> {
                let new = r.mul_scalar(f64::from(1.0 - BN_MOMENTUM))?.add(&batch.reshape(&[c])?.to_dtype(DType::F32)?.mul_scalar(f64::from(BN_MOMENTUM) * scale)?)?;
                crate::tensor::fused::copy_values(r, &new)
            };
            upd(&self.running_mean, mean.detach(), 1.0)?;
            upd(&self.running_var, var.detach(), f64::from(unbias))?;
            return Ok(out);
        }
        let (m, v) = (mean.detach().to_vec::<f32>()?, var.detach().to_vec::<f32>()?);
        self.running_mean.update_f32(|r| {
            r.iter_mut().zip(&m).for_each(|(r, m)| *r = (1.0 - BN_MOMENTUM) * *r + BN_MOMENTUM * m);
            Ok(())
        })?;
        self.running_var.update_f32(|r| {
            r.iter_mut().zip(&v).for_each(|(r, v)| *r = (1.0 - BN_MOMENTUM) * *r + BN_MOMENTUM * v * unbias);
            Ok(())
        })?;
        Ok(out)
    }
}

/// LeakyReLU(0.2) from the runtime's ReLU: relu(x) − 0.2·relu(−x).
fn leaky_relu(x: &Tensor) -> Result<Tensor> {
    x.relu()?.sub(&x.neg()?.relu()?.mul_scalar(0.2)?)
}

enum Layer {
    Conv(Conv2d),
    Norm(BatchNorm),
    LeakyRelu,
}

pub struct Discriminator {
    layers: Vec<Layer>,
}

impl Discriminator {
    /// Builds under `vb` (e.g. `VarBuilder::from_init` with `init_weights` for a fresh one).
    pub fn new(vb: &VarBuilder, cfg: DiscriminatorConfig) -> Result<Self> {
        let conv = |i: usize, cin: usize, cout: usize, stride: usize, bias: bool| -> Result<Layer> {
            let p = Conv2dParams { stride: (stride, stride), padding: (1, 1), ..Default::default() };
            Ok(Layer::Conv(Conv2d::new(&vb.pp("main").pp(i), cin, cout, 4, p, bias)?))
        };
        let mut layers = vec![conv(0, cfg.in_channels, cfg.ndf, 2, true)?, Layer::LeakyRelu];
        let mut mult = 1;
        for n in 1..=cfg.n_layers {
            // the last of these keeps the resolution (stride 1), as pix2pix's does
            let (prev, stride) = (mult, if n < cfg.n_layers { 2 } else { 1 });
            mult = (1 << n).min(8);
            let i = layers.len();
            layers.push(conv(i, cfg.ndf * prev, cfg.ndf * mult, stride, false)?);
            layers.push(Layer::Norm(BatchNorm::new(&vb.pp("main").pp(i + 1), cfg.ndf * mult)?));
            layers.push(Layer::LeakyRelu);
        }
        let i = layers.len();
        layers.push(conv(i, cfg.ndf * mult, 1, 1, true)?);
        Ok(Discriminator { layers })
    }

    /// Patch logits [N, 1, h, w] for images [N, C, H, W].
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.layers {
            x = match l {
                Layer::Conv(c) => c.forward(&x)?,
                Layer::Norm(b) => b.forward(&x)?,
                Layer::LeakyRelu => leaky_relu(&x)?,
            };
        }
        Ok(x)
    }

    /// The BatchNorm buffers by their torch names (`main.{i}.running_mean`, …), for checkpoints.
    pub fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            if let Layer::Norm(b) = l {
                out.push((format!("main.{i}.running_mean"), b.running_mean.clone()));
                out.push((format!("main.{i}.running_var"), b.running_var.clone()));
                let n = *b.batches.lock().unwrap_or_else(|e| e.into_inner());
                out.push((format!("main.{i}.num_batches_tracked"), Tensor::from_vec(vec![n], &[])?));
            }
        }
        Ok(out)
    }
}

/// taming's `weights_init` as a VarBuilder init: conv weights N(0, 0.02), BatchNorm weights
/// (asked for with the `Ones` hint) N(1, 0.02), biases zero.
pub fn init_weights(seed: u64) -> VarBuilder {
    use rand::SeedableRng;
    let rng = Mutex::new(rand::rngs::StdRng::seed_from_u64(seed));
    VarBuilder::from_init(DType::F32, move |name, shape, init| {
        let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
        match init {
            _ if name.ends_with("bias") => Tensor::zeros(shape, DType::F32),
            Init::Ones => Tensor::randn(shape, 1.0, 0.02, DType::F32, &mut *rng),
            _ => Tensor::randn(shape, 0.0, 0.02, DType::F32, &mut *rng),
        }
    })
}
