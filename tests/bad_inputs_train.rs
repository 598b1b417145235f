//! The bad-input table's training rows (docs/bad_inputs.md: train configs, training data, the
//! device, train arguments), one test per row as in tests/bad_inputs.rs, whose last test keeps the
//! table and both files in step. Harness: tests/common/refusal.rs.
mod common;

use common::refusal::*;

// ---- config: train autoencoder ------------------------------------------------------------

/// `train autoencoder` with this config on an (empty) image folder: the config is read first.
fn ae_refused(row: u32, t: &Tmp, cfg: &str, words: &[&str]) {
    std::fs::create_dir_all(t.path("images")).unwrap();
    refused(row, &["train", "autoencoder", "--config", cfg, "--data", &t.s("images"), "--out", &t.s("run")], words);
    assert!(!t.path("run").exists(), "row {row} created the run folder");
}

#[test]
fn r085_config_lr_nan() {
    let t = Tmp::new("r085");
    // JSON has no NaN: the nearest a config file gets is the bare word, which is not JSON
    let cfg = t.write("nan.json", r#"{"model": {}, "train": {"lr": NaN}}"#);
    ae_refused(85, &t, &cfg, &["nan.json: not JSON: expected value at line 1 column 31"]);
}

#[test]
fn r087_config_unknown_section() {
    let t = Tmp::new("r087");
    let cfg = ae_config(&t, |c| c["extra"] = serde_json::json!({}));
    ae_refused(87, &t, &cfg, &["config: invalid argument: unknown section \"extra\" (known: model, loss, disc, train)"]);
}

#[test]
fn r088_config_value_of_the_wrong_type() {
    let t = Tmp::new("r088");
    let cfg = ae_config(&t, |c| c["train"]["lr"] = "fast".into());
    ae_refused(88, &t, &cfg, &["config: invalid argument: \"train.lr\" must be a number"]);
}

#[test]
fn r089_config_lr_negative() {
    let t = Tmp::new("r089");
    let cfg = ae_config(&t, |c| c["train"]["lr"] = (-1).into());
    ae_refused(89, &t, &cfg, &["config: invalid argument: train.lr -1 must be a positive number"]);
}

#[test]
fn r090_config_impossible_image_size() {
    let t = Tmp::new("r090");
    let cfg = ae_config(&t, |c| c["train"]["image_size"] = 15.into());
    ae_refused(90, &t, &cfg, &["train: batch_size must be ≥ 1 and image_size a positive multiple of 2 (the model's downsampling)"]);
}

#[test]
fn r091_config_batch_size_zero() {
    let t = Tmp::new("r091");
    let cfg = ae_config(&t, |c| c["train"]["batch_size"] = 0.into());
    ae_refused(91, &t, &cfg, &["train: batch_size must be ≥ 1"]);
}

#[test]
fn r092_config_channels_not_a_multiple_of_groups() {
    let t = Tmp::new("r092");
    let cfg = ae_config(&t, |c| c["model"]["ch"] = 12.into());
    ae_refused(92, &t, &cfg, &["model: ch 12 must be a positive multiple of groups 8 and ch_mult non-empty"]);
}

#[test]
fn r093_config_file_missing() {
    let t = Tmp::new("r093");
    ae_refused(93, &t, "/no/such/config.json", &["/no/such/config.json: No such file or directory"]);
}

#[test]
fn r097_resume_from_a_truncated_checkpoint() {
    let t = Tmp::new("r097");
    let ck = ae_checkpoint(&t, "run/checkpoint.safetensors");
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::create_dir_all(t.path("images")).unwrap();
    refused(97, &["train", "autoencoder", "--data", &t.s("images"), "--out", &t.s("run"), "--resume"], &["checkpoint.safetensors: tensor data does not cover the file's data section (truncated or padded file)"]);
}

#[test]
fn r098_resume_from_a_file_that_is_not_a_training_checkpoint() {
    let t = Tmp::new("r098");
    std::fs::create_dir_all(t.path("run")).unwrap();
    std::fs::copy(builtin_weights(), t.path("run/checkpoint.safetensors")).unwrap();
    std::fs::create_dir_all(t.path("images")).unwrap();
    refused(98, &["train", "autoencoder", "--data", &t.s("images"), "--out", &t.s("run"), "--resume"], &["checkpoint.safetensors: not an ldm-engine training checkpoint (metadata format is Some(\"ldm-engine-model-1\"), expected \"ldm-engine-train-1\")"]);
}

#[test]
fn r099_out_already_holds_a_run() {
    let t = Tmp::new("r099");
    let cfg = ae_config(&t, |_| {});
    t.write("run/checkpoint.safetensors", "anything");
    std::fs::create_dir_all(t.path("images")).unwrap();
    refused(99, &["train", "autoencoder", "--config", &cfg, "--data", &t.s("images"), "--out", &t.s("run")], &["already holds a run: pass --resume to continue it, or choose another --out"]);
}

// ---- data ---------------------------------------------------------------------------------

fn data_refused(row: u32, t: &Tmp, data: &str, words: &[&str]) {
    let cfg = ae_config(t, |_| {});
    refused(row, &["train", "autoencoder", "--config", &cfg, "--data", data, "--out", &t.s("run")], words);
}

#[test]
fn r100_data_folder_missing() {
    let t = Tmp::new("r100");
    data_refused(100, &t, "/no/such/images", &["/no/such/images: no such folder"]);
}

#[test]
fn r101_data_folder_empty() {
    let t = Tmp::new("r101");
    std::fs::create_dir_all(t.path("images")).unwrap();
    data_refused(101, &t, &t.s("images"), &["images: no .png/.jpg/.jpeg images found (searched subfolders too; the folder is empty)"]);
}

#[test]
fn r102_data_folder_without_images() {
    let t = Tmp::new("r102");
    t.write("images/readme.txt", "hello");
    t.write("images/sub/labels.csv", "a,b");
    data_refused(102, &t, &t.s("images"), &["images: no .png/.jpg/.jpeg images found (searched subfolders too; 2 other files)"]);
}

/// Bad files are warned about, one `warning:` line each, then the run stops with one `error:`
/// line: the only row whose stderr has more than the error.
#[test]
fn r103_data_folder_of_only_unreadable_images() {
    let t = Tmp::new("r103");
    t.write("images/text.png", "not an image");
    t.write("images/empty.jpg", "");
    let whole = noise_png(&t, "whole.png", 64, 64);
    let bytes = std::fs::read(&whole).unwrap();
    t.write("images/cut.png", &bytes[..bytes.len() / 2]);
    let cfg = ae_config(&t, |_| {});
    let args = os(&["train", "autoencoder", "--config", &cfg, "--data", &t.s("images"), "--out", &t.s("run")]);
    let o = run(&args);
    let lines: Vec<&str> = o.stderr.lines().collect();
    let (last, warnings) = lines.split_last().expect("stderr");
    refusal_shape(103, &args, &o, last, &["images: none of the 3 image files could be decoded (see the warnings above)"]);
    assert_eq!(warnings.len(), 3, "row 103: one warning per bad file: {}", o.stderr);
    for name in ["text.png", "empty.jpg", "cut.png"] {
        assert_eq!(warnings.iter().filter(|w| w.starts_with("warning: skipping unreadable image ") && w.contains(name)).count(), 1, "row 103: {name}: {}", o.stderr);
    }
}

#[test]
fn r104_builtin_dataset_not_fetched() {
    let t = Tmp::new("r104");
    let cfg = ae_config(&t, |c| c["model"]["in_channels"] = 1.into());
    refused(104, &["train", "autoencoder", "--config", &cfg, "--data", "mnist", "--data-root", &t.s("nothing"), "--out", &t.s("run")], &["mnist.safetensors: not found; run `python3 tools/fetch_datasets.py`"]);
}

// ---- config: train ldm --------------------------------------------------------------------

fn ldm_config(t: &Tmp, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut c = serde_json::json!({
        "unet": {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "num_head_channels": 8, "groups": 8},
        "cond": {"kind": "class", "n_classes": 10, "embed_dim": 8, "drop_prob": 0.2},
        "train": {"lr": 1e-3, "batch_size": 4, "steps": 2, "seed": 5}
    });
    edit(&mut c);
    t.write("ldm.json", c.to_string())
}

#[test]
fn r109_ldm_config_lr_zero() {
    let t = Tmp::new("r109");
    let ae = ae_checkpoint(&t, "ae/checkpoint.safetensors");
    let cfg = ldm_config(&t, |c| c["train"]["lr"] = 0.into());
    refused(109, &["train", "ldm", "--config", &cfg, "--autoencoder", &ae, "--data", "mnist", "--data-root", &t.s("data"), "--out", &t.s("run")], &["config: invalid argument: train: lr 0, batch_size 4 and steps 2 must be positive"]);
}

#[test]
fn r110_ldm_autoencoder_missing() {
    let t = Tmp::new("r110");
    let cfg = ldm_config(&t, |_| {});
    refused(110, &["train", "ldm", "--config", &cfg, "--autoencoder", "/no/such/ae.safetensors", "--data", "mnist", "--out", &t.s("run")], &["/no/such/ae.safetensors: cannot open: No such file or directory"]);
}

#[test]
fn r111_ldm_autoencoder_not_a_training_checkpoint() {
    let t = Tmp::new("r111");
    let cfg = ldm_config(&t, |_| {});
    let m = builtin_weights().display().to_string();
    refused(111, &["train", "ldm", "--config", &cfg, "--autoencoder", &m, "--data", "mnist", "--out", &t.s("run")], &["mnist_class_ldm.safetensors: not an ldm-engine training checkpoint"]);
}

#[test]
fn r113_ldm_resume_from_garbage() {
    let t = Tmp::new("r113");
    t.write("run/checkpoint.safetensors", "garbage!!");
    refused(113, &["train", "ldm", "--data", "mnist", "--out", &t.s("run"), "--resume"], &["checkpoint.safetensors: header length", "(truncated or not a safetensors file)"]);
}

// ---- device -------------------------------------------------------------------------------

#[test]
fn r114_train_unknown_device() {
    let t = Tmp::new("r114");
    let cfg = ae_config(&t, |_| {});
    refused(114, &["train", "autoencoder", "--config", &cfg, "--data", &t.s("images"), "--out", &t.s("run"), "--device", "metal"], &["train: invalid argument: --device metal: unknown device 'metal' (expected cpu, cuda or cuda:N)"]);
}

#[test]
fn r115_train_cuda_without_a_driver() {
    if ldm_engine::backend::cuda::driver_present() {
        eprintln!("skipped: this machine has the NVIDIA driver, so --device cuda is not a bad input here");
        return;
    }
    let t = Tmp::new("r115");
    let cfg = ae_config(&t, |_| {});
    refused(115, &["train", "autoencoder", "--config", &cfg, "--data", &t.s("images"), "--out", &t.s("run"), "--device", "cuda"], &["device Cuda(0) is not available: the NVIDIA driver library (libcuda) was not found"]);
}

// ---- argument: train ----------------------------------------------------------------------

#[test]
fn r116_max_minutes_negative() {
    refused(116, &["train", "autoencoder", "--max-minutes", "-1"], &["--max-minutes -1: must be a positive number of minutes"]);
}

/// NaN used to be read as "no limit".
#[test]
fn r117_max_minutes_nan() {
    refused(117, &["train", "ldm", "--max-minutes", "nan"], &["--max-minutes NaN: must be a positive number of minutes"]);
}

/// A required flag missing: clap's list of the missing arguments joins the one line.
#[test]
fn r118_eval_fid_without_fake() {
    usage_error(118, os(&["eval", "fid", "--real", "x"]), &["the following required arguments were not provided: --fake <FAKE>"]);
}

/// `sample --repeat 0` would generate nothing and write nothing: refused before the model loads.
#[test]
fn r133_sample_repeat_zero() {
    refused(133, &["sample", "--repeat", "0", "--out", "never.png"], &["sample: invalid argument: --repeat 0: at least one run is needed"]);
}
