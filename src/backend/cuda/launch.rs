//! Launch plumbing: the `Strided` operand descriptor the kernels read (kernels/common.cuh), the
//! dim merging that turns most views into rank-1 unit-stride operands before launch, and launch
//! configurations.

use crate::tensor::Layout;
use crate::{Error, Result};
use cudarc::driver::{DeviceRepr, LaunchConfig};

/// Must match `struct Strided` in kernels/common.cuh field for field.
pub const MAX_DIMS: usize = 6;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strided {
    rank: i32,
    contiguous: i32,
    offset: i64,
    shape: [i64; MAX_DIMS],
    strides: [i64; MAX_DIMS],
}

// SAFETY: a plain #[repr(C)] struct of integers, laid out as the C struct it mirrors.
unsafe impl DeviceRepr for Strided {}

impl Strided {
    /// A descriptor with the given shape and strides as they are (no merging), for kernels that
    /// interpret the dims themselves (gather). At most MAX_DIMS dims: the caller checks.
    pub fn raw(shape: &[usize], strides: &[usize]) -> Strided {
        let mut s = Strided { rank: shape.len() as i32, contiguous: 0, offset: 0, shape: [1; MAX_DIMS], strides: [0; MAX_DIMS] };
        for (d, (&n, &st)) in shape.iter().zip(strides).enumerate().take(MAX_DIMS) {
            s.shape[d] = n as i64;
            s.strides[d] = st as i64;
        }
        s
    }
}

/// Descriptors for operands read over the row-major index space of `shape`; each layout must
/// already be broadcast to `shape` (stride 0 on broadcast dims). Size-1 dims are dropped and
/// neighbouring dims merged wherever every operand allows it, so an elementwise op on contiguous
/// tensors becomes a rank-1 loop.
pub fn strided_operands(op: &'static str, shape: &[usize], layouts: &[&Layout]) -> Result<Vec<Strided>> {
    // Merged dims, innermost last: (size, per-operand stride).
    let mut dims: Vec<(usize, Vec<usize>)> = Vec::new();
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let strides: Vec<usize> = layouts.iter().map(|l| l.strides()[d]).collect();
        if let Some((size, prev)) = dims.last_mut()
            && prev.iter().zip(&strides).all(|(&p, &s)| p == s * shape[d]) {
                *size *= shape[d];
                *prev = strides;
                continue;
            }
        dims.push((shape[d], strides));
    }
    if dims.len() > MAX_DIMS {
        return Err(Error::invalid(op, format!("a CUDA operand view of {} non-mergeable dims (shape {shape:?}); at most {MAX_DIMS} are supported — make it contiguous first", dims.len())));
    }
    let numel: usize = shape.iter().product();
    let descriptors = layouts
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let mut s = Strided { rank: dims.len() as i32, contiguous: 0, offset: l.offset() as i64, shape: [1; MAX_DIMS], strides: [0; MAX_DIMS] };
            for (d, (size, strides)) in dims.iter().enumerate() {
                s.shape[d] = *size as i64;
                s.strides[d] = strides[k] as i64;
            }
            let contiguous = dims.is_empty() || (dims.len() == 1 && dims[0].1[k] == 1);
            // 2: strided, but every index of the launch (< the element count) fits in 32 bits
            s.contiguous = if contiguous { 1 } else if numel <= u32::MAX as usize { 2 } else { 0 };
            s
        })
        .collect();
    Ok(descriptors)
}

/// Threads per block for elementwise kernels.
const BLOCK: u32 = 256;

/// A grid-stride launch over `n` elements: enough blocks to fill the GPU several times over, but
/// capped (the kernels loop), so huge tensors need no 64-bit grid.
pub fn elementwise_config(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

impl Strided {
    /// Whether the kernels read this operand over `base` (its storage's address, elements of
    /// `elem_bytes`) 16 bytes at a time: kernels/common.cuh `packable`.
    pub fn packable(&self, base: u64, elem_bytes: usize) -> bool {
        self.contiguous == 1 && (base + self.offset as u64 * elem_bytes as u64) % 16 == 0
    }
}

/// `elementwise_config` for a kernel with a 16-byte path (unary, affine, binary, copy): when every
/// input (descriptor, storage address) and the output are packable, one thread per 16 bytes is
/// enough, and a grid sized for one per element would be mostly idle blocks.
pub fn packed_config(n: usize, elem_bytes: usize, inputs: &[(&Strided, u64)], out: u64) -> LaunchConfig {
    let packed = out % 16 == 0 && inputs.iter().all(|(s, base)| s.packable(*base, elem_bytes));
    elementwise_config(if packed { n.div_ceil(16 / elem_bytes) } else { n })
}

/// One block per row (or per group) for the row kernels: `threads` a multiple of 32, ≤ 1024.
pub fn rows_config(rows: usize, row_len: usize) -> LaunchConfig {
    let threads = row_len.div_ceil(32).clamp(1, 16) as u32 * 32;
    let threads = if row_len >= 2048 { 512 } else { threads };
    LaunchConfig { grid_dim: (rows.clamp(1, 65_535) as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_views_collapse_to_rank_one() {
        let l = Layout::contiguous(&[2, 3, 4, 5]);
        let s = strided_operands("t", &[2, 3, 4, 5], &[&l]).unwrap();
        assert_eq!((s[0].rank, s[0].contiguous, s[0].shape[0], s[0].strides[0]), (1, 1, 120, 1));
    }

    #[test]
    fn broadcast_and_transposed_operands_keep_their_strides() {
        // a [2, 3] contiguous + b [3] broadcast over rows: b has stride 0 on dim 0.
        let a = Layout::contiguous(&[2, 3]);
        let b = Layout::contiguous(&[3]).broadcast_as(&[2, 3]).unwrap();
        let s = strided_operands("t", &[2, 3], &[&a, &b]).unwrap();
        assert_eq!(s[0].rank, 2);
        // strided, with 32-bit index arithmetic (6 elements)
        assert_eq!((s[0].contiguous, s[1].contiguous), (2, 2));
        assert_eq!(&s[1].strides[..2], &[0, 1]);
        assert_eq!(&s[0].strides[..2], &[3, 1]);
        // A transposed view [3, 2] of a [2, 3] buffer, size-1 dims dropped.
        let t = Layout::contiguous(&[2, 1, 3]).permute(&[2, 1, 0]).unwrap();
        let s = strided_operands("t", &[3, 1, 2], &[&t]).unwrap();
        assert_eq!((s[0].rank, &s[0].shape[..2], &s[0].strides[..2]), (2, &[3i64, 2][..], &[1i64, 3][..]));
        // A narrowed view keeps its offset.
        let n = Layout::contiguous(&[4, 5]).narrow(0, 1, 2).unwrap();
        let s = strided_operands("t", &[2, 5], &[&n]).unwrap();
        assert_eq!((s[0].rank, s[0].contiguous, s[0].offset), (1, 1, 5));
    }

    #[test]
    fn index_width_and_the_16_byte_path_follow_the_operands() {
        // past 2^32 elements strided operands keep the 64-bit index arithmetic (both are rank 2
        // here: b's stride-0 rows keep the dims apart)
        let a = Layout::contiguous(&[1 << 31, 4]);
        let b = Layout::contiguous(&[4]).broadcast_as(&[1 << 31, 4]).unwrap();
        let s = strided_operands("t", &[1 << 31, 4], &[&a, &b]).unwrap();
        assert_eq!((s[0].contiguous, s[1].contiguous), (0, 0));
        // packed: contiguous and 16-byte aligned at the operand's offset (f16: 8 per pack)
        let whole = strided_operands("t", &[100], &[&Layout::contiguous(&[100])]).unwrap();
        let shifted = strided_operands("t", &[96], &[&Layout::contiguous(&[100]).narrow(0, 4, 96).unwrap()]).unwrap();
        assert!(whole[0].packable(4096, 2) && !whole[0].packable(4098, 2) && !shifted[0].packable(4096, 2) && shifted[0].packable(4088, 2));
        assert_eq!(packed_config(1 << 20, 2, &[(&whole[0], 4096)], 8192).grid_dim.0, (1 << 17) / 256);
        assert_eq!(packed_config(1 << 20, 2, &[(&whole[0], 4096)], 8194).grid_dim.0, (1 << 20) / 256, "an unaligned output: one thread per element");
        assert_eq!(packed_config(1 << 20, 2, &[(&s[1], 4096)], 8192).grid_dim.0, (1 << 20) / 256, "a strided input: one thread per element");
    }

    #[test]
    fn the_descriptor_matches_the_c_struct() {
        // int32 rank, int32 contiguous, int64 offset, int64[6] shape, int64[6] strides.
        assert_eq!(std::mem::size_of::<Strided>(), 8 + 8 + 48 + 48);
        assert_eq!(std::mem::align_of::<Strided>(), 8);
    }
}
