//! The basic layers, with torch.nn's parameter names and layouts (so checkpoints load as they are):
//! Linear (weight [out, in], bias [out]), Conv2d (weight [out, in/groups, kh, kw]), GroupNorm and
//! LayerNorm (weight, bias), Embedding (weight [num, dim]).

use super::{Init, VarBuilder};
use crate::tensor::conv::Conv2dParams;
use crate::{Result, Tensor};

/// A layer that maps one tensor to one tensor.
pub trait Module {
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// A parameter in the dtype of the activations it meets. Mixed precision keeps f32 master
/// weights and runs the layers in bf16/f16: the weight is cast per call, and the cast is recorded,
/// so the gradient reaches the f32 weight. The same dtype costs nothing. (Norm layers need no cast:
/// their kernels read f32 or half parameters alike.)
pub(crate) fn in_dtype(p: &Tensor, dtype: crate::DType) -> Result<Tensor> {
    if p.dtype() == dtype || !dtype.is_float() { Ok(p.clone()) } else { p.to_dtype(dtype) }
}

#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(vb: &VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let init = Init::FanInUniform { fan_in: in_dim };
        let weight = vb.get_with_init(&[out_dim, in_dim], "weight", init)?;
        let bias = if bias { Some(vb.get_with_init(&[out_dim], "bias", init)?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// `parts` (one input width) as one Linear whose output is theirs side by side, in order: one
    /// product instead of one per part (one launch on a GPU). Each part's weight and bias become
    /// row views of the stack, so the separate tensors are freed and no memory is added. None,
    /// with the parts untouched, unless every one is a loaded inference weight: variables keep
    /// their own gradients, and shape-only placeholders (broadcast views) would become memory.
    pub fn stack_rows(parts: &mut [&mut Linear]) -> Result<Option<Linear>> {
        let stackable = |t: &Tensor| !t.is_var() && t.is_contiguous() && t.numel() > 0;
        let with_bias = parts.first().is_some_and(|l| l.bias.is_some());
        if parts.is_empty() || !parts.iter().all(|l| stackable(&l.weight) && l.bias.is_some() == with_bias && l.bias.as_ref().is_none_or(stackable)) {
            return Ok(None);
        }
        let weight = Tensor::cat(&parts.iter().map(|l| &l.weight).collect::<Vec<_>>(), 0)?;
        let bias = if with_bias { Some(Tensor::cat(&parts.iter().filter_map(|l| l.bias.as_ref()).collect::<Vec<_>>(), 0)?) } else { None };
        let mut offset = 0;
        for l in parts.iter_mut() {
            let rows = l.weight.dim(0)?;
            l.weight = weight.narrow(0, offset, rows)?;
            l.bias = bias.as_ref().map(|b| b.narrow(0, offset, rows)).transpose()?;
            offset += rows;
        }
        Ok(Some(Linear { weight, bias }))
    }
}

impl Linear {
    /// geglu(forward(x)), the gate fused into the product where the device allows
    /// (`Tensor::linear_geglu`).
    pub fn forward_geglu(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| in_dtype(b, x.dtype())).transpose()?;
        x.linear_geglu(&in_dtype(&self.weight, x.dtype())?, b.as_ref())
    }

    /// forward(x) + residual, fused into the product where the device allows (`Tensor::linear_add`).
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| in_dtype(b, x.dtype())).transpose()?;
        x.linear_add(&in_dtype(&self.weight, x.dtype())?, b.as_ref(), residual)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| in_dtype(b, x.dtype())).transpose()?;
        x.linear(&in_dtype(&self.weight, x.dtype())?, b.as_ref())
    }
}

#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: Conv2dParams,
}

impl Conv2d {
    pub fn new(vb: &VarBuilder, in_ch: usize, out_ch: usize, kernel: usize, params: Conv2dParams, bias: bool) -> Result<Self> {
        let init = Init::FanInUniform { fan_in: in_ch / params.groups.max(1) * kernel * kernel };
        let weight = vb.get_with_init(&[out_ch, in_ch / params.groups.max(1), kernel, kernel], "weight", init)?;
        let bias = if bias { Some(vb.get_with_init(&[out_ch], "bias", init)?) } else { None };
        Ok(Conv2d { weight, bias, params })
    }

    /// A k×k conv with "same" padding (k odd), stride 1: the UNet/VAE workhorse.
    pub fn same(vb: &VarBuilder, in_ch: usize, out_ch: usize, kernel: usize) -> Result<Self> {
        let p = kernel / 2;
        Self::new(vb, in_ch, out_ch, kernel, Conv2dParams { padding: (p, p), ..Default::default() }, true)
    }

    /// forward(x) + residual, fused into the conv where the device allows (`Tensor::conv2d_add`).
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| in_dtype(b, x.dtype())).transpose()?;
        x.conv2d_add(&in_dtype(&self.weight, x.dtype())?, b.as_ref(), self.params, residual)
    }

    /// A 1×1 conv (stride 1, no padding, one group) applied to `tokens` [N, H·W, C_in] — the image's
    /// pixels as rows — when those rows are contiguous (the image is stored channels-last, as a
    /// CUDA half-precision group_norm writes it for inference): the Linear it is, over the tokens,
    /// giving contiguous [N, H·W, C_out] tokens. None otherwise (the caller convolves the image).
    pub fn pointwise_on_tokens(&self, tokens: &Tensor) -> Result<Option<Tensor>> {
        let s = self.weight.shape();
        if s[2..] != [1, 1] || self.params != Conv2dParams::default() || !tokens.is_contiguous() {
            return Ok(None);
        }
        let b = self.bias.as_ref().map(|b| in_dtype(b, tokens.dtype())).transpose()?;
        let w = in_dtype(&self.weight, tokens.dtype())?.reshape(&[s[0], s[1]])?;
        tokens.linear(&w, b.as_ref()).map(Some)
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b = self.bias.as_ref().map(|b| in_dtype(b, x.dtype())).transpose()?;
        x.conv2d(&in_dtype(&self.weight, x.dtype())?, b.as_ref(), self.params)
    }
}

#[derive(Clone, Debug)]
pub struct GroupNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    pub fn new(vb: &VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        Ok(GroupNorm {
            weight: vb.get_with_init(&[channels], "weight", Init::Ones)?,
            bias: vb.get_with_init(&[channels], "bias", Init::Zeros)?,
            groups,
            eps,
        })
    }
}

impl GroupNorm {
    /// silu(norm(x)) as one fused op (the pair every ResBlock and VAE block opens with).
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        x.group_norm_silu(self.groups, Some(&self.weight), Some(&self.bias), self.eps)
    }

    /// (silu(norm(x)), x again in the layout a following conv reads best): `Tensor::group_norm_silu_and_input`.
    pub fn forward_silu_and_input(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        x.group_norm_silu_and_input(self.groups, Some(&self.weight), Some(&self.bias), self.eps)
    }

    /// silu(norm(x + shift)) for shift [N, C] per (sample, channel), in one pass for inference.
    pub fn forward_silu_shifted(&self, x: &Tensor, shift: &Tensor) -> Result<Tensor> {
        x.group_norm_silu_shifted(shift, self.groups, Some(&self.weight), Some(&self.bias), self.eps)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.group_norm(self.groups, Some(&self.weight), Some(&self.bias), self.eps)
    }
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(vb: &VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_init(&[dim], "weight", Init::Ones)?,
            bias: Some(vb.get_with_init(&[dim], "bias", Init::Zeros)?),
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(Some(&self.weight), self.bias.as_ref(), self.eps)
    }
}

#[derive(Clone, Debug)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(vb: &VarBuilder, num: usize, dim: usize) -> Result<Self> {
        Ok(Embedding { weight: vb.get_with_init(&[num, dim], "weight", Init::Normal { std: 1.0 })? })
    }
    /// ids [...] (I64) → [..., dim]. Ids are built on the host (tokenizers, labels): they move to
    /// the table's device here, a few bytes.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.weight.embedding(&ids.to_device(self.weight.device())?)
    }
}
