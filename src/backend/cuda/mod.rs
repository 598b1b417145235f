//! CUDA backend: device discovery that never panics, one context and one stream per device, the
//! caching allocator, kernel modules (build-time PTX or NVRTC), host↔device copies, and the ops in
//! ops.rs / norm.rs. cudarc loads libcuda at run time (dynamic-loading), so the same binary runs on
//! a machine with no driver: `device()` then answers with `Error::DeviceUnavailable` and the
//! caller stays on the CPU.
//!
//! Memory is raw device pointers owned by `DeviceBuf` (allocator blocks), not cudarc's
//! CudaSlice: the allocator decides reuse, and with a single stream no event tracking is needed.

pub mod alloc;
pub mod attention;
pub mod conv;
pub mod conv_tc;
pub mod fused;
pub mod index;
mod graph;
mod kernels;
#[cfg(feature = "kernel-lab")]
pub mod lab;
mod launch;
pub mod linalg;
pub mod norm;
pub mod ops;
pub mod pool;
pub mod profile;
mod storage;

pub use alloc::{AllocError, AllocStats};
pub use graph::CapturedGraph;
pub use launch::MAX_DIMS;
pub use storage::{CudaStorage, DeviceBuf};

use crate::tensor::Device;
use crate::{Error, Result};
use alloc::{CachingAllocator, RawError, RawMemory};
use cudarc::driver::{result as cu, sys, CudaContext, CudaFunction, CudaModule, CudaStream};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The driver side of the caching allocator: cuMemAlloc / cuMemFree on this device's context.
pub struct DriverMemory {
    ctx: Arc<CudaContext>,
}

impl RawMemory for DriverMemory {
    fn malloc(&self, bytes: usize) -> std::result::Result<u64, RawError> {
        self.ctx.bind_to_thread().map_err(|e| RawError::Other(e.to_string()))?;
        // SAFETY: the context is current; the memory is only used through kernels and copies on
        // this device's stream, which write it before reading.
        match unsafe { cu::malloc_sync(bytes) } {
            Ok(p) => Ok(p),
            Err(cu::DriverError(sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY)) => Err(RawError::OutOfMemory),
            Err(e) => Err(RawError::Other(e.to_string())),
        }
    }
    fn free(&self, ptr: u64, _bytes: usize) {
        if self.ctx.bind_to_thread().is_ok() {
            // The stream may still be using the block (it was cached, so its last user was queued):
            // wait for it before handing the memory back.
            let _ = self.ctx.synchronize();
            // SAFETY: `ptr` came from malloc_sync in this context and is no longer referenced.
            let _ = unsafe { cu::free_sync(ptr) };
        }
    }
}

/// One GPU: its context, the stream every op runs on, the allocator and the loaded kernels.
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    compute_capability: (i32, i32),
    total_memory: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    alloc: CachingAllocator<DriverMemory>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// A CUDA graph capture is in progress on the stream (graph.rs): host copies are refused.
    capturing: AtomicBool,
    /// Index maps uploaded once and reused (index.rs: upsample / pad gathers), so a forward pass
    /// repeated with the same shapes copies nothing from the host (what a graph capture needs).
    index_maps: Mutex<HashMap<Vec<i64>, crate::Tensor>>,
    /// Conv weights in the channels-last layout the tensor-core conv reads (conv_tc.rs), made
    /// once per inference weight instead of on every call.
    pub(crate) weight_layouts: conv_tc::WeightLayouts,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cuda:{} ({}, sm_{}{})", self.ordinal, self.name, self.compute_capability.0, self.compute_capability.1)
    }
}

static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();

fn unavailable(ordinal: usize, why: impl Into<String>) -> Error {
    Error::DeviceUnavailable(Device::Cuda(ordinal), why.into())
}

/// Whether libcuda can be loaded at all (no context is created). cudarc panics when it creates a
/// context without the library, so every path to a context goes through this first.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { sys::is_culib_present() }
}

/// The number of CUDA devices, 0 when there is no driver or no GPU.
pub fn device_count() -> usize {
    if !driver_present() {
        return 0;
    }
    CudaContext::device_count().map(|n| n.max(0) as usize).unwrap_or(0)
}

/// Why `device_count()` is 0, for the messages of tests and benches that skip their CUDA runs.
pub fn no_device_reason() -> &'static str {
    if driver_present() { "no CUDA device" } else { "no NVIDIA driver (libcuda not found)" }
}

/// The device `ordinal`, created on first use and shared afterwards.
pub fn device(ordinal: usize) -> Result<Arc<CudaDevice>> {
    let devices = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = devices.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = map.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(CudaDevice::open(ordinal)?);
    map.insert(ordinal, d.clone());
    Ok(d)
}

impl CudaDevice {
    fn open(ordinal: usize) -> Result<CudaDevice> {
        if !driver_present() {
            return Err(unavailable(ordinal, "the NVIDIA driver library (libcuda) was not found; use the CPU (--device cpu)"));
        }
        let count = CudaContext::device_count().map_err(|e| unavailable(ordinal, format!("cannot query devices: {e}")))?;
        if ordinal >= count.max(0) as usize {
            return Err(unavailable(ordinal, format!("this machine has {count} CUDA device(s)")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable(ordinal, format!("cannot create a context: {e}")))?;
        let cc = ctx.compute_capability().map_err(|e| unavailable(ordinal, e.to_string()))?;
        if cc.0 < 8 {
            return Err(unavailable(ordinal, format!("compute capability {}.{} is below the 8.0 (A100) the kernels target", cc.0, cc.1)));
        }
        // Raw pointers and one stream: cudarc's per-slice event tracking would only add work.
        // SAFETY: no CudaSlice of this context is ever created.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| unavailable(ordinal, format!("cannot create a stream: {e}")))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let total_memory = ctx.total_mem().unwrap_or(0);
        let alloc = CachingAllocator::new(DriverMemory { ctx: ctx.clone() });
        Ok(CudaDevice {
            ordinal,
            name,
            compute_capability: cc,
            total_memory,
            ctx,
            stream,
            alloc,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            capturing: AtomicBool::new(false),
            index_maps: Mutex::new(HashMap::new()),
            weight_layouts: Default::default(),
        })
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }
    pub fn total_memory(&self) -> usize {
        self.total_memory
    }
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Allocator counters: bytes in use, peak, cached, driver calls.
    pub fn memory_stats(&self) -> AllocStats {
        self.alloc.stats()
    }
    pub fn reset_peak_memory(&self) {
        self.alloc.reset_peak()
    }
    /// Returns cached blocks to the driver.
    pub fn empty_cache(&self) {
        self.alloc.empty_cache()
    }

    /// Waits for every queued op (timing, or before reading results another way).
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| self.driver_error("synchronize", e))
    }

    /// Makes this device's context current on the calling thread (driver calls outside a launch
    /// need it; launches bind by themselves).
    pub(crate) fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| self.driver_error("bind context", e))
    }

    pub(crate) fn driver_error(&self, op: &'static str, e: cu::DriverError) -> Error {
        Error::invalid(op, format!("CUDA error on cuda:{}: {e}", self.ordinal))
    }

    /// `bytes` of device memory from the caching allocator. Out of memory becomes one message
    /// with the size that failed, what was in use and what to try.
    pub(crate) fn alloc_bytes(self: &Arc<Self>, bytes: usize) -> Result<DeviceBuf> {
        match self.alloc.alloc(bytes) {
            Ok(block) => Ok(DeviceBuf::new(block, self.clone())),
            Err(AllocError::OutOfMemory { requested, in_use, peak }) => Err(Error::OutOfMemory {
                device: Device::Cuda(self.ordinal),
                requested,
                in_use,
                peak,
                total: self.total_memory,
            }),
            Err(AllocError::Driver(m)) => Err(Error::invalid("alloc", format!("CUDA error on cuda:{}: {m}", self.ordinal))),
        }
    }

    /// Refuses a host↔device copy while a graph is being captured: a captured copy would replay
    /// from a host buffer that is gone by then (and a download would wait on a stream that is
    /// only recording).
    pub(crate) fn check_not_capturing(&self, op: &'static str) -> Result<()> {
        if self.capturing.load(Ordering::Relaxed) {
            return Err(Error::invalid(op, format!("a host↔device copy inside a CUDA graph capture on cuda:{} (the captured work must stay on the device; unset LDM_CUDA_GRAPH to run without graphs)", self.ordinal)));
        }
        Ok(())
    }

    pub(crate) fn release(&self, block: alloc::Block) {
        self.alloc.release(block)
    }

    /// The kernel `name` from module `module` (a kernels/*.cu stem), loaded once.
    pub(crate) fn function(&self, module: &'static str, name: &str) -> Result<CudaFunction> {
        let mut fns = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = fns.get(name) {
            return Ok(f.clone());
        }
        let m = self.module(module)?;
        let f = m.load_function(name).map_err(|e| Error::invalid("cuda", format!("kernel {name} is missing from module {module}: {e}")))?;
        fns.insert(name.to_string(), f.clone());
        Ok(f)
    }

    fn module(&self, module: &'static str) -> Result<Arc<CudaModule>> {
        let mut mods = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = mods.get(module) {
            return Ok(m.clone());
        }
        let ptx = kernels::ptx_for(module, self.compute_capability)?;
        let m = self
            .ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| Error::invalid("cuda", format!("cannot load kernel module {module} on cuda:{}: {e}", self.ordinal)))?;
        mods.insert(module, m.clone());
        Ok(m)
    }
}
