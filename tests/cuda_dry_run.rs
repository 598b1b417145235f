//! The CUDA path without a GPU (LDM_CUDA_DRY_RUN, backend/cuda/dry_run.rs): sampling and both
//! trainers run their whole CUDA host side — kernel choice, layouts, allocations — and every launch
//! is checked against its kernel's PTX signature in this build. The SD1.5-size run also guards what
//! issue 10 measures on the H100: the allocator's peak (the dry run reproduced the H100's 4108 MiB
//! and every per-kernel launch count of benches/results/gpu-2026-11-24-4-e2e.md at that commit;
//! benches/results/dry-run-2026-11-25.md).

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ldm-engine");

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ldm-dry-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `ldm-engine ARGS` in a dry run imitating `gpu`, with extra environment: (exit code, stdout, stderr).
fn dry(gpu: &str, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).env("LDM_CUDA_DRY_RUN", gpu).envs(env.iter().copied()).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// The report's total launch count ("CUDA dry run (…): N kernel launches, …").
fn launches(stdout: &str) -> u64 {
    let line = stdout.lines().find(|l| l.starts_with("CUDA dry run")).unwrap_or_else(|| panic!("no dry-run report in:\n{stdout}"));
    line.split("): ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

/// A kernel's launches in the report's table (0 when absent).
fn launches_of(stdout: &str, kernel: &str) -> u64 {
    let row = format!("| {kernel} | ");
    stdout.lines().find_map(|l| l.strip_prefix(&row)).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn value(stdout: &str, key: &str) -> f64 {
    let at = stdout.find(key).unwrap_or_else(|| panic!("{key} missing from:\n{stdout}")) + key.len();
    stdout[at..].split(|c: char| c.is_whitespace()).next().unwrap().parse().unwrap()
}

/// Whether this build embeds nvcc's PTX (CI's does): only then are signatures checked.
fn signatures_checked(stdout: &str) -> bool {
    stdout.contains("signatures checked against this build's PTX")
}

#[test]
fn tiny_stable_diffusion_samples_dry_in_every_dtype_with_and_without_a_graph() {
    let dir = tmpdir("sd");
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_sd");
    for dtype in ["f32", "f16", "bf16"] {
        for graph in ["0", "1"] {
            let out = dir.join(format!("{dtype}-{graph}.png"));
            let args = ["sample", "--model", model, "--prompt", "a red cube", "--device", "cuda", "--dtype", dtype, "--sampler", "ddim", "--steps", "3"];
            let (code, stdout, stderr) = dry("1", &[("LDM_CUDA_GRAPH", graph)], &[&args[..], &["--width", "64", "--height", "64", "--timings", "--out", out.to_str().unwrap()]].concat());
            assert_eq!(code, 0, "{dtype}, graph {graph}: {stderr}");
            assert!(launches(&stdout) > 50, "{stdout}");
            assert!(value(&stdout, "peak_gpu_memory_mib=") > 0.0, "{stdout}");
            // the first UNet call runs eagerly, the second records the graph: two replays
            assert_eq!(stdout.contains("CUDA graph replays: 2"), graph == "1", "{stdout}");
            assert!(out.is_file(), "the (black) image is written");
        }
    }
    // where a kernel's launches come from, by call path (line tables are in every profile)
    let out = dir.join("traced.png");
    let args = ["sample", "--model", model, "--prompt", "a red cube", "--device", "cuda", "--dtype", "f16", "--steps", "1", "--width", "64", "--height", "64"];
    let (code, stdout, stderr) = dry("1", &[("LDM_CUDA_DRY_RUN_TRACE", "geglu_f16")], &[&args[..], &["--out", out.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{stderr}");
    let paths = stdout.split("launches of geglu_f16 by call path").nth(1).unwrap_or_else(|| panic!("{stdout}"));
    assert!(paths.contains(" × ") && paths.contains("(models/unet_blocks.rs"), "{paths}");
}

#[test]
fn both_trainers_run_their_backward_kernels_dry() {
    let dir = tmpdir("train");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mnist_tiny.safetensors"), data.join("mnist.safetensors")).unwrap();
    let write = |name: &str, v: serde_json::Value| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    // the discriminator from step 2 on, so its losses and updates run too
    let ae_cfg = write("ae.json", serde_json::json!({
        "model": {"in_channels": 1, "ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 2, "embed_dim": 2, "groups": 8},
        "loss": {"disc_start": 2, "kl_weight": 1e-6, "perceptual_weight": 0.0}, "disc": {"ndf": 8, "n_layers": 2},
        "train": {"lr": 1e-3, "batch_size": 4, "image_size": 16, "steps": 3, "save_every": 2, "image_every": 5, "seed": 3}
    }));
    let ldm_cfg = write("ldm.json", serde_json::json!({
        "unet": {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "num_head_channels": 8, "groups": 8},
        "cond": {"kind": "class", "n_classes": 10, "embed_dim": 8, "drop_prob": 0.2},
        "train": {"lr": 1e-3, "batch_size": 4, "steps": 2, "save_every": 2, "image_every": 1000, "ema_decay": 0.9, "seed": 5}
    }));
    let (d, ae) = (data.to_str().unwrap(), dir.join("ae"));
    let common = ["--device", "cuda", "--data", "mnist", "--data-root", d];
    let (code, stdout, stderr) = dry("a100", &[], &[&["train", "autoencoder", "--config", ae_cfg.to_str().unwrap(), "--out", ae.to_str().unwrap()][..], &common].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("done at step 3") && launches(&stdout) > 100, "{stdout}");
    if signatures_checked(&stdout) {
        assert!(launches_of(&stdout, "adamw_f32_grad_f32") > 0, "the optimiser runs on the device: {stdout}");
    }
    let ckpt = ae.join("checkpoint.safetensors");
    let ldm = dir.join("ldm");
    let args = ["train", "ldm", "--config", ldm_cfg.to_str().unwrap(), "--autoencoder", ckpt.to_str().unwrap(), "--out", ldm.to_str().unwrap()];
    let (code, stdout, stderr) = dry("h100", &[], &[&args[..], &common].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("done at step 2") && launches(&stdout) > 100, "{stdout}");
}

#[test]
fn stable_diffusion_1_5_at_512_fits_under_pytorchs_peak_on_an_h100() {
    // SD1.5's real architecture with random weights, 512x512, CFG (UNet batch 2), f16, warm run:
    // the work gpu-bundle/e2e.sh times. PyTorch 2.11 peaked at 2557 MiB (max_memory_allocated,
    // benches/results/gpu-2026-11-24-4-e2e.md); the engine's requested bytes must stay below.
    let dir = tmpdir("sd15");
    let out = dir.join("x.png");
    let args = ["sample", "--random-weights", "--preset", "sd_v1", "--prompt", "a photograph of an astronaut riding a horse", "--device", "cuda", "--dtype", "f16"];
    let one_step = |steps: &str| {
        let (code, stdout, stderr) = dry("1", &[], &[&args[..], &["--sampler", "ddim", "--steps", steps, "--repeat", "2", "--timings", "--out", out.to_str().unwrap()]].concat());
        assert_eq!(code, 0, "{stderr}");
        stdout
    };
    let (one, two) = (one_step("1"), one_step("2"));
    let peak = value(&two, "peak_gpu_memory_mib=");
    assert!(peak < 2557.0, "the engine's peak {peak} MiB is over PyTorch's 2557 MiB");
    assert!(peak > 1900.0, "{peak} MiB is less than SD1.5's f16 weights");
    // what one UNet step (batch 2) launches: 720 when this test was written, 660 since the
    // split-K conv's workspace stays zeroed (no memset per split conv), 612 since attention
    // projects q, k and v (self) or k and v (cross) in one product, 570 since the time embedding
    // gets one SiLU and one stacked projection for all 22 ResBlocks, 510 since a split-K conv's
    // last block finishes it, 488 since each ResBlock's norm adds the time embedding itself (no
    // h + emb written), 472 since the 16 cross-attentions' keys and values of the (fixed) text
    // context are projected at the first step only, 457 since 15 of the 16 feed-forward gates
    // run in their product's epilogue (gemm_tc_wide_geglu; the 8×8 level's product is too small
    // for the 128×128 tile), 443 since the 14 ResBlocks with a 1×1 skip conv get x channels-last
    // from their first norm's launch instead of a transpose; more means a fusion was lost
    let per_step = launches(&two) - launches(&one);
    assert!((300..=443).contains(&per_step), "{per_step} launches per UNet step");
    // no memset per split conv (its workspace stays zeroed); the split convs finish in their own
    // last blocks (the separate finishing kernel no longer exists)
    assert_eq!(launches_of(&two, "fill_f32"), 0, "fill_f32: {two}");
    assert!(launches_of(&two, "conv_tc_fwd_nhwc_split_f16") >= 60, "split convs: {two}");
    // the VAE's 512-wide attention head stays in f16 on tensor cores (no widened f32 products)
    for widened in ["gemm_f32", "softmax_f32"] {
        assert_eq!(launches_of(&two, widened), 0, "{widened}: {two}");
    }
    assert_eq!(launches_of(&two, "softmax_f16"), 1, "the VAE attention of the counted run: {two}");
}

#[test]
fn bad_dry_run_and_random_weight_requests_are_one_line_errors() {
    let cases: [(&str, &[&str], &str); 4] = [
        ("v100", &["sample", "--device", "cuda", "--random-weights", "--preset", "sd_v1"], "LDM_CUDA_DRY_RUN=\"v100\" names no GPU"),
        ("1", &["sample", "--random-weights"], "--random-weights needs --preset"),
        ("1", &["sample", "--random-weights", "--preset", "sd_v1", "--model", "x.safetensors"], "drop --model or --random-weights"),
        ("1", &["sample", "--device", "cuda:1", "--random-weights", "--preset", "sd_v1"], "one device, cuda:0"),
    ];
    let out = tmpdir("bad").join("x.png");
    for (gpu, args, want) in cases {
        let (code, stdout, stderr) = dry(gpu, &[], &[args, &["--out", out.to_str().unwrap()]].concat());
        assert_ne!(code, 0, "{args:?}: {stdout}");
        assert!(stderr.contains(want) && stderr.trim().lines().count() == 1, "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} wrote an image");
    }
    // a kernel switch set to a value nothing reads would time the shipped kernels under its name
    let args = ["sample", "--device", "cuda", "--random-weights", "--preset", "sd_v1", "--prompt", "a", "--out", out.to_str().unwrap()];
    let lab = if cfg!(feature = "kernel-lab") { "lab-v9" } else { "lab-v5" };
    for (var, value, want) in [("LDM_CUDA_GEMM", "tile32", "LDM_CUDA_GEMM=tile32 is not a switch value"), ("LDM_CUDA_CONV", lab, "LDM_CUDA_CONV=lab-v")] {
        let (code, _, stderr) = dry("1", &[(var, value)], &args);
        assert!(code != 0 && stderr.contains(want) && stderr.trim().lines().count() == 1, "{var}={value}: {stderr}");
    }
}
