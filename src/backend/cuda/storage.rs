//! Device buffers and host↔device copies. A `DeviceBuf` owns one allocator block and gives it back
//! when the last tensor holding it is dropped; `CudaStorage` is that buffer with its dtype and
//! element count — the `Storage::Cuda` variant.

use super::alloc::Block;
use super::dry_run::CopyKind;
use super::{Backing, CudaDevice};
use crate::tensor::{Buf, CpuStorage, DType};
use crate::Result;
use cudarc::driver::result as cu;
use half::{bf16, f16};
use std::sync::Arc;

pub struct DeviceBuf {
    block: Option<Block>,
    dev: Arc<CudaDevice>,
}

impl DeviceBuf {
    pub(crate) fn new(block: Block, dev: Arc<CudaDevice>) -> Self {
        DeviceBuf { block: Some(block), dev }
    }
    pub fn ptr(&self) -> u64 {
        self.block.as_ref().map_or(0, |b| b.ptr)
    }
}

impl Drop for DeviceBuf {
    fn drop(&mut self) {
        if let Some(b) = self.block.take() {
            self.dev.release(b);
        }
    }
}

pub struct CudaStorage {
    buf: DeviceBuf,
    dtype: DType,
    len: usize,
}

impl CudaStorage {
    /// Uninitialised device storage for `len` elements (every kernel writes its whole output).
    pub(crate) fn alloc(dev: &Arc<CudaDevice>, dtype: DType, len: usize) -> Result<CudaStorage> {
        let buf = dev.alloc_bytes(len * dtype.size_in_bytes())?;
        Ok(CudaStorage { buf, dtype, len })
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.buf.dev
    }
    pub fn ordinal(&self) -> usize {
        self.buf.dev.ordinal()
    }
    /// The device address of element `elem` (for kernel arguments).
    pub fn ptr_at(&self, elem: usize) -> u64 {
        self.buf.ptr() + (elem * self.dtype.size_in_bytes()) as u64
    }
    pub fn ptr(&self) -> u64 {
        self.buf.ptr()
    }

    /// Copies a contiguous run of host elements to a new device buffer.
    pub(crate) fn upload(dev: &Arc<CudaDevice>, host: &CpuStorage, range: std::ops::Range<usize>) -> Result<CudaStorage> {
        let out = Self::alloc(dev, host.dtype(), range.len())?;
        let bytes = &host.as_bytes()[range.start * host.dtype().size_in_bytes()..range.end * host.dtype().size_in_bytes()];
        if !bytes.is_empty() {
            dev.check_not_capturing("to_device")?;
            match dev.backing() {
                Backing::Driver { stream, .. } => {
                    dev.bind()?;
                    // SAFETY: `out` holds at least bytes.len() bytes; a pageable-memory copy
                    // returns only after the source has been read, so `host` may be dropped.
                    unsafe { cu::memcpy_htod_async(out.ptr(), bytes, stream.cu_stream()) }.map_err(|e| dev.driver_error("to_device", e))?;
                }
                Backing::DryRun(d) => d.copy(CopyKind::HostToDevice, bytes.len()),
            }
        }
        Ok(out)
    }

    /// Copies elements [start, start+len) back to the host (waits for queued work).
    pub(crate) fn download(&self, start: usize, len: usize) -> Result<CpuStorage> {
        fn read<T: bytemuck::Pod + Default + Clone>(s: &CudaStorage, start: usize, len: usize) -> Result<Vec<T>> {
            let dev = s.device();
            let mut v = vec![T::default(); len];
            if len > 0 {
                dev.check_not_capturing("to_host")?;
                match dev.backing() {
                    Backing::Driver { stream, .. } => {
                        dev.bind()?;
                        // SAFETY: the source range lies inside the buffer; the copy completes
                        // before the synchronize returns, and `v` outlives it.
                        unsafe { cu::memcpy_dtoh_async(&mut v, s.ptr_at(start), stream.cu_stream()) }.map_err(|e| dev.driver_error("to_host", e))?;
                        dev.synchronize()?;
                    }
                    // nothing was computed: the host reads zeros
                    Backing::DryRun(d) => d.copy(CopyKind::DeviceToHost, len * std::mem::size_of::<T>()),
                }
            }
            Ok(v)
        }
        Ok(match self.dtype {
            DType::F32 => CpuStorage::F32(Buf::Owned(read::<f32>(self, start, len)?)),
            DType::F16 => CpuStorage::F16(Buf::Owned(read::<f16>(self, start, len)?)),
            DType::BF16 => CpuStorage::BF16(Buf::Owned(read::<bf16>(self, start, len)?)),
            DType::I64 => CpuStorage::I64(Buf::Owned(read::<i64>(self, start, len)?)),
            DType::U8 => CpuStorage::U8(Buf::Owned(read::<u8>(self, start, len)?)),
        })
    }
}
