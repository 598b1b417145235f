//! CUDA convolution as im2col + batched GEMM (kernels/conv.cu, kernels/gemm.cu), the three
//! primitives the CPU twin (src/backend/cpu/conv.rs) offers, with the same `Geom`:
//!   forward        y[n, g]     = W_g · cols(x)[n, g]
//!   backward data  dx          = col2im(W_gᵀ · dy[n, g])      (also conv_transpose2d's forward)
//!   backward weight dW_g       = Σ_n dy[n, g] · cols(x)[n, g]ᵀ
//! Every product is one GEMM launch over the batch dims [N, groups]; the weight is read through a
//! stride-0 batch dim, never copied. A pointwise conv (1×1, stride 1, no padding) skips im2col:
//! the input is its own column matrix. This is the f32 path (and grouped convs'); f16/bf16 convs
//! go to the tensor-core implicit GEMM of conv_tc.rs.

use super::linalg::gemm;
use super::ops::{alloc_out, data_ptr, dense, device_and_ptr, float_suffix, launch, wrap};
use super::{CudaDevice, CudaStorage};
use crate::backend::cpu::conv::Geom;
use crate::tensor::{DType, Layout, Tensor};
use crate::Result;
use cudarc::driver::DeviceRepr;
use std::sync::Arc;

/// Must match `struct ConvGeom` in kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct ConvGeom {
    n: i64,
    c: i64,
    h: i64,
    w: i64,
    kh: i64,
    kw: i64,
    sh: i64,
    sw: i64,
    ph: i64,
    pw: i64,
    dh: i64,
    dw: i64,
    ho: i64,
    wo: i64,
}
// SAFETY: plain #[repr(C)] integers mirroring the C struct.
unsafe impl DeviceRepr for ConvGeom {}

impl ConvGeom {
    fn of(g: &Geom) -> Self {
        let i = |v: usize| v as i64;
        ConvGeom {
            n: i(g.n),
            c: i(g.c_in),
            h: i(g.h),
            w: i(g.w),
            kh: i(g.kh),
            kw: i(g.kw),
            sh: i(g.stride.0),
            sw: i(g.stride.1),
            ph: i(g.padding.0),
            pw: i(g.padding.1),
            dh: i(g.dilation.0),
            dw: i(g.dilation.1),
            ho: i(g.ho),
            wo: i(g.wo),
        }
    }
}

fn pointwise(g: &Geom) -> bool {
    g.kh == 1 && g.kw == 1 && g.stride == (1, 1) && g.padding == (0, 0) && g.h == g.ho && g.w == g.wo
}

/// The column matrix of x as a layout [N, G, Kg, P] over a buffer, and the buffer that holds it
/// (x itself for a pointwise conv).
fn columns(dev: &Arc<CudaDevice>, x: &Tensor, g: &Geom, sfx: &str) -> Result<(Tensor, Layout)> {
    let (gr, kg, p) = (g.groups, g.c_in / g.groups * g.kh * g.kw, g.ho * g.wo);
    let layout = Layout::new(vec![g.n, gr, kg, p], vec![gr * kg * p, kg * p, p, 1], 0);
    if pointwise(g) {
        return Ok((x.clone(), layout));
    }
    let cols = alloc_out(dev, x.dtype(), &[g.n, gr * kg, p])?;
    let total = g.n * gr * kg * p;
    if total > 0 {
        launch!(dev, "conv", format!("im2col_{sfx}"), super::launch::elementwise_config(total); ConvGeom::of(g), data_ptr(x)?, cols.ptr());
    }
    Ok((wrap(cols, &[g.n, gr * kg, p], None), layout))
}

/// The weight [C_out, Cg, KH, KW] as the GEMM's A operand for batch [N, G]: [N, G, Og, Kg] with a
/// stride-0 batch dim over N, transposed to [N, G, Kg, Og] when `transpose`.
fn weight_operand(g: &Geom, transpose: bool) -> Layout {
    let (gr, og, kg) = (g.groups, g.c_out / g.groups, g.c_in / g.groups * g.kh * g.kw);
    if transpose {
        Layout::new(vec![g.n, gr, kg, og], vec![0, og * kg, 1, kg], 0)
    } else {
        Layout::new(vec![g.n, gr, og, kg], vec![0, og * kg, kg, 1], 0)
    }
}

/// y = conv2d(x, w) + bias, [N, C_out, HO, WO].
pub fn forward(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    if super::conv_tc::eligible(x.dtype(), g) {
        return super::conv_tc::forward(x, w, bias, None, g);
    }
    let sfx = float_suffix("conv2d", x.dtype())?;
    let (x, w) = (dense(x)?, dense(w)?);
    let (dev, _) = device_and_ptr("conv2d", &x)?;
    let (cols, cl) = columns(&dev, &x, g, sfx)?;
    let (gr, og, kg, p) = (g.groups, g.c_out / g.groups, g.c_in / g.groups * g.kh * g.kw, g.ho * g.wo);
    let out = alloc_out(&dev, x.dtype(), &[g.n, g.c_out, g.ho, g.wo])?;
    if kg == 0 {
        return finish(super::ops::full(&dev, 0.0, &[g.n, g.c_out, g.ho, g.wo], x.dtype())?, bias);
    }
    let wl = weight_operand(g, false);
    gemm("conv2d", &dev, x.dtype(), (og, p, kg), &[g.n, gr], (data_ptr(&w)?, &wl), (data_ptr(&cols)?, &cl), 0, 0, out.ptr())?;
    finish(wrap(out, &[g.n, g.c_out, g.ho, g.wo], None), bias)
}

fn finish(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    match bias {
        Some(b) => y.add(&b.to_dtype(y.dtype())?.reshape(&[1, b.numel(), 1, 1])?),
        None => Ok(y),
    }
}

/// dx of conv2d given dy [N, C_out, HO, WO] (and conv_transpose2d's forward, whose `bias` lives on
/// the C_in side): [N, C_in, H, W].
pub fn backward_data(dy: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    if super::conv_tc::eligible(dy.dtype(), g) {
        return super::conv_tc::backward_data(dy, w, bias, g);
    }
    let sfx = float_suffix("conv2d_backward_data", dy.dtype())?;
    let (dy, w) = (dense(dy)?, dense(w)?);
    let (dev, _) = device_and_ptr("conv2d_backward_data", &dy)?;
    let (gr, og, kg, p) = (g.groups, g.c_out / g.groups, g.c_in / g.groups * g.kh * g.kw, g.ho * g.wo);
    let dyl = Layout::new(vec![g.n, gr, og, p], vec![gr * og * p, og * p, p, 1], 0);
    let wl = weight_operand(g, true);
    let shape = [g.n, g.c_in, g.h, g.w];
    if og == 0 || p == 0 {
        return finish(super::ops::full(&dev, 0.0, &shape, dy.dtype())?, bias);
    }
    if pointwise(g) {
        let out = alloc_out(&dev, dy.dtype(), &shape)?;
        gemm("conv2d_backward_data", &dev, dy.dtype(), (kg, p, og), &[g.n, gr], (data_ptr(&w)?, &wl), (data_ptr(&dy)?, &dyl), 0, 0, out.ptr())?;
        return finish(wrap(out, &shape, None), bias);
    }
    let dcols = CudaStorage::alloc(&dev, dy.dtype(), g.n * gr * kg * p)?;
    gemm("conv2d_backward_data", &dev, dy.dtype(), (kg, p, og), &[g.n, gr], (data_ptr(&w)?, &wl), (data_ptr(&dy)?, &dyl), 0, 0, dcols.ptr())?;
    let out = alloc_out(&dev, dy.dtype(), &shape)?;
    let total = shape.iter().product::<usize>();
    if total > 0 {
        launch!(dev, "conv", format!("col2im_{sfx}"), super::launch::elementwise_config(total); ConvGeom::of(g), dcols.ptr(), out.ptr());
    }
    finish(wrap(out, &shape, None), bias)
}

/// dW of conv2d given x and dy: [C_out, Cg, KH, KW], in w's dtype `wdtype`.
pub fn backward_weight(x: &Tensor, dy: &Tensor, g: &Geom, wdtype: DType) -> Result<Tensor> {
    if super::conv_tc::eligible(x.dtype(), g) {
        return super::conv_tc::backward_weight(x, dy, g, wdtype);
    }
    let sfx = float_suffix("conv2d_backward_weight", x.dtype())?;
    let (x, dy) = (dense(x)?, dense(dy)?);
    let (dev, _) = device_and_ptr("conv2d_backward_weight", &x)?;
    let (gr, og, kg, p) = (g.groups, g.c_out / g.groups, g.c_in / g.groups * g.kh * g.kw, g.ho * g.wo);
    let wshape = [g.c_out, g.c_in / g.groups, g.kh, g.kw];
    if g.n == 0 || p == 0 {
        return super::ops::full(&dev, 0.0, &wshape, wdtype);
    }
    let (cols, cl) = columns(&dev, &x, g, sfx)?;
    // Per image: dy[n, g] [Og, P] · cols[n, g]ᵀ [P, Kg]; then the sum over n.
    let dyl = Layout::new(vec![g.n, gr, og, p], vec![gr * og * p, og * p, p, 1], 0);
    let colst = Layout::new(cl.shape()[..2].to_vec().into_iter().chain([p, kg]).collect(), vec![cl.strides()[0], cl.strides()[1], 1, p], 0);
    let per_image = alloc_out(&dev, x.dtype(), &[g.n, g.c_out * kg])?;
    gemm("conv2d_backward_weight", &dev, x.dtype(), (og, kg, p), &[g.n, gr], (data_ptr(&dy)?, &dyl), (data_ptr(&cols)?, &colst), 0, 0, per_image.ptr())?;
    let per_image = wrap(per_image, &[g.n, g.c_out * kg], None);
    // Summed in f32 whatever the activation dtype (the reduction kernel accumulates in f64).
    let dw = per_image.to_dtype(DType::F32)?.sum_keepdim(&[0])?;
    dw.reshape(&wshape)?.to_dtype(wdtype)
}
