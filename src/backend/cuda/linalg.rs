//! CUDA matrix products (kernels/gemm.cu): `a [..., M, K] @ b [..., K, N]` with broadcast batch
//! dims, reading both operands through their strides (a transposed weight is not copied). CPU
//! twin: src/backend/cpu/matmul.rs.

use super::launch::strided_operands;
use super::ops::{alloc_out, device_and_ptr, float_suffix, launch, wrap};
use crate::autograd::Op;
use crate::tensor::{numel, Layout, Tensor};
use crate::{Error, Result};
use cudarc::driver::LaunchConfig;

/// One launch of the tiled GEMM over `batch` products; `la`/`lb` are the operands' layouts already
/// broadcast to [batch..., M, K] and [batch..., K, N]; `out` is a fresh [batch..., M, N] buffer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    op: &'static str,
    dev: &std::sync::Arc<super::CudaDevice>,
    sfx: &str,
    (m, n, k): (usize, usize, usize),
    batch: &[usize],
    (a_ptr, la): (u64, &Layout),
    (b_ptr, lb): (u64, &Layout),
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
    let cfg = LaunchConfig { grid_dim: (n.div_ceil(64) as u32, m.div_ceil(64) as u32, nb as u32), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    if m.div_ceil(64) > 65_535 {
        return Err(Error::invalid(op, format!("{m} rows exceed one launch (at most {})", 65_535 * 64)));
    }
    launch!(dev, "gemm", format!("gemm_{sfx}"), cfg;
        m as i64, n as i64, k as i64, a_ptr, a_rs, a_cs, s[0], b_ptr, b_rs, b_cs, s[1], out_ptr);
    Ok(())
}

pub fn matmul(a: &Tensor, b: &Tensor, batch: &[usize], op: Option<Op>) -> Result<Tensor> {
    let sfx = float_suffix("matmul", a.dtype())?;
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
    let out = alloc_out(&dev, a.dtype(), &shape)?;
    gemm("matmul", &dev, sfx, (m, n, k), batch, (a_ptr, &la), (b_ptr, &lb), out.ptr())?;
    Ok(wrap(out, &shape, op))
}
