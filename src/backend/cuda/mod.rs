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
pub mod dry_run;
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

/// The driver side of the caching allocator: cuMemAlloc / cuMemFree on this device's context, or
/// a dry run's address counter.
pub enum DeviceMemory {
    Driver(Arc<CudaContext>),
    DryRun(dry_run::DryMemory),
}

impl RawMemory for DeviceMemory {
    fn malloc(&self, bytes: usize) -> std::result::Result<u64, RawError> {
        let ctx = match self {
            DeviceMemory::Driver(ctx) => ctx,
            DeviceMemory::DryRun(m) => return m.malloc(bytes),
        };
        ctx.bind_to_thread().map_err(|e| RawError::Other(e.to_string()))?;
        // SAFETY: the context is current; the memory is only used through kernels and copies on
        // this device's stream, which write it before reading.
        match unsafe { cu::malloc_sync(bytes) } {
            Ok(p) => Ok(p),
            Err(cu::DriverError(sys::cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY)) => Err(RawError::OutOfMemory),
            Err(e) => Err(RawError::Other(e.to_string())),
        }
    }
    fn free(&self, ptr: u64, bytes: usize) {
        let ctx = match self {
            DeviceMemory::Driver(ctx) => ctx,
            DeviceMemory::DryRun(m) => return m.free(ptr, bytes),
        };
        if ctx.bind_to_thread().is_ok() {
            // The stream may still be using the block (it was cached, so its last user was queued):
            // wait for it before handing the memory back.
            let _ = ctx.synchronize();
            // SAFETY: `ptr` came from malloc_sync in this context and is no longer referenced.
            let _ = unsafe { cu::free_sync(ptr) };
        }
    }
}

/// What runs a device's work: the driver (a context and the one stream every op runs on), or a
/// dry run (dry_run.rs) that checks and counts it without a GPU.
pub(crate) enum Backing {
    Driver { ctx: Arc<CudaContext>, stream: Arc<CudaStream> },
    DryRun(dry_run::DryRun),
}

/// One GPU: its context and stream (or a dry run), the allocator and the loaded kernels.
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    compute_capability: (i32, i32),
    total_memory: usize,
    backing: Backing,
    alloc: CachingAllocator<DeviceMemory>,
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
    /// The split-K conv's zeroed f32 workspace (conv_tc.rs).
    pub(crate) split_workspace: conv_tc::SplitWorkspace,
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

/// The number of CUDA devices, 0 when there is no driver or no GPU (1 in a dry run:
/// `LDM_CUDA_DRY_RUN`).
pub fn device_count() -> usize {
    if dry_run::requested() {
        return 1;
    }
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

/// The kernel-choice switches (README "Switches") and the values each takes; `lab-` values need
/// a build with the kernel lab. `switch_is` is how the backend reads them.
const SWITCHES: [(&str, &[&str]); 3] = [
    ("LDM_CUDA_GEMM", &["simt", "tile64", "lab-v3", "lab-v4", "lab-v5"]),
    ("LDM_CUDA_CONV", &["gemm", "nchw", "tile64", "lab-v4", "lab-v5"]),
    ("LDM_CUDA_ATTENTION", &["unfused", "lab-v3"]),
];

/// Whether switch `var` (one of SWITCHES) is set to `value` (one of its values); each read once.
pub(crate) fn switch_is(var: &str, value: &str) -> bool {
    static SET: OnceLock<Vec<Option<String>>> = OnceLock::new();
    let set = SET.get_or_init(|| SWITCHES.iter().map(|(v, _)| std::env::var(v).ok()).collect());
    let i = SWITCHES.iter().position(|(v, _)| *v == var);
    debug_assert!(i.is_some_and(|i| SWITCHES[i].1.contains(&value)), "{var}={value} is not in SWITCHES");
    i.is_some_and(|i| set[i].as_deref() == Some(value))
}

/// Refuses a switch set to a value nothing reads (a typo, or a kernel-lab variant in a build
/// without the lab), which would otherwise time the shipped kernels under the variant's name.
fn check_switches() -> std::result::Result<(), String> {
    for (var, values) in SWITCHES {
        let Some(v) = std::env::var_os(var) else { continue };
        let v = v.to_string_lossy();
        if v.is_empty() {
            continue;
        }
        if !values.contains(&&*v) {
            return Err(format!("{var}={v} is not a switch value (one of: {}); unset it for the shipped kernels", values.join(", ")));
        }
        if v.starts_with("lab-") && !cfg!(feature = "kernel-lab") {
            return Err(format!("{var}={v} selects a kernel-lab variant, and this build has no kernel lab (cargo build --release --features kernel-lab)"));
        }
    }
    Ok(())
}

impl CudaDevice {
    fn open(ordinal: usize) -> Result<CudaDevice> {
        check_switches().map_err(|why| unavailable(ordinal, why))?;
        if dry_run::requested() {
            return Self::open_dry_run(ordinal);
        }
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
        let alloc = CachingAllocator::new(DeviceMemory::Driver(ctx.clone()));
        Ok(Self::with_backing(ordinal, name, cc, total_memory, Backing::Driver { ctx, stream }, alloc))
    }

    /// The device a dry run imitates (`LDM_CUDA_DRY_RUN`): its compute capability and memory.
    fn open_dry_run(ordinal: usize) -> Result<CudaDevice> {
        let gpu = dry_run::imitated().map_err(|why| unavailable(ordinal, why))?;
        if ordinal > 0 {
            return Err(unavailable(ordinal, "a dry run (LDM_CUDA_DRY_RUN) has one device, cuda:0"));
        }
        let alloc = CachingAllocator::new(DeviceMemory::DryRun(dry_run::DryMemory::new(gpu.memory)));
        let name = format!("dry run imitating {} (no GPU: nothing is computed)", gpu.name);
        Ok(Self::with_backing(ordinal, name, gpu.cc, gpu.memory, Backing::DryRun(dry_run::DryRun::new(gpu.cc)), alloc))
    }

    fn with_backing(ordinal: usize, name: String, cc: (i32, i32), total_memory: usize, backing: Backing, alloc: CachingAllocator<DeviceMemory>) -> CudaDevice {
        CudaDevice {
            ordinal,
            name,
            compute_capability: cc,
            total_memory,
            backing,
            alloc,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            capturing: AtomicBool::new(false),
            index_maps: Mutex::new(HashMap::new()),
            weight_layouts: Default::default(),
            split_workspace: Default::default(),
        }
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
    /// The stream every op runs on; None in a dry run, whose callers skip the driver call.
    pub(crate) fn stream(&self) -> Option<&Arc<CudaStream>> {
        match &self.backing {
            Backing::Driver { stream, .. } => Some(stream),
            Backing::DryRun(_) => None,
        }
    }
    pub(crate) fn backing(&self) -> &Backing {
        &self.backing
    }
    /// The dry run standing in for the driver, if this device is one (`LDM_CUDA_DRY_RUN`).
    pub fn dry_run(&self) -> Option<&dry_run::DryRun> {
        match &self.backing {
            Backing::DryRun(d) => Some(d),
            Backing::Driver { .. } => None,
        }
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
        match &self.backing {
            Backing::Driver { stream, .. } => stream.synchronize().map_err(|e| self.driver_error("synchronize", e)),
            Backing::DryRun(_) => Ok(()),
        }
    }

    /// Makes this device's context current on the calling thread (driver calls outside a launch
    /// need it; launches bind by themselves).
    pub(crate) fn bind(&self) -> Result<()> {
        match &self.backing {
            Backing::Driver { ctx, .. } => ctx.bind_to_thread().map_err(|e| self.driver_error("bind context", e)),
            Backing::DryRun(_) => Ok(()),
        }
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

    /// `bytes` from device address `src` to `dst` by the driver's copy engine, ordered on the
    /// stream like every kernel (counted, not made, in a dry run).
    pub(crate) fn copy_device_to_device(&self, op: &'static str, dst: u64, src: u64, bytes: usize) -> Result<()> {
        match &self.backing {
            Backing::Driver { ctx, stream } => {
                ctx.bind_to_thread().map_err(|e| self.driver_error("bind context", e))?;
                // SAFETY: the callers pass ranges of at least `bytes` inside live device buffers.
                unsafe { cu::memcpy_dtod_async(dst, src, bytes, stream.cu_stream()) }.map_err(|e| self.driver_error(op, e))
            }
            Backing::DryRun(d) => {
                d.copy(dry_run::CopyKind::DeviceToDevice, bytes);
                Ok(())
            }
        }
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
        let Backing::Driver { ctx, .. } = &self.backing else {
            return Err(Error::invalid("cuda", format!("a dry run loads no kernel module ({module})")));
        };
        let m = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
            .map_err(|e| Error::invalid("cuda", format!("cannot load kernel module {module} on cuda:{}: {e}", self.ordinal)))?;
        mods.insert(module, m.clone());
        Ok(m)
    }
}
