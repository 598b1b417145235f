//! The harness of the bad-input tests (tests/bad_inputs.rs, tests/bad_inputs_train.rs): runs the
//! built binary and checks the shape of a refusal, plus the broken fixtures the rows need.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ldm-engine");

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> String {
    root().join("tests/fixtures").join(rel).display().to_string()
}

/// The engine-trained model built into the binary, as a file: a real model to break.
pub fn builtin_weights() -> PathBuf {
    root().join("weights/mnist_class_ldm.safetensors")
}

/// A temp folder per test (tests run in parallel), removed when the test ends.
pub struct Tmp(pub PathBuf);

impl Tmp {
    pub fn new(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("ldm-bad-inputs-{}", std::process::id())).join(tag);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// `name` under the folder, as a string for an argument list.
    pub fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
    /// A copy of tests/fixtures/tiny_sd (a whole diffusers folder, under 1 MB) to break.
    pub fn tiny_sd(&self) -> String {
        copy_dir(&root().join("tests/fixtures/tiny_sd"), &self.path("sd"));
        self.s("sd")
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // the per-process parent goes with the last test's folder
        let _ = std::fs::remove_dir(self.0.parent().unwrap());
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Outcome {
    let o = Command::new(BIN).args(args).output().unwrap();
    Outcome { code: o.status.code(), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
}

/// What every refusal shares: an exit code (not a signal: `code` is None when one ended the
/// process), not 0, no panic, nothing written to stdout, and `error: ` with `words` on the line.
pub fn refusal_shape(row: u32, args: &[OsString], o: &Outcome, line: &str, words: &[&str]) {
    let code = o.code.unwrap_or_else(|| panic!("row {row}: {args:?} was ended by a signal; stderr: {}", o.stderr));
    assert_ne!(code, 0, "row {row}: {args:?} exited 0; stdout: {}", o.stdout);
    assert!(!o.stderr.contains("panicked"), "row {row}: {args:?} panicked: {}", o.stderr);
    assert!(o.stdout.is_empty(), "row {row}: {args:?} printed to stdout: {}", o.stdout);
    assert!(line.starts_with("error: "), "row {row}: {args:?}: the error line is {line:?}; stderr: {}", o.stderr);
    for w in words {
        assert!(line.contains(w), "row {row}: {args:?}: {line:?} does not say {w:?}");
    }
}

pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// An engine refusal: exit code 1, stderr exactly one line. Returns the line.
pub fn refused(row: u32, args: &[&str], words: &[&str]) -> String {
    refused_os(row, os(args), words)
}

pub fn refused_os(row: u32, args: Vec<OsString>, words: &[&str]) -> String {
    let o = run(&args);
    println!("row {row}: {}", o.stderr.trim_end());
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "row {row}: {args:?}: stderr is not one line: {}", o.stderr);
    refusal_shape(row, &args, &o, lines[0], words);
    assert_eq!(o.code, Some(1), "row {row}: {args:?}: {}", o.stderr);
    lines[0].to_string()
}

/// A mistake clap catches before the engine runs (a value that does not parse, an unknown flag):
/// one line, clap's message and `(see --help)` (src/main.rs drops clap's usage block), exit 2.
pub fn usage_error(row: u32, args: Vec<OsString>, words: &[&str]) {
    let o = run(&args);
    println!("row {row}: {}", o.stderr.trim_end());
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "row {row}: {args:?}: stderr is not one line: {}", o.stderr);
    refusal_shape(row, &args, &o, lines[0], words);
    assert!(lines[0].ends_with("(see --help)"), "row {row}: {}", lines[0]);
    assert_eq!(o.code, Some(2), "row {row}: {args:?}: {}", o.stderr);
}

/// A safetensors file from a header (JSON) and data bytes, written by hand so it can lie.
pub fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

/// The built-in model's file with its header edited by `edit` (the data left as it is).
pub fn builtin_with_header(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
    let bytes = std::fs::read(builtin_weights()).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header.as_object_mut().unwrap());
    raw_safetensors(&header.to_string(), &bytes[8 + n..])
}

/// The built-in model's config (metadata "config") edited by `edit`.
pub fn builtin_with_config(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    builtin_with_header(|h| {
        let meta = h["__metadata__"].as_object_mut().unwrap();
        let mut cfg: serde_json::Value = serde_json::from_str(meta["config"].as_str().unwrap()).unwrap();
        edit(&mut cfg);
        meta.insert("config".into(), cfg.to_string().into());
    })
}

/// Edits a JSON file in place.
pub fn edit_json(path: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// A PNG of noise, w×h (so a cut lands in its compressed data).
pub fn noise_png(t: &Tmp, name: &str, w: usize, h: usize) -> String {
    let px: Vec<u8> = (0..w * h * 3).map(|i| ((i as u64).wrapping_mul(2654435761) >> 13) as u8).collect();
    ldm_engine::io::image::save_png(&t.path(name), &px, w, h, &[]).unwrap();
    t.s(name)
}

/// A small RGB first-stage config for `train autoencoder` on an image folder; `edit` breaks it.
pub fn ae_config(t: &Tmp, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut c = serde_json::json!({
        "model": {"in_channels": 3, "ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 2, "embed_dim": 2, "groups": 8},
        "loss": {"disc_start": 3, "kl_weight": 1e-6, "perceptual_weight": 0.0},
        "disc": {"ndf": 8, "n_layers": 2},
        "train": {"lr": 1e-3, "batch_size": 2, "image_size": 16, "steps": 1, "seed": 3}
    });
    edit(&mut c);
    t.write("ae.json", c.to_string())
}

/// A real (untrained) `train autoencoder` checkpoint, written by the library: no training step.
pub fn ae_checkpoint(t: &Tmp, name: &str) -> String {
    let cfg = serde_json::json!({
        "model": {"in_channels": 1, "ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 2, "embed_dim": 2, "groups": 8},
        "loss": {"disc_start": 100, "perceptual_weight": 0.0}, "disc": {"ndf": 8, "n_layers": 2},
        "train": {"lr": 1e-3, "batch_size": 4, "image_size": 16, "steps": 2, "seed": 1}
    });
    let trainer = ldm_engine::train::ae_trainer::AeTrainer::new(ldm_engine::train::ae_trainer::AeTrainConfig::from_json(&cfg).unwrap()).unwrap();
    let p = t.path(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    trainer.save(&p).unwrap();
    p.display().to_string()
}
