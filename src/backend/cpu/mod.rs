//! CPU backend: f32 compute, rayon threads, the `gemm` crate for matrix products. It is both the
//! usable fast path and the reference twin every CUDA kernel is tested against.

#[macro_use]
mod simd;

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod fused;
pub mod math;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod spatial;

use crate::tensor::{CpuStorage, Layout, Storage, Tensor, WithDType};
use std::sync::RwLockReadGuard;

/// Work below this many elements is not worth splitting across threads.
pub const PAR_MIN: usize = 1 << 15;

/// The f32 values of a CPU tensor with the layout to read them by: the storage itself when it is
/// f32 (any strides, no copy), otherwise a contiguous converted copy.
pub enum F32Src<'a> {
    Storage(RwLockReadGuard<'a, Storage>),
    Owned(Vec<f32>),
}

impl std::ops::Deref for F32Src<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            F32Src::Storage(g) => match &**g {
                Storage::Cpu(CpuStorage::F32(b)) => b.as_slice(),
                #[allow(unreachable_patterns)]
                _ => unreachable!("F32Src::Storage is only built over f32 CPU storage"),
            },
            F32Src::Owned(v) => v,
        }
    }
}

pub fn f32_strided(t: &Tensor) -> crate::Result<(F32Src<'_>, Layout)> {
    let g = t.storage();
    if matches!(&*g, Storage::Cpu(CpuStorage::F32(_))) {
        return Ok((F32Src::Storage(g), t.layout().clone()));
    }
    drop(g);
    // f32_data refuses device tensors with a NotOnDevice error.
    let v = t.f32_data()?.into_vec();
    Ok((F32Src::Owned(v), Layout::contiguous(t.shape())))
}

/// Reads element offsets of a strided layout into a contiguous Vec.
pub fn gather_strided<T: WithDType>(src: &[T], layout: &Layout) -> Vec<T> {
    match layout.contiguous_range() {
        Some(r) => src[r].to_vec(),
        None => {
            let mut out = Vec::with_capacity(layout.numel());
            layout.for_each_row(|start, stride, len| {
                if stride == 1 {
                    out.extend_from_slice(&src[start..start + len]);
                } else {
                    out.extend((0..len).map(|i| src[start + i * stride]));
                }
            });
            out
        }
    }
}
