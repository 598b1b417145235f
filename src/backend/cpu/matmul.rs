//! CPU matrix products through the `gemm` crate, which reads arbitrary row/column strides: a
//! transposed or permuted operand is multiplied in place, never copied.

use super::f32_strided;
use crate::autograd::Op;
use crate::tensor::{numel, Layout, Tensor};
use crate::Result;
use gemm::Parallelism;
use rayon::prelude::*;

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` with every operand strided (row stride, column stride).
/// With k = 0 the product is zero: `dst` is cleared unless accumulating.
///
/// # Safety
/// Every pointer must cover what its shape and strides address, and `dst` must not alias them.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    dst_cs: isize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const f32,
    rhs_rs: isize,
    rhs_cs: isize,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                (0..n).for_each(|j| unsafe { *dst.offset(i as isize * dst_rs + j as isize * dst_cs) = 0.0 });
            }
        }
        return;
    }
    // gemm's argument order is (column stride, row stride) and dst := 1·dst + 1·lhs·rhs.
    unsafe {
        gemm::gemm(m, n, k, dst, dst_cs, dst_rs, accumulate, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, 1.0, 1.0, false, false, false, par)
    }
}

/// `gemm_strided` into a contiguous row-major `dst`.
///
/// # Safety
/// `lhs`/`rhs` must cover every element their shapes and strides address.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const f32,
    rhs_rs: isize,
    rhs_cs: isize,
    par: Parallelism,
) {
    assert!(dst.len() >= m * n, "sgemm: destination holds {} of {} elements", dst.len(), m * n);
    unsafe { gemm_strided(m, n, k, dst.as_mut_ptr(), n as isize, 1, accumulate, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs, par) }
}

pub fn threads() -> usize {
    rayon::current_num_threads()
}

pub fn matmul(a: &Tensor, b: &Tensor, batch: &[usize], op: Option<Op>) -> Result<Tensor> {
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let mut full_a = batch.to_vec();
    full_a.extend([m, k]);
    let mut full_b = batch.to_vec();
    full_b.extend([k, n]);
    let (sa, la) = f32_strided(a)?;
    let (sb, lb) = f32_strided(b)?;
    let (la, lb) = (la.broadcast_as(&full_a)?, lb.broadcast_as(&full_b)?);
    let nb = numel(batch);
    let mut out = vec![0f32; nb * m * n];
    let batch_offsets = |l: &Layout| -> Vec<usize> {
        let r = l.rank();
        Layout::new(l.shape()[..r - 2].to_vec(), l.strides()[..r - 2].to_vec(), l.offset()).offsets().collect()
    };
    let (oa, ob) = (batch_offsets(&la), batch_offsets(&lb));
    let st = |l: &Layout| {
        let r = l.rank();
        (l.strides()[r - 2] as isize, l.strides()[r - 1] as isize)
    };
    let ((a_rs, a_cs), (b_rs, b_cs)) = (st(&la), st(&lb));
    if m * n * k > 0 {
        let (pa, pb) = (sa.as_ptr() as usize, sb.as_ptr() as usize);
        let one = |i: usize, dst: &mut [f32], par: Parallelism| unsafe {
            sgemm(m, n, k, dst, false, (pa as *const f32).add(oa[i]), a_rs, a_cs, (pb as *const f32).add(ob[i]), b_rs, b_cs, par)
        };
        // Many small products (attention heads): one product per thread. Few large ones: let gemm
        // split each product across the threads.
        if nb >= threads() && m * n * k < (1 << 21) {
            out.par_chunks_mut(m * n).enumerate().for_each(|(i, d)| one(i, d, Parallelism::None));
        } else {
            let par = if m * n * k >= (1 << 15) { Parallelism::Rayon(threads()) } else { Parallelism::None };
            out.chunks_mut(m * n).enumerate().for_each(|(i, d)| one(i, d, par));
        }
    }
    let mut shape = batch.to_vec();
    shape.extend([m, n]);
    Ok(Tensor::from_f32_values(out, &shape, a.dtype(), op))
}
