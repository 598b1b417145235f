//! What a recorded tensor was computed from: the op, its inputs, and the parameters the backward
//! rule needs. One variant per differentiable op family.

use crate::tensor::conv::{Conv2dParams, ConvTranspose2dParams};
use crate::tensor::{BinaryOp, Tensor, UnaryOp};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Zero,
    Reflect,
}

/// The variants whose only tensor is the input `x`, as one pattern binding it.
macro_rules! one_input {
    ($x:ident) => {
        Op::Reshape($x)
            | Op::Permute($x, _)
            | Op::Narrow($x, ..)
            | Op::Broadcast($x)
            | Op::Copy($x)
            | Op::Cast($x)
            | Op::Unary($x, _)
            | Op::Affine($x, ..)
            | Op::Powf($x, _)
            | Op::Sum($x, _)
            | Op::Max($x, _)
            | Op::Min($x, _)
            | Op::Softmax($x, _)
            | Op::LogSoftmax($x, _)
            | Op::UpsampleNearest2d($x)
            | Op::AvgPool2d { x: $x, .. }
            | Op::MaxPool2d { x: $x, .. }
            | Op::Pad { x: $x, .. }
    };
}

#[derive(Clone)]
pub enum Op {
    // views and copies
    Reshape(Tensor),
    Permute(Tensor, Vec<usize>),
    /// input, dim, start
    Narrow(Tensor, usize, usize),
    Broadcast(Tensor),
    Copy(Tensor),
    Cast(Tensor),

    // elementwise
    Unary(Tensor, UnaryOp),
    Binary(Tensor, Tensor, BinaryOp),
    /// x * mul + add
    Affine(Tensor, f64, f64),
    Powf(Tensor, f64),
    /// cond (not differentiable), on_true, on_false
    Where(Tensor, Tensor, Tensor),

    // reductions (outputs keep the reduced dims as size 1)
    Sum(Tensor, Vec<usize>),
    Max(Tensor, Vec<usize>),
    Min(Tensor, Vec<usize>),
    Softmax(Tensor, usize),
    LogSoftmax(Tensor, usize),

    // linear algebra and nn
    Matmul(Tensor, Tensor),
    Conv2d { x: Tensor, w: Tensor, p: Conv2dParams },
    ConvTranspose2d { x: Tensor, w: Tensor, p: ConvTranspose2dParams },
    /// `silu`: SiLU applied to the normalised output in the same pass (ResBlock / VAE blocks)
    GroupNorm { x: Tensor, weight: Option<Tensor>, bias: Option<Tensor>, groups: usize, eps: f64, silu: bool },
    /// normalises over the last dim
    LayerNorm { x: Tensor, weight: Option<Tensor>, bias: Option<Tensor>, eps: f64 },
    UpsampleNearest2d(Tensor),
    AvgPool2d { x: Tensor, kernel: (usize, usize), stride: (usize, usize) },
    /// keeps x, not the argmax indices: backward recomputes them (one pass, no index tensor)
    MaxPool2d { x: Tensor, kernel: (usize, usize), stride: (usize, usize) },
    /// pads [left, right, top, bottom] of the last two dims
    Pad { x: Tensor, pad: [usize; 4], mode: PadMode },
    Cat(Vec<Tensor>, usize),
    IndexSelect { x: Tensor, idx: Tensor, dim: usize },
    Gather { x: Tensor, idx: Tensor, dim: usize },
    /// q [B,H,Lq,D], k/v [B,H,Lk,D]; `lse` [B,H,Lq] is the row log-sum-exp kept for backward
    Attention { q: Tensor, k: Tensor, v: Tensor, mask: Option<Tensor>, scale: f64, lse: Tensor },
}

impl Op {
    /// The inputs gradients can flow to.
    pub fn inputs(&self) -> Vec<&Tensor> {
        match self {
            one_input!(x) | Op::IndexSelect { x, .. } | Op::Gather { x, .. } => vec![x],
            Op::Binary(a, b, _) | Op::Matmul(a, b) => vec![a, b],
            Op::Where(_, a, b) => vec![a, b],
            Op::Conv2d { x, w, .. } | Op::ConvTranspose2d { x, w, .. } => vec![x, w],
            Op::GroupNorm { x, weight, bias, .. } | Op::LayerNorm { x, weight, bias, .. } => {
                std::iter::once(x).chain(weight.iter()).chain(bias.iter()).collect()
            }
            Op::Cat(xs, _) => xs.iter().collect(),
            Op::Attention { q, k, v, .. } => vec![q, k, v],
        }
    }

    /// Moves the input tensors out (used to free long graphs without recursion).
    pub(crate) fn take_inputs(&mut self) -> Vec<Tensor> {
        // One shared placeholder (an Arc clone), not an allocation per input: this runs for every
        // node of every graph freed. During thread teardown the cache may be gone: allocate then.
        thread_local! {
            static PLACEHOLDER: Tensor = Tensor::zeros(&[], crate::DType::U8);
        }
        let dummy = || PLACEHOLDER.try_with(Tensor::clone).unwrap_or_else(|_| Tensor::zeros(&[], crate::DType::U8));
        let mut out = Vec::new();
        let mut take = |t: &mut Tensor| out.push(std::mem::replace(t, dummy()));
        match self {
            one_input!(x) => take(x),
            Op::IndexSelect { x, idx, .. } | Op::Gather { x, idx, .. } => {
                take(x);
                take(idx)
            }
            Op::Binary(a, b, _) | Op::Matmul(a, b) => {
                take(a);
                take(b)
            }
            Op::Where(c, a, b) => {
                take(c);
                take(a);
                take(b)
            }
            Op::Conv2d { x, w, .. } | Op::ConvTranspose2d { x, w, .. } => {
                take(x);
                take(w)
            }
            Op::GroupNorm { x, weight, bias, .. } | Op::LayerNorm { x, weight, bias, .. } => {
                take(x);
                weight.iter_mut().chain(bias.iter_mut()).for_each(take)
            }
            Op::Cat(xs, _) => out.append(xs),
            Op::Attention { q, k, v, mask, lse, .. } => {
                take(q);
                take(k);
                take(v);
                take(lse);
                mask.iter_mut().for_each(take)
            }
        }
        out
    }

    pub fn name(&self) -> &'static str {
        match self {
            Op::Reshape(_) => "reshape",
            Op::Permute(..) => "permute",
            Op::Narrow(..) => "narrow",
            Op::Broadcast(_) => "broadcast_as",
            Op::Copy(_) => "copy",
            Op::Cast(_) => "to_dtype",
            Op::Unary(_, u) => u.name(),
            Op::Binary(_, _, b) => b.name(),
            Op::Affine(..) => "affine",
            Op::Powf(..) => "powf",
            Op::Where(..) => "where_cond",
            Op::Sum(..) => "sum",
            Op::Max(..) => "max",
            Op::Min(..) => "min",
            Op::Softmax(..) => "softmax",
            Op::LogSoftmax(..) => "log_softmax",
            Op::Matmul(..) => "matmul",
            Op::Conv2d { .. } => "conv2d",
            Op::ConvTranspose2d { .. } => "conv_transpose2d",
            Op::GroupNorm { silu: false, .. } => "group_norm",
            Op::GroupNorm { silu: true, .. } => "group_norm_silu",
            Op::LayerNorm { .. } => "layer_norm",
            Op::UpsampleNearest2d(_) => "upsample_nearest2d",
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::MaxPool2d { .. } => "max_pool2d",
            Op::Pad { .. } => "pad",
            Op::Cat(..) => "cat",
            Op::IndexSelect { .. } => "index_select",
            Op::Gather { .. } => "gather",
            Op::Attention { .. } => "scaled_dot_product_attention",
        }
    }
}
