//! Compiles kernels/*.cu to PTX when nvcc is available (NVCC, CUDA_HOME/bin or PATH), into
//! OUT_DIR, for the CUDA backend to embed. No nvcc is not an error: the CPU build needs none,
//! and the runtime can compile the same sources with NVRTC. A kernel that fails to compile is a
//! build error.

use std::path::{Path, PathBuf};
use std::process::Command;

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NVCC") {
        return Some(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let p = Path::new(&home).join("bin/nvcc");
        if p.exists() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("nvcc")).find(|p| p.exists()))
}

/// The engine-trained default model (tools/train_default_model.sh) is embedded in the binary when
/// the file is there; a checkout without it builds a binary whose `sample` asks for --model.
const DEFAULT_MODEL: &str = "weights/mnist_class_ldm.safetensors";

fn main() {
    println!("cargo:rustc-check-cfg=cfg(ldm_default_model)");
    println!("cargo:rerun-if-changed={DEFAULT_MODEL}");
    if Path::new(DEFAULT_MODEL).is_file() {
        println!("cargo:rustc-cfg=ldm_default_model");
    }
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    let kernels: Vec<PathBuf> = std::fs::read_dir("kernels")
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "cu")).collect())
        .unwrap_or_default();
    if kernels.is_empty() {
        return;
    }
    let Some(nvcc) = find_nvcc() else {
        println!("cargo:warning=nvcc not found: CUDA kernels will be compiled at run time with NVRTC");
        return;
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for cu in kernels {
        let ptx = out.join(cu.file_stem().unwrap()).with_extension("ptx");
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-arch=compute_80", "-I", "kernels", "-o"])
            .arg(&ptx)
            .arg(&cu)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
        assert!(status.success(), "nvcc failed on {}", cu.display());
    }
    println!("cargo:rustc-cfg=ldm_ptx");
}
