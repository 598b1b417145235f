//! CUDA group_norm (with the optional fused SiLU) and layer_norm, forward and backward
//! (kernels/norm.cu). Arguments arrive validated by src/tensor/norm.rs; affine parameters are
//! cast to the input's dtype on the device when they differ (f32 master weights, bf16 activations);
//! their gradients are accumulated in f32 and returned in the parameter's dtype.

use super::ops::{alloc_out, cast, data_ptr, dense, device_and_ptr, float_suffix, launch, wrap};
use super::CudaStorage;
use crate::autograd::Op;
use crate::backend::cpu::norm::GroupDims;
use crate::tensor::{DType, Tensor};
use crate::Result;
use cudarc::driver::LaunchConfig;

/// An optional affine parameter as a dense tensor of `dtype` and its address (0 = absent).
fn param(p: Option<&Tensor>, dtype: DType) -> Result<(Option<Tensor>, u64)> {
    let Some(p) = p else { return Ok((None, 0)) };
    let p = if p.dtype() == dtype { dense(p)? } else { cast(p, dtype, None)? };
    let ptr = data_ptr(&p)?;
    Ok((Some(p), ptr))
}

/// A parameter's f32 gradient buffer as a tensor in the parameter's own dtype (None without the
/// parameter).
fn param_grad(grad: Option<CudaStorage>, p: Option<&Tensor>) -> Result<Option<Tensor>> {
    match (grad, p) {
        (Some(g), Some(p)) => Ok(Some(wrap(g, p.shape(), None).to_dtype(p.dtype())?)),
        _ => Ok(None),
    }
}

/// `shift`: None, or a [N, C] or [1, C] tensor (validated by the caller) added per (n, channel) before the
/// norm, read in place where its rows are dense (a column slice of the UNet's stacked embedding
/// projections is). With `copy_x`, where the output is written channels-last, x itself is written
/// channels-last by the same launch and returned second (a [N, C, H, W] view of [N, H, W, C]
/// storage, which the channels-last conv reads without a transpose); None otherwise.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &Tensor,
    d: GroupDims,
    w: Option<&Tensor>,
    b: Option<&Tensor>,
    eps: f64,
    silu: bool,
    shift: Option<&Tensor>,
    copy_x: bool,
    op: Option<Op>,
) -> Result<(Tensor, Option<Tensor>)> {
    let sfx = float_suffix("group_norm", x.dtype())?;
    let x = dense(x)?;
    let (dev, _) = device_and_ptr("group_norm", &x)?;
    let (_w, wp) = param(w, x.dtype())?;
    let (_b, bp) = param(b, x.dtype())?;
    let (_shift, shift_ptr, shift_rs) = match shift {
        None => (None, 0u64, 0i64),
        Some(t) => {
            let t = t.to_dtype(x.dtype())?;
            let t = if t.layout().strides()[1] == 1 { t } else { dense(&t)? };
            // [1, C]: row stride 0, the same shift for every sample
            let rs = if t.shape()[0] == 1 { 0 } else { t.layout().strides()[0] as i64 };
            let ptr = data_ptr(&t)?;
            (Some(t), ptr, rs)
        }
    };
    let out = alloc_out(&dev, x.dtype(), x.shape())?;
    let units = d.n * d.groups;
    let channels_last = channels_last_output(&x, op.is_some());
    let x_copy = (channels_last && copy_x).then(|| alloc_out(&dev, x.dtype(), x.shape())).transpose()?;
    if x.numel() > 0 {
        // kernels/norm.cu: partial statistics per chunk, then the normalisation, whose blocks each
        // merge the partials of the units they write (two launches)
        let count = x.numel() / units;
        let splits = group_norm_splits(units, count);
        let part = CudaStorage::alloc(&dev, DType::F32, 3 * units * splits)?;
        let xp = data_ptr(&x)?;
        let cfg = LaunchConfig { grid_dim: (units as u32, splits as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let cpg = (d.c / d.groups) as i64;
        launch!(dev, "norm", format!("group_norm_partial_{sfx}"), cfg;
            count as i64, d.c as i64, d.s as i64, cpg, splits as i32, xp, shift_ptr, shift_rs, part.ptr());
        if channels_last {
            let tiles = group_norm_nhwc_tiles(d.n, d.c, d.s);
            let grid = (d.s.div_ceil(32).div_ceil(tiles) as u32, d.c.div_ceil(32) as u32, d.n as u32);
            let cfg = LaunchConfig { grid_dim: grid, block_dim: (32, 8, 1), shared_mem_bytes: 0 };
            launch!(dev, "norm", format!("group_norm_apply_nhwc_{sfx}"), cfg;
                d.c as i64, d.s as i64, cpg, splits as i32, tiles as i32, silu as i32, eps as f32, part.ptr(), xp, shift_ptr, shift_rs, wp, bp, out.ptr(),
                x_copy.as_ref().map_or(0, |c| c.ptr()));
        } else {
            let per_vector = 16 / x.dtype().size_in_bytes();
            let vectors = d.s % per_vector == 0 && xp % 16 == 0 && out.ptr() % 16 == 0;
            let (name, step) = if vectors { (format!("group_norm_apply_vec_{sfx}"), per_vector) } else { (format!("group_norm_apply_{sfx}"), 1) };
            let blocks = group_norm_apply_blocks(units, count / step);
            let cfg = LaunchConfig { grid_dim: (units as u32, blocks as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
            launch!(dev, "norm", name, cfg;
                count as i64, d.c as i64, d.s as i64, cpg, splits as i32, silu as i32, eps as f32, part.ptr(), xp, shift_ptr, shift_rs, wp, bp, out.ptr());
        }
    }
    if channels_last {
        // [N, H, W, C] in memory, seen as [N, C, H, W]: the shape every caller expects
        let s = x.shape();
        let view = |t: CudaStorage| wrap(t, &[s[0], s[2], s[3], s[1]], None).permute(&[0, 3, 1, 2]);
        return Ok((view(out)?, x_copy.map(view).transpose()?));
    }
    Ok((wrap(out, x.shape(), op), None))
}

/// Whether the normalisation is written channels-last: for inference (nothing recorded) on
/// [N, C, H, W] half-precision images whose channels the channels-last conv kernel reads — the
/// conv after it (GroupNorm → SiLU → conv in every ResBlock) then needs no transpose. Any other
/// consumer reads the permuted view like any strided tensor. `LDM_CUDA_CONV=nchw` turns it off.
fn channels_last_output(x: &Tensor, recorded: bool) -> bool {
    let s = x.shape();
    !recorded && s.len() == 4 && s[0] <= 65_535 && s[1].div_ceil(32) <= 65_535 && super::conv_tc::reads_channels_last(s[1], x.dtype())
}

/// Chunks per group-norm unit: enough blocks for ~4 waves of a 132-SM GPU, chunks of at most
/// 16K values (the statistics' second pass then reads from cache), at least 256 values (a block's
/// threads each get one), at most 1024 (every block of the apply merges its unit's partials: a
/// warp, 32 per lane).
fn group_norm_splits(units: usize, count: usize) -> usize {
    528usize.div_ceil(units).max(count.div_ceil(16_384)).min(count.div_ceil(256)).clamp(1, 1024)
}

/// Blocks per unit of the NCHW apply (256 threads each, `vectors` loads per unit): ~4 waves of a
/// 132-SM GPU as for the statistics, but at least one load per thread. Each block merges its
/// unit's partials once, so a big unit keeps few blocks that loop rather than many that re-merge.
fn group_norm_apply_blocks(units: usize, vectors: usize) -> usize {
    528usize.div_ceil(units).min(vectors.div_ceil(256)).clamp(1, 65_535)
}

/// 32-pixel tiles per block of the channels-last apply (256 threads, 32 channels × 32 pixels a
/// tile): one until there are ~8 blocks per SM of a 132-SM GPU (1056), then more per block, so
/// that a large image does not merge the same partials in every one of its thousands of tiles.
fn group_norm_nhwc_tiles(n: usize, c: usize, s: usize) -> usize {
    let tiles = s.div_ceil(32);
    (tiles * c.div_ceil(32) * n / 1056).clamp(1, tiles.max(1))
}

/// (dx, dweight, dbias); the parameter gradients exist exactly when the parameters do, in their
/// own dtypes.
pub fn group_norm_backward(
    x: &Tensor,
    g: &Tensor,
    d: GroupDims,
    w: Option<&Tensor>,
    b: Option<&Tensor>,
    eps: f64,
    silu: bool,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    let sfx = float_suffix("group_norm_backward", x.dtype())?;
    let (x, g) = (dense(x)?, dense(&g.to_dtype(x.dtype())?)?);
    let (dev, _) = device_and_ptr("group_norm_backward", &x)?;
    let (_w, wp) = param(w, x.dtype())?;
    let (_b, bp) = param(b, x.dtype())?;
    let units = d.n * d.groups;
    let dx = alloc_out(&dev, x.dtype(), x.shape())?;
    let stats = CudaStorage::alloc(&dev, DType::F32, 2 * units.max(1))?;
    let dw = w.map(|_| alloc_out(&dev, DType::F32, &[d.c])).transpose()?;
    let db = b.map(|_| alloc_out(&dev, DType::F32, &[d.c])).transpose()?;
    if x.numel() > 0 {
        let (xp, gp) = (data_ptr(&x)?, data_ptr(&g)?);
        let cfg = super::launch::rows_config(units, x.numel() / units);
        launch!(dev, "norm", format!("group_norm_bwd_{sfx}"), cfg;
            d.n as i64, d.c as i64, d.s as i64, d.groups as i64, eps as f32, silu as i32, xp, gp, wp, bp, dx.ptr(), stats.ptr());
        if dw.is_some() || db.is_some() {
            let cfg = super::launch::rows_config(d.c, d.n * d.s);
            launch!(dev, "norm", format!("group_norm_dwdb_{sfx}"), cfg;
                d.n as i64, d.c as i64, d.s as i64, d.groups as i64, silu as i32, xp, gp, wp, bp, stats.ptr(),
                dw.as_ref().map_or(0, |s| s.ptr()), db.as_ref().map_or(0, |s| s.ptr()));
        }
    }
    Ok((wrap(dx, x.shape(), None), param_grad(dw, w)?, param_grad(db, b)?))
}

pub fn layer_norm(x: &Tensor, dim: usize, w: Option<&Tensor>, b: Option<&Tensor>, eps: f64, op: Option<Op>) -> Result<Tensor> {
    let sfx = float_suffix("layer_norm", x.dtype())?;
    let x = dense(x)?;
    let (dev, _) = device_and_ptr("layer_norm", &x)?;
    let (_w, wp) = param(w, x.dtype())?;
    let (_b, bp) = param(b, x.dtype())?;
    let out = alloc_out(&dev, x.dtype(), x.shape())?;
    let rows = if dim == 0 { 0 } else { x.numel() / dim };
    if rows > 0 {
        launch!(dev, "norm", format!("layer_norm_fwd_{sfx}"), super::launch::rows_config(rows, dim);
            rows as i64, dim as i64, eps as f32, data_ptr(&x)?, wp, bp, out.ptr());
    }
    Ok(wrap(out, x.shape(), op))
}

pub fn layer_norm_backward(
    x: &Tensor,
    g: &Tensor,
    dim: usize,
    w: Option<&Tensor>,
    b: Option<&Tensor>,
    eps: f64,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    let sfx = float_suffix("layer_norm_backward", x.dtype())?;
    let (x, g) = (dense(x)?, dense(&g.to_dtype(x.dtype())?)?);
    let (dev, _) = device_and_ptr("layer_norm_backward", &x)?;
    let (_w, wp) = param(w, x.dtype())?;
    let rows = if dim == 0 { 0 } else { x.numel() / dim };
    let dx = alloc_out(&dev, x.dtype(), x.shape())?;
    let stats = CudaStorage::alloc(&dev, DType::F32, 2 * rows.max(1))?;
    let dw = w.map(|_| alloc_out(&dev, DType::F32, &[dim])).transpose()?;
    let db = b.map(|_| alloc_out(&dev, DType::F32, &[dim])).transpose()?;
    if rows > 0 {
        let (xp, gp) = (data_ptr(&x)?, data_ptr(&g)?);
        launch!(dev, "norm", format!("layer_norm_bwd_{sfx}"), super::launch::rows_config(rows, dim);
            rows as i64, dim as i64, eps as f32, xp, gp, wp, dx.ptr(), stats.ptr());
        if dw.is_some() || db.is_some() {
            launch!(dev, "norm", format!("layer_norm_dwdb_{sfx}"), super::launch::elementwise_config(dim);
                rows as i64, dim as i64, xp, gp, stats.ptr(), dw.as_ref().map_or(0, |s| s.ptr()), db.as_ref().map_or(0, |s| s.ptr()));
        }
    }
    Ok((wrap(dx, x.shape(), None), param_grad(dw, w)?, param_grad(db, b)?))
}

#[cfg(test)]
mod tests {
    use super::{group_norm_apply_blocks, group_norm_nhwc_tiles, group_norm_splits};

    #[test]
    fn group_norm_spreads_each_unit_over_enough_blocks() {
        // SD1.5 UNet, batch 2, 32 groups: 64 units of 10·64² values → 9 chunks (576 blocks)
        assert_eq!(group_norm_splits(64, 10 * 4096), 9);
        // the VAE decoder at 512², batch 1: 32 units of 4·512² values → chunks of ≤ 16K values
        assert_eq!(group_norm_splits(32, 4 * 512 * 512), 64);
        // a small unit stays whole; a huge one is capped at 1024 chunks
        assert_eq!(group_norm_splits(64, 200), 1);
        assert_eq!(group_norm_splits(1, 1 << 30), 1024);
    }

    #[test]
    fn group_norm_apply_fills_the_gpu_without_re_merging_in_every_tile() {
        // SD1.5 [2, 320, 64, 64] f16 (8 values a load): 9 blocks per unit, ~2 loads per thread
        assert_eq!(group_norm_apply_blocks(64, 10 * 4096 / 8), 9);
        // a small unit gets one block; many units one block each
        assert_eq!(group_norm_apply_blocks(64, 100), 1);
        assert_eq!(group_norm_apply_blocks(4096, 1 << 20), 1);
        // channels-last: 2560 tiles at [2, 320, 64, 64] → 2 a block; [2, 1280, 16, 16] keeps 1
        assert_eq!(group_norm_nhwc_tiles(2, 320, 64 * 64), 2);
        assert_eq!(group_norm_nhwc_tiles(2, 1280, 16 * 16), 1);
        // the VAE decoder at 512², batch 1, 128 channels: 32768 tiles → 31 a block (1060 blocks)
        assert_eq!(group_norm_nhwc_tiles(1, 128, 512 * 512), 31);
        // never more tiles a block than the image has
        assert_eq!(group_norm_nhwc_tiles(4096, 4096, 33), 2);
    }
}
