//! `ldm-engine sample` end to end on the tiny SD folder: with --init-noise it reproduces
//! diffusers' final latents (tools/gen_pipeline_fixtures.py `txt2img_cli_euler`), writes PNGs
//! carrying their parameters, and every bad argument is one line, a non-zero exit and no file.

use std::path::PathBuf;
use std::process::Command;

mod common;
use common::fixture::assert_parity_within;
use ldm_engine::io::image::load_png;
use ldm_engine::io::safetensors::SafeTensorsFile;

const BIN: &str = env!("CARGO_BIN_EXE_ldm-engine");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ldm-sample-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).arg("sample").args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn sample_with_init_noise_reproduces_diffusers_and_writes_pngs_with_parameters() {
    let fixture = fixtures().join("pipelines/txt2img_cli_euler.safetensors");
    let f = SafeTensorsFile::open(&fixture).unwrap();
    let m = f.metadata().clone();
    let dir = tmpdir("ok");
    let (out, lat) = (dir.join("img.png"), dir.join("latents.safetensors"));
    let model = fixtures().join("tiny_sd");
    let args = [
        "--model", model.to_str().unwrap(), "--prompt", &m["prompt"], "--negative-prompt", &m["negative"], "--sampler", &m["sampler"],
        "--steps", &m["steps"], "--cfg-scale", &m["guidance"], "--width", &m["width"], "--height", &m["height"], "--batch", "2",
        "--init-noise", fixture.to_str().unwrap(), "--save-latents", lat.to_str().unwrap(), "--out", out.to_str().unwrap(), "--timings",
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let timings = stdout.lines().find(|l| l.starts_with("timings: ")).expect("timings line");
    for key in ["text_encode_ms=", "unet_ms_per_step=", "vae_decode_ms=", "total_ms="] {
        assert!(timings.contains(key), "{timings}");
    }
    let ours = SafeTensorsFile::open(&lat).unwrap().get("latents").unwrap();
    assert_parity_within(&ours, &f.get("latents").unwrap(), "cli euler latents", 1e-3);
    // --repeat generates again in the same process: the same latents to the bit (no state carried
    // from one run to the next), the warm runs' medians and the load time reported
    let lat3 = dir.join("latents3.safetensors");
    let mut repeated = args.to_vec();
    let at = repeated.len() - 4;
    repeated[at] = lat3.to_str().unwrap();
    let (code, stdout, stderr) = run(&[&repeated[..], &["--repeat", "3"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("timings: ") && l.contains(" load_ms=") && l.ends_with(" timed_runs=2")), "{stdout}");
    assert_eq!(SafeTensorsFile::open(&lat3).unwrap().get("latents").unwrap().to_vec::<f32>().unwrap(), ours.to_vec::<f32>().unwrap(), "--repeat 3 latents");
    for i in 0..2 {
        let (rgb, w, h, text) = load_png(&dir.join(format!("img-{i}.png"))).unwrap();
        assert_eq!((w, h, rgb.len()), (56, 40, 56 * 40 * 3));
        let params = &text.iter().find(|(k, _)| k == "parameters").unwrap().1;
        assert!(params.starts_with(&format!("{}\nNegative prompt: {}\nSteps: 5, Sampler: Euler, CFG scale: 7.5, Seed: 0, Size: 56x40", m["prompt"], m["negative"])), "{params}");
    }
    // img2img from a PNG: its size sets the output's, strength is recorded in the parameters
    let init = dir.join("init.png");
    let pixels: Vec<u8> = (0..24 * 32 * 3).map(|i| (i * 7 % 256) as u8).collect();
    ldm_engine::io::image::save_png(&init, &pixels, 32, 24, &[]).unwrap();
    let i2i = dir.join("i2i.png");
    let (code, _, err) = run(&["--model", model.to_str().unwrap(), "--prompt", "a cube", "--steps", "4", "--init-image", init.to_str().unwrap(), "--strength", "0.5", "--out", i2i.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (rgb, w, h, text) = load_png(&i2i).unwrap();
    assert_eq!((w, h, rgb.len()), (32, 24, 32 * 24 * 3));
    assert!(text[0].1.ends_with(", Denoising strength: 0.5, Model: tiny_sd"), "{}", text[0].1);
    // same seed, same image; another seed, another image
    let seeded = |seed: &str, name: &str| {
        let p = dir.join(name);
        let (code, _, err) = run(&["--model", model.to_str().unwrap(), "--prompt", "a cube", "--steps", "2", "--width", "16", "--height", "16", "--seed", seed, "--out", p.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        load_png(&p).unwrap().0
    };
    assert_eq!(seeded("7", "a.png"), seeded("7", "b.png"));
    assert_ne!(seeded("7", "a.png"), seeded("8", "c.png"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_one_line_errors_and_write_nothing() {
    let dir = tmpdir("bad");
    let out = dir.join("x.png");
    let model = fixtures().join("tiny_sd");
    let (m, o) = (model.to_str().unwrap(), out.to_str().unwrap());
    let no_index = dir.join("empty_folder");
    std::fs::create_dir_all(&no_index).unwrap();
    let bad_noise = fixtures().join("reference_small.safetensors");
    let jpg = dir.join("x.jpg");
    let garbage = dir.join("garbage.png");
    std::fs::write(&garbage, b"not a png at all").unwrap();
    let (init16, mask8) = (dir.join("init16.png"), dir.join("mask8.png"));
    ldm_engine::io::image::save_png(&init16, &[100u8; 16 * 16 * 3], 16, 16, &[]).unwrap();
    ldm_engine::io::image::save_png(&mask8, &[255u8; 8 * 8 * 3], 8, 8, &[]).unwrap();
    let vae_file = fixtures().join("vae_kl.safetensors");
    let odd = dir.join("odd.png");
    ldm_engine::io::image::save_png(&odd, &vec![128u8; 20 * 16 * 3], 20, 16, &[]).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", m, "--prompt", "p", "--width", "60", "--out", o], "--width 60: width and height must be positive multiples of 8"),
        (vec!["--model", m, "--prompt", "p", "--height", "0", "--out", o], "positive multiples of 8"),
        (vec!["--model", m, "--prompt", "p", "--steps", "0", "--out", o], "--steps must be at least 1"),
        (vec!["--model", m, "--prompt", "p", "--sampler", "lms", "--out", o], "unknown sampler 'lms'"),
        (vec!["--model", "/no/such/model", "--prompt", "p", "--out", o], "no such file or directory"),
        (vec!["--model", no_index.to_str().unwrap(), "--prompt", "p", "--out", o], "not a diffusers pipeline folder"),
        (vec!["--prompt", "p", "--out", o], "--prompt: the built-in MNIST model takes --class"),
        (vec!["--model", m, "--out", o], "--prompt is required"),
        (vec!["--model", m, "--prompt", "p", "--device", "cuda:99", "--out", o], "device Cuda(99) is not available"),
        (vec!["--model", m, "--prompt", "p", "--device", "gpu", "--out", o], "unknown device 'gpu' (expected cpu, cuda or cuda:N)"),
        (vec!["--model", m, "--prompt", "p", "--mask", "x.png", "--out", o], "--strength and --mask need --init-image"),
        (vec!["--model", m, "--prompt", "p", "--init-image", init16.to_str().unwrap(), "--mask", mask8.to_str().unwrap(), "--out", o], "the mask is 8x8 but the init image is 16x16"),
        (vec!["--model", m, "--prompt", "p", "--init-image", init16.to_str().unwrap(), "--mask", garbage.to_str().unwrap(), "--out", o], "not a readable PNG"),
        (vec!["--model", m, "--prompt", "p", "--class", "3", "--out", o], "--class is for class-conditional paper models"),
        (vec!["--model", m, "--prompt", "p", "--preset", "cin256_v2", "--out", o], "--preset is for single-file checkpoints"),
        (vec!["--model", vae_file.to_str().unwrap(), "--out", o], "say which paper model it is with --preset (one of: celeba256"),
        (vec!["--model", vae_file.to_str().unwrap(), "--preset", "nope", "--out", o], "unknown model preset 'nope'"),
        (vec!["--model", vae_file.to_str().unwrap(), "--preset", "celeba256", "--out", o], "missing"),
        (vec!["--model", m, "--prompt", "p", "--init-image", garbage.to_str().unwrap(), "--out", o], "not a readable PNG"),
        (vec!["--model", m, "--prompt", "p", "--init-image", odd.to_str().unwrap(), "--out", o], "the init image is 20x16: both sides must be multiples of 8"),
        (vec!["--model", m, "--prompt", "p", "--init-image", odd.to_str().unwrap(), "--strength", "0", "--out", o], "--strength 0 must be in (0, 1]"),
        (vec!["--model", m, "--prompt", "p", "--strength", "0.5", "--out", o], "--strength and --mask need --init-image"),
        (vec!["--model", m, "--prompt", "p", "--out", jpg.to_str().unwrap()], "must be a .png file"),
        (vec!["--model", m, "--prompt", "p", "--width", "16", "--height", "16", "--init-noise", bad_noise.to_str().unwrap(), "--out", o], "no tensor named 'noise'"),
    ];
    for (args, want) in cases {
        let (code, stdout, stderr) = run(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(want), "{args:?}: {stderr}");
        assert!(!out.exists() && !jpg.exists(), "{args:?} wrote a file");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Inpainting through the CLI, with an ordinary UNet (mask blending) and with the 9-channel one
/// (a folder assembled from tiny_sd's components and tiny_sd_inpaint's UNet): the latents equal
/// the library's for the same image, mask, initial noise and seed (the library is at parity with
/// diffusers in tests/pipeline_inpaint.rs), and a batch can be written as one grid.
#[test]
fn inpainting_from_the_cli_matches_the_library_in_both_modes() {
    use ldm_engine::diffusion::{SamplerOptions, SeededNoise};
    use ldm_engine::pipelines::inpaint::InpaintInput;
    use ldm_engine::pipelines::txt2img::{TextToImage, TextToImageRequest};
    use ldm_engine::{DType, Tensor};

    let dir = tmpdir("inpaint");
    let (w, h) = (32usize, 24usize);
    let pixels: Vec<u8> = (0..w * h * 3).map(|i| (i * 13 % 251) as u8).collect();
    let mask_px: Vec<u8> = (0..w * h).flat_map(|p| if (p % w) < w / 2 && p / w > 4 { [255u8; 3] } else { [0u8; 3] }).collect();
    let (init, mask, noise) = (dir.join("init.png"), dir.join("mask.png"), dir.join("noise.safetensors"));
    ldm_engine::io::image::save_png(&init, &pixels, w, h, &[]).unwrap();
    ldm_engine::io::image::save_png(&mask, &mask_px, w, h, &[]).unwrap();
    let initial = Tensor::randn(&[2, 4, h / 2, w / 2], 0.0, 1.0, DType::F32, &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3));
    ldm_engine::io::safetensors::save(&noise, &[("noise", &initial)], None).unwrap();

    let nine = dir.join("sd9");
    std::fs::create_dir_all(&nine).unwrap();
    std::fs::copy(fixtures().join("tiny_sd_inpaint/model_index.json"), nine.join("model_index.json")).unwrap();
    for c in ["text_encoder", "tokenizer", "vae", "scheduler"] {
        std::os::unix::fs::symlink(fixtures().join("tiny_sd").join(c), nine.join(c)).unwrap();
    }
    std::os::unix::fs::symlink(fixtures().join("tiny_sd_inpaint/unet"), nine.join("unet")).unwrap();

    // the library's view of the same inputs: x/127.5 − 1, white = 1
    let planar: Vec<f32> = (0..3).flat_map(|c| pixels.chunks(3).map(move |p| f32::from(p[c]) / 127.5 - 1.0)).collect();
    let image = Tensor::from_vec(planar, &[1, 3, h, w]).unwrap();
    let mask_t = Tensor::from_vec(mask_px.chunks(3).map(|p| f32::from(p[0]) / 255.0).collect(), &[1, 1, h, w]).unwrap();
    for (model, name) in [(fixtures().join("tiny_sd"), "blend"), (nine.clone(), "unet9")] {
        let (out, lat) = (dir.join(format!("{name}.png")), dir.join(format!("{name}.safetensors")));
        let args = [
            "--model", model.to_str().unwrap(), "--prompt", "a cube", "--negative-prompt", "blur", "--steps", "3", "--sampler", "ddim", "--batch", "2",
            "--init-image", init.to_str().unwrap(), "--mask", mask.to_str().unwrap(), "--init-noise", noise.to_str().unwrap(),
            "--save-latents", lat.to_str().unwrap(), "--out", out.to_str().unwrap(), "--grid", "--seed", "5",
        ];
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(stdout.contains("2 images, 2x1 grid"), "{stdout}");
        let (_, gw, gh, text) = load_png(&out).unwrap();
        assert_eq!((gw, gh), (2 * w, h));
        assert!(text[0].1.contains("Denoising strength: 1, Inpainting: true"), "{}", text[0].1);

        let pipe = TextToImage::from_diffusers(&common::fixture::fp16_folder(&model), DType::F32).unwrap();
        let req = TextToImageRequest {
            prompts: vec!["a cube".into(); 2],
            negative_prompts: vec!["blur".into(); 2],
            guidance: 7.5,
            sampler: SamplerOptions { kind: "ddim".parse().unwrap(), steps: 3, eta: 0.0 },
            height: h,
            width: w,
        };
        let ctx = pipe.context(&req).unwrap();
        let input = InpaintInput { image: image.clone(), mask: mask_t.clone(), strength: 1.0 };
        let ours = pipe.inpaint_latents(&req, &ctx, &input, Some(&initial), &mut SeededNoise::new(6), &mut || {}).unwrap();
        let cli = SafeTensorsFile::open(&lat).unwrap().get("latents").unwrap();
        assert_parity_within(&cli, &ours, &format!("cli inpaint {name} vs library"), 1e-6);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
