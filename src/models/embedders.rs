//! The paper's non-text conditioners (CompVis ldm/modules/encoders/modules.py):
//! `ClassEmbedder` (class-conditional LDMs such as cin256: a label becomes a one-token context for
//! cross-attention) and `SpatialRescaler` (semantic synthesis: a one-hot segmentation map is
//! shrunk to latent size and remapped to a few channels, then concatenated to the UNet input).
//! Keys are the CompVis ones under `cond_stage_model.`.

use crate::nn::{Conv2d, Module, VarBuilder};
use crate::tensor::conv::Conv2dParams;
use crate::{DType, Error, Result, Tensor};

/// `nn.Embedding(n_classes, embed_dim)` read as a context sequence of length 1.
pub struct ClassEmbedder {
    /// [n_classes, embed_dim]; cin256-v2 keeps one extra row (class 1000) as the null class for
    /// classifier-free guidance.
    pub embedding: Tensor,
}

impl ClassEmbedder {
    pub fn new(vb: &VarBuilder, n_classes: usize, embed_dim: usize) -> Result<Self> {
        Ok(ClassEmbedder { embedding: vb.get_with_init(&[n_classes, embed_dim], "embedding.weight", crate::nn::Init::Normal { std: 1.0 })? })
    }

    pub fn num_classes(&self) -> usize {
        self.embedding.dims()[0]
    }

    /// labels [N] (I64, each < n_classes) → context [N, 1, embed_dim]
    pub fn forward(&self, labels: &Tensor) -> Result<Tensor> {
        if labels.rank() != 1 || labels.dtype() != DType::I64 {
            return Err(Error::bad_shape("ClassEmbedder", "labels must be a 1-D I64 tensor", labels.shape()));
        }
        let n = self.num_classes();
        if let Some(bad) = labels.to_vec::<i64>()?.into_iter().find(|&l| l < 0 || l as usize >= n) {
            return Err(Error::invalid("ClassEmbedder", format!("class label {bad} is outside 0..{n}")));
        }
        self.embedding.embedding(labels)?.unsqueeze(1)
    }
}

/// `n_stages` bilinear ×½ resizes, then an optional bias-free 1×1 conv `channel_mapper`.
pub struct SpatialRescaler {
    n_stages: usize,
    channel_mapper: Option<Conv2d>,
}

impl SpatialRescaler {
    /// `out_channels: None` keeps the channels (no mapper), as CompVis does.
    pub fn new(vb: &VarBuilder, n_stages: usize, in_channels: usize, out_channels: Option<usize>) -> Result<Self> {
        let channel_mapper = out_channels
            .map(|o| Conv2d::new(&vb.pp("channel_mapper"), in_channels, o, 1, Conv2dParams::default(), false))
            .transpose()?;
        Ok(SpatialRescaler { n_stages, channel_mapper })
    }

    /// How many ×½ stages: the input is 2^n_stages times the output's size.
    pub fn n_stages(&self) -> usize {
        self.n_stages
    }

    /// x [N, C, H, W] → [N, C_out, H / 2^n_stages, W / 2^n_stages] (sizes floor at each stage).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for stage in 0..self.n_stages {
            if h.dim(2)? < 2 || h.dim(3)? < 2 {
                return Err(Error::bad_shape("SpatialRescaler", format!("too small for stage {} of {}", stage + 1, self.n_stages), h.shape()));
            }
            // bilinear at scale ½ with align_corners=False samples each output at source
            // coordinate 2i + ½, exactly between two pixels: the 2×2 average, odd sizes floored
            h = h.avg_pool2d((2, 2), (2, 2))?;
        }
        match &self.channel_mapper {
            Some(c) => c.forward(&h),
            None => Ok(h),
        }
    }
}
