//! A CUDA device with no GPU behind it (`LDM_CUDA_DRY_RUN=1`): every op takes the CUDA path — the
//! same kernel choices, layouts, allocations and launch configurations — but nothing is computed.
//! What it gives, on any machine:
//! - memory: the caching allocator runs on made-up addresses, so the peak it reports is the peak a
//!   GPU run of the same work reports (allocation sizes do not depend on values);
//! - launches: each is checked against the kernel's PTX signature in this build (the kernel exists,
//!   every argument has the parameter's byte size), the module's architecture and the launch
//!   limits, then counted per kernel (`report`);
//! - copies: counted, not made (downloads read zeros).
//!
//! PyTorch's meta device does the same job for shapes and memory; this one also proves that what
//! the host side hands each kernel matches its C signature, which otherwise only a GPU shows (as
//! garbage, not an error). The variable's value picks the GPU imitated: `1` or `h100`, `h200`,
//! `a100`. `LDM_CUDA_DRY_RUN_TRACE=<kernel>` also lists the call paths that launched that kernel
//! (where a copy or a transpose comes from, when hunting launches to fuse away).

use super::alloc::RawError;
use super::kernels;
use crate::{Error, Result};
use cudarc::driver::LaunchConfig;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

const VARIABLE: &str = "LDM_CUDA_DRY_RUN";

/// Whether this process runs CUDA work dry (the variable is set, and not to "" or "0").
pub fn requested() -> bool {
    std::env::var_os(VARIABLE).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The GPU a dry run imitates: what the real one reports for these.
pub struct Imitated {
    pub name: &'static str,
    pub cc: (i32, i32),
    /// Bytes, as cuDeviceTotalMem reports them.
    pub memory: usize,
}

const MIB: usize = 1 << 20;

/// The GPU named by `LDM_CUDA_DRY_RUN`, or why the value is not one.
pub fn imitated() -> std::result::Result<Imitated, String> {
    let value = std::env::var(VARIABLE).unwrap_or_default();
    // total memory as the driver reports it on these boards (the H100's from our own logs)
    match value.to_ascii_lowercase().as_str() {
        "1" | "h100" => Ok(Imitated { name: "NVIDIA H100 80GB HBM3", cc: (9, 0), memory: 81_559 * MIB }),
        "h200" => Ok(Imitated { name: "NVIDIA H200", cc: (9, 0), memory: 143_771 * MIB }),
        "a100" => Ok(Imitated { name: "NVIDIA A100-SXM4-80GB", cc: (8, 0), memory: 81_051 * MIB }),
        _ => Err(format!("{VARIABLE}={value:?} names no GPU to imitate: use 1 (an H100), h100, h200 or a100")),
    }
}

/// Made-up device addresses for the allocator: 512-byte aligned like cuMemAlloc's, never reused,
/// and a capacity that fails like the real device's.
pub struct DryMemory {
    capacity: usize,
    used: AtomicUsize,
    next: AtomicU64,
}

impl DryMemory {
    pub fn new(capacity: usize) -> DryMemory {
        DryMemory { capacity, used: AtomicUsize::new(0), next: AtomicU64::new(0x7f00_0000_0000) }
    }
    pub(super) fn malloc(&self, bytes: usize) -> std::result::Result<u64, RawError> {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > self.capacity {
            self.used.fetch_sub(bytes, Ordering::Relaxed);
            return Err(RawError::OutOfMemory);
        }
        Ok(self.next.fetch_add(bytes.div_ceil(512).max(1) as u64 * 512, Ordering::Relaxed))
    }
    pub(super) fn free(&self, _ptr: u64, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A copy the dry run counts instead of making.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CopyKind {
    HostToDevice,
    DeviceToHost,
    DeviceToDevice,
}

#[derive(Default)]
struct KernelCount {
    launches: u64,
    blocks: u64,
    threads_per_block: u32,
}

#[derive(Default)]
struct Counts {
    kernels: BTreeMap<String, KernelCount>,
    copies: BTreeMap<CopyKind, (u64, u64)>,
    /// CUDA graph replays (each replays the launches counted once, at its capture)
    graph_replays: u64,
    /// LDM_CUDA_DRY_RUN_TRACE: the call paths that launched the traced kernel, with counts
    traced: BTreeMap<String, u64>,
}

/// The kernel whose launch sites the report lists (`LDM_CUDA_DRY_RUN_TRACE=name`), if any.
fn traced_kernel() -> Option<&'static str> {
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| std::env::var("LDM_CUDA_DRY_RUN_TRACE").ok().filter(|v| !v.is_empty())).as_deref()
}

/// The engine's own frames of the current call stack, innermost first, as `function (file:line)`
/// (what a person reads to find where a launch comes from; release builds keep line tables).
fn engine_call_path() -> String {
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let mut frames = Vec::new();
    let mut function = "";
    for line in bt.lines().map(str::trim) {
        if let Some((_, f)) = line.split_once(": ").filter(|(n, _)| n.parse::<usize>().is_ok()) {
            function = f;
        } else if let Some(at) = line.strip_prefix("at ")
            && let Some((_, file)) = at.split_once("/src/")
            && !at.contains("/rustc/")
            && !file.starts_with("backend/cuda/dry_run.rs")
        {
            let file = file.rsplit_once(':').map_or(file, |(f, _col)| f);
            frames.push(format!("{function} ({file})"));
        }
    }
    frames.truncate(10);
    frames.join(" < ")
}

/// Per module: each entry's parameter sizes in bytes, from the build's PTX (None: this build has
/// no nvcc PTX, so signatures go unchecked).
type Signatures = Option<HashMap<String, Vec<usize>>>;

pub struct DryRun {
    cc: (i32, i32),
    signatures: Mutex<HashMap<&'static str, std::sync::Arc<Signatures>>>,
    counts: Mutex<Counts>,
}

impl DryRun {
    pub(super) fn new(cc: (i32, i32)) -> DryRun {
        DryRun { cc, signatures: Mutex::new(HashMap::new()), counts: Mutex::new(Counts::default()) }
    }

    fn signatures(&self, module: &'static str) -> Result<std::sync::Arc<Signatures>> {
        let mut cache = self.signatures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.get(module) {
            return Ok(s.clone());
        }
        // the architecture check a real load makes (a Hopper-only module elsewhere is refused)
        kernels::module_arch(module, self.cc)?;
        if !kernels::module_exists(module) {
            return Err(Error::invalid("cuda", format!("no kernel module named {module} in this build")));
        }
        let parsed = std::sync::Arc::new(kernels::build_ptx(module).map(entry_parameters));
        cache.insert(module, parsed.clone());
        Ok(parsed)
    }

    /// What a launch of `module::name` with `cfg` and arguments of `arg_sizes` bytes would be
    /// refused for, checked against the build's PTX and the launch limits; counted when it passes.
    pub(crate) fn launch(&self, module: &'static str, name: &str, cfg: &LaunchConfig, arg_sizes: &[usize]) -> Result<()> {
        let refuse = |why: String| Err(Error::invalid("cuda dry run", format!("launch of {name}: {why}")));
        if let Some(entries) = &*self.signatures(module)? {
            let Some(params) = entries.get(name) else {
                return Err(Error::invalid("cuda", format!("kernel {name} is missing from module {module}")));
            };
            if params != arg_sizes {
                return refuse(format!("the kernel's parameters are {params:?} bytes, the launch passes {arg_sizes:?}"));
            }
        }
        let (g, b) = (cfg.grid_dim, cfg.block_dim);
        let threads = b.0 as u64 * b.1 as u64 * b.2 as u64;
        if threads == 0 || threads > 1024 || b.2 > 64 {
            return refuse(format!("block {b:?}: 1 to 1024 threads, z at most 64"));
        }
        if g.0 == 0 || g.1 == 0 || g.2 == 0 || g.0 > i32::MAX as u32 || g.1 > 65_535 || g.2 > 65_535 {
            return refuse(format!("grid {g:?}: x from 1 to 2^31-1, y and z from 1 to 65535"));
        }
        // No kernel opts in to more (cuFuncSetAttribute), so 48 KiB of dynamic shared memory is the limit.
        if cfg.shared_mem_bytes > 48 * 1024 {
            return refuse(format!("{} bytes of dynamic shared memory, more than 48 KiB", cfg.shared_mem_bytes));
        }
        let path = (traced_kernel() == Some(name)).then(engine_call_path);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(path) = path {
            *counts.traced.entry(path).or_default() += 1;
        }
        let row = counts.kernels.entry(name.to_string()).or_default();
        row.launches += 1;
        row.blocks += g.0 as u64 * g.1 as u64 * g.2 as u64;
        row.threads_per_block = threads as u32;
        Ok(())
    }

    pub(crate) fn copy(&self, kind: CopyKind, bytes: usize) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let row = counts.copies.entry(kind).or_default();
        row.0 += 1;
        row.1 += bytes as u64;
    }

    pub(crate) fn replay_graph(&self) {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).graph_replays += 1;
    }

    /// Forgets the launches and copies counted so far (e.g. a warm-up run's).
    pub fn reset(&self) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = Counts::default();
    }

    /// Launches counted so far, in all.
    pub fn launches(&self) -> u64 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).kernels.values().map(|k| k.launches).sum()
    }

    /// The launches of `name` counted so far.
    pub fn launches_of(&self, name: &str) -> u64 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).kernels.get(name).map_or(0, |k| k.launches)
    }

    /// The launches and copies counted so far, most launched kernel first, as Markdown.
    pub fn report(&self) -> String {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let total: u64 = counts.kernels.values().map(|k| k.launches).sum();
        let checked = if kernels::build_ptx("elementwise").is_some() { "checked against this build's PTX" } else { "unchecked (this build has no nvcc PTX)" };
        let mut out = format!("CUDA dry run ({VARIABLE}): {total} kernel launches, signatures {checked}\n\n| kernel | launches | blocks per launch | threads per block |\n|---|---:|---:|---:|\n");
        let mut rows: Vec<_> = counts.kernels.iter().collect();
        rows.sort_by(|a, b| b.1.launches.cmp(&a.1.launches).then(a.0.cmp(b.0)));
        for (name, k) in rows {
            out += &format!("| {name} | {} | {:.0} | {} |\n", k.launches, k.blocks as f64 / k.launches as f64, k.threads_per_block);
        }
        for (kind, (n, bytes)) in &counts.copies {
            out += &format!("\n{kind:?} copies: {n}, {:.1} MiB", *bytes as f64 / MIB as f64);
        }
        if let Some(name) = traced_kernel() {
            out += &format!("\n\nlaunches of {name} by call path (LDM_CUDA_DRY_RUN_TRACE):\n");
            let mut paths: Vec<_> = counts.traced.iter().collect();
            paths.sort_by(|a, b| b.1.cmp(a.1));
            for (path, n) in paths {
                out += &format!("- {n} × {path}\n");
            }
        }
        if counts.graph_replays > 0 {
            out += &format!("\nCUDA graph replays: {} (the launches each replays are counted once, at its capture)", counts.graph_replays);
        }
        out
    }
}

/// Each `.entry` of a PTX module with its parameters' sizes in bytes, in order.
fn entry_parameters(ptx: &str) -> HashMap<String, Vec<usize>> {
    let mut entries = HashMap::new();
    let mut rest = ptx;
    while let Some(at) = rest.find(".entry ") {
        rest = &rest[at + ".entry ".len()..];
        let Some(open) = rest.find('(') else { break };
        let name = rest[..open].trim().to_string();
        let Some(close) = rest[open..].find(')') else { break };
        let params = &rest[open + 1..open + close];
        let sizes = params.split(',').filter(|p| p.contains(".param")).map(parameter_size).collect();
        entries.insert(name, sizes);
        rest = &rest[open + close..];
    }
    entries
}

/// The size of one `.param` declaration: `.param .u64 x`, `.param .align 8 .b8 x[112]`.
fn parameter_size(decl: &str) -> usize {
    let words: Vec<&str> = decl.split_whitespace().collect();
    let scalar = words
        .iter()
        .find_map(|w| match *w {
            ".u8" | ".s8" | ".b8" => Some(1),
            ".u16" | ".s16" | ".b16" | ".f16" | ".bf16" => Some(2),
            ".u32" | ".s32" | ".b32" | ".f32" => Some(4),
            ".u64" | ".s64" | ".b64" | ".f64" => Some(8),
            _ => None,
        })
        .unwrap_or(0);
    let count = words.last().and_then(|w| w.split_once('[')).and_then(|(_, n)| n.trim_end_matches(']').parse::<usize>().ok()).unwrap_or(1);
    scalar * count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_from_ptx_entries() {
        let ptx = "// .globl\tunary_f32\n.visible .entry unary_f32(\n\t.param .u64 unary_f32_param_0,\n\t.param .u32 unary_f32_param_1,\n\t.param .align 8 .b8 unary_f32_param_2[112],\n\t.param .f32 unary_f32_param_3\n)\n{\n}\n.visible .entry empty()\n{\n}\n.entry ptrs(\n\t.param .u64 .ptr .global .align 16 ptrs_param_0\n)\n";
        let e = entry_parameters(ptx);
        assert_eq!(e["unary_f32"], vec![8, 4, 112, 4]);
        assert_eq!(e["empty"], Vec::<usize>::new());
        assert_eq!(e["ptrs"], vec![8]);
        assert_eq!(e.len(), 3);
    }

    #[test]
    fn launches_are_checked_then_counted() {
        let dry = DryRun::new((9, 0));
        let cfg = LaunchConfig { grid_dim: (4, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let bad_block = LaunchConfig { block_dim: (2048, 1, 1), ..cfg };
        let empty_grid = LaunchConfig { grid_dim: (0, 1, 1), ..cfg };
        let big_smem = LaunchConfig { shared_mem_bytes: 64 * 1024, ..cfg };
        for c in [bad_block, empty_grid, big_smem] {
            assert!(dry.launch("elementwise", "copy_f16", &c, &[8, 112, 8, 8]).is_err());
        }
        if kernels::build_ptx("elementwise").is_some() {
            // copy(n, Strided, src, dst): the size of every argument is compared
            let e = dry.launch("elementwise", "copy_f16", &cfg, &[8, 112, 8, 4]).unwrap_err().to_string();
            assert!(e.contains("[8, 112, 8, 8]"), "{e}");
            assert!(dry.launch("elementwise", "no_such_kernel", &cfg, &[]).unwrap_err().to_string().contains("missing"));
        }
        assert!(dry.launch("no_such_module", "copy_f16", &cfg, &[]).is_err());
        assert_eq!(dry.launches(), 0, "refused launches are not counted");
        dry.launch("elementwise", "copy_f16", &cfg, &[8, 112, 8, 8]).unwrap();
        dry.copy(CopyKind::HostToDevice, 3 * MIB);
        assert_eq!((dry.launches(), dry.launches_of("copy_f16")), (1, 1));
        let r = dry.report();
        assert!(r.contains("| copy_f16 | 1 | 4 | 256 |") && r.contains("HostToDevice copies: 1, 3.0 MiB"), "{r}");
        dry.reset();
        assert_eq!(dry.launches(), 0);
        // a Hopper-only module on an imitated A100
        assert!(DryRun::new((8, 0)).launch("lab_gemm_tc_wgmma_sm90a", "x", &cfg, &[]).unwrap_err().to_string().contains("Hopper"));
    }

    #[test]
    fn dry_memory_fails_like_a_full_device() {
        let m = DryMemory::new(4096);
        let a = m.malloc(1000).unwrap();
        let b = m.malloc(1000).unwrap();
        assert!(b >= a + 1000 && a.is_multiple_of(512) && b.is_multiple_of(512));
        assert_eq!(m.malloc(4000), Err(RawError::OutOfMemory));
        m.free(a, 1000);
        assert!(m.malloc(3000).is_ok());
    }
}
