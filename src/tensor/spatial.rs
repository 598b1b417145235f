//! Spatial resampling and padding on the last two dims of an NCHW (or any rank >= 2) tensor:
//! upsample_nearest2d (torch 'nearest'), avg_pool2d and max_pool2d (no padding), pad2d (zero /
//! reflect).
//! Leading dims are flattened into planes; kernels are in backend/cpu/spatial.rs.

use super::{numel, Tensor};
use crate::autograd::{Op, PadMode};
use crate::backend::cpu::spatial::{self as cpu, IndexMap, Pool2d};
use crate::{Error, Result};

/// (planes, h, w) of a float tensor of rank >= 2.
fn planes_hw(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    x.require_float(op)?;
    let r = x.rank();
    if r < 2 {
        return Err(Error::bad_shape(op, "expected a tensor of rank >= 2 ([.., H, W])", x.shape()));
    }
    let s = x.shape();
    Ok((numel(&s[..r - 2]), s[r - 2], s[r - 1]))
}

/// x's shape with the last two dims replaced.
fn with_hw(x: &Tensor, h: usize, w: usize) -> Vec<usize> {
    let mut s = x.shape().to_vec();
    let r = s.len();
    s[r - 2] = h;
    s[r - 1] = w;
    s
}

fn check_grad(op: &'static str, g: &Tensor, expected: &[usize]) -> Result<()> {
    if g.shape() != expected {
        return Err(Error::ShapeMismatch { op, lhs: g.shape().to_vec(), rhs: expected.to_vec() });
    }
    Ok(())
}

fn nearest_maps(op: &'static str, x: &Tensor, out_h: usize, out_w: usize) -> Result<(IndexMap, IndexMap)> {
    let (_, h, w) = planes_hw(op, x)?;
    if (h == 0 && out_h > 0) || (w == 0 && out_w > 0) {
        return Err(Error::bad_shape(op, format!("cannot upsample an empty image to {out_h}x{out_w}"), x.shape()));
    }
    Ok((cpu::nearest_map(h, out_h), cpu::nearest_map(w, out_w)))
}

fn pad_maps(op: &'static str, x: &Tensor, pad: [usize; 4], mode: PadMode) -> Result<(IndexMap, IndexMap)> {
    let (_, h, w) = planes_hw(op, x)?;
    let [l, r, t, b] = pad;
    let reflect = mode == PadMode::Reflect;
    if reflect && (l >= w || r >= w || t >= h || b >= h) {
        return Err(Error::invalid(
            op,
            format!("reflect padding {pad:?} ([left, right, top, bottom]) must be smaller than the input's H×W {h}×{w}"),
        ));
    }
    Ok((cpu::pad_map(h, t, b, reflect), cpu::pad_map(w, l, r, reflect)))
}

fn pool_geometry(op: &'static str, x: &Tensor, kernel: (usize, usize), stride: (usize, usize)) -> Result<Pool2d> {
    let (planes, h, w) = planes_hw(op, x)?;
    if kernel.0 == 0 || kernel.1 == 0 || stride.0 == 0 || stride.1 == 0 {
        crate::bail!(op, "kernel {kernel:?} and stride {stride:?} must be > 0");
    }
    if kernel.0 > h || kernel.1 > w {
        return Err(Error::bad_shape(op, format!("kernel {kernel:?} is larger than the input's H×W {h}×{w}"), x.shape()));
    }
    Ok(Pool2d { planes, in_hw: (h, w), kernel, stride })
}

/// Gathers x through row/column maps into a [.., rows, cols] tensor.
fn gather(x: &Tensor, rows: &IndexMap, cols: &IndexMap, op: Option<Op>) -> Result<Tensor> {
    let (planes, h, w) = planes_hw("gather2d", x)?;
    if x.device().is_cuda() {
        return crate::backend::cuda::index::gather2d(x, planes, (h, w), rows, cols, &with_hw(x, rows.len(), cols.len()), op);
    }
    let out = {
        let v = x.f32_data()?;
        cpu::gather2d(&v, planes, w, h * w, rows, cols)
    };
    Ok(Tensor::from_f32_values(out, &with_hw(x, rows.len(), cols.len()), x.dtype(), op))
}

/// The adjoint of `gather`: g [.., rows, cols] summed back into x's shape.
fn scatter_add(x: &Tensor, g: &Tensor, rows: &IndexMap, cols: &IndexMap) -> Result<Tensor> {
    let (planes, h, w) = planes_hw("scatter_add2d", x)?;
    if x.device().is_cuda() {
        return crate::backend::cuda::index::scatter_add2d(x, g, planes, (h, w), rows, cols);
    }
    let gx = {
        let v = g.f32_data()?;
        cpu::scatter_add2d(&v, planes, h, w, rows, cols)
    };
    Ok(Tensor::from_f32_values(gx, x.shape(), x.dtype(), None))
}

impl Tensor {
    /// Nearest-neighbour resize of the last two dims to (out_h, out_w) (torch 'nearest' indexing).
    pub fn upsample_nearest2d(&self, out_h: usize, out_w: usize) -> Result<Tensor> {
        let (rows, cols) = nearest_maps("upsample_nearest2d", self, out_h, out_w)?;
        let rec = Tensor::track(&[self], || Op::UpsampleNearest2d(self.clone()));
        gather(self, &rows, &cols, rec)
    }

    /// Average pooling of the last two dims, no padding (count = kernel area).
    pub fn avg_pool2d(&self, kernel: (usize, usize), stride: (usize, usize)) -> Result<Tensor> {
        let p = pool_geometry("avg_pool2d", self, kernel, stride)?;
        let (oh, ow) = p.out_hw();
        if self.device().is_cuda() {
            let rec = Tensor::track(&[self], || Op::AvgPool2d { x: self.clone(), kernel, stride });
            return crate::backend::cuda::pool::pool2d(self, p, false, &with_hw(self, oh, ow), rec);
        }
        let out = {
            let v = self.f32_data()?;
            cpu::avg_pool2d(&v, p)
        };
        let rec = Tensor::track(&[self], || Op::AvgPool2d { x: self.clone(), kernel, stride });
        Ok(Tensor::from_f32_values(out, &with_hw(self, oh, ow), self.dtype(), rec))
    }

    /// Max pooling of the last two dims, no padding, floor output size (torch's default
    /// `ceil_mode=False`): VGG's 2×2/2 and AlexNet's 3×3/2. Ties keep the first maximum and NaN
    /// propagates, as torch; the gradient goes to that one element.
    pub fn max_pool2d(&self, kernel: (usize, usize), stride: (usize, usize)) -> Result<Tensor> {
        let p = pool_geometry("max_pool2d", self, kernel, stride)?;
        let (oh, ow) = p.out_hw();
        if self.device().is_cuda() {
            let rec = Tensor::track(&[self], || Op::MaxPool2d { x: self.clone(), kernel, stride });
            return crate::backend::cuda::pool::pool2d(self, p, true, &with_hw(self, oh, ow), rec);
        }
        let out = {
            let v = self.f32_data()?;
            cpu::max_pool2d(&v, p)
        };
        let rec = Tensor::track(&[self], || Op::MaxPool2d { x: self.clone(), kernel, stride });
        Ok(Tensor::from_f32_values(out, &with_hw(self, oh, ow), self.dtype(), rec))
    }

    /// Pads the last two dims by [left, right, top, bottom].
    pub fn pad2d(&self, pad: [usize; 4], mode: PadMode) -> Result<Tensor> {
        let (rows, cols) = pad_maps("pad2d", self, pad, mode)?;
        let rec = Tensor::track(&[self], || Op::Pad { x: self.clone(), pad, mode });
        gather(self, &rows, &cols, rec)
    }
}

pub(crate) fn upsample_nearest2d_backward(x: &Tensor, g: &Tensor) -> Result<Tensor> {
    const OP: &str = "upsample_nearest2d_backward";
    let (oh, ow) = match g.shape() {
        [.., h, w] => (*h, *w),
        _ => return Err(Error::bad_shape(OP, "gradient must have rank >= 2", g.shape())),
    };
    let (rows, cols) = nearest_maps(OP, x, oh, ow)?;
    check_grad(OP, g, &with_hw(x, oh, ow))?;
    scatter_add(x, g, &rows, &cols)
}

pub(crate) fn avg_pool2d_backward(x: &Tensor, kernel: (usize, usize), stride: (usize, usize), g: &Tensor) -> Result<Tensor> {
    const OP: &str = "avg_pool2d_backward";
    let p = pool_geometry(OP, x, kernel, stride)?;
    let (oh, ow) = p.out_hw();
    check_grad(OP, g, &with_hw(x, oh, ow))?;
    if x.device().is_cuda() {
        return crate::backend::cuda::pool::avg_pool2d_backward(x, g, p);
    }
    let gx = {
        let v = g.f32_data()?;
        cpu::avg_pool2d_backward(&v, p)
    };
    Ok(Tensor::from_f32_values(gx, x.shape(), x.dtype(), None))
}

pub(crate) fn max_pool2d_backward(x: &Tensor, kernel: (usize, usize), stride: (usize, usize), g: &Tensor) -> Result<Tensor> {
    const OP: &str = "max_pool2d_backward";
    let p = pool_geometry(OP, x, kernel, stride)?;
    let (oh, ow) = p.out_hw();
    check_grad(OP, g, &with_hw(x, oh, ow))?;
    if x.device().is_cuda() {
        return crate::backend::cuda::pool::max_pool2d_backward(x, g, p);
    }
    let gx = {
        let (xv, gv) = (x.f32_data()?, g.f32_data()?);
        cpu::max_pool2d_backward(&xv, &gv, p)
    };
    Ok(Tensor::from_f32_values(gx, x.shape(), x.dtype(), None))
}

/// Zero padding: the gradient is g cropped; reflect: the mirrored borders fold back onto the
/// pixels they copied (both are the scatter-add through the same index maps as the forward).
pub(crate) fn pad_backward(x: &Tensor, pad: [usize; 4], mode: PadMode, g: &Tensor) -> Result<Tensor> {
    const OP: &str = "pad_backward";
    let (rows, cols) = pad_maps(OP, x, pad, mode)?;
    check_grad(OP, g, &with_hw(x, rows.len(), cols.len()))?;
    scatter_add(x, g, &rows, &cols)
}
