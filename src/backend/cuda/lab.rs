//! The kernel lab's variants (tools/kernel_lab/*.cu, built in with `--features kernel-lab`),
//! launched with the shipped kernels' host logic so benches/tensor_core.rs can time both on the
//! same tensors. Not part of the engine's API: a variant that wins replaces the shipped kernel.

use super::attention::{args, padded_head_dim};
use super::conv_tc::{cast_operand, operands, TcConvGeom};
use super::ops::{alloc_out, data_ptr, device_and_ptr, float_suffix, launch, wrap};
use crate::backend::cpu::attention::Dims;
use crate::backend::cpu::conv::Geom;
use crate::tensor::{DType, Tensor};
use crate::Result;
use cudarc::driver::LaunchConfig;

/// conv2d forward (+ bias) with lab variant 2 (tools/kernel_lab/conv_tc_v2.cu: 128×128 tiles,
/// 256 threads); `eligible` of the shipped kernel must hold.
pub fn conv2d_forward_v2(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    let (sfx, x, w, dev) = operands("conv2d", x, w)?;
    let (_b, b_ptr) = cast_operand(bias, x.dtype())?;
    let shape = [g.n, g.c_out, g.ho, g.wo];
    let out = alloc_out(&dev, x.dtype(), &shape)?;
    let m = g.n * g.ho * g.wo;
    let cfg = LaunchConfig { grid_dim: (m.div_ceil(128) as u32, g.c_out.div_ceil(128) as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    launch!(dev, "lab_conv_tc_v2", format!("conv_tc_fwd_v2_{sfx}"), cfg;
        TcConvGeom::of(g), data_ptr(&x)?, data_ptr(&w)?, b_ptr, 0u64, out.ptr());
    Ok(wrap(out, &shape, None))
}

/// Flash attention forward (no mask, scale 1/√D) with lab variant 2
/// (tools/kernel_lab/attention_v2.cu: 128 queries per block, prefetched 16-byte K/V loads):
/// q, k, v [B, H, L, D] f16/bf16 on one device; the output [B, H, Lq, D].
pub fn attention_forward_v2(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    const OP: &str = "attention_forward_v2";
    let sfx = float_suffix(OP, q.dtype())?;
    let (dev, _) = device_and_ptr(OP, q)?;
    let (qs, ks) = (q.shape(), k.shape());
    let dims = Dims { b: qs[0], h: qs[1], lq: qs[2], lk: ks[2], d: qs[3], dv: qs[3] };
    let dp = padded_head_dim(dims.d).ok_or_else(|| crate::Error::invalid(OP, format!("no kernel for head dim {}", dims.d)))?;
    let a = args(q, k, v, None, 1.0 / (dims.d as f64).sqrt(), &dims);
    let out_shape = [dims.b, dims.h, dims.lq, dims.d];
    let out = alloc_out(&dev, q.dtype(), &out_shape)?;
    let lse = alloc_out(&dev, DType::F32, &out_shape[..3])?;
    let cfg = LaunchConfig { grid_dim: (dims.lq.div_ceil(128) as u32, (dims.b * dims.h) as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    launch!(dev, "lab_attention_v2", format!("flash_fwd_v2_d{dp}_{sfx}"), cfg;
        a, data_ptr(q)?, data_ptr(k)?, data_ptr(v)?, 0u64, out.ptr(), lse.ptr());
    Ok(wrap(out, &out_shape, None))
}

/// `x @ wᵀ + bias` with lab variant 2 of the GEMM (tools/kernel_lab/gemm_tc_v2.cu: 128×128
/// tiles, 256 threads): x [M, K] and w [N, K] contiguous in one half dtype with K % 8 = 0.
pub fn linear_v2(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "linear_v2";
    let sfx = float_suffix(OP, x.dtype())?;
    let (dev, _) = device_and_ptr(OP, x)?;
    let ok = x.rank() == 2 && w.rank() == 2 && x.shape()[1] == w.shape()[1] && x.shape()[1].is_multiple_of(8) && x.is_contiguous() && w.is_contiguous();
    if !ok {
        return Err(crate::Error::invalid(OP, "needs contiguous x [M, K] and w [N, K] with K a multiple of 8"));
    }
    let ((m, k), n) = ((x.shape()[0], x.shape()[1]), w.shape()[0]);
    let (_b, b_ptr) = cast_operand(bias, x.dtype())?;
    let out = alloc_out(&dev, x.dtype(), &[m, n])?;
    let cfg = LaunchConfig { grid_dim: (m.div_ceil(128) as u32, n.div_ceil(128) as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    launch!(dev, "lab_gemm_tc_v2", format!("linear_tc_v2_{sfx}"), cfg;
        m as i32, n as i32, k as i32, data_ptr(x)?, data_ptr(w)?, b_ptr, out.ptr());
    Ok(wrap(out, &[m, n], None))
}
