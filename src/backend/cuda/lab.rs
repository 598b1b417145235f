//! The kernel lab's variants (tools/kernel_lab/*.cu, built in with `--features kernel-lab`),
//! launched with the shipped kernels' host logic so benches/tensor_core.rs can time both on the
//! same tensors. Not part of the engine's API: a variant that wins replaces the shipped kernel.

use super::conv_tc::{cast_operand, operands, TcConvGeom};
use super::ops::{alloc_out, data_ptr, launch, wrap};
use crate::backend::cpu::conv::Geom;
use crate::tensor::Tensor;
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
