//! Reductions over any set of dims (sum, mean, max, min, var, argmax) and softmax/log_softmax.
//! The `_keepdim` forms keep reduced dims as size 1; the plain forms drop them.

use super::{resolve_dim, Tensor};
use crate::autograd::Op;
use crate::backend::cpu::reduce as cpu;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
}

impl Tensor {
    fn reduce_dims(&self, op: &'static str, dims: &[isize]) -> Result<Vec<usize>> {
        let mut ds = dims.iter().map(|&d| resolve_dim(op, d, self.rank())).collect::<Result<Vec<_>>>()?;
        ds.sort_unstable();
        ds.dedup();
        Ok(ds)
    }

    fn reduce(&self, kind: ReduceOp, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let name = match kind {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        };
        let ds = self.reduce_dims(name, dims)?;
        if kind != ReduceOp::Sum && ds.iter().any(|&d| self.shape()[d] == 0) {
            return Err(Error::bad_shape(name, "cannot take max/min over an empty dim", self.shape()));
        }
        let rec = Tensor::track(&[self], || match kind {
            ReduceOp::Sum => Op::Sum(self.clone(), ds.clone()),
            ReduceOp::Max => Op::Max(self.clone(), ds.clone()),
            ReduceOp::Min => Op::Min(self.clone(), ds.clone()),
        });
        let out = if self.device().is_cuda() { crate::backend::cuda::ops::reduce(self, kind, &ds, rec)? } else { cpu::reduce(self, kind, &ds, rec)? };
        if keepdim { Ok(out) } else { out.reshape(&drop_dims(self.shape(), &ds)) }
    }

    pub fn sum_keepdim(&self, dims: &[isize]) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, dims, true)
    }
    pub fn sum(&self, dims: &[isize]) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, dims, false)
    }
    /// Sum of every element, as a rank-0 tensor.
    pub fn sum_all(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        self.sum(&all)
    }
    pub fn max_keepdim(&self, dims: &[isize]) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, dims, true)
    }
    pub fn max(&self, dims: &[isize]) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, dims, false)
    }
    pub fn min_keepdim(&self, dims: &[isize]) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, dims, true)
    }
    pub fn min(&self, dims: &[isize]) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, dims, false)
    }

    fn count(&self, op: &'static str, dims: &[isize]) -> Result<usize> {
        Ok(self.reduce_dims(op, dims)?.iter().map(|&d| self.shape()[d]).product())
    }

    pub fn mean_keepdim(&self, dims: &[isize]) -> Result<Tensor> {
        let n = self.count("mean", dims)?;
        self.sum_keepdim(dims)?.mul_scalar(1.0 / n as f64)
    }
    pub fn mean(&self, dims: &[isize]) -> Result<Tensor> {
        let n = self.count("mean", dims)?;
        self.sum(dims)?.mul_scalar(1.0 / n as f64)
    }
    pub fn mean_all(&self) -> Result<Tensor> {
        let all: Vec<isize> = (0..self.rank() as isize).collect();
        self.mean(&all)
    }

    /// Variance over `dims`; `unbiased` divides by n−1 (torch's default) instead of n.
    pub fn var_keepdim(&self, dims: &[isize], unbiased: bool) -> Result<Tensor> {
        let n = self.count("var", dims)?;
        let denom = if unbiased { n.saturating_sub(1) } else { n };
        if denom == 0 {
            return Err(Error::bad_shape("var", "needs at least two elements for an unbiased variance", self.shape()));
        }
        let centered = self.sub(&self.mean_keepdim(dims)?)?;
        centered.sqr()?.sum_keepdim(dims)?.mul_scalar(1.0 / denom as f64)
    }
    pub fn var(&self, dims: &[isize], unbiased: bool) -> Result<Tensor> {
        let ds = self.reduce_dims("var", dims)?;
        self.var_keepdim(dims, unbiased)?.reshape(&drop_dims(self.shape(), &ds))
    }

    /// Index of the largest value along `dim` (first on ties), as I64.
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = resolve_dim("argmax", dim, self.rank())?;
        if self.shape()[d] == 0 {
            return Err(Error::bad_shape("argmax", "cannot take argmax over an empty dim", self.shape()));
        }
        let out = if self.device().is_cuda() { crate::backend::cuda::ops::argmax(self, d)? } else { cpu::argmax(self, d)? };
        if keepdim { Ok(out) } else { out.reshape(&drop_dims(self.shape(), &[d])) }
    }

    pub fn softmax(&self, dim: isize) -> Result<Tensor> {
        self.require_float("softmax")?;
        let d = resolve_dim("softmax", dim, self.rank())?;
        let rec = Tensor::track(&[self], || Op::Softmax(self.clone(), d));
        if self.device().is_cuda() {
            return crate::backend::cuda::ops::softmax(self, d, false, rec);
        }
        cpu::softmax(self, d, false, rec)
    }

    pub fn log_softmax(&self, dim: isize) -> Result<Tensor> {
        self.require_float("log_softmax")?;
        let d = resolve_dim("log_softmax", dim, self.rank())?;
        let rec = Tensor::track(&[self], || Op::LogSoftmax(self.clone(), d));
        if self.device().is_cuda() {
            return crate::backend::cuda::ops::softmax(self, d, true, rec);
        }
        cpu::softmax(self, d, true, rec)
    }

    /// Sums a broadcast gradient back down to `shape` (the inverse of broadcast_as).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let lead = self.rank() - shape.len();
        let dims: Vec<isize> = (0..self.rank())
            .filter(|&i| i < lead || (shape[i - lead] == 1 && self.shape()[i] != 1))
            .map(|i| i as isize)
            .collect();
        let s = if dims.is_empty() { self.clone() } else { self.sum_keepdim(&dims)? };
        s.reshape(shape)
    }
}

pub(crate) fn keep_dims_shape(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().map(|(i, &s)| if dims.contains(&i) { 1 } else { s }).collect()
}

fn drop_dims(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().filter(|(i, _)| !dims.contains(i)).map(|(_, &s)| s).collect()
}
