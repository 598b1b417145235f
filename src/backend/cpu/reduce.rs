//! CPU reductions and softmax. The reduced dims are moved innermost (a strided gather when they
//! are not already there), then each output element reduces one contiguous run, in parallel.

use super::{f32_strided, gather_strided, PAR_MIN};
use crate::autograd::Op;
use crate::tensor::reduce::{keep_dims_shape, ReduceOp};
use crate::tensor::{CpuStorage, Tensor};
use crate::Result;
use rayon::prelude::*;

/// Calls `f` with the values arranged as [kept..., reduced...] contiguous and the run length of
/// the reduced part: borrowed from storage when they already are (reducing trailing dims of a
/// contiguous f32 tensor), gathered otherwise.
fn with_reduced_last<R>(x: &Tensor, dims: &[usize], f: impl FnOnce(&[f32], usize) -> R) -> Result<R> {
    let kept: Vec<usize> = (0..x.rank()).filter(|d| !dims.contains(d)).collect();
    let perm: Vec<usize> = kept.iter().chain(dims).copied().collect();
    let run: usize = dims.iter().map(|&d| x.shape()[d]).product();
    let (src, layout) = f32_strided(x)?;
    let l = layout.permute(&perm)?;
    Ok(match l.contiguous_range() {
        Some(r) => f(&src[r], run),
        None => f(&gather_strided(&src, &l), run),
    })
}

pub fn reduce(x: &Tensor, kind: ReduceOp, dims: &[usize], op: Option<Op>) -> Result<Tensor> {
    let out_shape = keep_dims_shape(x.shape(), dims);
    let rows = crate::tensor::numel(&out_shape);
    let out = with_reduced_last(x, dims, |v, run| reduce_runs(v, run, rows, kind))?;
    Ok(Tensor::from_f32_values(out, &out_shape, x.dtype(), op))
}

/// One value per run of `run` consecutive elements, for `rows` runs (an empty run sums to 0).
fn reduce_runs(v: &[f32], run: usize, rows: usize, kind: ReduceOp) -> Vec<f32> {
    let f = |r: usize| -> f32 {
        let s = &v[r * run..(r + 1) * run];
        match kind {
            // f64 accumulation: a sum over a 64×64 latent map or a whole batch stays exact to f32
            ReduceOp::Sum => s.iter().map(|&x| x as f64).sum::<f64>() as f32,
            ReduceOp::Max => s.iter().copied().fold(f32::NEG_INFINITY, |a, b| if b > a || b.is_nan() { b } else { a }),
            ReduceOp::Min => s.iter().copied().fold(f32::INFINITY, |a, b| if b < a || b.is_nan() { b } else { a }),
        }
    };
    if run == 0 {
        vec![0.0; rows]
    } else if rows == 1 && run >= PAR_MIN && kind == ReduceOp::Sum {
        vec![v.par_chunks(8192).map(|c| c.iter().map(|&x| x as f64).sum::<f64>()).sum::<f64>() as f32]
    } else if v.len() >= PAR_MIN {
        (0..rows).into_par_iter().map(f).collect()
    } else {
        (0..rows).map(f).collect()
    }
}

pub fn argmax(x: &Tensor, dim: usize) -> Result<Tensor> {
    let out: Vec<i64> = with_reduced_last(x, &[dim], |v, run| {
        v.chunks(run)
            .map(|s| {
                let mut best = 0;
                for (i, &x) in s.iter().enumerate() {
                    if x > s[best] {
                        best = i;
                    }
                }
                best as i64
            })
            .collect()
    })?;
    Ok(Tensor::from_cpu(CpuStorage::from_vec(out), &keep_dims_shape(x.shape(), &[dim]), None))
}

/// Softmax (or log-softmax) along `dim`, max-subtracted for stability.
pub fn softmax(x: &Tensor, dim: usize, log: bool, op: Option<Op>) -> Result<Tensor> {
    let _g = crate::autograd::no_grad();
    let last = x.rank() - 1;
    let xt = if dim == last { x.clone() } else { x.transpose(dim as isize, last as isize)? };
    let v = xt.f32_data()?.into_vec();
    let run = x.shape()[dim];
    let mut out = vec![0f32; v.len()];
    if run > 0 {
        let row = |(o, s): (&mut [f32], &[f32])| {
            let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (o, &x) in o.iter_mut().zip(s) {
                *o = (x - m).exp();
                sum += *o;
            }
            if log {
                let ls = sum.ln();
                o.iter_mut().zip(s).for_each(|(o, &x)| *o = x - m - ls);
            } else {
                let inv = 1.0 / sum;
                o.iter_mut().for_each(|o| *o *= inv);
            }
        };
        if v.len() >= PAR_MIN {
            out.par_chunks_mut(run).zip(v.par_chunks(run)).for_each(row);
        } else {
            out.chunks_mut(run).zip(v.chunks(run)).for_each(row);
        }
    }
    let t = Tensor::from_f32_values(out, xt.shape(), x.dtype(), None);
    let t = if dim == last { t } else { t.transpose(dim as isize, last as isize)?.contiguous()? };
    // The graph link goes on the final tensor (the transposes above were not recorded).
    Ok(t.with_op(op))
}
