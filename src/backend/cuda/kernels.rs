//! Where a kernel module's PTX comes from: the PTX build.rs compiled with nvcc (embedded in the
//! binary), or — for a build made without nvcc — the same source compiled here with NVRTC for the
//! device's architecture and cached on disk, keyed by a hash of the source and the architecture, so
//! only the first run pays for the compile.

use crate::{Error, Result};
use std::path::PathBuf;

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

/// The PTX text of `module` for a device of compute capability `cc`.
pub fn ptx_for(module: &'static str, cc: (i32, i32)) -> Result<String> {
    let arch = module_arch(module, cc)?;
    if let Some(ptx) = build_ptx(module) {
        return Ok(ptx.to_string());
    }
    let (_, src) = SOURCES
        .iter()
        .find(|(m, _)| *m == module)
        .ok_or_else(|| Error::invalid("cuda", format!("no kernel module named {module} in this build")))?;
    let key = format!("{module}-{:016x}-{arch}.ptx", fnv1a(&[src.as_bytes(), arch.as_bytes()]));
    let cached = cache_dir().map(|d| d.join(&key));
    if let Some(path) = &cached
        && let Ok(ptx) = std::fs::read_to_string(path) {
            return Ok(ptx);
        }
    let ptx = nvrtc_compile(module, src, arch)?;
    if let Some(path) = cached {
        // Best effort and atomic: a failed write only means the next run compiles again.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::create_dir_all(path.parent().unwrap()).is_ok() && std::fs::write(&tmp, &ptx).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(ptx)
}

/// The nvcc-compiled PTX of `module`, when this build had nvcc.
pub(crate) fn build_ptx(module: &str) -> Option<&'static str> {
    BUILD_PTX.iter().find(|(m, _)| *m == module).map(|(_, ptx)| *ptx)
}

/// Whether this build has a kernel module named `module` (as PTX or as source for NVRTC).
pub(crate) fn module_exists(module: &str) -> bool {
    SOURCES.iter().any(|(m, _)| *m == module)
}

/// Whether `module` is Hopper-only (a kernel file named *_sm90a.cu: wgmma), built for compute_90a.
fn hopper_only(module: &str) -> bool {
    module.ends_with("_sm90a")
}

/// The virtual architecture `module` is compiled for on a device of compute capability `cc`:
/// compute_90a for a Hopper-only module (refused elsewhere), else `nvrtc_arch`.
pub(crate) fn module_arch(module: &str, cc: (i32, i32)) -> Result<&'static str> {
    if !hopper_only(module) {
        return Ok(nvrtc_arch(cc));
    }
    if cc != (9, 0) {
        return Err(Error::invalid("cuda", format!("kernel module {module} needs a compute-capability 9.0 (Hopper) GPU, this one is {}.{}", cc.0, cc.1)));
    }
    Ok("compute_90a")
}

/// The virtual architecture NVRTC targets: the device's own when NVRTC 13.0 knows it.
fn nvrtc_arch(cc: (i32, i32)) -> &'static str {
    match cc {
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        (10, 0) => "compute_100",
        (12, 0) => "compute_120",
        _ => "compute_80",
    }
}

fn nvrtc_compile(module: &str, src: &str, arch: &'static str) -> Result<String> {
    // SAFETY: only tries to dlopen the library.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(Error::invalid(
            "cuda",
            format!("kernel module {module}: this build has no nvcc-compiled PTX and libnvrtc was not found (install the CUDA toolkit, or rebuild with NVCC=... )"),
        ));
    }
    // cuda_fp16.h / cuda_bf16.h come from the toolkit's include folder.
    let include_paths: Vec<String> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(|v| std::env::var_os(v).map(|p| PathBuf::from(p).join("include")))
        .chain([PathBuf::from("/usr/local/cuda/include")])
        .filter(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    let opts = cudarc::nvrtc::CompileOptions { arch: Some(arch), include_paths, options: vec!["-std=c++17".into()], ..Default::default() };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| Error::invalid("cuda", format!("NVRTC could not compile kernel module {module}: {e}")))?;
    Ok(ptx.to_src())
}

fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LDM_ENGINE_CACHE") {
        return Some(PathBuf::from(d).join("ptx"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("ldm-engine").join("ptx"))
}

/// 64-bit FNV-1a: a stable content hash for cache keys (not for security).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_file_is_in_the_build() {
        // The source tree where it was built, or the working directory (a test binary carried to a
        // GPU machine runs from a copy of the repository).
        let dir = [concat!(env!("CARGO_MANIFEST_DIR"), "/kernels"), "kernels"].into_iter().find(|d| std::path::Path::new(d).is_dir()).unwrap();
        let files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(String::from))
            .collect();
        for (module, src) in SOURCES {
            // With --features kernel-lab, lab_<stem> modules come from tools/kernel_lab/<stem>.cu.
            if let Some(stem) = module.strip_prefix("lab_") {
                assert!(std::path::Path::new(dir).join(format!("../tools/kernel_lab/{stem}.cu")).is_file(), "{module}");
                continue;
            }
            assert!(files.iter().any(|f| f == module), "{module}");
            assert!(!src.contains(".cuh\""), "{module}: kernels/*.cuh must be inlined for NVRTC");
            assert!(src.contains("extern \"C\" __global__"), "{module}");
        }
        assert!(SOURCES.len() >= 3);
        // With nvcc at build time (CI installs it), every module also has PTX for compute_80.
        for (module, ptx) in BUILD_PTX {
            assert!(ptx.contains(if hopper_only(module) { ".target sm_90a" } else { ".target sm_80" }), "{module}");
            assert!(ptx.contains(".version 9.0"), "{module}: CUDA 13.0 PTX is ISA 9.0, what driver 580 accepts");
        }
    }

    /// The kernel names a PTX text defines.
    fn entries(ptx: &str) -> std::collections::BTreeSet<String> {
        ptx.lines().filter_map(|l| l.trim().strip_prefix(".visible .entry ")).map(|l| l.split('(').next().unwrap_or("").trim().to_string()).collect()
    }

    /// The run-time fallback compiles every module (no GPU needed, only libnvrtc: CI installs it
    /// from PyPI) and defines the same kernels as the build-time nvcc PTX.
    #[test]
    fn nvrtc_compiles_every_module_to_the_same_kernels() {
        // SAFETY: only tries to dlopen the library.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            eprintln!("skipped: libnvrtc not found (set LD_LIBRARY_PATH to a CUDA 13.0 lib folder)");
            return;
        }
        for (module, src) in SOURCES {
            let arch = if hopper_only(module) { "compute_90a" } else { "compute_80" };
            let ptx = nvrtc_compile(module, src, arch).unwrap_or_else(|e| panic!("{e}"));
            let names = entries(&ptx);
            assert!(!names.is_empty(), "{module}: no kernels");
            if let Some((_, built)) = BUILD_PTX.iter().find(|(m, _)| m == module) {
                assert_eq!(names, entries(built), "{module}: NVRTC and nvcc define different kernels");
            }
        }
    }

    #[test]
    fn cache_keys_change_with_source_and_arch() {
        assert_ne!(fnv1a(&[b"a", b"compute_80"]), fnv1a(&[b"a", b"compute_90"]));
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_eq!(nvrtc_arch((9, 0)), "compute_90");
        assert_eq!(nvrtc_arch((8, 6)), "compute_86");
        // a Hopper-only module: compute_90a on an H100, refused by name elsewhere
        assert_eq!(module_arch("lab_gemm_tc_wgmma_sm90a", (9, 0)).unwrap(), "compute_90a");
        assert!(module_arch("lab_gemm_tc_wgmma_sm90a", (8, 0)).unwrap_err().to_string().contains("Hopper"));
        assert_eq!(module_arch("gemm_tc", (8, 0)).unwrap(), "compute_80");
    }
}
