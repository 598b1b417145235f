//! The bad-input table, docs/bad_inputs.md, row by row through the built binary. Each test checks
//! the shape of the refusal — the process exits by itself (no signal) with a non-zero code; stderr
//! is one line `error: …` (for a usage mistake clap catches, that line and clap's own usage hint,
//! exit 2); no panic; nothing on stdout — and the row's key words. The fixtures are written at run
//! time to a temp folder per test, small or copied from tests/fixtures; nothing here trains or
//! samples. The last test keeps the table and the tests in step. The training rows (configs, data,
//! device, train arguments) are in tests/bad_inputs_train.rs; the harness in
//! tests/common/refusal.rs.

mod common;

use common::refusal::*;
use ldm_engine::io::safetensors::{save, SafeTensorsFile};
use std::ffi::OsStr;

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

// ---- the table and the tests stay in step --------------------------------------------------

/// The files whose tests are named after their rows.
const ROW_FILES: [&str; 2] = ["tests/bad_inputs.rs", "tests/bad_inputs_train.rs"];

/// Every row of docs/bad_inputs.md names a test that exists in the file it names; the rows are
/// numbered 1, 2, 3, …; and every `rNNN_` test in ROW_FILES is in the table under its own number.
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
        if ROW_FILES.contains(&file) {
            assert!(name.starts_with(&format!("r{n:03}_")), "row {n}: its test here should be named r{n:03}_…, not {name}");
        }
        rows.push((n, name.to_string()));
    }
    assert!(rows.len() >= 35, "only {} rows", rows.len());
    for (i, (n, _)) in rows.iter().enumerate() {
        assert_eq!(*n as usize, i + 1, "rows are numbered 1, 2, 3, …");
    }
    let here: String = ROW_FILES.iter().map(|f| std::fs::read_to_string(root().join(f)).unwrap()).collect();
    let row_tests = here.lines().filter_map(|l| l.strip_prefix("fn ")).map(|l| l.split('(').next().unwrap()).filter(|n| {
        let b = n.as_bytes();
        b.len() > 5 && b[0] == b'r' && b[1..4].iter().all(u8::is_ascii_digit) && b[4] == b'_'
    });
    for name in row_tests {
        assert!(rows.iter().any(|(_, r)| *r == name), "{name} is not in docs/bad_inputs.md");
    }
}
