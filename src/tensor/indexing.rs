//! Joining and indexing: cat, stack, index_select / embedding, gather. These move elements
//! without arithmetic, so they work on every dtype byte-for-byte.

use super::{resolve_dim, CpuStorage, DType, Storage, Tensor};
use crate::autograd::Op;
use crate::{Error, Result};

/// Contiguous raw bytes of a CPU tensor.
fn contiguous_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let c = t.contiguous()?;
    let g = c.storage();
    let Storage::Cpu(s) = &*g else { return Err(Error::NotOnDevice { op: "cat/index_select/gather", device: t.device() }) };
    let es = t.dtype().size_in_bytes();
    let off = c.layout().offset() * es;
    Ok(s.as_bytes()[off..off + c.numel() * es].to_vec())
}

fn index_values(op: &'static str, idx: &Tensor, bound: usize) -> Result<Vec<usize>> {
    if !matches!(idx.dtype(), DType::I64 | DType::U8) {
        return Err(Error::UnsupportedDType { op, dtype: idx.dtype() });
    }
    idx.to_vec::<i64>()?
        .into_iter()
        .map(|i| {
            if i < 0 || i as usize >= bound {
                Err(Error::invalid(op, format!("index {i} out of range for a dim of size {bound}")))
            } else {
                Ok(i as usize)
            }
        })
        .collect()
}

impl Tensor {
    /// Concatenates along `dim`; all other dims must match.
    pub fn cat(xs: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first = *xs.first().ok_or_else(|| Error::invalid("cat", "needs at least one tensor"))?;
        let d = resolve_dim("cat", dim, first.rank())?;
        for x in &xs[1..] {
            Tensor::same_dtype("cat", first, x)?;
            let ok = x.rank() == first.rank()
                && x.shape().iter().zip(first.shape()).enumerate().all(|(i, (a, b))| i == d || a == b);
            if !ok {
                return Err(Error::ShapeMismatch { op: "cat", lhs: first.shape().to_vec(), rhs: x.shape().to_vec() });
            }
        }
        let mut shape = first.shape().to_vec();
        shape[d] = xs.iter().map(|x| x.shape()[d]).sum();
        if first.device().is_cuda() {
            let rec = Tensor::track(xs, || Op::Cat(xs.iter().map(|&x| x.clone()).collect(), d));
            return crate::backend::cuda::index::cat(xs, d, &shape, rec);
        }
        let es = first.dtype().size_in_bytes();
        let outer: usize = first.shape()[..d].iter().product();
        let out_row: usize = shape[d..].iter().product::<usize>() * es;
        let mut out = vec![0u8; outer * out_row];
        let mut col = 0;
        for x in xs {
            let bytes = contiguous_bytes(x)?;
            let row: usize = x.shape()[d..].iter().product::<usize>() * es;
            for o in 0..outer {
                out[o * out_row + col..o * out_row + col + row].copy_from_slice(&bytes[o * row..(o + 1) * row]);
            }
            col += row;
        }
        let rec = Tensor::track(xs, || Op::Cat(xs.iter().map(|&x| x.clone()).collect(), d));
        Ok(Tensor::from_cpu(CpuStorage::from_bytes(&out, first.dtype()), &shape, rec))
    }

    /// Stacks equal-shaped tensors along a new dim.
    pub fn stack(xs: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first = *xs.first().ok_or_else(|| Error::invalid("stack", "needs at least one tensor"))?;
        let d = resolve_dim("stack", dim, first.rank() + 1)? as isize;
        let us = xs.iter().map(|x| x.unsqueeze(d)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = us.iter().collect();
        Tensor::cat(&refs, d)
    }

    /// Picks entries of `dim` listed in the 1-D index tensor `idx` (I64).
    pub fn index_select(&self, idx: &Tensor, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("index_select", dim, self.rank())?;
        if idx.rank() != 1 {
            return Err(Error::bad_shape("index_select", "index must be 1-D", idx.shape()));
        }
        let ids = index_values("index_select", idx, self.shape()[d])?;
        if self.device().is_cuda() {
            let rec = Tensor::track(&[self], || Op::IndexSelect { x: self.clone(), idx: idx.clone(), dim: d });
            return crate::backend::cuda::index::index_select(self, &ids, d, rec);
        }
        let es = self.dtype().size_in_bytes();
        let outer: usize = self.shape()[..d].iter().product();
        let inner: usize = self.shape()[d + 1..].iter().product::<usize>() * es;
        let src = contiguous_bytes(self)?;
        let n = self.shape()[d];
        let mut out = Vec::with_capacity(outer * ids.len() * inner);
        for o in 0..outer {
            for &i in &ids {
                let s = (o * n + i) * inner;
                out.extend_from_slice(&src[s..s + inner]);
            }
        }
        let mut shape = self.shape().to_vec();
        shape[d] = ids.len();
        let rec = Tensor::track(&[self], || Op::IndexSelect { x: self.clone(), idx: idx.clone(), dim: d });
        Ok(Tensor::from_cpu(CpuStorage::from_bytes(&out, self.dtype()), &shape, rec))
    }

    /// Rows of the table `self` [V, D] for the ids [...] → [..., D].
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        if self.rank() != 2 {
            return Err(Error::bad_shape("embedding", "table must be [num_embeddings, dim]", self.shape()));
        }
        let mut shape = ids.shape().to_vec();
        shape.push(self.shape()[1]);
        self.index_select(&ids.flatten_all()?, 0)?.reshape(&shape)
    }

    /// out[..i..] = self[..idx[..i..]..] along `dim` (torch.gather); idx has the output's shape
    /// and may be smaller than self in the other dims.
    pub fn gather(&self, idx: &Tensor, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("gather", dim, self.rank())?;
        if idx.rank() != self.rank() || idx.shape().iter().zip(self.shape()).enumerate().any(|(i, (a, b))| i != d && a > b) {
            return Err(Error::ShapeMismatch { op: "gather", lhs: self.shape().to_vec(), rhs: idx.shape().to_vec() });
        }
        let ids = index_values("gather", idx, self.shape()[d])?;
        if self.device().is_cuda() {
            if idx.rank() > crate::backend::cuda::MAX_DIMS {
                return Err(Error::bad_shape("gather", format!("CUDA gather takes at most {} dims", crate::backend::cuda::MAX_DIMS), idx.shape()));
            }
            let rec = Tensor::track(&[self], || Op::Gather { x: self.clone(), idx: idx.clone(), dim: d });
            return crate::backend::cuda::pool::gather(self, &ids, idx.shape(), d, rec);
        }
        let es = self.dtype().size_in_bytes();
        let src = contiguous_bytes(self)?;
        let src_strides = super::contiguous_strides(self.shape());
        let mut out = Vec::with_capacity(ids.len() * es);
        let idx_layout = super::Layout::contiguous(idx.shape());
        let mut coord = vec![0usize; idx.rank()];
        for (n, _) in idx_layout.offsets().enumerate() {
            let mut rem = n;
            for k in (0..coord.len()).rev() {
                coord[k] = rem % idx.shape()[k];
                rem /= idx.shape()[k];
            }
            coord[d] = ids[n];
            let off: usize = coord.iter().zip(&src_strides).map(|(c, s)| c * s).sum::<usize>() * es;
            out.extend_from_slice(&src[off..off + es]);
        }
        let rec = Tensor::track(&[self], || Op::Gather { x: self.clone(), idx: idx.clone(), dim: d });
        Ok(Tensor::from_cpu(CpuStorage::from_bytes(&out, self.dtype()), idx.shape(), rec))
    }
}

/// Scatter-adds the output gradient rows back to the selected positions.
pub(crate) fn index_select_backward(x: &Tensor, idx: &Tensor, dim: usize, g: &Tensor) -> Result<Tensor> {
    let ids = index_values("index_select_backward", idx, x.shape()[dim])?;
    if x.device().is_cuda() {
        return crate::backend::cuda::index::index_select_backward(x, &ids, dim, g);
    }
    let outer: usize = x.shape()[..dim].iter().product();
    let inner: usize = x.shape()[dim + 1..].iter().product();
    let n = x.shape()[dim];
    let gv = g.f32_data()?;
    let mut out = vec![0f32; x.numel()];
    for o in 0..outer {
        for (j, &i) in ids.iter().enumerate() {
            let (dst, src) = ((o * n + i) * inner, (o * ids.len() + j) * inner);
            out[dst..dst + inner].iter_mut().zip(&gv[src..src + inner]).for_each(|(a, b)| *a += b);
        }
    }
    Ok(Tensor::from_f32_values(out, x.shape(), x.dtype(), None))
}

pub(crate) fn gather_backward(x: &Tensor, idx: &Tensor, dim: usize, g: &Tensor) -> Result<Tensor> {
    let ids = index_values("gather_backward", idx, x.shape()[dim])?;
    if x.device().is_cuda() {
        return crate::backend::cuda::pool::gather_backward(x, &ids, dim, g);
    }
    let gv = g.f32_data()?;
    let strides = super::contiguous_strides(x.shape());
    let mut out = vec![0f32; x.numel()];
    let mut coord = vec![0usize; idx.rank()];
    for (n, &gval) in gv.iter().enumerate() {
        let mut rem = n;
        for k in (0..coord.len()).rev() {
            coord[k] = rem % idx.shape()[k];
            rem /= idx.shape()[k];
        }
        coord[dim] = ids[n];
        out[coord.iter().zip(&strides).map(|(c, s)| c * s).sum::<usize>()] += gval;
    }
    Ok(Tensor::from_f32_values(out, x.shape(), x.dtype(), None))
}
