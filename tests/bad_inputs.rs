//! The bad-input table, docs/bad_inputs.md, row by row through the built binary. Each test checks
//! the shape of the refusal — the process exits by itself (no signal) with a non-zero code; stderr
//! is one line `error: …` (for a usage mistake clap catches, that line and clap's own usage hint,
//! exit 2); no panic; nothing on stdout — and the row's key words. The fixtures are written at run
//! time to a temp folder per test, small or copied from tests/fixtures; nothing here trains or
//! samples. The last test keeps the table and the tests in step.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use ldm_engine::io::safetensors::{save, SafeTensorsFile};

const BIN: &str = env!("CARGO_BIN_EXE_ldm-engine");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(rel: &str) -> String {
    root().join("tests/fixtures").join(rel).display().to_string()
}

/// The engine-trained model built into the binary, as a file: a real model to break.
fn builtin_weights() -> PathBuf {
    root().join("weights/mnist_class_ldm.safetensors")
}

/// A temp folder per test (tests run in parallel), removed when the test ends.
struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("ldm-bad-inputs-{}", std::process::id())).join(tag);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// `name` under the folder, as a string for an argument list.
    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
    /// A copy of tests/fixtures/tiny_sd (a whole diffusers folder, under 1 MB) to break.
    fn tiny_sd(&self) -> String {
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

fn copy_dir(from: &Path, to: &Path) {
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

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run<S: AsRef<OsStr>>(args: &[S]) -> Outcome {
    let o = Command::new(BIN).args(args).output().unwrap();
    Outcome { code: o.status.code(), stdout: String::from_utf8_lossy(&o.stdout).into(), stderr: String::from_utf8_lossy(&o.stderr).into() }
}

/// What every refusal shares: an exit code (not a signal: `code` is None when one ended the
/// process), not 0, no panic, nothing written to stdout, and `error: ` with `words` on the line.
fn common(row: u32, args: &[OsString], o: &Outcome, line: &str, words: &[&str]) {
    let code = o.code.unwrap_or_else(|| panic!("row {row}: {args:?} was ended by a signal; stderr: {}", o.stderr));
    assert_ne!(code, 0, "row {row}: {args:?} exited 0; stdout: {}", o.stdout);
    assert!(!o.stderr.contains("panicked"), "row {row}: {args:?} panicked: {}", o.stderr);
    assert!(o.stdout.is_empty(), "row {row}: {args:?} printed to stdout: {}", o.stdout);
    assert!(line.starts_with("error: "), "row {row}: {args:?}: the error line is {line:?}; stderr: {}", o.stderr);
    for w in words {
        assert!(line.contains(w), "row {row}: {args:?}: {line:?} does not say {w:?}");
    }
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// An engine refusal: exit code 1, stderr exactly one line. Returns the line.
fn refused(row: u32, args: &[&str], words: &[&str]) -> String {
    refused_os(row, os(args), words)
}

fn refused_os(row: u32, args: Vec<OsString>, words: &[&str]) -> String {
    let o = run(&args);
    println!("row {row}: {}", o.stderr.trim_end());
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "row {row}: {args:?}: stderr is not one line: {}", o.stderr);
    common(row, &args, &o, lines[0], words);
    assert_eq!(o.code, Some(1), "row {row}: {args:?}: {}", o.stderr);
    lines[0].to_string()
}

/// A mistake clap catches before the engine runs (a value that does not parse, an unknown flag):
/// one line, clap's message and `(see --help)` (src/main.rs drops clap's usage block), exit 2.
fn usage_error(row: u32, args: Vec<OsString>, words: &[&str]) {
    let o = run(&args);
    println!("row {row}: {}", o.stderr.trim_end());
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "row {row}: {args:?}: stderr is not one line: {}", o.stderr);
    common(row, &args, &o, lines[0], words);
    assert!(lines[0].ends_with("(see --help)"), "row {row}: {}", lines[0]);
    assert_eq!(o.code, Some(2), "row {row}: {args:?}: {}", o.stderr);
}

/// A safetensors file from a header (JSON) and data bytes, written by hand so it can lie.
fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

/// The built-in model's file with its header edited by `edit` (the data left as it is).
fn builtin_with_header(edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
    let bytes = std::fs::read(builtin_weights()).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(header.as_object_mut().unwrap());
    raw_safetensors(&header.to_string(), &bytes[8 + n..])
}

/// The built-in model's config (metadata "config") edited by `edit`.
fn builtin_with_config(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    builtin_with_header(|h| {
        let meta = h["__metadata__"].as_object_mut().unwrap();
        let mut cfg: serde_json::Value = serde_json::from_str(meta["config"].as_str().unwrap()).unwrap();
        edit(&mut cfg);
        meta.insert("config".into(), cfg.to_string().into());
    })
}

/// Edits a JSON file in place.
fn edit_json(path: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// A PNG of noise, w×h (so a cut lands in its compressed data).
fn noise_png(t: &Tmp, name: &str, w: usize, h: usize) -> String {
    let px: Vec<u8> = (0..w * h * 3).map(|i| ((i as u64).wrapping_mul(2654435761) >> 13) as u8).collect();
    ldm_engine::io::image::save_png(&t.path(name), &px, w, h, &[]).unwrap();
    t.s(name)
}

/// A small RGB first-stage config for `train autoencoder` on an image folder; `edit` breaks it.
fn ae_config(t: &Tmp, edit: impl FnOnce(&mut serde_json::Value)) -> String {
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
fn ae_checkpoint(t: &Tmp, name: &str) -> String {
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

// ---- file: model and weights -------------------------------------------------------------

#[test]
fn r002_model_file_garbage() {
    let t = Tmp::new("r002");
    let m = t.write("garbage.safetensors", "garbage");
    refused(2, &["sample", "--model", &m], &["garbage.safetensors: file is 7 bytes, too short for a safetensors header"]);
}

#[test]
fn r003_model_file_empty() {
    let t = Tmp::new("r003");
    let m = t.write("empty.safetensors", "");
    refused(3, &["sample", "--model", &m], &["empty.safetensors: file is 0 bytes, too short for a safetensors header"]);
}

#[test]
fn r004_model_file_truncated() {
    let t = Tmp::new("r004");
    let bytes = std::fs::read(builtin_weights()).unwrap();
    let m = t.write("cut.safetensors", &bytes[..1000]);
    refused(4, &["sample", "--model", &m], &["cut.safetensors: header length", "exceeds the 992 bytes after it (truncated or not a safetensors file)"]);
}

#[test]
fn r006_header_not_json() {
    let t = Tmp::new("r006");
    let m = t.write("h.safetensors", raw_safetensors("{{{{{", b""));
    refused(6, &["sample", "--model", &m], &["h.safetensors: header is not a valid safetensors JSON header"]);
}

#[test]
fn r007_header_shape_disagrees_with_offsets() {
    let t = Tmp::new("r007");
    let m = t.write("h.safetensors", raw_safetensors(r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,1600]}}"#, &[0; 16]));
    refused(7, &["sample", "--model", &m], &["h.safetensors: a tensor's shape × dtype size does not match its byte range"]);
}

#[test]
fn r008_header_offsets_past_the_data() {
    let t = Tmp::new("r008");
    let m = t.write("h.safetensors", raw_safetensors(r#"{"w":{"dtype":"F32","shape":[400],"data_offsets":[0,1600]}}"#, &[0; 16]));
    refused(8, &["sample", "--model", &m], &["h.safetensors: tensor data does not cover the file's data section"]);
}

#[test]
fn r009_header_offsets_overlap() {
    let t = Tmp::new("r009");
    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#;
    let m = t.write("h.safetensors", raw_safetensors(header, &[0; 24]));
    refused(9, &["sample", "--model", &m], &["h.safetensors: tensor 'b' has data offsets outside or overlapping the data section"]);
}

#[test]
fn r010_header_shape_overflows() {
    let t = Tmp::new("r010");
    let m = t.write("h.safetensors", raw_safetensors(r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#, &[0; 16]));
    refused(10, &["sample", "--model", &m], &["h.safetensors: a tensor shape overflows (corrupt header)"]);
}

#[test]
fn r011_tensor_of_a_dtype_the_engine_cannot_load() {
    let t = Tmp::new("r011");
    // same bytes: f16 [11, 64] read as 1-byte F8_E4M3 [11, 128]
    let m = t.write("m.safetensors", builtin_with_header(|h| {
        h["cond_stage_model.embedding.weight"]["dtype"] = "F8_E4M3".into();
        h["cond_stage_model.embedding.weight"]["shape"] = serde_json::json!([11, 128]);
    }));
    refused(11, &["sample", "--model", &m], &["tensor 'cond_stage_model.embedding.weight' has dtype F8_E4M3, which the engine cannot load"]);
}

#[test]
fn r012_model_missing_a_tensor() {
    let t = Tmp::new("r012");
    let f = SafeTensorsFile::open(builtin_weights()).unwrap();
    let all = f.load_all().unwrap();
    let kept: Vec<(&str, &ldm_engine::Tensor)> = all.iter().filter(|(k, _)| *k != "model.diffusion_model.out.2.bias").map(|(k, v)| (k.as_str(), v)).collect();
    save(t.path("m.safetensors"), &kept, Some(f.metadata().clone())).unwrap();
    refused(12, &["sample", "--model", &t.s("m.safetensors")], &["checkpoint does not fit the model: 1 missing: model.diffusion_model.out.2.bias"]);
}

#[test]
fn r013_model_tensor_of_the_wrong_shape() {
    let t = Tmp::new("r013");
    let m = t.write("m.safetensors", builtin_with_header(|h| h["cond_stage_model.embedding.weight"]["shape"] = serde_json::json!([22, 32])));
    refused(13, &["sample", "--model", &m], &["checkpoint does not fit the model: 1 shape mismatches: cond_stage_model.embedding.weight (model [11, 64], file [22, 32])"]);
}

#[test]
fn r014_model_config_metadata_not_json() {
    let t = Tmp::new("r014");
    let m = t.write("m.safetensors", builtin_with_header(|h| {
        h["__metadata__"]["config"] = "{not json".into();
    }));
    refused(14, &["sample", "--model", &m], &["m.safetensors: metadata 'config' is not JSON"]);
}

#[test]
fn r015_model_config_invalid_value() {
    let t = Tmp::new("r015");
    let m = t.write("m.safetensors", builtin_with_config(|c| c["cond"]["n_classes"] = 0.into()));
    refused(15, &["sample", "--model", &m], &["cond: n_classes and embed_dim must be positive"]);
}

#[test]
fn r016_safetensors_with_no_tensors() {
    let t = Tmp::new("r016");
    let m = t.write("none.safetensors", raw_safetensors("{}", b""));
    refused(16, &["sample", "--model", &m], &["none.safetensors: not a Stable Diffusion v1 file; say which paper model it is with --preset (one of: "]);
}

#[test]
fn r019_engine_model_with_a_preset() {
    let m = builtin_weights().display().to_string();
    refused(19, &["sample", "--model", &m, "--preset", "cin256_v2"], &["an ldm-engine trained model describes itself; drop --preset"]);
}

#[test]
fn r021_model_index_not_json() {
    let t = Tmp::new("r021");
    let sd = t.tiny_sd();
    t.write("sd/model_index.json", "{not json");
    refused(21, &["sample", "--model", &sd, "--prompt", "p"], &["model_index.json: invalid JSON"]);
}

#[test]
fn r022_unet_config_field_of_the_wrong_type() {
    let t = Tmp::new("r022");
    let sd = t.tiny_sd();
    edit_json(&t.s("sd/unet/config.json"), |c| c["block_out_channels"] = "wide".into());
    refused(22, &["sample", "--model", &sd, "--prompt", "p"], &["unet/config.json: 'block_out_channels' must be a list of integers, got \"wide\""]);
}

#[test]
fn r023_unet_config_negative_size() {
    let t = Tmp::new("r023");
    let sd = t.tiny_sd();
    edit_json(&t.s("sd/unet/config.json"), |c| c["cross_attention_dim"] = (-5).into());
    refused(23, &["sample", "--model", &sd, "--prompt", "p"], &["unet/config.json: 'cross_attention_dim' must be a non-negative integer, got -5"]);
}

#[test]
fn r024_scheduler_config_unknown_schedule() {
    let t = Tmp::new("r024");
    let sd = t.tiny_sd();
    edit_json(&t.s("sd/scheduler/scheduler_config.json"), |c| c["beta_schedule"] = "wavy".into());
    refused(24, &["sample", "--model", &sd, "--prompt", "p"], &["scheduler/scheduler_config.json: 'beta_schedule' = \"wavy\" is not supported"]);
}

#[test]
fn r025_vae_config_missing() {
    let t = Tmp::new("r025");
    let sd = t.tiny_sd();
    std::fs::remove_file(t.path("sd/vae/config.json")).unwrap();
    refused(25, &["sample", "--model", &sd, "--prompt", "p"], &["vae/config.json: cannot read: No such file or directory"]);
}

#[test]
fn r026_unet_weights_missing() {
    let t = Tmp::new("r026");
    let sd = t.tiny_sd();
    std::fs::remove_file(t.path("sd/unet/diffusion_pytorch_model.fp16.safetensors")).unwrap();
    refused(26, &["sample", "--model", &sd, "--prompt", "p"], &["no weights found", "unet"]);
}

#[test]
fn r027_unet_weights_truncated() {
    let t = Tmp::new("r027");
    let sd = t.tiny_sd();
    let w = t.path("sd/unet/diffusion_pytorch_model.fp16.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..3000]).unwrap();
    refused(27, &["sample", "--model", &sd, "--prompt", "p"], &["diffusion_pytorch_model.fp16.safetensors: header length", "(truncated or not a safetensors file)"]);
}

// ---- file: tokenizer ----------------------------------------------------------------------

#[test]
fn r029_tokenizer_vocab_not_json() {
    let t = Tmp::new("r029");
    let sd = t.tiny_sd();
    t.write("sd/tokenizer/vocab.json", "garbage");
    refused(29, &["sample", "--model", &sd, "--prompt", "p"], &["tokenizer/vocab.json: not a token -> id JSON object"]);
}

#[test]
fn r030_tokenizer_vocab_without_special_tokens() {
    let t = Tmp::new("r030");
    let sd = t.tiny_sd();
    edit_json(&t.s("sd/tokenizer/vocab.json"), |v| {
        let m = v.as_object_mut().unwrap();
        m.remove("<|startoftext|>");
        m.remove("<|endoftext|>");
    });
    refused(30, &["sample", "--model", &sd, "--prompt", "p"], &["tokenizer/vocab.json: vocabulary has no <|startoftext|> token"]);
}

#[test]
fn r031_tokenizer_merges_missing() {
    let t = Tmp::new("r031");
    let sd = t.tiny_sd();
    std::fs::remove_file(t.path("sd/tokenizer/merges.txt")).unwrap();
    refused(31, &["sample", "--model", &sd, "--prompt", "p"], &["tokenizer/merges.txt: No such file or directory"]);
}

#[test]
fn r032_tokenizer_merges_malformed() {
    let t = Tmp::new("r032");
    let sd = t.tiny_sd();
    t.write("sd/tokenizer/merges.txt", "#version: 0.2\nfoo\n");
    refused(32, &["sample", "--model", &sd, "--prompt", "hello"], &["tokenizer/merges.txt: line 2: expected \"a b\", got \"foo\""]);
}

#[test]
fn r033_tokenizer_ids_beyond_the_text_encoder() {
    let t = Tmp::new("r033");
    let sd = t.tiny_sd();
    edit_json(&t.s("sd/tokenizer/vocab.json"), |v| {
        for (i, (_, id)) in v.as_object_mut().unwrap().iter_mut().enumerate() {
            *id = (i * 1000).into();
        }
    });
    refused(33, &["sample", "--model", &sd, "--prompt", "p", "--width", "16", "--height", "16", "--steps", "1"], &["ClipTextModel: invalid argument: token id ", "is outside the text encoder's 1000-token table: the tokenizer does not belong to this text encoder"]);
}

// ---- file: images -------------------------------------------------------------------------

/// `sample` on the tiny SD folder with this init image (and extra flags).
fn with_init(row: u32, init: &str, extra: &[&str], words: &[&str]) {
    let sd = fixture("tiny_sd");
    let t = Tmp::new(&format!("r{row:03}-out"));
    let out = t.s("o.png");
    let args: Vec<&str> = [&["sample", "--model", &sd, "--prompt", "p", "--steps", "1", "--init-image", init, "--out", &out][..], extra].concat();
    refused(row, &args, words);
    assert!(!t.path("o.png").exists(), "row {row} wrote its output");
}

#[test]
fn r035_init_image_a_jpeg() {
    let t = Tmp::new("r035");
    let mut jpg = Vec::new();
    image::RgbImage::from_pixel(16, 16, image::Rgb([200, 30, 30])).write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg).unwrap();
    let p = t.write("photo.jpg", jpg);
    with_init(35, &p, &[], &["photo.jpg: not a readable PNG: Invalid PNG signature"]);
}

#[test]
fn r036_init_image_truncated_png() {
    let t = Tmp::new("r036");
    let p = noise_png(&t, "whole.png", 64, 64);
    let bytes = std::fs::read(&p).unwrap();
    let cut = t.write("cut.png", &bytes[..bytes.len() / 2]);
    with_init(36, &cut, &[], &["cut.png: corrupt PNG data: unexpected end of file"]);
}

#[test]
fn r037_init_image_empty_file() {
    let t = Tmp::new("r037");
    let p = t.write("zero.png", "");
    with_init(37, &p, &[], &["zero.png: not a readable PNG"]);
}

#[test]
fn r038_init_image_png_header_claiming_a_huge_size() {
    with_init(38, &fixture("bad_inputs/png_huge_header.png"), &[], &["png_huge_header.png: the PNG says it is 1000000x1000000: more than the 67108864 pixels (8192x8192) this reader decodes"]);
}

#[test]
fn r039_init_image_missing() {
    with_init(39, "/no/such/init.png", &[], &["/no/such/init.png: No such file or directory"]);
}

#[test]
fn r045_init_noise_of_the_wrong_shape() {
    let t = Tmp::new("r045");
    let noise = ldm_engine::Tensor::zeros(&[1, 4, 8, 8], ldm_engine::DType::F32);
    save(t.path("noise.safetensors"), &[("noise", &noise)], None).unwrap();
    refused(45, &["sample", "--class", "1", "--init-noise", &t.s("noise.safetensors"), "--out", &t.s("o.png")], &["noise.safetensors: tensor 'noise' has shape [1, 4, 8, 8], this run needs [1, 3, 8, 8]"]);
}

// ---- size ---------------------------------------------------------------------------------

#[test]
fn r048_size_absurdly_large() {
    refused(48, &["sample", "--class", "1", "--width", "100000", "--height", "100000"], &["1 image(s) of 100000x100000 pixels is more than the 67108864 pixels (8192x8192) one run makes"]);
}

#[test]
fn r049_width_near_the_integer_limit() {
    refused(49, &["sample", "--class", "1", "--width", "18446744073709551608"], &["1 image(s) of 18446744073709551608x8 pixels is more than the 67108864 pixels"]);
}

#[test]
fn r050_batch_zero() {
    refused(50, &["sample", "--class", "1", "--batch", "0"], &["sample: invalid argument: --batch must be at least 1"]);
}

#[test]
fn r051_batch_at_the_integer_limit() {
    refused(51, &["sample", "--class", "1", "--batch", "18446744073709551615"], &["18446744073709551615 image(s) of 8x8 pixels is more than the 67108864 pixels"]);
}

#[test]
fn r052_batch_too_large_at_the_model_size() {
    // passes the flag check (8x8 is the smallest image) and is refused at the model's 32x32
    refused(52, &["sample", "--class", "1", "--batch", "100000"], &["100000 image(s) of 32x32 pixels is more than the 67108864 pixels"]);
}

#[test]
fn r054_steps_beyond_the_schedule() {
    refused(54, &["sample", "--class", "1", "--steps", "5000"], &["scheduler: invalid argument: 5000 steps: must be between 1 and the 1000 training steps"]);
}

#[test]
fn r055_steps_at_the_integer_limit_with_heun() {
    refused(55, &["sample", "--class", "1", "--sampler", "heun", "--steps", "18446744073709551615"], &["18446744073709551615 steps: must be between 1 and the 1000 training steps"]);
}

#[test]
fn r056_steps_negative() {
    usage_error(56, os(&["sample", "--steps", "-1"]), &["invalid value '-1' for '--steps <STEPS>'"]);
}

// ---- argument -----------------------------------------------------------------------------

#[test]
fn r057_guidance_nan() {
    refused(57, &["sample", "--class", "1", "--cfg-scale", "NaN"], &["--eta must be ≥ 0 and --cfg-scale finite"]);
}

#[test]
fn r058_guidance_infinite() {
    refused(58, &["sample", "--class", "1", "--cfg-scale", "inf"], &["--eta must be ≥ 0 and --cfg-scale finite"]);
}

#[test]
fn r059_eta_negative() {
    refused(59, &["sample", "--class", "1", "--eta", "-0.5"], &["--eta must be ≥ 0 and --cfg-scale finite"]);
}

#[test]
fn r060_strength_above_one() {
    let t = Tmp::new("r060");
    let init = noise_png(&t, "init.png", 16, 16);
    with_init(60, &init, &["--strength", "1.5"], &["--strength 1.5 must be in (0, 1]"]);
}

#[test]
fn r066_cuda_without_a_driver() {
    if ldm_engine::backend::cuda::driver_present() {
        eprintln!("skipped: this machine has the NVIDIA driver, so --device cuda is not a bad input here");
        return;
    }
    refused(66, &["sample", "--class", "1", "--device", "cuda"], &["device Cuda(0) is not available: the NVIDIA driver library (libcuda) was not found; use the CPU (--device cpu)"]);
}

#[test]
fn r067_seed_not_a_number() {
    usage_error(67, os(&["sample", "--seed", "abc"]), &["invalid value 'abc' for '--seed <SEED>': invalid digit found in string"]);
}

#[test]
fn r068_seed_negative() {
    usage_error(68, os(&["sample", "--seed", "-1"]), &["invalid value '-1' for '--seed <SEED>'"]);
}

#[test]
fn r070_class_negative() {
    refused(70, &["sample", "--class", "-1"], &["--class -1: the built-in MNIST model has classes 0..9"]);
}

#[test]
fn r074_dtype_other_than_f32() {
    refused(74, &["sample", "--class", "1", "--dtype", "f16"], &["--dtype f16: the CPU backend computes in f32"]);
}

#[test]
fn r076_output_in_a_missing_folder() {
    refused(76, &["sample", "--class", "1", "--steps", "1", "--out", "/no/such/folder/x.png"], &["/no/such/folder/x.png: cannot write: No such file or directory"]);
}

#[test]
fn r077_prompt_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let mut args = os(&["sample", "--prompt"]);
    args.push(OsStr::from_bytes(b"\xff\xfe cat").to_os_string());
    usage_error(77, args, &["invalid UTF-8 was detected in one or more arguments"]);
}

#[test]
fn r078_unknown_flag() {
    usage_error(78, os(&["sample", "--frobnicate"]), &["unexpected argument '--frobnicate' found"]);
}

#[test]
fn r079_inspect_a_folder() {
    let t = Tmp::new("r079");
    refused(79, &["inspect", &t.s("")], &["is a folder, not a safetensors file"]);
}

#[test]
fn r080_inspect_a_missing_file() {
    refused(80, &["inspect", "/no/such/file.safetensors"], &["/no/such/file.safetensors: cannot open: No such file or directory"]);
}

#[test]
fn r081_bench_filter_matching_nothing() {
    refused(81, &["bench", "--filter", "no-such-bench"], &["bench: invalid argument: --filter \"no-such-bench\" matches no bench (the benches: gemm"]);
}

#[test]
fn r082_train_without_what() {
    refused(82, &["train"], &["train: invalid argument: say what to train: `ldm-engine train autoencoder --help`"]);
}

#[test]
fn r083_train_something_unknown() {
    refused(83, &["train", "gan"], &["train gan: expected `autoencoder` or `ldm`"]);
}

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
    common(103, &args, &o, last, &["images: none of the 3 image files could be decoded (see the warnings above)"]);
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

// ---- the table and the tests stay in step --------------------------------------------------

/// Every row of docs/bad_inputs.md names a test that exists in the file it names; the rows are
/// numbered 1, 2, 3, …; and every `rNNN_` test here is in the table under its own number.
#[test]
fn the_table_names_a_test_for_every_row() {
    let doc = std::fs::read_to_string(root().join("docs/bad_inputs.md")).unwrap();
    let mut rows = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(n) = cells[0].parse::<u32>() else { continue };
        let test = cells.last().unwrap().trim_matches('`');
        let (file, name) = test.split_once("::").unwrap_or_else(|| panic!("row {n}: the last cell {test:?} is not tests/FILE.rs::test_name"));
        let src = std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("row {n}: {file}: {e}"));
        assert!(src.contains(&format!("fn {name}(")), "row {n}: {file} has no fn {name}");
        if file == "tests/bad_inputs.rs" {
            assert!(name.starts_with(&format!("r{n:03}_")), "row {n}: its test here should be named r{n:03}_…, not {name}");
        }
        rows.push((n, name.to_string()));
    }
    assert!(rows.len() >= 35, "only {} rows", rows.len());
    for (i, (n, _)) in rows.iter().enumerate() {
        assert_eq!(*n as usize, i + 1, "rows are numbered 1, 2, 3, …");
    }
    let here = std::fs::read_to_string(root().join("tests/bad_inputs.rs")).unwrap();
    let row_tests = here.lines().filter_map(|l| l.strip_prefix("fn ")).map(|l| l.split('(').next().unwrap()).filter(|n| {
        let b = n.as_bytes();
        b.len() > 5 && b[0] == b'r' && b[1..4].iter().all(u8::is_ascii_digit) && b[4] == b'_'
    });
    for name in row_tests {
        assert!(rows.iter().any(|(_, r)| *r == name), "{name} is not in docs/bad_inputs.md");
    }
}
