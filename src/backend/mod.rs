//! The one door between tensors and compute. Every op the tensor layer offers ends here, where the
//! storage's backend is chosen. Today that is the CPU (src/backend/cpu); the CUDA backend adds a
//! `Storage::Cuda` arm to each dispatch below.

pub mod cpu;

use crate::autograd::Op;
use crate::tensor::{BinaryOp, CmpOp, DType, Tensor, UnaryOp};
use crate::Result;

pub(crate) fn copy_contiguous(t: &Tensor, op: Option<Op>) -> Result<Tensor> {
    cpu::elementwise::copy_contiguous(t, op)
}

pub(crate) fn cast(t: &Tensor, dtype: DType, op: Option<Op>) -> Result<Tensor> {
    cpu::elementwise::cast(t, dtype, op)
}

pub(crate) fn unary(t: &Tensor, u: UnaryOp, op: Option<Op>) -> Result<Tensor> {
    cpu::elementwise::unary(t, u, op)
}

pub(crate) fn binary(a: &Tensor, b: &Tensor, bop: BinaryOp, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    cpu::elementwise::binary(a, b, bop, shape, op)
}

pub(crate) fn affine(t: &Tensor, mul: f64, add: f64, op: Option<Op>) -> Result<Tensor> {
    let (m, a) = (mul as f32, add as f32);
    cpu::elementwise::map(t, move |x| x * m + a, op)
}

pub(crate) fn powf(t: &Tensor, e: f64, op: Option<Op>) -> Result<Tensor> {
    let e = e as f32;
    cpu::elementwise::map(t, move |x| x.powf(e), op)
}

pub(crate) fn cmp(a: &Tensor, b: &Tensor, c: CmpOp, shape: &[usize]) -> Result<Tensor> {
    cpu::elementwise::cmp(a, b, c, shape)
}

pub(crate) fn where_cond(c: &Tensor, t: &Tensor, f: &Tensor, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    cpu::elementwise::where_cond(c, t, f, shape, op)
}
