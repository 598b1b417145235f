//! Shapes and strided layouts. A view (reshape of a contiguous tensor, permute, narrow, broadcast)
//! is a new `Layout` over the same storage; nothing is copied until an op asks for `contiguous()`.

use crate::{Error, Result};

/// Row-major strides for a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i];
    }
    strides
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Resolves a possibly negative dim (`-1` = last) against a rank.
pub fn resolve_dim(op: &'static str, dim: isize, rank: usize) -> Result<usize> {
    let d = if dim < 0 { dim + rank as isize } else { dim };
    if d < 0 || d as usize >= rank {
        return Err(Error::DimOutOfRange { op, dim, rank });
    }
    Ok(d as usize)
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(Error::ShapeMismatch { op, lhs: a.to_vec(), rhs: b.to_vec() }),
        };
    }
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    shape: Vec<usize>,
    strides: Vec<usize>,
    offset: usize,
}

impl Layout {
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: 0 }
    }
    pub fn new(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Self {
        Layout { shape, strides, offset }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }
    pub fn offset(&self) -> usize {
        self.offset
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// True when the elements are laid out row-major with no gaps (size-1 dims may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut acc = 1;
        for i in (0..self.shape.len()).rev() {
            if self.shape[i] != 1 && self.strides[i] != acc {
                return false;
            }
            acc *= self.shape[i];
        }
        true
    }

    /// The range of storage elements a contiguous layout covers.
    pub fn contiguous_range(&self) -> Option<std::ops::Range<usize>> {
        self.is_contiguous().then(|| self.offset..self.offset + self.numel())
    }

    /// Highest storage index touched, plus one (0 for an empty tensor).
    pub fn storage_extent(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset + self.shape.iter().zip(&self.strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>() + 1
    }

    pub fn permute(&self, perm: &[usize]) -> Result<Layout> {
        let r = self.rank();
        let mut seen = vec![false; r];
        if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
            return Err(Error::bad_shape("permute", format!("{perm:?} is not a permutation of 0..{r}"), &self.shape));
        }
        Ok(Layout {
            shape: perm.iter().map(|&p| self.shape[p]).collect(),
            strides: perm.iter().map(|&p| self.strides[p]).collect(),
            offset: self.offset,
        })
    }

    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        if dim >= self.rank() || start + len > self.shape[dim] {
            return Err(Error::bad_shape(
                "narrow",
                format!("dim {dim} range {start}..{} out of bounds", start + len),
                &self.shape,
            ));
        }
        let mut shape = self.shape.clone();
        shape[dim] = len;
        Ok(Layout { shape, strides: self.strides.clone(), offset: self.offset + start * self.strides[dim] })
    }

    /// Broadcast to a larger shape by giving expanded dims stride 0.
    pub fn broadcast_as(&self, target: &[usize]) -> Result<Layout> {
        let r = target.len();
        if r < self.rank() {
            return Err(Error::ShapeMismatch { op: "broadcast_as", lhs: self.shape.clone(), rhs: target.to_vec() });
        }
        let lead = r - self.rank();
        let mut strides = vec![0; r];
        for i in 0..self.rank() {
            let (d, t) = (self.shape[i], target[lead + i]);
            strides[lead + i] = if d == t {
                self.strides[i]
            } else if d == 1 {
                0
            } else {
                return Err(Error::ShapeMismatch { op: "broadcast_as", lhs: self.shape.clone(), rhs: target.to_vec() });
            };
        }
        Ok(Layout { shape: target.to_vec(), strides, offset: self.offset })
    }

    /// A reshape that needs no copy, or None when one is required. Possible when the layout is
    /// contiguous (the common case), and in general when every group of old dims that the new
    /// shape merges or splits is itself laid out contiguously relative to its innermost stride
    /// (PyTorch's view rule, `computeStride`): a channels-last [N, C, H, W] view reshapes to
    /// [N, C, H·W] and back without copying, a transposed matrix cannot be flattened.
    pub fn reshape_view(&self, shape: &[usize]) -> Option<Layout> {
        if self.is_contiguous() || self.numel() == 0 {
            return Some(Layout { shape: shape.to_vec(), strides: contiguous_strides(shape), offset: self.offset });
        }
        let (old, old_strides) = (&self.shape, &self.strides);
        let mut strides = vec![0usize; shape.len()];
        // walk the old dims from the innermost, in chunks whose dims nest (stride[d-1] = size
        // [d]·stride[d]); each chunk must be covered exactly by a run of new dims
        let mut view_d = shape.len() as isize - 1;
        let mut chunk_base = *old_strides.last()?;
        let (mut tensor_numel, mut view_numel) = (1usize, 1usize);
        for d in (0..old.len()).rev() {
            tensor_numel *= old[d];
            let chunk_ends = d == 0 || (old[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base);
            if chunk_ends {
                while view_d >= 0 && (view_numel < tensor_numel || shape[view_d as usize] == 1) {
                    strides[view_d as usize] = view_numel * chunk_base;
                    view_numel *= shape[view_d as usize];
                    view_d -= 1;
                }
                if view_numel != tensor_numel {
                    return None;
                }
                if d > 0 {
                    chunk_base = old_strides[d - 1];
                    tensor_numel = 1;
                    view_numel = 1;
                }
            }
        }
        (view_d == -1).then(|| Layout { shape: shape.to_vec(), strides, offset: self.offset })
    }

    /// Storage offsets of every element, in row-major order of the logical shape.
    pub fn offsets(&self) -> StridedOffsets<'_> {
        StridedOffsets { layout: self, index: vec![0; self.rank()], next: self.offset, remaining: self.numel() }
    }

    /// Calls `f(start, stride, len)` for each innermost row; cheaper than per-element iteration.
    pub fn for_each_row(&self, mut f: impl FnMut(usize, usize, usize)) {
        if self.numel() == 0 {
            return;
        }
        if self.rank() == 0 {
            return f(self.offset, 1, 1);
        }
        let last = self.rank() - 1;
        let (len, stride) = (self.shape[last], self.strides[last]);
        let outer = Layout {
            shape: self.shape[..last].to_vec(),
            strides: self.strides[..last].to_vec(),
            offset: self.offset,
        };
        for off in outer.offsets() {
            f(off, stride, len);
        }
    }
}

pub struct StridedOffsets<'a> {
    layout: &'a Layout,
    index: Vec<usize>,
    next: usize,
    remaining: usize,
}

impl Iterator for StridedOffsets<'_> {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let cur = self.next;
        let (shape, strides) = (&self.layout.shape, &self.layout.strides);
        for d in (0..self.index.len()).rev() {
            self.index[d] += 1;
            if self.index[d] < shape[d] {
                self.next += strides[d];
                break;
            }
            self.next -= (shape[d] - 1) * strides[d];
            self.index[d] = 0;
        }
        Some(cur)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for StridedOffsets<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_of_permuted_and_narrowed_views() {
        let l = Layout::contiguous(&[2, 3]).permute(&[1, 0]).unwrap();
        assert_eq!(l.offsets().collect::<Vec<_>>(), vec![0, 3, 1, 4, 2, 5]);
        let n = Layout::contiguous(&[3, 4]).narrow(1, 1, 2).unwrap();
        assert_eq!(n.offsets().collect::<Vec<_>>(), vec![1, 2, 5, 6, 9, 10]);
        assert!(!n.is_contiguous());
        let b = Layout::contiguous(&[3, 1]).broadcast_as(&[2, 3, 2]).unwrap();
        assert_eq!(b.offsets().collect::<Vec<_>>(), vec![0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn reshape_views_follow_the_element_order_without_copies() {
        let offsets = |l: &Layout| l.offsets().collect::<Vec<_>>();
        // channels-last [N, C, H, W] (stored N, H, W, C): H and W merge and split back as views
        let nhwc = Layout::contiguous(&[2, 4, 5, 3]).permute(&[0, 3, 1, 2]).unwrap();
        let tokens = nhwc.reshape_view(&[2, 3, 20]).expect("H·W merge");
        assert_eq!(tokens.strides(), &[60, 1, 3]);
        assert_eq!(offsets(&tokens), offsets(&nhwc));
        let back = tokens.reshape_view(&[2, 3, 4, 5]).expect("H·W split");
        assert_eq!((back.strides(), offsets(&back)), (&[60usize, 1, 15, 3][..], offsets(&nhwc)));
        // C and H do not nest in that layout: merging them needs a copy
        assert!(nhwc.reshape_view(&[2, 12, 5]).is_none());
        // a transposed matrix cannot flatten; size-1 dims still come and go
        let t = Layout::contiguous(&[2, 3]).permute(&[1, 0]).unwrap();
        assert!(t.reshape_view(&[6]).is_none());
        assert_eq!(offsets(&t.reshape_view(&[3, 1, 2]).unwrap()), offsets(&t));
        // narrowed columns: rows stay separate, each row's run splits freely
        let narrow = Layout::contiguous(&[4, 6]).narrow(1, 1, 4).unwrap();
        assert!(narrow.reshape_view(&[16]).is_none());
        let split = narrow.reshape_view(&[2, 2, 2, 2]).unwrap();
        assert_eq!((split.strides(), offsets(&split)), (&[12usize, 6, 2, 1][..], offsets(&narrow)));
        // every view a sweep of permutations and reshapes finds reads the same elements in order
        for perm in [[0, 1, 2, 3], [0, 2, 3, 1], [0, 3, 1, 2], [1, 0, 2, 3], [3, 2, 1, 0]] {
            let l = Layout::contiguous(&[2, 3, 4, 2]).permute(&perm).unwrap();
            for shape in [vec![48], vec![6, 8], vec![2, 24], vec![2, 3, 8], vec![l.shape()[0], l.shape()[1] * l.shape()[2], l.shape()[3]], vec![1, 48, 1]] {
                if let Some(v) = l.reshape_view(&shape) {
                    assert_eq!(offsets(&v), offsets(&l), "{perm:?} → {shape:?}");
                }
            }
        }
    }

    #[test]
    fn broadcasting_rules() {
        assert_eq!(broadcast_shapes("t", &[2, 1, 4], &[3, 1]).unwrap(), vec![2, 3, 4]);
        assert!(broadcast_shapes("t", &[2, 3], &[4, 3, 2]).is_err());
    }
}
