//! The kernel lab's variants (tools/kernel_lab/*.cu, built in with `--features kernel-lab`),
//! launched with the shipped kernels' host logic so benches/tensor_core.rs can time both on the
//! same tensors. Not part of the engine's API: a variant that wins replaces the shipped kernel.

use super::launch::strided_operands;
use super::linalg::TcGemmDims;
use super::ops::{alloc_out, data_ptr, device_and_ptr, float_suffix, launch, wrap};
use crate::backend::cpu::attention::Dims;
use crate::backend::cpu::conv::Geom;
use crate::tensor::{DType, Layout, Tensor};
use crate::{Error, Result};
use cudarc::driver::LaunchConfig;

/// `x · wᵀ + bias` (x [M, K], w [N, K], bias [N], one half dtype) with GEMM lab variant 3, 4 or
/// 5 (tools/kernel_lab/gemm_tc_ring.cu: the shipped 128×128 tile fed by a 3-stage cp.async ring;
/// 4 reads its fragments with ldmatrix; gemm_tc_wgmma_sm90a.cu: 5 feeds wgmma from the same ring,
/// Hopper only), on the operands the shipped kernel's vv path takes: dense, 16-byte aligned,
/// K % 8 = 0.
pub fn linear_ring(x: &Tensor, w: &Tensor, bias: &Tensor, variant: u32) -> Result<Tensor> {
    let op = "linear_ring";
    let sfx = float_suffix(op, x.dtype())?;
    let (x, w, bias) = (x.contiguous()?, w.contiguous()?, bias.contiguous()?);
    let ((m, k), n) = ((x.shape()[0], x.shape()[1]), w.shape()[0]);
    let (dev, x_ptr) = device_and_ptr(op, &x)?;
    let (w_ptr, b_ptr) = (data_ptr(&w)?, data_ptr(&bias)?);
    if x.rank() != 2 || w.shape() != [n, k] || k % 8 != 0 || x_ptr % 16 != 0 || w_ptr % 16 != 0 || !(3..=5).contains(&variant) {
        return Err(Error::invalid(op, "x [M, K] and w [N, K], dense and 16-byte aligned, K % 8 = 0; variant 3, 4 or 5"));
    }
    let dims = TcGemmDims { m: m as i32, n: n as i32, k: k as i32, a_rs: k as i64, a_cs: 1, b_rs: 1, b_cs: k as i64, res: 0 };
    let no_batch = Layout::new(vec![], vec![], 0);
    let s = strided_operands(op, &[], &[&no_batch, &no_batch])?;
    let out = alloc_out(&dev, x.dtype(), &[m, n])?;
    let cfg = LaunchConfig { grid_dim: (m.div_ceil(128) as u32, n.div_ceil(128) as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let (module, name) = super::linalg::lab_wide_kernel(variant, sfx);
    launch!(dev, module, name, cfg; dims, x_ptr, s[0], w_ptr, s[1], b_ptr, out.ptr());
    Ok(wrap(out, &[m, n], None))
}

/// conv2d(x, w) + bias with conv lab variant 4 or 5 (tools/kernel_lab/conv_tc_v4.cu: the shipped
/// channels-last 128×128 forward, and its split-K for small images, fed by the cp.async ring with
/// ldmatrix fragments; conv_tc_wgmma_sm90a.cu: the same ring feeding wgmma, Hopper only) wherever
/// the shipped forward would take its 128×128 or split-K kernel; the host logic is the shipped
/// forward's (conv_tc.rs forward_with).
pub fn conv2d_lab(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &Geom, variant: u32) -> Result<Tensor> {
    use super::conv_tc::LabConv;
    let v = match variant {
        4 => LabConv::V4,
        5 => LabConv::V5,
        _ => return Err(Error::invalid("conv2d_lab", format!("conv lab variants are 4 and 5, not {variant}"))),
    };
    super::conv_tc::forward_with(x, w, bias, None, g, Some(v))
}

/// softmax(q kᵀ·scale) v for q [B, H, Lq, D], k and v [B, H, Lk, D] (one half dtype, no mask)
/// with attention lab variant 3 (tools/kernel_lab/attention_v3.cu: 32 query rows per warp,
/// cp.async double-buffered K/V, ldmatrix fragments), returning what the shipped forward returns:
/// the output as the [B, H, Lq, D] view of [B, Lq, H, D] storage and the row log-sum-exp.
/// Takes what the variant takes: D % 8 = 0 and D ≤ 80, K and V dense along D with 16-byte aligned
/// rows (q any strides), scale > 0.
pub fn flash_forward_v3(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<(Tensor, Tensor)> {
    let op = "flash_forward_v3";
    let (s, ks) = (q.shape(), k.shape());
    if q.rank() != 4 || k.shape() != v.shape() || ks.len() != 4 || ks[..2] != s[..2] || ks[3] != s[3] || k.dtype() != q.dtype() || v.dtype() != q.dtype() {
        return Err(Error::invalid(op, format!("q [B, H, Lq, D] and k, v [B, H, Lk, D] of one dtype, got {s:?}, {ks:?}, {:?}", v.shape())));
    }
    let dims = Dims { b: s[0], h: s[1], lq: s[2], lk: ks[2], d: s[3], dv: s[3] };
    let Some(dp) = v3_head_dim(k, v, scale, &dims)? else {
        return Err(Error::invalid(op, format!("variant 3 takes D % 8 = 0, D ≤ 80 (got {}), scale > 0 (got {scale}), k and v dense along D with 16-byte aligned rows, B·H ≤ 65535", dims.d)));
    };
    launch_v3(q, k, v, scale, &dims, dp)
}

/// Variant 3 at padded head dim `dp` on arguments `v3_head_dim` accepted (the dtype and device are
/// checked here).
fn launch_v3(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, dims: &Dims, dp: usize) -> Result<(Tensor, Tensor)> {
    let sfx = float_suffix("flash_forward_v3", q.dtype())?;
    let (dev, _) = device_and_ptr("flash_forward_v3", q)?;
    let args = super::attention::args(q, k, v, None, scale, dims);
    let stored = [dims.b, dims.lq, dims.h, dims.d];
    let out = alloc_out(&dev, q.dtype(), &stored)?;
    let lse = alloc_out(&dev, DType::F32, &[dims.b, dims.h, dims.lq])?;
    if dims.lq > 0 {
        let cfg = LaunchConfig { grid_dim: (dims.lq.div_ceil(128) as u32, (dims.b * dims.h) as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        launch!(dev, "lab_attention_v3", format!("flash_fwd_v3_d{dp}_{sfx}"), cfg;
            args, data_ptr(q)?, data_ptr(k)?, data_ptr(v)?, out.ptr(), lse.ptr());
    }
    Ok((wrap(out, &stored, None).permute(&[0, 2, 1, 3])?, wrap(lse, &[dims.b, dims.h, dims.lq], None)))
}

/// The padded head dim variant 3 runs `dims` at, or None where it does not take them.
fn v3_head_dim(k: &Tensor, v: &Tensor, scale: f64, dims: &Dims) -> Result<Option<usize>> {
    let rows_aligned = |t: &Tensor| -> Result<bool> {
        let st = t.layout().strides();
        Ok(st[3] == 1 && st[..3].iter().all(|&x| x % 8 == 0) && data_ptr(t)? % 16 == 0)
    };
    let dp = super::attention::padded_head_dim(dims.d).filter(|&p| p <= 80 && dims.d.is_multiple_of(8) && dims.d == dims.dv);
    let positive = scale > 0.0; // NaN is not
    if dp.is_none() || !positive || dims.b * dims.h > 65_535 || !rows_aligned(k)? || !rows_aligned(v)? {
        return Ok(None);
    }
    Ok(dp)
}

/// For the shipped forward under `LDM_CUDA_ATTENTION=lab-v3`: variant 3's result where it takes
/// the call (no mask, `v3_head_dim`), else None — so the SD workload can be timed on it.
pub(crate) fn try_flash_forward_v3(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, dims: &Dims) -> Result<Option<(Tensor, Tensor)>> {
    if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
        return Ok(None);
    }
    match v3_head_dim(k, v, scale, dims)? {
        Some(dp) => launch_v3(q, k, v, scale, dims, dp).map(Some),
        None => Ok(None),
    }
}
