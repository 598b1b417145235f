//! Compiles kernels/*.cu (and, with the `kernel-lab` feature, tools/kernel_lab/*.cu) to PTX when
//! nvcc is available (NVCC, CUDA_HOME/bin or PATH), into OUT_DIR, for the CUDA backend to embed. No nvcc is not an error: the CPU build needs none,
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
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("kernels")
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "cu")).collect())
        .unwrap_or_default();
    kernels.sort();
    // `--features kernel-lab`: the kernel lab's variants too, as modules named lab_<file stem>
    // (benches/tensor_core.rs times them next to the shipped kernels on a GPU).
    let mut lab: Vec<PathBuf> = Vec::new();
    if std::env::var_os("CARGO_FEATURE_KERNEL_LAB").is_some() {
        println!("cargo:rerun-if-changed=tools/kernel_lab");
        lab = std::fs::read_dir("tools/kernel_lab")
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "cu")).collect())
            .unwrap_or_default();
        lab.sort();
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let nvcc = find_nvcc();
    if nvcc.is_none() && !kernels.is_empty() {
        println!("cargo:warning=nvcc not found: CUDA kernels will be compiled at run time with NVRTC");
    }
    let (mut ptx_entries, mut src_entries) = (String::new(), String::new());
    for cu in kernels.iter().chain(&lab) {
        let file_stem = cu.file_stem().unwrap().to_str().unwrap().to_string();
        let stem = if lab.contains(cu) { format!("lab_{file_stem}") } else { file_stem };
        // NVRTC gets one self-contained source: each kernels/*.cuh pasted where it is first included.
        let src = std::fs::read_to_string(cu).unwrap_or_else(|e| panic!("cannot read {}: {e}", cu.display()));
        let flat = out.join(format!("{stem}.nvrtc.cu"));
        let src = inline_headers(&src, &mut Vec::new());
        std::fs::write(&flat, src).unwrap();
        src_entries += &format!("    ({stem:?}, include_str!({:?})),\n", flat.display().to_string());
        if let Some(nvcc) = &nvcc {
            let ptx = out.join(format!("{stem}.ptx"));
            // compute_80 PTX: the driver JITs it for sm_80 (A100) and sm_90 (H100); CUDA 13.0's
            // NVVM emits PTX ISA 9.0, which driver 580 accepts. A file named *_sm90a.cu uses
            // Hopper-only instructions (wgmma): compute_90a PTX, which only an sm_90 device loads.
            let arch = if stem.ends_with("_sm90a") { "-arch=compute_90a" } else { "-arch=compute_80" };
            let output = Command::new(nvcc)
                .args(["--ptx", "-O3", arch, "-I", "kernels", "-o"])
                .arg(&ptx)
                .arg(cu)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
            if !output.status.success() {
                panic!("nvcc failed on {}:\n{}", cu.display(), String::from_utf8_lossy(&output.stderr));
            }
            ptx_entries += &format!("    ({stem:?}, include_str!({:?})),\n", ptx.display().to_string());
        }
    }
    let generated = format!(
        "/// (module, PTX) compiled by nvcc at build time; empty when the build had no nvcc.\n\
         pub const BUILD_PTX: &[(&str, &str)] = &[\n{ptx_entries}];\n\
         /// (module, self-contained CUDA source) for NVRTC at run time.\n\
         pub const SOURCES: &[(&str, &str)] = &[\n{src_entries}];\n"
    );
    std::fs::write(out.join("kernels.rs"), generated).unwrap();
}

/// `src` with every `#include "….cuh"` line replaced by that header from kernels/ or tools/kernel_lab/ (its own includes
/// inlined the same way), each header once: NVRTC has no include path to the source tree.
fn inline_headers(src: &str, done: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let header = line.trim().strip_prefix("#include \"").and_then(|r| r.strip_suffix('"')).filter(|h| h.ends_with(".cuh"));
        match header {
            Some(h) => {
                let name = h.rsplit('/').next().unwrap().to_string();
                if !done.contains(&name) {
                    done.push(name.clone());
                    // the shipped headers, or (kernel lab builds) the lab's own
                    let path = ["kernels", "tools/kernel_lab"].iter().map(|d| format!("{d}/{name}")).find(|p| std::path::Path::new(p).is_file());
                    let path = path.unwrap_or_else(|| panic!("cannot find {name} in kernels/ or tools/kernel_lab/"));
                    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
                    out += &inline_headers(&text.replace("#pragma once", ""), done);
                }
            }
            None => {
                out += line;
                out.push('\n');
            }
        }
    }
    out
}
