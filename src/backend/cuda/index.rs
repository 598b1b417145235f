//! CUDA cat, index_select (embedding) and the 2-D map gather behind upsample_nearest2d and pad2d,
//! with their adjoints (kernels/index.cu, copy_into in kernels/elementwise.cu). Indices are
//! validated on the host by the tensor layer and uploaded as int64 arrays.

use super::launch::{elementwise_config, strided_operands};
use super::ops::{alloc_out, data_ptr, dense, device_and_ptr, float_suffix, full, launch, suffix, wrap};
use super::CudaDevice;
use crate::autograd::Op;
use crate::tensor::{DType, Device, Layout, Tensor};
use crate::Result;
use std::sync::Arc;

/// A host index list as an int64 tensor on `dev` (−1 where the map says "zero").
pub(crate) fn upload_ids(dev: &Arc<CudaDevice>, ids: impl Iterator<Item = i64>) -> Result<Tensor> {
    let v: Vec<i64> = ids.collect();
    let n = v.len();
    Tensor::from_vec(v, &[n])?.to_device(Device::Cuda(dev.ordinal()))
}

/// `ids` on the device from the device's cache of index maps, uploaded on first use. For the
/// small maps that depend only on shapes (upsample, pad). A cached map is never freed (a recorded
/// graph may read it); past MAX_MAPS new maps are uploaded per call instead.
fn cached_ids(dev: &Arc<CudaDevice>, ids: impl Iterator<Item = i64>) -> Result<Tensor> {
    const MAX_MAPS: usize = 256;
    let key: Vec<i64> = ids.collect();
    let mut maps = dev.index_maps.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = maps.get(&key) {
        return Ok(t.clone());
    }
    let t = upload_ids(dev, key.iter().copied())?;
    if maps.len() >= MAX_MAPS {
        return Ok(t);
    }
    maps.insert(key, t.clone());
    Ok(t)
}

/// Concatenation along `d` of tensors validated by the caller: each input copied straight into
/// its slice of the output (a strided destination), no intermediate.
pub fn cat(xs: &[&Tensor], d: usize, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    let (dev, _) = device_and_ptr("cat", xs[0])?;
    let dtype = xs[0].dtype();
    let out = alloc_out(&dev, dtype, shape)?;
    let out_layout = Layout::contiguous(shape);
    let mut start = 0;
    for x in xs {
        let len = x.shape()[d];
        let dst = out_layout.narrow(d, start, len)?;
        start += len;
        if x.numel() == 0 {
            continue;
        }
        let (_, xp) = device_and_ptr("cat", x)?;
        let s = strided_operands("cat", x.shape(), &[x.layout(), &dst])?;
        launch!(dev, "elementwise", format!("copy_into_{}", suffix(dtype)), elementwise_config(x.numel()); x.numel() as i64, s[0], xp, s[1], out.ptr());
    }
    Ok(wrap(out, shape, op))
}

/// x [.., n, ..] → [.., ids.len(), ..] along `d`.
pub fn index_select(x: &Tensor, ids: &[usize], d: usize, op: Option<Op>) -> Result<Tensor> {
    let x = dense(x)?;
    let (dev, _) = device_and_ptr("index_select", &x)?;
    let mut shape = x.shape().to_vec();
    shape[d] = ids.len();
    let out = alloc_out(&dev, x.dtype(), &shape)?;
    let total: usize = shape.iter().product();
    if total > 0 {
        let outer: usize = x.shape()[..d].iter().product();
        let inner: usize = x.shape()[d + 1..].iter().product();
        let idt = upload_ids(&dev, ids.iter().map(|&i| i as i64))?;
        launch!(dev, "index", format!("index_select_{}", suffix(x.dtype())), elementwise_config(total);
            outer as i64, x.shape()[d] as i64, ids.len() as i64, inner as i64, data_ptr(&idt)?, data_ptr(&x)?, out.ptr());
    }
    Ok(wrap(out, &shape, op))
}

/// The adjoint of index_select: g's rows added back at `ids` (repeats accumulate), in x's dtype.
pub fn index_select_backward(x: &Tensor, ids: &[usize], d: usize, g: &Tensor) -> Result<Tensor> {
    let sfx = float_suffix("index_select_backward", g.dtype())?;
    let g = dense(g)?;
    let (dev, _) = device_and_ptr("index_select_backward", &g)?;
    let acc = full(&dev, 0.0, x.shape(), DType::F32)?;
    if g.numel() > 0 {
        let outer: usize = x.shape()[..d].iter().product();
        let inner: usize = x.shape()[d + 1..].iter().product();
        let idt = upload_ids(&dev, ids.iter().map(|&i| i as i64))?;
        launch!(dev, "index", format!("index_add_{sfx}"), elementwise_config(g.numel());
            outer as i64, x.shape()[d] as i64, ids.len() as i64, inner as i64, data_ptr(&idt)?, data_ptr(&g)?, data_ptr(&acc)?);
    }
    acc.to_dtype(x.dtype())
}

fn map_ids(map: &[Option<usize>]) -> impl Iterator<Item = i64> + '_ {
    map.iter().map(|m| m.map_or(-1, |v| v as i64))
}

/// y[p, r, c] = x[p, rows[r], cols[c]] over the planes of x [.., H, W].
pub fn gather2d(x: &Tensor, planes: usize, (h, w): (usize, usize), rows: &[Option<usize>], cols: &[Option<usize>], shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    let x = dense(x)?;
    let (dev, _) = device_and_ptr("gather2d", &x)?;
    let out = alloc_out(&dev, x.dtype(), shape)?;
    let total = planes * rows.len() * cols.len();
    if total > 0 {
        let (rt, ct) = (cached_ids(&dev, map_ids(rows))?, cached_ids(&dev, map_ids(cols))?);
        launch!(dev, "index", format!("gather2d_{}", suffix(x.dtype())), elementwise_config(total);
            planes as i64, h as i64, w as i64, rows.len() as i64, cols.len() as i64, data_ptr(&rt)?, data_ptr(&ct)?, data_ptr(&x)?, out.ptr());
    }
    Ok(wrap(out, shape, op))
}

/// The adjoint of gather2d: g [.., rows, cols] summed back into x's shape, in x's dtype.
pub fn scatter_add2d(x: &Tensor, g: &Tensor, planes: usize, (h, w): (usize, usize), rows: &[Option<usize>], cols: &[Option<usize>]) -> Result<Tensor> {
    let sfx = float_suffix("scatter_add2d", g.dtype())?;
    let g = dense(g)?;
    let (dev, _) = device_and_ptr("scatter_add2d", &g)?;
    let acc = full(&dev, 0.0, x.shape(), DType::F32)?;
    if g.numel() > 0 {
        let (rt, ct) = (cached_ids(&dev, map_ids(rows))?, cached_ids(&dev, map_ids(cols))?);
        launch!(dev, "index", format!("scatter_add2d_{sfx}"), elementwise_config(g.numel());
            planes as i64, h as i64, w as i64, rows.len() as i64, cols.len() as i64, data_ptr(&rt)?, data_ptr(&ct)?, data_ptr(&g)?, data_ptr(&acc)?);
    }
    acc.to_dtype(x.dtype())
}
