//! Tensor storage. `Storage` is an enum over backends (CPU buffers, CUDA device buffers); ops
//! dispatch on the tensor's device in src/backend/. CPU buffers are either owned vectors or
//! zero-copy windows into a memory-mapped safetensors file.

use super::dtype::{DType, WithDType};
use half::{bf16, f16};
use std::marker::PhantomData;
use std::sync::Arc;

/// A typed CPU buffer: owned, or borrowed from a shared memory map (read-only, never copied).
pub enum Buf<T> {
    Owned(Vec<T>),
    Mapped { map: Arc<memmap2::Mmap>, byte_start: usize, len: usize, _t: PhantomData<T> },
}

impl<T: bytemuck::Pod> Buf<T> {
    /// Borrows `len` elements at `byte_start` of the map when the address is aligned for `T`;
    /// otherwise returns None and the caller copies.
    pub fn mapped(map: Arc<memmap2::Mmap>, byte_start: usize, len: usize) -> Option<Self> {
        let ptr = map[byte_start..].as_ptr();
        (ptr as usize).is_multiple_of(std::mem::align_of::<T>()).then_some(Buf::Mapped { map, byte_start, len, _t: PhantomData })
    }
    pub fn as_slice(&self) -> &[T] {
        match self {
            Buf::Owned(v) => v,
            Buf::Mapped { map, byte_start, len, .. } => {
                bytemuck::cast_slice(&map[*byte_start..*byte_start + len * std::mem::size_of::<T>()])
            }
        }
    }
    pub fn is_mapped(&self) -> bool {
        matches!(self, Buf::Mapped { .. })
    }
}

pub enum CpuStorage {
    U8(Buf<u8>),
    I64(Buf<i64>),
    F16(Buf<f16>),
    BF16(Buf<bf16>),
    F32(Buf<f32>),
}

/// Calls `$body` with `$s` bound to the typed slice of a CpuStorage, whatever its dtype.
#[macro_export]
macro_rules! with_cpu_slice {
    ($storage:expr, |$s:ident| $body:expr) => {
        match $storage {
            $crate::tensor::CpuStorage::U8(b) => { let $s = b.as_slice(); $body }
            $crate::tensor::CpuStorage::I64(b) => { let $s = b.as_slice(); $body }
            $crate::tensor::CpuStorage::F16(b) => { let $s = b.as_slice(); $body }
            $crate::tensor::CpuStorage::BF16(b) => { let $s = b.as_slice(); $body }
            $crate::tensor::CpuStorage::F32(b) => { let $s = b.as_slice(); $body }
        }
    };
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::U8(_) => DType::U8,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::F32(_) => DType::F32,
        }
    }
    pub fn len(&self) -> usize {
        with_cpu_slice!(self, |s| s.len())
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_mapped(&self) -> bool {
        match self {
            CpuStorage::U8(b) => b.is_mapped(),
            CpuStorage::I64(b) => b.is_mapped(),
            CpuStorage::F16(b) => b.is_mapped(),
            CpuStorage::BF16(b) => b.is_mapped(),
            CpuStorage::F32(b) => b.is_mapped(),
        }
    }
    pub fn from_vec<T: CpuElem>(v: Vec<T>) -> Self {
        T::wrap(Buf::Owned(v))
    }
    /// Converts f32 values into a storage of the requested dtype.
    pub fn from_f32(v: Vec<f32>, dtype: DType) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(Buf::Owned(v)),
            DType::F16 => CpuStorage::F16(Buf::Owned(v.into_iter().map(f16::from_f32).collect())),
            DType::BF16 => CpuStorage::BF16(Buf::Owned(v.into_iter().map(bf16::from_f32).collect())),
            DType::I64 => CpuStorage::I64(Buf::Owned(v.into_iter().map(|x| x as i64).collect())),
            DType::U8 => CpuStorage::U8(Buf::Owned(v.into_iter().map(|x| x as u8).collect())),
        }
    }
    /// Copies little-endian raw bytes into a storage of `dtype` (any alignment).
    pub fn from_bytes(bytes: &[u8], dtype: DType) -> Self {
        fn typed<T: CpuElem>(b: &[u8]) -> CpuStorage {
            let mut v = vec![T::zeroed(); b.len() / std::mem::size_of::<T>()];
            bytemuck::cast_slice_mut::<T, u8>(&mut v).copy_from_slice(b);
            T::wrap(Buf::Owned(v))
        }
        match dtype {
            DType::U8 => typed::<u8>(bytes),
            DType::I64 => typed::<i64>(bytes),
            DType::F16 => typed::<f16>(bytes),
            DType::BF16 => typed::<bf16>(bytes),
            DType::F32 => typed::<f32>(bytes),
        }
    }
    /// The raw bytes, for writing files.
    pub fn as_bytes(&self) -> &[u8] {
        with_cpu_slice!(self, |s| bytemuck::cast_slice(s))
    }
}

/// Typed access to the matching CpuStorage variant.
pub trait CpuElem: WithDType {
    fn wrap(b: Buf<Self>) -> CpuStorage;
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
}

macro_rules! cpu_elem {
    ($t:ty, $v:ident) => {
        impl CpuElem for $t {
            fn wrap(b: Buf<Self>) -> CpuStorage {
                CpuStorage::$v(b)
            }
            fn slice(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$v(b) => Some(b.as_slice()),
                    _ => None,
                }
            }
        }
    };
}
cpu_elem!(u8, U8);
cpu_elem!(i64, I64);
cpu_elem!(f16, F16);
cpu_elem!(bf16, BF16);
cpu_elem!(f32, F32);

impl<T: WithDType> From<Vec<T>> for Buf<T> {
    fn from(v: Vec<T>) -> Self {
        Buf::Owned(v)
    }
}

pub enum Storage {
    Cpu(CpuStorage),
    Cuda(crate::backend::cuda::CudaStorage),
}

impl Storage {
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Cuda(s) => s.dtype(),
        }
    }
}
