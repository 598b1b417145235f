//! A training run killed in the middle of writing a checkpoint leaves the
//! previous checkpoint loadable and resumable. The crash is injected at exact points of the
//! second checkpoint write (LDM_ENGINE_CRASH_WRITE, src/io/safetensors.rs: the process exits at
//! once like a kill -9, mid-temporary-file): before any byte, after a few bytes, half way, one byte
//! short, and after every byte but before the rename. Each time the run directory's
//! checkpoint.safetensors is the first save, whole; `--resume` finishes the run and clears the
//! half-written temporary file.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ldm-engine");

fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mnist_tiny.safetensors"), data.join("mnist.safetensors")).unwrap();
    let cfg = serde_json::json!({
        "model": {"in_channels": 1, "ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 2, "embed_dim": 2, "groups": 8},
        "loss": {"disc_start": 1, "kl_weight": 1e-6, "perceptual_weight": 0.0},
        "disc": {"ndf": 8, "n_layers": 2},
        "train": {"lr": 1e-3, "batch_size": 4, "image_size": 16, "steps": 3, "save_every": 1, "image_every": 100, "seed": 3}
    });
    let path = dir.join("cfg.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    (data, path)
}

fn train(args: &[&str], crash: Option<String>) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.arg("train").arg("autoencoder").args(args);
    match crash {
        Some(spec) => c.env("LDM_ENGINE_CRASH_WRITE", spec),
        None => c.env_remove("LDM_ENGINE_CRASH_WRITE"),
    };
    c.output().unwrap()
}

fn temp_files(run: &Path) -> usize {
    std::fs::read_dir(run).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".checkpoint.safetensors.tmp")).count()
}

#[test]
fn a_crash_during_a_checkpoint_write_keeps_the_previous_one() {
    let dir = std::env::temp_dir().join(format!("ldm-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (data, cfg) = setup(&dir);
    let (d, c) = (data.to_str().unwrap(), cfg.to_str().unwrap());
    // the size of a checkpoint of this run, from an uninterrupted one
    let whole = dir.join("whole");
    let o = train(&["--config", c, "--data", "mnist", "--data-root", d, "--out", whole.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let size = std::fs::metadata(whole.join("checkpoint.safetensors")).unwrap().len() as usize;
    for cut in [0, 8, size / 2, size - 1, size + 1] {
        let run = dir.join(format!("run-{cut}"));
        let r = run.to_str().unwrap();
        let o = train(&["--config", c, "--data", "mnist", "--data-root", d, "--out", r], Some(format!("checkpoint.safetensors:2:{cut}")));
        assert_eq!(o.status.code(), Some(137), "cut {cut}: the injected crash must stop the run");
        assert_eq!(temp_files(&run), 1, "cut {cut}: the crash leaves its temporary file");
        let ck = ldm_engine::train::checkpoint::Checkpoint::load(&run.join("checkpoint.safetensors")).unwrap_or_else(|e| panic!("cut {cut}: the previous checkpoint must load: {e}"));
        assert_eq!(ck.step, 1, "cut {cut}: the checkpoint is the first save, whole");
        drop(ck);
        let o = train(&["--data", "mnist", "--data-root", d, "--out", r, "--resume"], None);
        assert!(o.status.success(), "cut {cut}: resume: {}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(ldm_engine::train::checkpoint::Checkpoint::load(&run.join("checkpoint.safetensors")).unwrap().step, 3, "cut {cut}: resumed to the end");
        assert_eq!(temp_files(&run), 0, "cut {cut}: the next write cleared the half-written file");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
