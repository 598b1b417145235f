//! Views that share storage: reshape, permute/transpose, narrow, broadcast, squeeze/unsqueeze,
//! plus `contiguous` (the one that copies) and the split helpers built on narrow (chunk).

use super::{resolve_dim, Tensor};
use crate::autograd::Op;
use crate::backend;
use crate::{Error, Result};

impl Tensor {
    /// Same elements, new shape. One dim may be `usize::MAX`-free: use `reshape_infer` for -1.
    /// A view when the layout allows; a copy (still differentiable) otherwise.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if super::numel(shape) != self.numel() {
            return Err(Error::ShapeMismatch { op: "reshape", lhs: self.shape().to_vec(), rhs: shape.to_vec() });
        }
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let op = Tensor::track(&[self], || Op::Reshape(self.clone()));
        match self.layout().reshape_view(shape) {
            Some(l) => Ok(self.view_with(l, op)),
            None => {
                let c = self.contiguous()?;
                let l = c.layout().reshape_view(shape).expect("contiguous layouts reshape freely");
                Ok(c.view_with(l, op))
            }
        }
    }

    /// Reshape where one entry may be -1 (inferred), like torch.reshape.
    pub fn reshape_infer(&self, shape: &[isize]) -> Result<Tensor> {
        let known: usize = shape.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product();
        let infer = shape.iter().filter(|&&d| d < 0).count();
        if infer > 1 || (infer == 1 && (known == 0 || !self.numel().is_multiple_of(known))) {
            return Err(Error::bad_shape("reshape", format!("cannot infer {shape:?}"), self.shape()));
        }
        let dims: Vec<usize> = shape.iter().map(|&d| if d < 0 { self.numel() / known } else { d as usize }).collect();
        self.reshape(&dims)
    }

    pub fn flatten_from(&self, dim: usize) -> Result<Tensor> {
        let mut s = self.shape()[..dim].to_vec();
        s.push(self.shape()[dim..].iter().product());
        self.reshape(&s)
    }

    pub fn flatten_all(&self) -> Result<Tensor> {
        self.reshape(&[self.numel()])
    }

    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let layout = self.layout().permute(perm)?;
        let op = Tensor::track(&[self], || Op::Permute(self.clone(), perm.to_vec()));
        Ok(self.view_with(layout, op))
    }

    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let r = self.rank();
        let (a, b) = (resolve_dim("transpose", d0, r)?, resolve_dim("transpose", d1, r)?);
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(Error::bad_shape("t", "needs rank >= 2", self.shape()));
        }
        self.transpose(-2, -1)
    }

    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = resolve_dim("narrow", dim, self.rank())?;
        let layout = self.layout().narrow(d, start, len)?;
        let op = Tensor::track(&[self], || Op::Narrow(self.clone(), d, start));
        Ok(self.view_with(layout, op))
    }

    /// Splits `dim` into `n` pieces (the last may be smaller), like torch.chunk.
    pub fn chunk(&self, n: usize, dim: isize) -> Result<Vec<Tensor>> {
        let d = resolve_dim("chunk", dim, self.rank())?;
        if n == 0 {
            crate::bail!("chunk", "cannot split into 0 chunks");
        }
        let size = self.shape()[d];
        let step = size.div_ceil(n).max(1);
        (0..size).step_by(step).map(|s| self.narrow(d as isize, s, step.min(size - s))).collect()
    }

    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.shape() {
            return Ok(self.clone());
        }
        let layout = self.layout().broadcast_as(shape)?;
        let op = Tensor::track(&[self], || Op::Broadcast(self.clone()));
        Ok(self.view_with(layout, op))
    }

    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut s = self.shape().to_vec();
        s.insert(d, 1);
        self.reshape(&s)
    }

    /// Removes `dim` if it has size 1 (an error otherwise, unlike torch's silent no-op).
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("squeeze", dim, self.rank())?;
        if self.shape()[d] != 1 {
            return Err(Error::bad_shape("squeeze", format!("dim {d} has size {}", self.shape()[d]), self.shape()));
        }
        let mut s = self.shape().to_vec();
        s.remove(d);
        self.reshape(&s)
    }

    /// A contiguous copy, or the same tensor when it already is contiguous.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let op = Tensor::track(&[self], || Op::Copy(self.clone()));
        backend::copy_contiguous(self, op)
    }

    /// A contiguous copy that never shares storage with `self`.
    pub fn copy(&self) -> Result<Tensor> {
        let op = Tensor::track(&[self], || Op::Copy(self.clone()));
        backend::copy_contiguous(self, op)
    }

    pub fn to_dtype(&self, dtype: super::DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let op = if dtype.is_float() && self.dtype().is_float() {
            Tensor::track(&[self], || Op::Cast(self.clone()))
        } else {
            None
        };
        backend::cast(self, dtype, op)
    }
}
