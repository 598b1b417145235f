//! Flash attention on CUDA (kernels/attention.cu): softmax(q kᵀ·scale + mask) v for f16/bf16 q,
//! k, v read through their strides, f32 accumulation, the [Lq, Lk] scores never stored. The
//! forward returns the output [B, H, Lq, Dv] (a view of [B, Lq, H, Dv] storage, q's dtype) and the row log-sum-exp
//! [B, H, Lq] (f32, natural log) that the backward recomputes the probabilities from.
//! tensor/attention.rs validates the arguments and decides when this runs;
//! `LDM_CUDA_ATTENTION=unfused` forces the recorded matmul-softmax-matmul path instead.

use super::ops::{alloc_out, data_ptr, dense, device_and_ptr, float_suffix, launch, wrap};
use crate::backend::cpu::attention::Dims;
use crate::tensor::{DType, Layout, Tensor};
use crate::Result;
use cudarc::driver::{DeviceRepr, LaunchConfig};

/// Query rows and threads of a forward block (FA_FWD_BQ, FA_FWD_THREADS in kernels/attention.cu).
const FWD_BLOCK_Q: usize = 128;
const FWD_THREADS: u32 = 256;
/// Threads of a backward block (FA_THREADS).
const THREADS: u32 = 128;
/// The padded head dims the kernel is instantiated for (flash_fwd_d{DP}_{dtype}).
const HEAD_DIMS: [usize; 8] = [16, 32, 48, 64, 80, 96, 128, 160];

/// Must match `struct AttnArgs` in kernels/attention.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttnArgs {
    b: i32,
    h: i32,
    lq: i32,
    lk: i32,
    d: i32,
    scale_log2: f32,
    qs: [i64; 4],
    ks: [i64; 4],
    vs: [i64; 4],
    ms: [i64; 4],
}
// SAFETY: plain #[repr(C)] numbers mirroring the C struct (two int32 pairs keep the i64 arrays
// 8-byte aligned, as in C).
unsafe impl DeviceRepr for AttnArgs {}

/// `LDM_CUDA_ATTENTION=unfused`: every attention on the widened f32 formula (the reference path).
pub(crate) fn forced_unfused() -> bool {
    super::switch_is("LDM_CUDA_ATTENTION", "unfused")
}

/// `LDM_CUDA_ATTENTION=lab-v3` in a build with `--features kernel-lab`: the forwards that the
/// kernel lab's attention variant 3 takes run on it (gpu-bundle/e2e.sh times the SD workload so).
#[cfg(feature = "kernel-lab")]
fn lab_v3_requested() -> bool {
    super::switch_is("LDM_CUDA_ATTENTION", "lab-v3")
}

/// The kernel's padded head dim for `d`, if one is built.
pub(crate) fn padded_head_dim(d: usize) -> Option<usize> {
    HEAD_DIMS.iter().copied().find(|&p| p >= d)
}

/// True when the flash kernel handles these sizes: f16/bf16, D = Dv ≤ 160, lengths in int32 and
/// B·H within one grid dimension.
pub fn eligible(dtype: DType, dims: &Dims) -> bool {
    matches!(dtype, DType::F16 | DType::BF16)
        && !forced_unfused()
        && dims.d == dims.dv
        && padded_head_dim(dims.d).is_some()
        && dims.b * dims.h <= 65_535
        && dims.b * dims.h > 0
        && dims.lq.max(dims.lk) < i32::MAX as usize
}

/// True when the backward kernel exists too (padded head dim ≤ 128: at 160 its dK/dV
/// accumulators alone would fill the register file).
pub fn eligible_backward(dtype: DType, dims: &Dims) -> bool {
    eligible(dtype, dims) && padded_head_dim(dims.d).is_some_and(|p| p <= 128)
}

fn strides(l: &Layout) -> [i64; 4] {
    let s = l.strides();
    [s[0] as i64, s[1] as i64, s[2] as i64, s[3] as i64]
}

/// `mask`: an f32 tensor and its layout broadcast to [B, H, Lq, Lk].
pub(crate) fn args(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<(&Tensor, &Layout)>, scale: f64, dims: &Dims) -> AttnArgs {
    AttnArgs {
        b: dims.b as i32,
        h: dims.h as i32,
        lq: dims.lq as i32,
        lk: dims.lk as i32,
        d: dims.d as i32,
        scale_log2: (scale * std::f64::consts::LOG2_E) as f32,
        qs: strides(q.layout()),
        ks: strides(k.layout()),
        vs: strides(v.layout()),
        ms: mask.map(|(_, l)| strides(l)).unwrap_or([0; 4]),
    }
}

/// The mask's address; its view offset is in the broadcast layout (which keeps the tensor's).
fn mask_ptr(mask: Option<(&Tensor, &Layout)>) -> Result<u64> {
    Ok(match mask {
        Some((m, l)) => device_and_ptr("scaled_dot_product_attention", m)?.1 + (l.offset() * DType::F32.size_in_bytes()) as u64,
        None => 0,
    })
}

/// `mask`: an f32 tensor and its layout broadcast to [B, H, Lq, Lk].
pub fn flash_forward(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<(&Tensor, &Layout)>, scale: f64, dims: &Dims) -> Result<(Tensor, Tensor)> {
    const OP: &str = "scaled_dot_product_attention";
    let sfx = float_suffix(OP, q.dtype())?;
    let (dev, _) = device_and_ptr(OP, q)?;
    let dp = padded_head_dim(dims.d).ok_or_else(|| crate::Error::invalid(OP, format!("no flash kernel for head dim {}", dims.d)))?;
    #[cfg(feature = "kernel-lab")]
    if mask.is_none()
        && lab_v3_requested()
        && let Some(done) = super::lab::try_flash_forward_v3(q, k, v, scale, dims)?
    {
        return Ok(done);
    }
    let (args, mask_ptr) = (args(q, k, v, mask, scale, dims), mask_ptr(mask)?);
    let out_shape = [dims.b, dims.h, dims.lq, dims.dv];
    // stored [B, Lq, H, Dv] (kernels/attention.cu), returned as the [B, H, Lq, Dv] view: the heads
    // merge back into [B, Lq, H·Dv] without a copy
    let stored = [dims.b, dims.lq, dims.h, dims.dv];
    let out = alloc_out(&dev, q.dtype(), &stored)?;
    let lse = alloc_out(&dev, DType::F32, &out_shape[..3])?;
    if dims.lq > 0 {
        let cfg = LaunchConfig { grid_dim: (dims.lq.div_ceil(FWD_BLOCK_Q) as u32, (dims.b * dims.h) as u32, 1), block_dim: (FWD_THREADS, 1, 1), shared_mem_bytes: 0 };
        launch!(dev, "attention", format!("flash_fwd_d{dp}_{sfx}"), cfg;
            args, data_ptr(q)?, data_ptr(k)?, data_ptr(v)?, mask_ptr, out.ptr(), lse.ptr());
    }
    Ok((wrap(out, &stored, None).permute(&[0, 2, 1, 3])?, wrap(lse, &out_shape[..3], None)))
}

/// (dq, dk, dv) from the forward's output and log-sum-exp and the output gradient `g`; `mask` as
/// for the forward. dq is summed over key blocks in f32 (atomics), then cast to q's dtype.
#[allow(clippy::too_many_arguments)]
pub fn flash_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<(&Tensor, &Layout)>,
    scale: f64,
    dims: &Dims,
    out: &Tensor,
    lse: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "scaled_dot_product_attention backward";
    let sfx = float_suffix(OP, q.dtype())?;
    let (dev, _) = device_and_ptr(OP, q)?;
    let dp = padded_head_dim(dims.d).filter(|&p| p <= 128).ok_or_else(|| crate::Error::invalid(OP, format!("no flash backward kernel for head dim {}", dims.d)))?;
    let (out, g, lse) = (dense(&out.to_dtype(q.dtype())?)?, dense(&g.to_dtype(q.dtype())?)?, dense(&lse.to_dtype(DType::F32)?)?);
    let (args, mask_ptr) = (args(q, k, v, mask, scale, dims), mask_ptr(mask)?);
    let rows = dims.b * dims.h * dims.lq;
    let drow = alloc_out(&dev, DType::F32, &[rows.max(1)])?;
    let dq = super::ops::full(&dev, 0.0, &[dims.b, dims.h, dims.lq, dims.d], DType::F32)?;
    let kv_shape = [dims.b, dims.h, dims.lk, dims.d];
    let (dk, dv) = (alloc_out(&dev, k.dtype(), &kv_shape)?, alloc_out(&dev, v.dtype(), &kv_shape)?);
    if rows > 0 {
        let cfg = LaunchConfig { grid_dim: (rows.div_ceil(4) as u32, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        launch!(dev, "attention", format!("flash_bwd_prep_{sfx}"), cfg; rows as i32, dims.d as i32, data_ptr(&out)?, data_ptr(&g)?, drow.ptr());
    }
    let cfg = LaunchConfig { grid_dim: (dims.lk.div_ceil(64) as u32, (dims.b * dims.h) as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    launch!(dev, "attention", format!("flash_bwd_d{dp}_{sfx}"), cfg;
        args, data_ptr(q)?, data_ptr(k)?, data_ptr(v)?, mask_ptr, data_ptr(&g)?, data_ptr(&lse)?, drow.ptr(), data_ptr(&dq)?, dk.ptr(), dv.ptr());
    Ok((dq.to_dtype(q.dtype())?, wrap(dk, &kv_shape, None), wrap(dv, &kv_shape, None)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_dims_pad_to_the_next_built_kernel() {
        // SD1.x: 40 → 48, 80 → 80, 160 → 160; beyond 160 there is no kernel.
        assert_eq!([40, 80, 160, 64, 5, 129].map(padded_head_dim), [Some(48), Some(80), Some(160), Some(64), Some(16), Some(160)]);
        assert_eq!(padded_head_dim(161), None);
    }

    #[test]
    fn the_argument_struct_has_the_c_layout() {
        // int32 ×5, float, then four int64[4] arrays starting at byte 24.
        assert_eq!(std::mem::size_of::<AttnArgs>(), 24 + 4 * 32);
        assert_eq!(std::mem::align_of::<AttnArgs>(), 8);
    }
}
