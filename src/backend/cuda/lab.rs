//! The kernel lab's variants (tools/kernel_lab/*.cu, built in with `--features kernel-lab`),
//! launched with the shipped kernels' host logic so benches/tensor_core.rs can time both on the
//! same tensors. Not part of the engine's API: a variant that wins replaces the shipped kernel.

use super::launch::strided_operands;
use super::linalg::TcGemmDims;
use super::ops::{alloc_out, data_ptr, device_and_ptr, float_suffix, launch, wrap};
use crate::tensor::{Layout, Tensor};
use crate::{Error, Result};
use cudarc::driver::LaunchConfig;

/// `x · wᵀ + bias` (x [M, K], w [N, K], bias [N], one half dtype) with GEMM lab variant 3
/// (tools/kernel_lab/gemm_tc_v3.cu: the shipped 128×128 tile fed by a 3-stage cp.async ring), on
/// the operands the shipped kernel's vv path takes: dense, 16-byte aligned, K % 8 = 0.
pub fn linear_v3(x: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let op = "linear_v3";
    let sfx = float_suffix(op, x.dtype())?;
    let (x, w, bias) = (x.contiguous()?, w.contiguous()?, bias.contiguous()?);
    let ((m, k), n) = ((x.shape()[0], x.shape()[1]), w.shape()[0]);
    let (dev, x_ptr) = device_and_ptr(op, &x)?;
    let (w_ptr, b_ptr) = (data_ptr(&w)?, data_ptr(&bias)?);
    if x.rank() != 2 || w.shape() != [n, k] || k % 8 != 0 || x_ptr % 16 != 0 || w_ptr % 16 != 0 {
        return Err(Error::invalid(op, "x [M, K] and w [N, K], dense and 16-byte aligned, K % 8 = 0"));
    }
    let dims = TcGemmDims { m: m as i32, n: n as i32, k: k as i32, a_rs: k as i64, a_cs: 1, b_rs: 1, b_cs: k as i64 };
    let no_batch = Layout::new(vec![], vec![], 0);
    let s = strided_operands(op, &[], &[&no_batch, &no_batch])?;
    let out = alloc_out(&dev, x.dtype(), &[m, n])?;
    let cfg = LaunchConfig { grid_dim: (m.div_ceil(128) as u32, n.div_ceil(128) as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    launch!(dev, "lab_gemm_tc_v3", format!("gemm_tc_wide_v3_vv_{sfx}"), cfg; dims, x_ptr, s[0], w_ptr, s[1], b_ptr, out.ptr());
    Ok(wrap(out, &[m, n], None))
}
