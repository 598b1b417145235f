//! The tensor-core kernels (kernels/conv_tc.cu, gemm_tc.cu, attention.cu) compiled as host C++ with the
//! CPU emulator of tools/kernel_emu/ldm_emu.h and run against f64 references. This checks their
//! tiling, fragment layouts, bounds and softmax on any machine; a GPU run (tests/device_ops.rs)
//! checks the same kernels against the CPU twin on hardware. Skips, saying why, where no C++20
//! compiler is found (CXX, else g++).

use std::path::Path;
use std::process::Command;

fn run_emulated(test_source: &str) {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "g++".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let emu = root.join("tools/kernel_emu");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(test_source.trim_end_matches(".cpp"));
    let compiled = Command::new(&cxx)
        .args(["-std=c++20", "-O1", "-fno-strict-aliasing", "-DLDM_KERNEL_EMU", "-Wno-unknown-pragmas", "-pthread", "-I"])
        .arg(&emu)
        .arg("-o")
        .arg(&out)
        .arg(emu.join(test_source))
        .output();
    let compiled = match compiled {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: no C++ compiler ({cxx}: {e}); the kernels' emulation needs one");
            return;
        }
    };
    assert!(compiled.status.success(), "{cxx} failed on {test_source}:\n{}", String::from_utf8_lossy(&compiled.stderr));
    let ran = Command::new(&out).output().expect("run the emulated kernel test");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    println!("{stdout}");
    assert!(ran.status.success(), "{test_source} failed:\n{stdout}{}", String::from_utf8_lossy(&ran.stderr));
}

#[test]
fn tensor_core_conv_forward_and_backward_match_an_f64_reference_in_emulation() {
    run_emulated("conv_tc_test.cpp");
}

#[test]
fn tensor_core_gemm_matches_an_f64_reference_in_emulation() {
    run_emulated("gemm_tc_test.cpp");
}

#[test]
fn flash_attention_forward_matches_an_f64_reference_in_emulation() {
    run_emulated("attention_test.cpp");
}

#[test]
fn fused_geglu_matches_an_f64_reference_in_emulation() {
    run_emulated("geglu_test.cpp");
}

#[test]
fn elementwise_packed_and_strided_paths_match_the_per_element_formula_in_emulation() {
    run_emulated("elementwise_test.cpp");
}

#[test]
fn group_norm_forward_matches_an_f64_reference_and_its_layouts_agree_to_the_bit_in_emulation() {
    run_emulated("group_norm_test.cpp");
}
