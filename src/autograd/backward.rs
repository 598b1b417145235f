//! Every backward rule, one match arm per op. Each arm returns (input, gradient) pairs; the
//! engine in mod.rs accumulates them. Rules are written with tensor ops (run under no_grad), so
//! they work on any backend that implements the forward ops; the heavy ones (conv, norms,
//! attention) call their op family's dedicated backward kernels.

use super::Op;
use crate::backend::unary_backward;
use crate::tensor::reduce::keep_dims_shape;
use crate::tensor::{attention, conv, indexing, norm, spatial, BinaryOp, Tensor};
use crate::Result;

pub(super) fn input_grads<'a>(op: &'a Op, out: &Tensor, g: &Tensor) -> Result<Vec<(&'a Tensor, Tensor)>> {
    Ok(match op {
        Op::Reshape(x) => vec![(x, g.reshape(x.shape())?)],
        Op::Permute(x, perm) => {
            let mut inv = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inv[p] = i;
            }
            vec![(x, g.permute(&inv)?.contiguous()?)]
        }
        Op::Narrow(x, dim, start) => {
            let (before, after) = (*start, x.shape()[*dim] - start - g.shape()[*dim]);
            let mut parts = Vec::new();
            let zeros = |n: usize| {
                let mut s = g.shape().to_vec();
                s[*dim] = n;
                Tensor::zeros_on(&s, g.dtype(), g.device())
            };
            if before > 0 {
                parts.push(zeros(before)?);
            }
            parts.push(g.clone());
            if after > 0 {
                parts.push(zeros(after)?);
            }
            let refs: Vec<&Tensor> = parts.iter().collect();
            vec![(x, Tensor::cat(&refs, *dim as isize)?)]
        }
        Op::Broadcast(x) => vec![(x, g.sum_to_shape(x.shape())?)],
        Op::Copy(x) => vec![(x, g.clone())],
        Op::Cast(x) => vec![(x, g.to_dtype(x.dtype())?)],

        Op::Unary(x, u) => vec![(x, unary_backward(x, g, *u)?)],
        Op::Binary(a, b, bop) => {
            let (ga, gb) = match bop {
                BinaryOp::Add => (g.clone(), g.clone()),
                BinaryOp::Sub => (g.clone(), g.neg()?),
                BinaryOp::Mul => (g.mul(b)?, g.mul(a)?),
                BinaryOp::Div => {
                    let ga = g.div(b)?;
                    (ga.clone(), ga.mul(out)?.neg()?)
                }
                BinaryOp::Maximum | BinaryOp::Minimum => {
                    // Ties split the gradient evenly, like torch.maximum.
                    let pick_a = if *bop == BinaryOp::Maximum { a.gt(b)? } else { a.lt(b)? };
                    let tie = a.eq(b)?.to_dtype(g.dtype())?.mul_scalar(0.5)?;
                    let wa = pick_a.to_dtype(g.dtype())?.add(&tie)?;
                    let wb = wa.affine(-1.0, 1.0)?;
                    (g.mul(&wa)?, g.mul(&wb)?)
                }
            };
            vec![(a, ga.sum_to_shape(a.shape())?), (b, gb.sum_to_shape(b.shape())?)]
        }
        Op::Affine(x, mul, _) => vec![(x, g.mul_scalar(*mul)?)],
        Op::Powf(x, e) => vec![(x, x.powf(e - 1.0)?.mul_scalar(*e)?.mul(g)?)],
        Op::Where(c, t, f) => {
            let zeros = Tensor::zeros_on(&[], g.dtype(), g.device())?;
            vec![
                (t, c.where_cond(g, &zeros)?.sum_to_shape(t.shape())?),
                (f, c.where_cond(&zeros, g)?.sum_to_shape(f.shape())?),
            ]
        }

        Op::Sum(x, _) => vec![(x, g.broadcast_as(x.shape())?.contiguous()?)],
        Op::Max(x, dims) | Op::Min(x, dims) => {
            // Gradient goes to the arg-extreme positions, split evenly among ties.
            let hit = x.eq(&out.broadcast_as(x.shape())?)?.to_dtype(g.dtype())?;
            let idims: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
            let count = hit.sum_keepdim(&idims)?;
            debug_assert_eq!(count.shape(), &keep_dims_shape(x.shape(), dims)[..]);
            vec![(x, hit.mul(&g.div(&count)?)?)]
        }
        Op::Softmax(x, dim) => {
            let d = *dim as isize;
            let gy = g.mul(out)?;
            vec![(x, gy.sub(&out.mul(&gy.sum_keepdim(&[d])?)?)?)]
        }
        Op::LogSoftmax(x, dim) => {
            let d = *dim as isize;
            vec![(x, g.sub(&out.exp()?.mul(&g.sum_keepdim(&[d])?)?)?)]
        }

        Op::Matmul(a, b) => {
            let ga = g.matmul(&b.t()?)?.sum_to_shape(a.shape())?;
            let gb = a.t()?.matmul(g)?.sum_to_shape(b.shape())?;
            vec![(a, ga), (b, gb)]
        }
        Op::Conv2d { x, w, p } => {
            let (gx, gw) = conv::conv2d_backward(x, w, p, g)?;
            vec![(x, gx), (w, gw)]
        }
        Op::ConvTranspose2d { x, w, p } => {
            let (gx, gw) = conv::conv_transpose2d_backward(x, w, p, g)?;
            vec![(x, gx), (w, gw)]
        }
        Op::GroupNorm { x, weight, bias, groups, eps, silu } => {
            let (gx, gw, gb) = norm::group_norm_backward(x, weight.as_ref(), bias.as_ref(), *groups, *eps, *silu, g)?;
            with_affine(x, gx, weight, gw, bias, gb)
        }
        Op::LayerNorm { x, weight, bias, eps } => {
            let (gx, gw, gb) = norm::layer_norm_backward(x, weight.as_ref(), bias.as_ref(), *eps, g)?;
            with_affine(x, gx, weight, gw, bias, gb)
        }
        Op::UpsampleNearest2d(x) => vec![(x, spatial::upsample_nearest2d_backward(x, g)?)],
        Op::AvgPool2d { x, kernel, stride } => vec![(x, spatial::avg_pool2d_backward(x, *kernel, *stride, g)?)],
        Op::MaxPool2d { x, kernel, stride } => vec![(x, spatial::max_pool2d_backward(x, *kernel, *stride, g)?)],
        Op::Pad { x, pad, mode } => vec![(x, spatial::pad_backward(x, *pad, *mode, g)?)],
        Op::Cat(xs, dim) => {
            let mut start = 0;
            let mut v = Vec::with_capacity(xs.len());
            for x in xs {
                let len = x.shape()[*dim];
                v.push((x, g.narrow(*dim as isize, start, len)?.contiguous()?));
                start += len;
            }
            v
        }
        Op::IndexSelect { x, idx, dim } => vec![(x, indexing::index_select_backward(x, idx, *dim, g)?)],
        Op::Gather { x, idx, dim } => vec![(x, indexing::gather_backward(x, idx, *dim, g)?)],
        Op::Attention { q, k, v, mask, scale, lse } => {
            let (gq, gk, gv) = attention::attention_backward(q, k, v, mask.as_ref(), *scale, out, lse, g)?;
            vec![(q, gq), (k, gk), (v, gv)]
        }
    })
}

/// Pairs a norm's (x, weight, bias) gradients with whichever affine inputs exist.
fn with_affine<'a>(
    x: &'a Tensor,
    gx: Tensor,
    weight: &'a Option<Tensor>,
    gw: Option<Tensor>,
    bias: &'a Option<Tensor>,
    gb: Option<Tensor>,
) -> Vec<(&'a Tensor, Tensor)> {
    let mut v = vec![(x, gx)];
    if let (Some(w), Some(gw)) = (weight, gw) {
        v.push((w, gw));
    }
    if let (Some(b), Some(gb)) = (bias, gb) {
        v.push((b, gb));
    }
    v
}
