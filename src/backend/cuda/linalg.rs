//! CUDA matrix products: `a [..., M, K] @ b [..., K, N]` with broadcast batch dims, reading both
//! operands through their strides (a transposed weight is not copied). f16/bf16 products run on
//! tensor cores (kernels/gemm_tc.cu), f32 on the tiled FMA kernel (kernels/gemm.cu);
//! `LDM_CUDA_GEMM=simt` sends every dtype to the latter, `LDM_CUDA_GEMM=tile64` keeps the 64×64
//! tensor-core tile where the 128×128 one would run (to compare). CPU twin:
//! src/backend/cpu/matmul.rs.

use super::launch::strided_operands;
use super::ops::{alloc_out, data_ptr, device_and_ptr, float_suffix, launch, optional_operand, wrap};
use crate::autograd::Op;
use crate::tensor::{numel, DType, Layout, Tensor};
use crate::{Error, Result};
use cudarc::driver::{DeviceRepr, LaunchConfig};

/// Must match `struct TcGemmDims` in kernels/gemm_tc.cuh field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcGemmDims {
    pub(crate) m: i32,
    pub(crate) n: i32,
    pub(crate) k: i32,
    pub(crate) a_rs: i64,
    pub(crate) a_cs: i64,
    pub(crate) b_rs: i64,
    pub(crate) b_cs: i64,
    /// 0, or the address of a residual of the output's type and shape added in the epilogue
    pub(crate) res: u64,
}

// SAFETY: a plain #[repr(C)] struct of integers, laid out as the C struct it mirrors.
unsafe impl DeviceRepr for TcGemmDims {}

/// Whether `LDM_CUDA_GEMM` asks for `mode` (read once).
fn forced(mode: &str) -> bool {
    super::switch_is("LDM_CUDA_GEMM", mode)
}

fn forced_simt() -> bool {
    forced("simt")
}

/// True when a product of this dtype and size runs on tensor cores: f16/bf16 with M, N, K in
/// int32 (the kernel's tile indices; addresses are widened) and N's tiles within one grid column
/// (gridDim.y ≤ 65535).
pub(crate) fn tensor_core_eligible(dtype: DType, (m, n, k): (usize, usize, usize)) -> bool {
    let fits = |v: usize| v < i32::MAX as usize;
    matches!(dtype, DType::F16 | DType::BF16) && !forced_simt() && fits(m) && fits(n) && fits(k) && n.div_ceil(64) <= 65_535
}

/// Whether the vv path takes the 128×128 tile (gemm_tc_wide_vv): measured on the H100 (kernel lab
/// GEMM #2), it beat the 64×64 tile 1.07–1.60× on Linear products whose grid held 192 to 1,280 of
/// its blocks and lost (0.63×) on one of 6 blocks, where most SMs idle; from 128 blocks (about one
/// per SM) it is taken. `LDM_CUDA_GEMM=tile64` keeps the 64×64 tile everywhere (to compare).
fn wide_tile_pays(m: usize, n: usize, batch: usize) -> bool {
    !forced("tile64") && m.div_ceil(128) * n.div_ceil(128) * batch >= 128
}

/// (module, kernel) of the 128×128 vv product: gemm_tc_wide_vv, or in a build with `--features
/// kernel-lab` under `LDM_CUDA_GEMM=lab-v3` / `lab-v4` / `lab-v5` the kernel lab's ring variant,
/// which has the same signature, grid and block (tools/kernel_lab/gemm_tc_ring.cu, and
/// gemm_tc_wgmma_sm90a.cu for v5, Hopper only; gpu-bundle/e2e.sh times the SD workload so).
fn wide_kernel(sfx: &str) -> (&'static str, String) {
    #[cfg(feature = "kernel-lab")]
    for variant in 3..=5 {
        if forced(&format!("lab-v{variant}")) {
            return lab_wide_kernel(variant, sfx);
        }
    }
    ("gemm_tc", format!("gemm_tc_wide_vv_{sfx}"))
}

/// (module, kernel) of the kernel lab's 128×128 vv GEMM `variant` (3 and 4: gemm_tc_ring.cu; 5:
/// gemm_tc_wgmma_sm90a.cu), for `wide_kernel` and lab.rs.
#[cfg(feature = "kernel-lab")]
pub(crate) fn lab_wide_kernel(variant: u32, sfx: &str) -> (&'static str, String) {
    let module = if variant == 5 { "lab_gemm_tc_wgmma_sm90a" } else { "lab_gemm_tc_ring" };
    (module, format!("gemm_tc_wide_v{variant}_vv_{sfx}"))
}

/// How gemm_tc reads an operand whose element (row r, k) sits at r·`rs` + k·`ks` from its batch
/// offset (`batch`: the batch dims' layout, offset included; `base`: the storage address):
/// 'v' by 16-byte vectors along k when every row start is 16-byte aligned and k % 8 = 0, else
/// element by element with consecutive threads along whichever index is contiguous
/// (`row_fast`, the kernel's 'm' / 'n', when the rows are; 'k' otherwise).
fn operand_path(rs: usize, ks: usize, k: usize, batch: &Layout, base: u64, row_fast: u8) -> u8 {
    const VEC: usize = 8; // 2-byte elements per 16-byte vector
    let batch_aligned = batch.offset().is_multiple_of(VEC) && batch.shape().iter().zip(batch.strides()).all(|(&d, &s)| d == 1 || s.is_multiple_of(VEC));
    if ks == 1 && k.is_multiple_of(VEC) && rs.is_multiple_of(VEC) && batch_aligned && base.is_multiple_of(16) {
        b'v'
    } else if rs == 1 && ks != 1 {
        row_fast
    } else {
        b'k'
    }
}

/// One launch of the matrix product over `batch` products; `la`/`lb` are the operands' layouts
/// already broadcast to [batch..., M, K] and [batch..., K, N]; `out` is a fresh [batch..., M, N]
/// buffer; `bias_ptr` (0: none) a dense [N] vector added to every row and `res_ptr` (0: none) a
/// dense tensor of the output's shape added to it, only on the tensor-core path (callers check
/// `tensor_core_eligible`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    op: &'static str,
    dev: &std::sync::Arc<super::CudaDevice>,
    dtype: DType,
    (m, n, k): (usize, usize, usize),
    batch: &[usize],
    (a_ptr, la): (u64, &Layout),
    (b_ptr, lb): (u64, &Layout),
    bias_ptr: u64,
    res_ptr: u64,
    out_ptr: u64,
) -> Result<()> {
    let nb = numel(batch);
    if nb == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    if nb > 65_535 {
        return Err(Error::invalid(op, format!("{nb} batched products exceed the 65535 one launch covers")));
    }
    let r = la.rank();
    let batch_layout = |l: &Layout| Layout::new(l.shape()[..r - 2].to_vec(), l.strides()[..r - 2].to_vec(), l.offset());
    let (ba, bb) = (batch_layout(la), batch_layout(lb));
    let s = strided_operands(op, batch, &[&ba, &bb])?;
    let (a_rs, a_cs) = (la.strides()[r - 2] as i64, la.strides()[r - 1] as i64);
    let (b_rs, b_cs) = (lb.strides()[r - 2] as i64, lb.strides()[r - 1] as i64);
    let sfx = float_suffix(op, dtype)?;
    if tensor_core_eligible(dtype, (m, n, k)) {
        let a_path = operand_path(a_rs as usize, a_cs as usize, k, &ba, a_ptr, b'm');
        let b_path = operand_path(b_cs as usize, b_rs as usize, k, &bb, b_ptr, b'n');
        let dims = TcGemmDims { m: m as i32, n: n as i32, k: k as i32, a_rs, a_cs, b_rs, b_cs, res: res_ptr };
        let (module, name, tile, threads) = if (a_path, b_path) == (b'v', b'v') && wide_tile_pays(m, n, nb) {
            let (module, name) = wide_kernel(sfx);
            (module, name, 128, 256)
        } else {
            ("gemm_tc", format!("gemm_tc_{}{}_{sfx}", a_path as char, b_path as char), 64, 128)
        };
        let cfg = LaunchConfig { grid_dim: (m.div_ceil(tile) as u32, n.div_ceil(tile) as u32, nb as u32), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
        launch!(dev, module, name, cfg; dims, a_ptr, s[0], b_ptr, s[1], bias_ptr, out_ptr);
        return Ok(());
    }
    if bias_ptr != 0 || res_ptr != 0 {
        return Err(Error::invalid(op, "internal: a fused bias or residual needs the tensor-core product (f16/bf16)"));
    }
    let cfg = LaunchConfig { grid_dim: (n.div_ceil(64) as u32, m.div_ceil(64) as u32, nb as u32), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    if m.div_ceil(64) > 65_535 {
        return Err(Error::invalid(op, format!("{m} rows exceed one launch (at most {})", 65_535 * 64)));
    }
    launch!(dev, "gemm", format!("gemm_{sfx}"), cfg;
        m as i64, n as i64, k as i64, a_ptr, a_rs, a_cs, s[0], b_ptr, b_rs, b_cs, s[1], out_ptr);
    Ok(())
}

pub fn matmul(a: &Tensor, b: &Tensor, batch: &[usize], op: Option<Op>) -> Result<Tensor> {
    product(a, b, batch, None, None, op)
}

/// `x @ wᵀ + bias (+ residual)` with the bias (and the residual) added in the tensor-core
/// kernel's epilogue (one pass over the output instead of two or three), for inference: None when
/// the product is not a tensor-core one or the residual is not a dense tensor of the output's
/// shape and dtype (the caller then multiplies and adds). x [..., K], w [N, K], bias [N], one
/// half dtype.
pub fn linear_with_bias(x: &Tensor, w: &Tensor, bias: &Tensor, residual: Option<&Tensor>) -> Result<Option<Tensor>> {
    let (r, n) = (x.rank(), w.shape()[0]);
    let (m, k) = (x.shape()[r - 2], x.shape()[r - 1]);
    if k == 0 || !tensor_core_eligible(x.dtype(), (m, n, k)) {
        return Ok(None);
    }
    if let Some(res) = residual {
        let out_shape: Vec<usize> = x.shape()[..r - 1].iter().copied().chain([n]).collect();
        if res.shape() != out_shape || res.dtype() != x.dtype() || !res.is_contiguous() || res.device() != x.device() {
            return Ok(None);
        }
    }
    product(x, &w.t()?, &x.shape()[..r - 2], Some(bias), residual, None).map(Some)
}

/// `geglu(x @ wᵀ + bias)` in one launch for inference (gemm_tc_wide_geglu: the 128×128 product
/// reads w's value and gate rows in turn, and each output pair it holds becomes one gated value),
/// x [..., K] dense, w [2·inner, K] dense, bias [2·inner], one half dtype → [..., inner]. None
/// where the plain product would not take the shipped 128×128 vv kernel (a small grid, rows not
/// 16-byte vectors, `LDM_CUDA_GEMM=tile64` or a kernel-lab GEMM asked for): the caller then
/// multiplies and gates.
pub fn linear_geglu(x: &Tensor, w: &Tensor, bias: &Tensor) -> Result<Option<Tensor>> {
    let (r, n) = (x.rank(), w.shape()[0]);
    let k = x.shape()[r - 1];
    let m = x.numel() / k.max(1);
    if k == 0 || m == 0 || !x.is_contiguous() || !w.is_contiguous() || !bias.is_contiguous() || !tensor_core_eligible(x.dtype(), (m, n, k)) {
        return Ok(None);
    }
    let (dev, _) = device_and_ptr("linear_geglu", x)?;
    let sfx = float_suffix("linear_geglu", x.dtype())?;
    let (x_ptr, w_ptr) = (data_ptr(x)?, data_ptr(w)?);
    // both operands on the vv path, by the rule `gemm` picks paths with (rows of k, dense along k)
    let no_batch = Layout::new(Vec::new(), Vec::new(), 0);
    let vv = operand_path(k, 1, k, &no_batch, x_ptr, b'm') == b'v' && operand_path(k, 1, k, &no_batch, w_ptr, b'n') == b'v';
    if !vv || !wide_tile_pays(m, n, 1) || wide_kernel(sfx).0 != "gemm_tc" {
        return Ok(None);
    }
    let (_bias, bias_ptr) = optional_operand(Some(bias))?;
    let mut shape = x.shape().to_vec();
    shape[r - 1] = n / 2;
    let out = alloc_out(&dev, x.dtype(), &shape)?;
    let dims = TcGemmDims { m: m as i32, n: n as i32, k: k as i32, a_rs: k as i64, a_cs: 1, b_rs: 1, b_cs: k as i64, res: 0 };
    let cfg = LaunchConfig { grid_dim: (m.div_ceil(128) as u32, n.div_ceil(128) as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    launch!(dev, "gemm_tc", format!("gemm_tc_wide_geglu_{sfx}"), cfg; dims, x_ptr, w_ptr, bias_ptr, out.ptr());
    Ok(Some(wrap(out, &shape, None)))
}

fn product(a: &Tensor, b: &Tensor, batch: &[usize], bias: Option<&Tensor>, residual: Option<&Tensor>, op: Option<Op>) -> Result<Tensor> {
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let (dev, a_ptr) = device_and_ptr("matmul", a)?;
    let (_, b_ptr) = device_and_ptr("matmul", b)?;
    let full = |tail: [usize; 2]| -> Vec<usize> { batch.iter().copied().chain(tail).collect() };
    let (la, lb) = (a.layout().broadcast_as(&full([m, k]))?, b.layout().broadcast_as(&full([k, n]))?);
    let shape = full([m, n]);
    if k == 0 {
        // An empty sum: zeros, as on the CPU.
        return Ok(super::ops::full(&dev, 0.0, &shape, a.dtype())?.with_op(op));
    }
    let (_bias, bias_ptr) = optional_operand(bias)?;
    let (_res, res_ptr) = optional_operand(residual)?;
    let out = alloc_out(&dev, a.dtype(), &shape)?;
    gemm("matmul", &dev, a.dtype(), (m, n, k), batch, (a_ptr, &la), (b_ptr, &lb), bias_ptr, res_ptr, out.ptr())?;
    Ok(wrap(out, &shape, op))
}

#[cfg(test)]
mod tests {
    use super::{operand_path, TcGemmDims};
    use crate::tensor::Layout;

    #[test]
    fn the_gemm_dims_struct_has_the_c_layout() {
        // int32 ×3 (+4 padding), four int64 strides, the residual's uint64 address: 56 bytes,
        // kernels/gemm_tc.cuh TcGemmDims (the lab's GEMM variants take it too)
        assert_eq!((std::mem::size_of::<TcGemmDims>(), std::mem::align_of::<TcGemmDims>()), (56, 8));
    }

    /// The path choice decides whether gemm_tc issues 16-byte loads: a wrong 'v' is a misaligned
    /// access on the GPU, so the choice is checked here on the layouts the models make.
    #[test]
    fn operand_paths_take_vectors_only_where_every_row_is_16_byte_aligned() {
        let no_batch = Layout::new(vec![], vec![], 0);
        let batch = |stride: usize, offset: usize| Layout::new(vec![4], vec![stride], offset);
        // Linear forward: x [M, 320] rows along k, and Wᵀ, whose rows (W's) are dense along k.
        assert_eq!(operand_path(320, 1, 320, &no_batch, 0x1000, b'm'), b'v');
        // K = 37 or a row stride of 37: no vectors, threads along k.
        assert_eq!(operand_path(37, 1, 37, &no_batch, 0x1000, b'm'), b'k');
        assert_eq!(operand_path(40, 1, 36, &no_batch, 0x1000, b'm'), b'k');
        // A view starting one element in (offset 1), or a storage base off 16 bytes.
        assert_eq!(operand_path(320, 1, 320, &Layout::new(vec![], vec![], 1), 0x1000, b'm'), b'k');
        assert_eq!(operand_path(320, 1, 320, &no_batch, 0x1008, b'm'), b'k');
        // Batches: every batch stride and the offset must keep the alignment; stride 0 (a
        // broadcast operand) and size-1 dims do.
        assert_eq!(operand_path(40, 1, 40, &batch(77 * 40, 0), 0x1000, b'm'), b'v');
        assert_eq!(operand_path(40, 1, 40, &batch(0, 0), 0x1000, b'm'), b'v');
        assert_eq!(operand_path(40, 1, 40, &batch(77 * 40 + 4, 0), 0x1000, b'm'), b'k');
        assert_eq!(operand_path(40, 1, 40, &Layout::new(vec![1], vec![3], 0), 0x1000, b'm'), b'v');
        // Rows contiguous instead (W in dY·W, dYᵀ in dYᵀ·X): threads along the rows.
        assert_eq!(operand_path(1, 320, 320, &no_batch, 0x1000, b'n'), b'n');
        assert_eq!(operand_path(1, 70, 130, &no_batch, 0x1000, b'm'), b'm');
        // Neither index contiguous: along k.
        assert_eq!(operand_path(3, 2, 16, &no_batch, 0x1000, b'n'), b'k');
    }
}
