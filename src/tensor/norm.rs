//! group_norm (NC..., as torch.nn.functional.group_norm) and layer_norm over the last dim.
//! Both use the biased variance, like torch. Arguments are validated here; the fused kernels are
//! in backend/cpu/norm.rs. f16/bf16 inputs compute in f32 and come back in their own dtype.

use super::{numel, Tensor};
use crate::autograd::Op;
use crate::backend::cpu::norm::{self as cpu, GroupDims};
use crate::backend::cuda::norm as cuda;
use crate::{Error, Result};

/// Checks an optional affine parameter: a float tensor on x's device with exactly `shape`.
fn check_param(op: &'static str, what: &str, p: Option<&Tensor>, x: &Tensor, shape: &[usize]) -> Result<()> {
    if let Some(p) = p {
        p.require_float(op)?;
        Tensor::same_device(op, x, p)?;
        if p.shape() != shape {
            return Err(Error::invalid(op, format!("{what} has shape {:?}, expected {shape:?}", p.shape())));
        }
    }
    Ok(())
}

fn check_eps(op: &'static str, eps: f64) -> Result<()> {
    if !(eps >= 0.0 && eps.is_finite()) {
        crate::bail!(op, "eps must be finite and >= 0, got {eps}");
    }
    Ok(())
}

/// Validated group-norm dims of x [N, C, *].
fn group_dims(op: &'static str, x: &Tensor, groups: usize, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<GroupDims> {
    x.require_float(op)?;
    if x.rank() < 2 {
        return Err(Error::bad_shape(op, "expected input [N, C, *] of rank >= 2", x.shape()));
    }
    let (n, c) = (x.shape()[0], x.shape()[1]);
    if groups == 0 || c % groups != 0 {
        return Err(Error::invalid(op, format!("{c} channels are not divisible into {groups} groups (input {:?})", x.shape())));
    }
    check_param(op, "weight", weight, x, &[c])?;
    check_param(op, "bias", bias, x, &[c])?;
    check_eps(op, eps)?;
    Ok(GroupDims { n, c, s: numel(&x.shape()[2..]), groups })
}

/// Validated row length of layer_norm's input.
fn layer_dim(op: &'static str, x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<usize> {
    x.require_float(op)?;
    let Some(&d) = x.shape().last() else {
        return Err(Error::bad_shape(op, "expected an input of rank >= 1", x.shape()));
    };
    check_param(op, "weight", weight, x, &[d])?;
    check_param(op, "bias", bias, x, &[d])?;
    check_eps(op, eps)?;
    Ok(d)
}

fn check_grad(op: &'static str, x: &Tensor, g: &Tensor) -> Result<()> {
    if g.shape() != x.shape() {
        return Err(Error::ShapeMismatch { op, lhs: g.shape().to_vec(), rhs: x.shape().to_vec() });
    }
    Tensor::same_device(op, x, g)
}

/// The f32 values of an optional parameter (owned: parameters are small).
fn param_values(p: Option<&Tensor>) -> Result<Option<Vec<f32>>> {
    p.map(|p| p.f32_data().map(|d| d.into_vec())).transpose()
}

/// Gradient of an affine parameter, in the parameter's own dtype.
fn param_grad(v: Option<Vec<f32>>, p: Option<&Tensor>) -> Option<Tensor> {
    match (v, p) {
        (Some(v), Some(p)) => Some(Tensor::from_f32_values(v, p.shape(), p.dtype(), None)),
        _ => None,
    }
}

impl Tensor {
    /// x [N, C, *], weight/bias [C].
    pub fn group_norm(&self, groups: usize, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        self.group_norm_impl(groups, weight, bias, eps, false)
    }

    /// silu(group_norm(x)) in one pass — the norm + nonlinearity that opens every UNet ResBlock and
    /// VAE block; on CUDA one kernel reads x once and writes the activation once.
    pub fn group_norm_silu(&self, groups: usize, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        self.group_norm_impl(groups, weight, bias, eps, true)
    }

    /// silu(group_norm(x + shift)) with shift [N, C] (or [1, C] for all samples) added per
    /// (sample, channel): the UNet ResBlock's norm of h + emb. For inference one pass, and h + emb
    /// is never materialised (on CUDA the norm's kernels read the shift; the sum is taken in f32,
    /// not rounded to x's dtype); where a gradient will be asked for, the recorded add and norm.
    pub fn group_norm_silu_shifted(&self, shift: &Tensor, groups: usize, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        const OP: &str = "group_norm_silu_shifted";
        let d = group_dims(OP, self, groups, weight, bias, eps)?;
        shift.require_float(OP)?;
        Tensor::same_device(OP, self, shift)?;
        if shift.rank() != 2 || (shift.dim(0)? != d.n && shift.dim(0)? != 1) || shift.dim(1)? != d.c {
            return Err(Error::invalid(OP, format!("shift has shape {:?}, expected [N, C] = {:?} or [1, C]", shift.shape(), [d.n, d.c])));
        }
        let inputs: Vec<&Tensor> = [self, shift].into_iter().chain(weight).chain(bias).collect();
        if Tensor::will_record(&inputs) {
            let mut per_channel = shift.shape().to_vec();
            per_channel.resize(self.rank(), 1);
            return self.add(&shift.reshape(&per_channel)?)?.group_norm_silu(groups, weight, bias, eps);
        }
        if self.device().is_cuda() {
            return Ok(cuda::group_norm(self, d, weight, bias, eps, true, Some(shift), false, None)?.0);
        }
        let (w, b) = (param_values(weight)?, param_values(bias)?);
        let mut x = self.f32_data()?.into_vec();
        let shift = shift.f32_data()?;
        let per_sample = if shift.len() == d.c { 0 } else { d.c }; // [1, C]: the same row for every sample
        for (i, v) in x.iter_mut().enumerate() {
            let (n, c) = (i / d.s / d.c, i / d.s % d.c);
            *v += shift[n * per_sample + c];
        }
        let mut out = cpu::group_norm(&x, d, w.as_deref(), b.as_deref(), eps);
        cpu::silu_in_place(&mut out);
        Ok(Tensor::from_f32_values(out, self.shape(), self.dtype(), None))
    }

    /// (silu(group_norm(x)), x again): the second is x's values in the layout a following conv
    /// reads best — on CUDA for inference, where the norm is written channels-last, a
    /// channels-last copy written by the norm's own launch (a ResBlock's 1×1 skip conv then needs
    /// no transpose of x); everywhere else x itself.
    pub fn group_norm_silu_and_input(&self, groups: usize, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<(Tensor, Tensor)> {
        let inputs: Vec<&Tensor> = std::iter::once(self).chain(weight).chain(bias).collect();
        if self.device().is_cuda() && !Tensor::will_record(&inputs) {
            let d = group_dims("group_norm_silu", self, groups, weight, bias, eps)?;
            let (y, copy) = cuda::group_norm(self, d, weight, bias, eps, true, None, true, None)?;
            return Ok((y, copy.unwrap_or_else(|| self.clone())));
        }
        Ok((self.group_norm_silu(groups, weight, bias, eps)?, self.clone()))
    }

    fn group_norm_impl(&self, groups: usize, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64, silu: bool) -> Result<Tensor> {
        let op = if silu { "group_norm_silu" } else { "group_norm" };
        let d = group_dims(op, self, groups, weight, bias, eps)?;
        let inputs: Vec<&Tensor> = std::iter::once(self).chain(weight).chain(bias).collect();
        let rec = Tensor::track(&inputs, || Op::GroupNorm {
            x: self.clone(),
            weight: weight.cloned(),
            bias: bias.cloned(),
            groups,
            eps,
            silu,
        });
        if self.device().is_cuda() {
            return Ok(cuda::group_norm(self, d, weight, bias, eps, silu, None, false, rec)?.0);
        }
        let (w, b) = (param_values(weight)?, param_values(bias)?);
        let mut out = {
            let x = self.f32_data()?;
            cpu::group_norm(&x, d, w.as_deref(), b.as_deref(), eps)
        };
        if silu {
            cpu::silu_in_place(&mut out);
        }
        Ok(Tensor::from_f32_values(out, self.shape(), self.dtype(), rec))
    }

    /// Normalises over the last dim; weight/bias [D].
    pub fn layer_norm(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        let d = layer_dim("layer_norm", self, weight, bias, eps)?;
        let inputs: Vec<&Tensor> = std::iter::once(self).chain(weight).chain(bias).collect();
        let rec = Tensor::track(&inputs, || Op::LayerNorm { x: self.clone(), weight: weight.cloned(), bias: bias.cloned(), eps });
        if self.device().is_cuda() {
            return cuda::layer_norm(self, d, weight, bias, eps, rec);
        }
        let (w, b) = (param_values(weight)?, param_values(bias)?);
        let out = {
            let x = self.f32_data()?;
            cpu::layer_norm(&x, d, w.as_deref(), b.as_deref(), eps)
        };
        Ok(Tensor::from_f32_values(out, self.shape(), self.dtype(), rec))
    }
}

/// (dx, dweight, dbias); the weight/bias grads are Some exactly when the inputs are.
pub(crate) fn group_norm_backward(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    groups: usize,
    eps: f64,
    silu: bool,
    g: &Tensor,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    const OP: &str = "group_norm_backward";
    let d = group_dims(OP, x, groups, weight, bias, eps)?;
    check_grad(OP, x, g)?;
    if x.device().is_cuda() {
        return cuda::group_norm_backward(x, g, d, weight, bias, eps, silu);
    }
    let w = param_values(weight)?;
    let (dx, dw, db) = {
        let (xv, gv) = (x.f32_data()?, g.f32_data()?);
        // Through the SiLU first: dz = g·silu'(z), z the norm's output recomputed from x.
        let gz = if silu {
            let b = param_values(bias)?;
            let z = cpu::group_norm(&xv, d, w.as_deref(), b.as_deref(), eps);
            cpu::silu_backward(&z, &gv)
        } else {
            gv.to_vec()
        };
        cpu::group_norm_backward(&xv, &gz, d, w.as_deref(), eps, weight.is_some(), bias.is_some())
    };
    let dx = Tensor::from_f32_values(dx, x.shape(), x.dtype(), None);
    Ok((dx, param_grad(dw, weight), param_grad(db, bias)))
}

pub(crate) fn layer_norm_backward(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    g: &Tensor,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    const OP: &str = "layer_norm_backward";
    let d = layer_dim(OP, x, weight, bias, eps)?;
    check_grad(OP, x, g)?;
    if x.device().is_cuda() {
        return cuda::layer_norm_backward(x, g, d, weight, bias, eps);
    }
    let w = param_values(weight)?;
    let (dx, dw, db) = {
        let (xv, gv) = (x.f32_data()?, g.f32_data()?);
        cpu::layer_norm_backward(&xv, &gv, d, w.as_deref(), eps, weight.is_some(), bias.is_some())
    };
    let dx = Tensor::from_f32_values(dx, x.shape(), x.dtype(), None);
    Ok((dx, param_grad(dw, weight), param_grad(db, bias)))
}
