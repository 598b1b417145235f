//! CUDA avg_pool2d / max_pool2d forward and backward and torch.gather with its adjoint
//! (kernels/pool.cu). Geometry and indices arrive validated by src/tensor/spatial.rs and
//! src/tensor/indexing.rs.

use super::launch::elementwise_config;
use super::index::upload_ids;
use super::ops::{alloc_out, data_ptr, dense, device_and_ptr, float_suffix, full, launch, suffix, wrap};
use crate::autograd::Op;
use crate::backend::cpu::spatial::Pool2d;
use crate::tensor::{contiguous_strides, DType, Tensor};
use crate::Result;
use cudarc::driver::DeviceRepr;

/// Must match `struct PoolGeom` in kernels/pool.cu.
#[repr(C)]
#[derive(Clone, Copy)]
struct PoolGeom {
    planes: i64,
    ih: i64,
    iw: i64,
    oh: i64,
    ow: i64,
    kh: i64,
    kw: i64,
    sh: i64,
    sw: i64,
}
// SAFETY: plain #[repr(C)] integers mirroring the C struct.
unsafe impl DeviceRepr for PoolGeom {}

impl PoolGeom {
    fn of(p: &Pool2d) -> Self {
        let (oh, ow) = p.out_hw();
        let i = |v: usize| v as i64;
        PoolGeom { planes: i(p.planes), ih: i(p.in_hw.0), iw: i(p.in_hw.1), oh: i(oh), ow: i(ow), kh: i(p.kernel.0), kw: i(p.kernel.1), sh: i(p.stride.0), sw: i(p.stride.1) }
    }
}

/// Forward pooling (`max` picks the kernel) into `shape`.
pub fn pool2d(x: &Tensor, p: Pool2d, max: bool, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    let sfx = float_suffix("pool2d", x.dtype())?;
    let x = dense(x)?;
    let (dev, _) = device_and_ptr("pool2d", &x)?;
    let out = alloc_out(&dev, x.dtype(), shape)?;
    let n: usize = shape.iter().product();
    if n > 0 {
        let name = if max { format!("max_pool2d_{sfx}") } else { format!("avg_pool2d_{sfx}") };
        launch!(dev, "pool", name, elementwise_config(n); PoolGeom::of(&p), data_ptr(&x)?, out.ptr());
    }
    Ok(wrap(out, shape, op))
}

pub fn avg_pool2d_backward(x: &Tensor, g: &Tensor, p: Pool2d) -> Result<Tensor> {
    let sfx = float_suffix("avg_pool2d_backward", g.dtype())?;
    let g = dense(g)?;
    let (dev, _) = device_and_ptr("avg_pool2d_backward", &g)?;
    let out = alloc_out(&dev, g.dtype(), x.shape())?;
    if x.numel() > 0 {
        launch!(dev, "pool", format!("avg_pool2d_bwd_{sfx}"), elementwise_config(x.numel()); PoolGeom::of(&p), data_ptr(&g)?, out.ptr());
    }
    wrap(out, x.shape(), None).to_dtype(x.dtype())
}

pub fn max_pool2d_backward(x: &Tensor, g: &Tensor, p: Pool2d) -> Result<Tensor> {
    let sfx = float_suffix("max_pool2d_backward", x.dtype())?;
    let (x, g) = (dense(x)?, dense(&g.to_dtype(x.dtype())?)?);
    let (dev, _) = device_and_ptr("max_pool2d_backward", &x)?;
    let acc = full(&dev, 0.0, x.shape(), DType::F32)?;
    if g.numel() > 0 {
        launch!(dev, "pool", format!("max_pool2d_bwd_{sfx}"), elementwise_config(g.numel()); PoolGeom::of(&p), data_ptr(&x)?, data_ptr(&g)?, data_ptr(&acc)?);
    }
    acc.to_dtype(x.dtype())
}

/// The idx shape with x's (contiguous) strides, as the gather kernels read it.
fn gather_layout(x: &Tensor, idx_shape: &[usize]) -> super::launch::Strided {
    super::launch::Strided::raw(idx_shape, &contiguous_strides(x.shape()))
}

/// torch.gather along `d` with validated `ids` (row-major over idx's shape).
pub fn gather(x: &Tensor, ids: &[usize], idx_shape: &[usize], d: usize, op: Option<Op>) -> Result<Tensor> {
    let x = dense(x)?;
    let (dev, _) = device_and_ptr("gather", &x)?;
    let out = alloc_out(&dev, x.dtype(), idx_shape)?;
    if !ids.is_empty() {
        let idt = upload_ids(&dev, ids.iter().map(|&i| i as i64))?;
        launch!(dev, "pool", format!("gather_{}", suffix(x.dtype())), elementwise_config(ids.len());
            ids.len() as i64, gather_layout(&x, idx_shape), d as i32, data_ptr(&idt)?, data_ptr(&x)?, out.ptr());
    }
    Ok(wrap(out, idx_shape, op))
}

pub fn gather_backward(x: &Tensor, ids: &[usize], d: usize, g: &Tensor) -> Result<Tensor> {
    let sfx = float_suffix("gather_backward", g.dtype())?;
    let g = dense(g)?;
    let (dev, _) = device_and_ptr("gather_backward", &g)?;
    let acc = full(&dev, 0.0, x.shape(), DType::F32)?;
    if !ids.is_empty() {
        let idt = upload_ids(&dev, ids.iter().map(|&i| i as i64))?;
        launch!(dev, "pool", format!("gather_bwd_{sfx}"), elementwise_config(ids.len());
            ids.len() as i64, gather_layout(x, g.shape()), d as i32, data_ptr(&idt)?, data_ptr(&g)?, data_ptr(&acc)?);
    }
    acc.to_dtype(x.dtype())
}
