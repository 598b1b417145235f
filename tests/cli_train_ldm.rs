//! `ldm-engine train ldm` end to end on the 20-digit MNIST fixture, over a tiny autoencoder the
//! test trains first: a killed run resumes to exactly the weights of an uninterrupted one; the
//! exported model samples with `ldm-engine sample --model`; a diverging run stops with the step
//! and keeps its last good checkpoint; config mistakes are one line and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ldm_engine::io::safetensors::SafeTensorsFile;

const BIN: &str = env!("CARGO_BIN_EXE_ldm-engine");

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ldm-train-ldm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// The data root (the MNIST fixture) and a 2-step autoencoder checkpoint.
fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mnist_tiny.safetensors"), data.join("mnist.safetensors")).unwrap();
    let ae_cfg = serde_json::json!({
        "model": {"in_channels": 1, "ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 2, "embed_dim": 2, "groups": 8},
        "loss": {"disc_start": 100, "perceptual_weight": 0.0}, "disc": {"ndf": 8, "n_layers": 2},
        "train": {"lr": 1e-3, "batch_size": 4, "image_size": 16, "steps": 2, "seed": 1}
    });
    let cfg = dir.join("ae.json");
    std::fs::write(&cfg, ae_cfg.to_string()).unwrap();
    let ae = dir.join("ae");
    let (code, _, err) = run(&["train", "autoencoder", "--config", cfg.to_str().unwrap(), "--data", "mnist", "--data-root", data.to_str().unwrap(), "--out", ae.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    (data, ae.join("checkpoint.safetensors"))
}

fn ldm_config(dir: &Path, steps: u64, lr: f64, extra_train: serde_json::Value) -> PathBuf {
    ldm_config_with(dir, steps, lr, extra_train, serde_json::json!({"kind": "class", "n_classes": 10, "embed_dim": 8, "drop_prob": 0.2}))
}

fn ldm_config_with(dir: &Path, steps: u64, lr: f64, extra_train: serde_json::Value, cond: serde_json::Value) -> PathBuf {
    let mut cfg = serde_json::json!({
        "unet": {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "num_head_channels": 8, "groups": 8},
        "cond": cond,
        "train": {"lr": lr, "batch_size": 4, "steps": steps, "save_every": 2, "image_every": 1000, "ema_decay": 0.9, "seed": 5}
    });
    for (k, v) in extra_train.as_object().unwrap() {
        cfg["train"][k] = v.clone();
    }
    let path = dir.join(format!("ldm-{steps}-{lr}-{}.json", cfg["cond"]["kind"].as_str().unwrap_or("none")));
    std::fs::write(&path, cfg.to_string()).unwrap();
    path
}

fn csv_rows(run: &Path) -> usize {
    std::fs::read_to_string(run.join("losses.csv")).map(|t| t.lines().count().saturating_sub(1)).unwrap_or(0)
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let f = SafeTensorsFile::open(path).unwrap();
    f.entries().iter().map(|e| (e.name.clone(), f.get(&e.name).unwrap().to_dtype(ldm_engine::DType::F32).unwrap().to_vec::<f32>().unwrap())).collect()
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_weights() {
    let dir = tmpdir("kill");
    let (data, ae) = setup(&dir);
    let cfg = ldm_config(&dir, 14, 1e-3, serde_json::json!({}));
    let (d, c, a) = (data.to_str().unwrap(), cfg.to_str().unwrap(), ae.to_str().unwrap());
    let whole = dir.join("whole");
    let (code, out, err) = run(&["train", "ldm", "--config", c, "--autoencoder", a, "--data", "mnist", "--data-root", d, "--out", whole.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done at step 14"), "{out}");
    for f in ["checkpoint.safetensors", "model.safetensors", "latents.safetensors", "losses.csv", "losses.png", "samples_000014.png", "config.json"] {
        assert!(whole.join(f).is_file(), "{f} missing");
    }

    let split = dir.join("split");
    let s = split.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args(["train", "ldm", "--config", c, "--autoencoder", a, "--data", "mnist", "--data-root", d, "--out", s])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while csv_rows(&split) < 5 {
        assert!(t0.elapsed() < Duration::from_secs(120), "training made no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let ck = SafeTensorsFile::open(split.join("checkpoint.safetensors")).expect("the checkpoint survives a kill -9");
    let saved: u64 = ck.metadata()["step"].parse().unwrap();
    assert!((2..14).contains(&saved), "checkpoint at step {saved}");
    let (code, out, err) = run(&["train", "ldm", "--data", "mnist", "--data-root", d, "--out", s, "--resume"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done at step 14"), "{out}");
    assert_eq!(std::fs::read_to_string(split.join("losses.csv")).unwrap(), std::fs::read_to_string(whole.join("losses.csv")).unwrap(), "same losses");
    let (a, b) = (tensors(&split.join("model.safetensors")), tensors(&whole.join("model.safetensors")));
    assert_eq!(a.len(), b.len());
    let differ: Vec<String> = a.iter().zip(&b).filter(|(x, y)| x != y).map(|(x, y)| {
        let d = x.1.iter().zip(&y.1).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        format!("{} (max diff {d:e})", x.0)
    }).collect();
    assert!(differ.is_empty(), "the resumed run's exported model differs from the uninterrupted one in {} tensors: {}", differ.len(), differ.join(", "));

    // the exported model samples (every class in a row without --class, one digit with it)
    let png = dir.join("grid.png");
    let (code, out, err) = run(&["sample", "--model", whole.join("model.safetensors").to_str().unwrap(), "--steps", "3", "--out", png.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("10 images, 10x1 grid"), "{out}");
    let (code, _, err) = run(&["sample", "--model", whole.join("model.safetensors").to_str().unwrap(), "--class", "10", "--out", png.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.trim().ends_with("--class 10: the engine-trained model has classes 0..9"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_diverging_run_names_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = tmpdir("nan");
    let (data, ae) = setup(&dir);
    // Adam moves every weight by about lr per step whatever the gradient: 1e30 overflows f32
    let cfg = ldm_config(&dir, 50, 1e30, serde_json::json!({"save_every": 1}));
    let run_dir = dir.join("run");
    let (code, _, err) = run(&["train", "ldm", "--config", cfg.to_str().unwrap(), "--autoencoder", ae.to_str().unwrap(), "--data", "mnist", "--data-root", data.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    assert_ne!(code, 0);
    let line = err.trim();
    assert!(line.contains("(diverged); the last checkpoint is kept") && line.contains("step "), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    let ck = SafeTensorsFile::open(run_dir.join("checkpoint.safetensors")).unwrap();
    let step: u64 = ck.metadata()["step"].parse().unwrap();
    let ldm = ck.entries().iter().filter(|e| e.name.starts_with("ldm.")).map(|e| ck.get(&e.name).unwrap().to_vec::<f32>().unwrap()).collect::<Vec<_>>();
    assert!(ldm.iter().flatten().all(|v| v.is_finite()), "the kept checkpoint (step {step}) holds finite weights");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_mistakes_are_one_line_errors() {
    let dir = tmpdir("bad");
    let (data, ae) = setup(&dir);
    let (d, a) = (data.to_str().unwrap(), ae.to_str().unwrap());
    let out = dir.join("run");
    let o = out.to_str().unwrap();
    let write = |name: &str, v: serde_json::Value| {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    let good = ldm_config(&dir, 2, 1e-3, serde_json::json!({}));
    let base: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&good).unwrap()).unwrap();
    let mut typo = base.clone();
    typo["train"]["lrr"] = serde_json::json!(1e-3);
    let mut heads = base.clone();
    heads["unet"]["num_head_channels"] = serde_json::json!(3);
    let mut groups = base.clone();
    groups["unet"]["groups"] = serde_json::json!(5);
    let mut level = base.clone();
    level["unet"]["attention_levels"] = serde_json::json!([4]);
    let mut kind = base.clone();
    kind["cond"]["kind"] = serde_json::json!("outpaint");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![write("typo.json", typo).display().to_string()], "unknown key \"train.lrr\""),
        (vec![write("heads.json", heads).display().to_string()], "do not split into 5 attention heads"),
        (vec![write("groups.json", groups).display().to_string()], "do not split into 5 groups"),
        (vec![write("level.json", level).display().to_string()], "unet.attention_levels: level 4 does not exist"),
        (vec![write("kind.json", kind).display().to_string()], "\"cond.kind\" \"outpaint\" is not one of"),
    ];
    for (cfg, want) in cases {
        let (code, _, err) = run(&["train", "ldm", "--config", &cfg[0], "--autoencoder", a, "--data", "mnist", "--data-root", d, "--out", o]);
        assert_ne!(code, 0, "{want}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "want {want:?}, got {err}");
    }
    let g = good.to_str().unwrap();
    for (args, want) in [
        (vec!["--config", g, "--data", "mnist", "--data-root", d, "--out", o], "--autoencoder (a `train autoencoder` checkpoint) is required"),
        (vec!["--config", g, "--autoencoder", g, "--data", "mnist", "--data-root", d, "--out", o], "safetensors"),
        (vec!["--config", g, "--autoencoder", a, "--data", "fashion-mnist", "--data-root", d, "--out", o], "not found; run `python3 tools/fetch_datasets.py`"),
        (vec!["--config", g, "--autoencoder", a, "--data", "mnist", "--data-root", d, "--out", o, "--export-dtype", "f64"], "--export-dtype f64: expected f32 or f16"),
    ] {
        let (code, _, err) = run(&[&["train", "ldm"][..], &args].concat());
        assert_ne!(code, 0, "{want}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "want {want:?}, got {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Super-resolution by concatenation: the UNet takes the latents plus the low-res image (the
/// training image's f×f area mean); the exported model upsamples a PNG f× with --init-image.
#[test]
fn a_super_resolution_model_trains_and_upsamples() {
    let dir = tmpdir("sr");
    let (data, ae) = setup(&dir);
    let cfg = ldm_config_with(&dir, 4, 1e-3, serde_json::json!({}), serde_json::json!({"kind": "lowres"}));
    let run_dir = dir.join("run");
    let (code, out, err) = run(&["train", "ldm", "--config", cfg.to_str().unwrap(), "--autoencoder", ae.to_str().unwrap(), "--data", "mnist", "--data-root", data.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done at step 4"), "{out}");
    let ck = SafeTensorsFile::open(run_dir.join("model.safetensors")).unwrap();
    // latents (2 channels) + the grey low-res image (1 channel)
    assert_eq!(ck.entry("model.diffusion_model.input_blocks.0.0.weight").unwrap().shape, [8, 3, 3, 3]);
    let cache = SafeTensorsFile::open(run_dir.join("latents.safetensors")).unwrap();
    assert_eq!(cache.entry("concat").unwrap().shape, [20, 1, 8, 8]);

    let low = dir.join("low.png");
    let px: Vec<u8> = (0..8 * 8).flat_map(|p| [if (p / 8 + p % 8) % 3 == 0 { 255 } else { 0 }; 3]).collect();
    ldm_engine::io::image::save_png(&low, &px, 8, 8, &[]).unwrap();
    let png = dir.join("up.png");
    let model = run_dir.join("model.safetensors");
    let (code, _, err) = run(&["sample", "--model", model.to_str().unwrap(), "--init-image", low.to_str().unwrap(), "--steps", "3", "--out", png.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (_, w, h, _) = ldm_engine::io::image::load_png(&png).unwrap();
    assert_eq!((w, h), (16, 16), "the first stage's factor 2 upsamples 8 → 16");
    let (code, _, err) = run(&["sample", "--model", model.to_str().unwrap(), "--steps", "3", "--out", png.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("needs --init-image"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Inpainting by concatenation: the masked image's latents and the mask join the UNet's input
/// (2 latent + 2 masked-latent + 1 mask channels), a new mask every step (so no latent cache),
/// bf16 mixed precision, the sample grid shows masked inputs over inpaintings, and the exported
/// model inpaints with `sample --init-image --mask`, keeping the unmasked pixels.
#[test]
fn an_inpainting_model_trains_on_fresh_masks_and_inpaints() {
    let dir = tmpdir("inpaint");
    let (data, ae) = setup(&dir);
    let extra = serde_json::json!({"cache_latents": false, "precision": "bf16", "image_every": 3});
    let cfg = ldm_config_with(&dir, 3, 1e-3, extra, serde_json::json!({"kind": "inpaint"}));
    let run_dir = dir.join("run");
    let (code, out, err) = run(&["train", "ldm", "--config", cfg.to_str().unwrap(), "--autoencoder", ae.to_str().unwrap(), "--data", "mnist", "--data-root", data.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done at step 3"), "{out}");
    assert!(!run_dir.join("latents.safetensors").exists(), "masks change every step: nothing is cached");
    assert!(run_dir.join("samples_000003.png").exists());
    let model = run_dir.join("model.safetensors");
    let ck = SafeTensorsFile::open(&model).unwrap();
    assert_eq!(ck.entry("model.diffusion_model.input_blocks.0.0.weight").unwrap().shape, [8, 5, 3, 3]);

    // A 16×16 digit-like image with its left half masked: the right half comes back unchanged.
    let img = dir.join("img.png");
    let px: Vec<u8> = (0..16 * 16).flat_map(|p| [if (p / 16 + p % 16) % 4 == 0 { 255 } else { 0 }; 3]).collect();
    ldm_engine::io::image::save_png(&img, &px, 16, 16, &[]).unwrap();
    let mask = dir.join("mask.png");
    let mpx: Vec<u8> = (0..16 * 16).flat_map(|p| [if p % 16 < 8 { 255 } else { 0 }; 3]).collect();
    ldm_engine::io::image::save_png(&mask, &mpx, 16, 16, &[]).unwrap();
    let png = dir.join("filled.png");
    let (code, _, err) = run(&["sample", "--model", model.to_str().unwrap(), "--init-image", img.to_str().unwrap(), "--mask", mask.to_str().unwrap(), "--steps", "3", "--out", png.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (got, w, h, _) = ldm_engine::io::image::load_png(&png).unwrap();
    assert_eq!((w, h), (16, 16));
    let channels = got.len() / (16 * 16);
    for y in 0..16 {
        for x in 8..16 {
            let want = px[(y * 16 + x) * 3];
            assert!(got[(y * 16 + x) * channels].abs_diff(want) <= 1, "kept pixel ({x}, {y}): {} vs {want}", got[(y * 16 + x) * channels]);
        }
    }
    // Config mistakes: a latent cache with inpainting.
    let bad = ldm_config_with(&dir, 3, 1e-3, serde_json::json!({"cache_latents": true}), serde_json::json!({"kind": "inpaint"}));
    let (code, _, err) = run(&["train", "ldm", "--config", bad.to_str().unwrap(), "--autoencoder", ae.to_str().unwrap(), "--data", "mnist", "--data-root", data.to_str().unwrap(), "--out", dir.join("run2").to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("set train.cache_latents to false") && err.lines().count() == 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Text by cross-attention with the transformer trained jointly: the built-in datasets caption
/// their images ("a handwritten seven"), the cache keeps the WordPiece ids, and the exported model
/// samples a --prompt with the built-in vocabulary.
#[test]
fn a_text_model_trains_its_transformer_and_samples_a_prompt() {
    let dir = tmpdir("text");
    let (data, ae) = setup(&dir);
    let cond = serde_json::json!({"kind": "text", "d_model": 16, "layers": 1, "heads": 2, "max_len": 6, "drop_prob": 0.3});
    let cfg = ldm_config_with(&dir, 3, 1e-3, serde_json::json!({}), cond);
    let run_dir = dir.join("run");
    let (code, out, err) = run(&["train", "ldm", "--config", cfg.to_str().unwrap(), "--autoencoder", ae.to_str().unwrap(), "--data", "mnist", "--data-root", data.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done at step 3"), "{out}");
    let cache = SafeTensorsFile::open(run_dir.join("latents.safetensors")).unwrap();
    assert_eq!(cache.entry("tokens").unwrap().shape, [20, 6]);
    let model = SafeTensorsFile::open(run_dir.join("model.safetensors")).unwrap();
    assert_eq!(model.entry("cond_stage_model.transformer.token_emb.weight").unwrap().shape, [30522, 16]);
    let ck = SafeTensorsFile::open(run_dir.join("checkpoint.safetensors")).unwrap();
    let moved = ck.get("optim.ldm.cond_stage_model.transformer.attn_layers.layers.0.1.to_q.weight.exp_avg_sq").unwrap().to_vec::<f32>().unwrap();
    assert!(moved.iter().any(|&v| v > 0.0), "the text transformer is trained with the UNet");
    let png = dir.join("seven.png");
    let (code, _, err) = run(&["sample", "--model", run_dir.join("model.safetensors").to_str().unwrap(), "--prompt", "a handwritten seven", "--steps", "3", "--out", png.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(png.is_file());
    let (code, _, err) = run(&["sample", "--model", run_dir.join("model.safetensors").to_str().unwrap(), "--class", "7", "--out", png.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("--class: the engine-trained model takes --prompt"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Unconditional models (cond kind none): no context, no guidance; the exported model samples
/// with no conditioning flags and refuses --class.
#[test]
fn an_unconditional_model_trains_and_samples() {
    let dir = tmpdir("uncond");
    let (data, ae) = setup(&dir);
    let cfg = ldm_config_with(&dir, 2, 1e-3, serde_json::json!({"cache_latents": false}), serde_json::json!({"kind": "none"}));
    let run_dir = dir.join("run");
    let (code, out, err) = run(&["train", "ldm", "--config", cfg.to_str().unwrap(), "--autoencoder", ae.to_str().unwrap(), "--data", "mnist", "--data-root", data.to_str().unwrap(), "--out", run_dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done at step 2"), "{out}");
    assert!(!run_dir.join("latents.safetensors").exists(), "cache_latents false encodes every batch instead");
    let model = run_dir.join("model.safetensors");
    let png = dir.join("u.png");
    let (code, _, err) = run(&["sample", "--model", model.to_str().unwrap(), "--steps", "2", "--batch", "2", "--grid", "--out", png.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["sample", "--model", model.to_str().unwrap(), "--class", "1", "--out", png.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("--class: the engine-trained model takes no conditioning flags"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
