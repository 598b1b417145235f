//! conv2d and conv_transpose2d (NCHW input, OIHW / IOHW weights, as torch.nn.functional).
//!
//! This file validates arguments, converts to f32 (the CPU compute type), calls the GEMM-based
//! kernels in backend/cpu/conv.rs and records autograd. A transposed convolution is computed as
//! the input-gradient pass of the convolution it inverts, so the same three kernels serve both
//! ops and their backward passes.
//!
//! Bias: when the bias needs a gradient it is added as a recorded broadcast add (so autograd
//! sums the output gradient into it); otherwise it is fused into the kernel's output buffer,
//! which saves a full pass over the output in inference.

use super::Tensor;
use crate::autograd::Op;
use crate::backend::cpu::conv::{self as cpu, Geom};
use crate::{bail, Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: (1, 1), padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub output_padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        ConvTranspose2dParams { stride: (1, 1), padding: (0, 0), output_padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

impl Tensor {
    /// x [N, C_in, H, W], w [C_out, C_in/groups, KH, KW], bias [C_out] → [N, C_out, H', W'].
    pub fn conv2d(&self, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
        let g = conv2d_geom(self, w, &p)?;
        check_bias("conv2d", self, bias, g.c_out)?;
        let (fuse, separate) = split_bias(bias);
        let rec = Tensor::track(&[self, w], || Op::Conv2d { x: self.clone(), w: w.clone(), p });
        if self.device().is_cuda() {
            let y = crate::backend::cuda::conv::forward(self, w, fuse, &g)?.with_op(rec);
            return add_bias(y, separate);
        }
        let y = {
            let (xd, wd) = (self.f32_data()?, w.f32_data()?);
            let bd = fuse.map(|b| b.f32_data()).transpose()?;
            cpu::conv2d_forward(&xd, &wd, bd.as_deref(), &g)
        };
        let y = Tensor::from_f32_values(y, &[g.n, g.c_out, g.ho, g.wo], self.dtype(), rec);
        add_bias(y, separate)
    }

    /// conv2d(x, w, bias) + residual — the residual connection that closes every ResNet and
    /// attention block. Where a fused kernel exists (CUDA f16/bf16 tensor-core conv, when no
    /// gradient is recorded) the sum happens in the conv's epilogue, saving a full read and write
    /// of the activation; everywhere else it is `conv2d` then `add`, with the same result.
    pub fn conv2d_add(&self, w: &Tensor, bias: Option<&Tensor>, p: Conv2dParams, residual: &Tensor) -> Result<Tensor> {
        if self.device().is_cuda() {
            let g = conv2d_geom(self, w, &p)?;
            check_bias("conv2d", self, bias, g.c_out)?;
            Tensor::same_device("conv2d_add", self, residual)?;
            let inputs: Vec<&Tensor> = [self, w, residual].into_iter().chain(bias).collect();
            let fits = residual.shape() == [g.n, g.c_out, g.ho, g.wo] && residual.dtype() == self.dtype();
            if !Tensor::will_record(&inputs) && fits && crate::backend::cuda::conv_tc::eligible(self.dtype(), &g) {
                return crate::backend::cuda::conv_tc::forward(self, w, bias, Some(residual), &g);
            }
        }
        self.conv2d(w, bias, p)?.add(residual)
    }

    /// x [N, C_in, H, W], w [C_in, C_out/groups, KH, KW], bias [C_out] → [N, C_out, H', W'].
    pub fn conv_transpose2d(&self, w: &Tensor, bias: Option<&Tensor>, p: ConvTranspose2dParams) -> Result<Tensor> {
        let g = conv_transpose2d_geom(self, w, &p)?;
        // g describes the forward conv from the output (c_in side) back to x (c_out side).
        check_bias("conv_transpose2d", self, bias, g.c_in)?;
        let (fuse, separate) = split_bias(bias);
        let rec = Tensor::track(&[self, w], || Op::ConvTranspose2d { x: self.clone(), w: w.clone(), p });
        if self.device().is_cuda() {
            let y = crate::backend::cuda::conv::backward_data(self, w, fuse, &g)?.with_op(rec);
            return add_bias(y, separate);
        }
        let y = {
            let (xd, wd) = (self.f32_data()?, w.f32_data()?);
            let bd = fuse.map(|b| b.f32_data()).transpose()?;
            cpu::conv2d_backward_data(&xd, &wd, bd.as_deref(), &g)
        };
        let y = Tensor::from_f32_values(y, &[g.n, g.c_in, g.h, g.w], self.dtype(), rec);
        add_bias(y, separate)
    }
}

/// (dL/dx, dL/dw) of `conv2d(x, w)` (no bias; bias is a broadcast add recorded separately).
pub(crate) fn conv2d_backward(x: &Tensor, w: &Tensor, p: &Conv2dParams, g: &Tensor) -> Result<(Tensor, Tensor)> {
    let geom = conv2d_geom(x, w, p)?;
    check_grad("conv2d_backward", g, &[geom.n, geom.c_out, geom.ho, geom.wo])?;
    if x.device().is_cuda() {
        use crate::backend::cuda::conv as cuda;
        let dx = cuda::backward_data(&g.to_dtype(x.dtype())?, w, None, &geom)?;
        return Ok((dx, cuda::backward_weight(x, &g.to_dtype(x.dtype())?, &geom, w.dtype())?));
    }
    let (xd, wd, gd) = (x.f32_data()?, w.f32_data()?, g.f32_data()?);
    let dx = cpu::conv2d_backward_data(&gd, &wd, None, &geom);
    let dw = cpu::conv2d_backward_weight(&xd, &gd, &geom);
    Ok((Tensor::from_f32_values(dx, x.shape(), x.dtype(), None), Tensor::from_f32_values(dw, w.shape(), w.dtype(), None)))
}

/// (dL/dx, dL/dw) of `conv_transpose2d(x, w)`: the input gradient is the forward conv of the
/// output gradient, the weight gradient that conv's weight gradient with x as its output grad.
pub(crate) fn conv_transpose2d_backward(
    x: &Tensor,
    w: &Tensor,
    p: &ConvTranspose2dParams,
    g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let geom = conv_transpose2d_geom(x, w, p)?;
    check_grad("conv_transpose2d_backward", g, &[geom.n, geom.c_in, geom.h, geom.w])?;
    if x.device().is_cuda() {
        use crate::backend::cuda::conv as cuda;
        let gx = g.to_dtype(x.dtype())?;
        return Ok((cuda::forward(&gx, w, None, &geom)?, cuda::backward_weight(&gx, x, &geom, w.dtype())?));
    }
    let (xd, wd, gd) = (x.f32_data()?, w.f32_data()?, g.f32_data()?);
    let dx = cpu::conv2d_forward(&gd, &wd, None, &geom);
    let dw = cpu::conv2d_backward_weight(&gd, &xd, &geom);
    Ok((Tensor::from_f32_values(dx, x.shape(), x.dtype(), None), Tensor::from_f32_values(dw, w.shape(), w.dtype(), None)))
}

fn check_grad(op: &'static str, g: &Tensor, want: &[usize]) -> Result<()> {
    if g.shape() != want {
        return Err(Error::ShapeMismatch { op, lhs: g.shape().to_vec(), rhs: want.to_vec() });
    }
    Ok(())
}

/// Checks what conv2d and conv_transpose2d share: rank-4 float operands of one dtype and
/// device, positive stride/dilation/groups. Returns (N, C, H, W) of x and (A, B, KH, KW) of w.
fn check_common(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    stride: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> Result<([usize; 4], [usize; 4])> {
    Tensor::same_dtype(op, x, w)?;
    x.require_float(op)?;
    if x.rank() != 4 {
        return Err(Error::bad_shape(op, "input must be [N, C, H, W]", x.shape()));
    }
    if w.rank() != 4 {
        return Err(Error::bad_shape(op, "weight must be rank 4", w.shape()));
    }
    if stride.0 == 0 || stride.1 == 0 || dilation.0 == 0 || dilation.1 == 0 || groups == 0 {
        bail!(op, "stride {stride:?}, dilation {dilation:?} and groups {groups} must all be positive");
    }
    let s = |t: &Tensor| [t.shape()[0], t.shape()[1], t.shape()[2], t.shape()[3]];
    Ok((s(x), s(w)))
}

fn conv2d_geom(x: &Tensor, w: &Tensor, p: &Conv2dParams) -> Result<Geom> {
    const OP: &str = "conv2d";
    let ([n, c, h, wd], [o, cg, kh, kw]) = check_common(OP, x, w, p.stride, p.dilation, p.groups)?;
    if c % p.groups != 0 || o % p.groups != 0 {
        bail!(OP, "groups {} must divide input channels {c} and output channels {o}", p.groups);
    }
    if cg * p.groups != c {
        return Err(Error::ShapeMismatch { op: OP, lhs: x.shape().to_vec(), rhs: w.shape().to_vec() });
    }
    let out = |len: usize, pad: usize, k: usize, d: usize, s: usize, axis: &str| -> Result<usize> {
        let span = d * (k.max(1) - 1) + 1;
        if k == 0 || len + 2 * pad < span {
            bail!(OP, "kernel {axis} extent {span} (size {k}, dilation {d}) exceeds the padded input {}", len + 2 * pad);
        }
        Ok((len + 2 * pad - span) / s + 1)
    };
    let ho = out(h, p.padding.0, kh, p.dilation.0, p.stride.0, "height")?;
    let wo = out(wd, p.padding.1, kw, p.dilation.1, p.stride.1, "width")?;
    Ok(Geom { n, c_in: c, h, w: wd, c_out: o, kh, kw, stride: p.stride, padding: p.padding, dilation: p.dilation, groups: p.groups, ho, wo })
}

/// The geometry of the forward conv that this transposed conv is the adjoint of: its input
/// (`c_in, h, w`) is the transposed conv's output, its output (`c_out, ho, wo`) is x.
fn conv_transpose2d_geom(x: &Tensor, w: &Tensor, p: &ConvTranspose2dParams) -> Result<Geom> {
    const OP: &str = "conv_transpose2d";
    let ([n, c, h, wd], [ci, cog, kh, kw]) = check_common(OP, x, w, p.stride, p.dilation, p.groups)?;
    if c % p.groups != 0 {
        bail!(OP, "groups {} must divide input channels {c}", p.groups);
    }
    if ci != c {
        return Err(Error::ShapeMismatch { op: OP, lhs: x.shape().to_vec(), rhs: w.shape().to_vec() });
    }
    let (op_, s, d) = (p.output_padding, p.stride, p.dilation);
    // torch's rule: the extra rows must be fewer than the stride or the dilation.
    if (op_.0 >= s.0 && op_.0 >= d.0) || (op_.1 >= s.1 && op_.1 >= d.1) {
        bail!(OP, "output_padding {op_:?} must be smaller than stride {s:?} or dilation {d:?}");
    }
    let out = |len: usize, s: usize, pad: usize, d: usize, k: usize, op_: usize, axis: &str| -> Result<usize> {
        let full = (len as isize - 1) * s as isize + (d * k.max(1).saturating_sub(1)) as isize + op_ as isize + 1;
        let o = full - 2 * pad as isize;
        if k == 0 || len == 0 || o <= 0 {
            bail!(OP, "output {axis} would be {o} (input {len}, kernel {k}, stride {s}, padding {pad})");
        }
        Ok(o as usize)
    };
    let ho = out(h, s.0, p.padding.0, d.0, kh, op_.0, "height")?;
    let wo = out(wd, s.1, p.padding.1, d.1, kw, op_.1, "width")?;
    Ok(Geom {
        n,
        c_in: cog * p.groups,
        h: ho,
        w: wo,
        c_out: c,
        kh,
        kw,
        stride: s,
        padding: p.padding,
        dilation: d,
        groups: p.groups,
        ho: h,
        wo: wd,
    })
}

fn check_bias(op: &'static str, x: &Tensor, bias: Option<&Tensor>, c: usize) -> Result<()> {
    if let Some(b) = bias {
        Tensor::same_dtype(op, x, b)?;
        if b.shape() != [c] {
            return Err(Error::ShapeMismatch { op, lhs: b.shape().to_vec(), rhs: vec![c] });
        }
    }
    Ok(())
}

/// (bias to fuse into the kernel, bias to add as a recorded op): only a bias that needs a
/// gradient pays for the separate pass.
fn split_bias(bias: Option<&Tensor>) -> (Option<&Tensor>, Option<&Tensor>) {
    match bias {
        Some(b) if crate::autograd::is_grad_enabled() && b.tracked() => (None, Some(b)),
        b => (b, None),
    }
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        None => Ok(y),
        Some(b) => y.add(&b.reshape(&[1, b.numel(), 1, 1])?),
    }
}
