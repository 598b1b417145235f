//! The one door between tensors and compute. Every op the tensor layer offers ends here (or in
//! its op family's file), where the storage's backend is chosen: CUDA tensors go to
//! src/backend/cuda, everything else to the CPU twin in src/backend/cpu.

pub mod cpu;
pub mod cuda;

use crate::autograd::Op;
use crate::tensor::{BinaryOp, CmpOp, DType, Tensor, UnaryOp};
use crate::Result;

/// Waits until everything queued on `device` has run (a no-op on the CPU): for timings, and
/// before handing results to code that reads them another way.
pub fn synchronize(device: crate::Device) -> Result<()> {
    match device {
        crate::Device::Cpu => Ok(()),
        crate::Device::Cuda(i) => cuda::device(i)?.synchronize(),
    }
}

pub(crate) fn copy_contiguous(t: &Tensor, op: Option<Op>) -> Result<Tensor> {
    if t.device().is_cuda() {
        return cuda::ops::copy_contiguous(t, op);
    }
    cpu::elementwise::copy_contiguous(t, op)
}

pub(crate) fn cast(t: &Tensor, dtype: DType, op: Option<Op>) -> Result<Tensor> {
    if t.device().is_cuda() {
        return cuda::ops::cast(t, dtype, op);
    }
    cpu::elementwise::cast(t, dtype, op)
}

pub(crate) fn unary(t: &Tensor, u: UnaryOp, op: Option<Op>) -> Result<Tensor> {
    if t.device().is_cuda() {
        return cuda::ops::unary(t, u, op);
    }
    cpu::elementwise::unary(t, u, op)
}

/// g · op'(x), the unary backward rule.
pub(crate) fn unary_backward(x: &Tensor, g: &Tensor, u: UnaryOp) -> Result<Tensor> {
    Tensor::same_device("unary_backward", x, g)?;
    if x.device().is_cuda() {
        return cuda::ops::unary_backward(x, g, u);
    }
    cpu::elementwise::unary_backward(x, g, u)
}

pub(crate) fn binary(a: &Tensor, b: &Tensor, bop: BinaryOp, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    if a.device().is_cuda() {
        return cuda::ops::binary(a, b, bop, shape, op);
    }
    cpu::elementwise::binary(a, b, bop, shape, op)
}

pub(crate) fn affine(t: &Tensor, mul: f64, add: f64, op: Option<Op>) -> Result<Tensor> {
    if t.device().is_cuda() {
        return cuda::ops::affine(t, mul, add, op);
    }
    let (m, a) = (mul as f32, add as f32);
    cpu::elementwise::map(t, move |x| x * m + a, op)
}

pub(crate) fn powf(t: &Tensor, e: f64, op: Option<Op>) -> Result<Tensor> {
    if t.device().is_cuda() {
        return cuda::ops::powf(t, e, op);
    }
    let e = e as f32;
    cpu::elementwise::map(t, move |x| x.powf(e), op)
}

pub(crate) fn cmp(a: &Tensor, b: &Tensor, c: CmpOp, shape: &[usize]) -> Result<Tensor> {
    if a.device().is_cuda() {
        return cuda::ops::cmp(a, b, c, shape);
    }
    cpu::elementwise::cmp(a, b, c, shape)
}

pub(crate) fn where_cond(c: &Tensor, t: &Tensor, f: &Tensor, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    if t.device().is_cuda() {
        return cuda::ops::where_cond(c, t, f, shape, op);
    }
    cpu::elementwise::where_cond(c, t, f, shape, op)
}
