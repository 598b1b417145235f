//! CUDA twins of the CPU elementwise, cast, reduction and softmax ops (kernels/elementwise.cu,
//! kernels/reduce.cu). Each takes the same arguments as its CPU counterpart in backend/cpu, checks
//! nothing the tensor layer already checked, launches on the device's stream and returns a new
//! contiguous tensor on the same device without waiting for the GPU.

use super::launch::{elementwise_config, packed_config, rows_config, strided_operands};
use super::{CudaDevice, CudaStorage};
use crate::autograd::Op;
use crate::tensor::reduce::{keep_dims_shape, ReduceOp};
use crate::tensor::{numel, BinaryOp, CmpOp, DType, Layout, Storage, Tensor, UnaryOp};
use crate::{Error, Result};
use std::sync::Arc;

/// Launches `module::name` with the given arguments (each bound to a local first: the launch
/// builder borrows them until the launch is queued).
/// A dry run (dry_run.rs) checks the arguments' sizes against the kernel's PTX instead.
macro_rules! launch {
    ($dev:expr, $module:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        match $dev.backing() {
            $crate::backend::cuda::Backing::Driver { stream, .. } => {
                let f = $dev.function($module, &$name)?;
                use cudarc::driver::PushKernelArg as _;
                let mut b = stream.launch_builder(&f);
                $( let a = $arg; b.arg(&a); )*
                // SAFETY: the arguments match the kernel's C signature (kernels/*.cu) in order and
                // type; device pointers come from live storages that the stream orders before any
                // reuse.
                let timed = $crate::backend::cuda::profile::begin(&$dev)?;
                unsafe { b.launch($cfg) }.map_err(|e| $dev.driver_error("launch", e))?;
                $crate::backend::cuda::profile::end(&$dev, timed, &$name)?;
            }
            $crate::backend::cuda::Backing::DryRun(dry) => {
                let sizes: &[usize] = &[$( { let a = $arg; std::mem::size_of_val(&a) } ),*];
                dry.launch($module, &$name, &$cfg, sizes)?;
            }
        }
    }};
}
pub(crate) use launch;

/// The kernel name suffix of a dtype.
pub(crate) fn suffix(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::I64 => "i64",
        DType::U8 => "u8",
    }
}

/// The suffix of a float dtype; integer tensors have no arithmetic kernels.
pub(crate) fn float_suffix(op: &'static str, dtype: DType) -> Result<&'static str> {
    if !dtype.is_float() {
        return Err(Error::UnsupportedDType { op, dtype });
    }
    Ok(suffix(dtype))
}

/// The device of a CUDA tensor and the base address of its storage.
pub(crate) fn device_and_ptr(op: &'static str, t: &Tensor) -> Result<(Arc<CudaDevice>, u64)> {
    match &*t.storage() {
        Storage::Cuda(s) => Ok((s.device().clone(), s.ptr())),
        Storage::Cpu(_) => Err(Error::invalid(op, "a CUDA op was given a CPU tensor (move every operand with to_device first)")),
    }
}

/// The address of a tensor's first element (its view offset applied), for kernels that read a
/// dense tensor directly.
pub(crate) fn data_ptr(t: &Tensor) -> Result<u64> {
    Ok(device_and_ptr("cuda", t)?.1 + (t.layout().offset() * t.dtype().size_in_bytes()) as u64)
}

/// The tensor as it is when contiguous, else a contiguous copy — not recorded by autograd (the
/// kernels that call this index their operands densely; the op around them records itself).
pub(crate) fn dense(t: &Tensor) -> Result<Tensor> {
    if t.is_contiguous() { Ok(t.clone()) } else { copy_contiguous(t, None) }
}

/// An optional operand as a kernel reads it: dense, with its address, or (None, 0) — a null
/// pointer the kernel takes as "absent". The tensor is returned to keep the buffer alive.
pub(crate) fn optional_operand(t: Option<&Tensor>) -> Result<(Option<Tensor>, u64)> {
    match t {
        Some(t) => {
            let d = dense(t)?;
            let p = data_ptr(&d)?;
            Ok((Some(d), p))
        }
        None => Ok((None, 0)),
    }
}

/// A new contiguous output tensor of `shape` on `dev`.
pub(crate) fn alloc_out(dev: &Arc<CudaDevice>, dtype: DType, shape: &[usize]) -> Result<CudaStorage> {
    CudaStorage::alloc(dev, dtype, numel(shape))
}

pub(crate) fn wrap(s: CudaStorage, shape: &[usize], op: Option<Op>) -> Tensor {
    Tensor::from_storage(Storage::Cuda(s), Layout::contiguous(shape), op)
}

pub fn copy_contiguous(t: &Tensor, op: Option<Op>) -> Result<Tensor> {
    let (dev, x) = device_and_ptr("contiguous", t)?;
    let n = t.numel();
    let out = alloc_out(&dev, t.dtype(), t.shape())?;
    if n > 0 {
        let s = strided_operands("contiguous", t.shape(), &[t.layout()])?;
        let cfg = packed_config(n, t.dtype().size_in_bytes(), &[(&s[0], x)], out.ptr());
        launch!(dev, "elementwise", format!("copy_{}", suffix(t.dtype())), cfg; n as i64, s[0], x, out.ptr());
    }
    Ok(wrap(out, t.shape(), op))
}

/// A device-to-device copy of a contiguous tensor with the driver's copy engine path
/// (cuMemcpyDtoDAsync): the bandwidth every memory-bound kernel is measured against.
pub fn device_copy(t: &Tensor) -> Result<Tensor> {
    let Some(range) = t.layout().contiguous_range() else {
        return copy_contiguous(t, None);
    };
    let (dev, _) = device_and_ptr("device_copy", t)?;
    let out = alloc_out(&dev, t.dtype(), t.shape())?;
    let bytes = range.len() * t.dtype().size_in_bytes();
    if bytes > 0 {
        dev.copy_device_to_device("device_copy", out.ptr(), data_ptr(t)?, bytes)?;
    }
    Ok(wrap(out, t.shape(), None))
}

pub fn cast(t: &Tensor, dtype: DType, op: Option<Op>) -> Result<Tensor> {
    let (dev, x) = device_and_ptr("to_dtype", t)?;
    let n = t.numel();
    let out = alloc_out(&dev, dtype, t.shape())?;
    if n > 0 {
        let s = strided_operands("to_dtype", t.shape(), &[t.layout()])?;
        let name = format!("cast_{}_{}", suffix(t.dtype()), suffix(dtype));
        launch!(dev, "elementwise", name, elementwise_config(n); n as i64, s[0], x, out.ptr());
    }
    Ok(wrap(out, t.shape(), op))
}

/// A tensor of `shape` filled with `value`, on `dev`.
pub fn full(dev: &Arc<CudaDevice>, value: f64, shape: &[usize], dtype: DType) -> Result<Tensor> {
    let n = numel(shape);
    let out = alloc_out(dev, dtype, shape)?;
    if n > 0 {
        let name = format!("fill_{}", suffix(dtype));
        let (cfg, y) = (elementwise_config(n), out.ptr());
        match dtype {
            DType::F32 => launch!(dev, "elementwise", name, cfg; n as i64, y, value as f32),
            // Half values travel as their 16 bits (same size and alignment as __half / bf16).
            DType::F16 => launch!(dev, "elementwise", name, cfg; n as i64, y, half::f16::from_f64(value).to_bits()),
            DType::BF16 => launch!(dev, "elementwise", name, cfg; n as i64, y, half::bf16::from_f64(value).to_bits()),
            DType::I64 => launch!(dev, "elementwise", name, cfg; n as i64, y, value as i64),
            DType::U8 => launch!(dev, "elementwise", name, cfg; n as i64, y, value as u8),
        }
    }
    Ok(wrap(out, shape, None))
}

/// sin/cos have their own kernels (kernels/elementwise.cu says why).
fn unary_kernel(u: UnaryOp, backward: bool, dtype: DType) -> Result<String> {
    let trig = if matches!(u, UnaryOp::Sin | UnaryOp::Cos) { "_trig" } else { "" };
    let dir = if backward { "_backward" } else { "" };
    Ok(format!("unary{trig}{dir}_{}", float_suffix(u.name(), dtype)?))
}

pub fn unary(t: &Tensor, u: UnaryOp, op: Option<Op>) -> Result<Tensor> {
    let (dev, x) = device_and_ptr(u.name(), t)?;
    let name = unary_kernel(u, false, t.dtype())?;
    let n = t.numel();
    let out = alloc_out(&dev, t.dtype(), t.shape())?;
    if n > 0 {
        let s = strided_operands(u.name(), t.shape(), &[t.layout()])?;
        let cfg = packed_config(n, t.dtype().size_in_bytes(), &[(&s[0], x)], out.ptr());
        launch!(dev, "elementwise", name, cfg; n as i64, u as i32, s[0], x, out.ptr());
    }
    Ok(wrap(out, t.shape(), op))
}

/// g · op'(x), the unary backward rule in one pass.
pub fn unary_backward(x: &Tensor, g: &Tensor, u: UnaryOp) -> Result<Tensor> {
    let (dev, xp) = device_and_ptr(u.name(), x)?;
    let (_, gp) = device_and_ptr(u.name(), g)?;
    let name = unary_kernel(u, true, x.dtype())?;
    let n = x.numel();
    let out = alloc_out(&dev, x.dtype(), x.shape())?;
    if n > 0 {
        let gl = g.layout().broadcast_as(x.shape())?;
        let s = strided_operands(u.name(), x.shape(), &[x.layout(), &gl])?;
        launch!(dev, "elementwise", name, elementwise_config(n); n as i64, u as i32, s[0], xp, s[1], gp, out.ptr());
    }
    Ok(wrap(out, x.shape(), None))
}

pub fn affine(t: &Tensor, mul: f64, add: f64, op: Option<Op>) -> Result<Tensor> {
    let (dev, x) = device_and_ptr("affine", t)?;
    let name = format!("affine_{}", float_suffix("affine", t.dtype())?);
    let n = t.numel();
    let out = alloc_out(&dev, t.dtype(), t.shape())?;
    if n > 0 {
        let s = strided_operands("affine", t.shape(), &[t.layout()])?;
        let cfg = packed_config(n, t.dtype().size_in_bytes(), &[(&s[0], x)], out.ptr());
        launch!(dev, "elementwise", name, cfg; n as i64, s[0], x, out.ptr(), mul as f32, add as f32);
    }
    Ok(wrap(out, t.shape(), op))
}

pub fn powf(t: &Tensor, e: f64, op: Option<Op>) -> Result<Tensor> {
    let (dev, x) = device_and_ptr("powf", t)?;
    let name = format!("powf_{}", float_suffix("powf", t.dtype())?);
    let n = t.numel();
    let out = alloc_out(&dev, t.dtype(), t.shape())?;
    if n > 0 {
        let s = strided_operands("powf", t.shape(), &[t.layout()])?;
        launch!(dev, "elementwise", name, elementwise_config(n); n as i64, s[0], x, out.ptr(), e as f32);
    }
    Ok(wrap(out, t.shape(), op))
}

pub fn binary(a: &Tensor, b: &Tensor, bop: BinaryOp, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    let (dev, ap) = device_and_ptr(bop.name(), a)?;
    let (_, bp) = device_and_ptr(bop.name(), b)?;
    let name = format!("binary_{}", float_suffix(bop.name(), a.dtype())?);
    let n = numel(shape);
    let out = alloc_out(&dev, a.dtype(), shape)?;
    if n > 0 {
        let (la, lb) = (a.layout().broadcast_as(shape)?, b.layout().broadcast_as(shape)?);
        let s = strided_operands(bop.name(), shape, &[&la, &lb])?;
        let cfg = packed_config(n, a.dtype().size_in_bytes(), &[(&s[0], ap), (&s[1], bp)], out.ptr());
        launch!(dev, "elementwise", name, cfg; n as i64, bop as i32, s[0], ap, s[1], bp, out.ptr());
    }
    Ok(wrap(out, shape, op))
}

pub fn cmp(a: &Tensor, b: &Tensor, c: CmpOp, shape: &[usize]) -> Result<Tensor> {
    let (dev, ap) = device_and_ptr("cmp", a)?;
    let (_, bp) = device_and_ptr("cmp", b)?;
    // every storage dtype: floats compare as f32, integers exactly (kernels/elementwise.cu)
    let name = format!("cmp_{}", suffix(a.dtype()));
    let n = numel(shape);
    let out = alloc_out(&dev, DType::U8, shape)?;
    if n > 0 {
        let (la, lb) = (a.layout().broadcast_as(shape)?, b.layout().broadcast_as(shape)?);
        let s = strided_operands("cmp", shape, &[&la, &lb])?;
        launch!(dev, "elementwise", name, elementwise_config(n); n as i64, c as i32, s[0], ap, s[1], bp, out.ptr());
    }
    Ok(wrap(out, shape, None))
}

pub fn where_cond(c: &Tensor, t: &Tensor, f: &Tensor, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    // The kernel reads a u8 mask; any other condition means "non-zero", as on the CPU.
    let c = match c.dtype() {
        DType::U8 => c.clone(),
        _ => {
            let cf = if c.dtype().is_float() { c.clone() } else { cast(c, DType::F32, None)? };
            let zero = full(&device_and_ptr("where", &cf)?.0, 0.0, &[], cf.dtype())?;
            cmp(&cf, &zero, CmpOp::Ne, c.shape())?
        }
    };
    let (dev, cp) = device_and_ptr("where", &c)?;
    let (_, tp) = device_and_ptr("where", t)?;
    let (_, fp) = device_and_ptr("where", f)?;
    let name = format!("where_{}", float_suffix("where", t.dtype())?);
    let n = numel(shape);
    let out = alloc_out(&dev, t.dtype(), shape)?;
    if n > 0 {
        let (lc, lt, lf) = (c.layout().broadcast_as(shape)?, t.layout().broadcast_as(shape)?, f.layout().broadcast_as(shape)?);
        let s = strided_operands("where", shape, &[&lc, &lt, &lf])?;
        launch!(dev, "elementwise", name, elementwise_config(n); n as i64, s[0], cp, s[1], tp, s[2], fp, out.ptr());
    }
    Ok(wrap(out, shape, op))
}

/// x as contiguous [outer, r, inner] for a reduction over the sorted `dims`: as it is when the
/// dims are one consecutive run of a contiguous tensor, else permuted (kept dims first) and copied.
fn reduction_view(x: &Tensor, dims: &[usize]) -> Result<(Tensor, usize, usize, usize)> {
    let shape = x.shape();
    let r: usize = dims.iter().map(|&d| shape[d]).product();
    let consecutive = dims.windows(2).all(|w| w[1] == w[0] + 1);
    if x.is_contiguous() && consecutive && !dims.is_empty() {
        let outer = numel(&shape[..dims[0]]);
        let inner = numel(&shape[dims[dims.len() - 1] + 1..]);
        return Ok((x.clone(), outer, r, inner));
    }
    let kept: Vec<usize> = (0..x.rank()).filter(|d| !dims.contains(d)).collect();
    let perm: Vec<usize> = kept.iter().chain(dims).copied().collect();
    let xc = copy_contiguous(&x.permute(&perm)?, None)?;
    Ok((xc, numel(shape) / r.max(1), r, 1))
}

pub fn reduce(x: &Tensor, kind: ReduceOp, dims: &[usize], op: Option<Op>) -> Result<Tensor> {
    let out_shape = keep_dims_shape(x.shape(), dims);
    let (dev, _) = device_and_ptr("reduce", x)?;
    let sfx = float_suffix("reduce", x.dtype())?;
    let (xv, outer, r, inner) = reduction_view(x, dims)?;
    if r == 0 {
        return Ok(full(&dev, 0.0, &out_shape, x.dtype())?.with_op(op));
    }
    let xp = data_ptr(&xv)?;
    let out = alloc_out(&dev, x.dtype(), &out_shape)?;
    let code = kind as i32;
    if inner == 1 {
        launch!(dev, "reduce", format!("reduce_rows_{sfx}"), rows_config(outer, r); outer as i64, r as i64, code, xp, out.ptr());
    } else {
        launch!(dev, "reduce", format!("reduce_cols_{sfx}"), elementwise_config(outer * inner); outer as i64, r as i64, inner as i64, code, xp, out.ptr());
    }
    Ok(wrap(out, &out_shape, op))
}

pub fn argmax(x: &Tensor, dim: usize) -> Result<Tensor> {
    let out_shape = keep_dims_shape(x.shape(), &[dim]);
    let (dev, _) = device_and_ptr("argmax", x)?;
    let sfx = float_suffix("argmax", x.dtype())?;
    let (xv, outer, r, inner) = reduction_view(x, &[dim])?;
    let xp = data_ptr(&xv)?;
    let out = alloc_out(&dev, DType::I64, &out_shape)?;
    if outer * inner > 0 {
        launch!(dev, "reduce", format!("argmax_{sfx}"), elementwise_config(outer * inner); outer as i64, r as i64, inner as i64, xp, out.ptr());
    }
    Ok(wrap(out, &out_shape, None))
}

/// Softmax (or log-softmax) along `dim`: rows of the last dim, the input transposed there first
/// when `dim` is not last.
pub fn softmax(x: &Tensor, dim: usize, log: bool, op: Option<Op>) -> Result<Tensor> {
    let _g = crate::autograd::no_grad();
    let (dev, _) = device_and_ptr("softmax", x)?;
    let sfx = float_suffix("softmax", x.dtype())?;
    let last = x.rank() - 1;
    let xt = if dim == last { x.clone() } else { x.transpose(dim as isize, last as isize)? };
    let xt = dense(&xt)?;
    let xp = data_ptr(&xt)?;
    let cols = x.shape()[dim];
    let rows = if cols == 0 { 0 } else { x.numel() / cols };
    let out = alloc_out(&dev, x.dtype(), xt.shape())?;
    if rows > 0 {
        launch!(dev, "reduce", format!("softmax_{sfx}"), rows_config(rows, cols); rows as i64, cols as i64, log as i32, xp, out.ptr());
    }
    let t = wrap(out, xt.shape(), None);
    let t = if dim == last { t } else { copy_contiguous(&t.transpose(dim as isize, last as isize)?, None)? };
    Ok(t.with_op(op))
}
