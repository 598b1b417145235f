//! Inpainting against diffusers' StableDiffusionInpaintPipeline on the tiny SD folder
//! (tools/gen_inpaint_fixtures.py): mask blending with the ordinary 4-channel UNet for every
//! deterministic sampler, and the 9-channel inpainting UNet (tests/fixtures/tiny_sd_inpaint/unet);
//! batch 2 with negative prompts, guidance 7.5, 36×52 pixels (latents 18×26, then 9×13), the
//! reference's random draws replayed. Bar: the 1e-3 relative on the final latents.

mod common;
use common::fixture::{assert_parity_within, fp16_folder, small_request, tiny_sd};
use ldm_engine::diffusion::{RecordedNoise, SamplerOptions, SchedulerConfig, SeededNoise};
use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::pipelines::inpaint::{InpaintInput, InpaintMode};
use ldm_engine::pipelines::txt2img::{TextToImage, TextToImageRequest};
use ldm_engine::{DType, Tensor};

fn fixture(name: &str) -> SafeTensorsFile {
    SafeTensorsFile::open(format!("{}/tests/fixtures/pipelines/{name}.safetensors", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The tiny SD pipeline, with the 9-channel UNet swapped in for `unet9`.
fn pipeline(unet9: bool) -> TextToImage {
    let mut pipe = tiny_sd();
    if unet9 {
        pipe.unet = fp16_folder("tiny_sd_inpaint").unet(DType::F32).unwrap();
    }
    pipe
}

fn request(inputs: &SafeTensorsFile, case: &SafeTensorsFile) -> TextToImageRequest {
    let (m, c) = (inputs.metadata(), case.metadata());
    let prompts: Vec<String> = serde_json::from_str(&m["prompts"]).unwrap();
    TextToImageRequest {
        negative_prompts: vec![m["negative"].clone(); prompts.len()],
        prompts,
        guidance: m["guidance"].parse().unwrap(),
        sampler: SamplerOptions { kind: c["sampler"].parse().unwrap(), steps: c["steps"].parse().unwrap(), eta: 0.0 },
        height: m["height"].parse().unwrap(),
        width: m["width"].parse().unwrap(),
    }
}

fn check(name: &str, blend: &mut TextToImage, unet9: &mut TextToImage) {
    let inputs = fixture("inpaint_inputs");
    let case = fixture(&format!("inpaint_{name}"));
    let c = case.metadata();
    let pipe = if c["unet9"] == "true" { unet9 } else { blend };
    pipe.scheduler = SchedulerConfig::from_diffusers(&serde_json::from_str(&c["scheduler_json"]).unwrap()).unwrap();
    let req = request(&inputs, &case);
    let strength: f64 = c["strength"].parse().unwrap();
    let input = InpaintInput { image: inputs.get("image").unwrap(), mask: inputs.get("mask").unwrap(), strength };
    // the generator's draws in order, whoever takes them (a 9-channel run at strength 1 never
    // encodes the image, so its initial noise is the first)
    let mut draws = RecordedNoise((0..3).map(|i| inputs.get(&format!("draw_{i}")).unwrap()).collect());
    let ctx = pipe.context(&req).unwrap();
    let mut calls = 0;
    let out = pipe.inpaint_latents(&req, &ctx, &input, None, &mut draws, &mut || calls += 1).unwrap();
    assert_parity_within(&out, &case.get("latents").unwrap(), &format!("inpaint {name} ({calls} UNet calls)"), 1e-3);
}

#[test]
fn inpainting_matches_diffusers_in_both_modes_for_each_sampler() {
    let (mut blend, mut unet9) = (pipeline(false), pipeline(true));
    assert_eq!(blend.inpaint_mode().unwrap(), InpaintMode::Blend);
    assert_eq!(unet9.inpaint_mode().unwrap(), InpaintMode::Concat);
    for name in ["blend_ddim", "blend_plms", "blend_euler", "blend_heun", "blend_dpmpp2m", "blend_euler_strength", "unet9_ddim", "unet9_euler", "unet9_dpmpp2m_strength"] {
        check(name, &mut blend, &mut unet9);
    }
}

#[test]
fn mask_downsampling_is_torch_nearest() {
    // interpolate(mode="nearest") to half size keeps the even rows and columns
    let x = Tensor::from_vec((0..24).map(|v| v as f32).collect::<Vec<_>>(), &[1, 1, 4, 6]).unwrap();
    assert_eq!(x.upsample_nearest2d(2, 3).unwrap().to_vec::<f32>().unwrap(), [0.0, 2.0, 4.0, 12.0, 14.0, 16.0]);
}

#[test]
fn bad_inpainting_inputs_are_one_line_errors() {
    let pipe = pipeline(false);
    let req = small_request();
    let ctx = pipe.context(&req).unwrap();
    let run = |image: &[usize], mask: &[usize], strength: f64| {
        let input = InpaintInput { image: Tensor::zeros(image, DType::F32), mask: Tensor::zeros(mask, DType::F32), strength };
        pipe.inpaint_latents(&req, &ctx, &input, None, &mut SeededNoise::new(0), &mut || {}).unwrap_err().to_string()
    };
    let e = run(&[1, 3, 24, 32], &[1, 1, 16, 32], 1.0);
    assert!(e.contains("the mask must be [1, 1, 24, 32]") && e.contains("[1, 1, 16, 32]"), "{e}");
    assert!(run(&[1, 3, 20, 32], &[1, 1, 24, 32], 1.0).contains("the image must be [1, 3, 24, 32]"));
    assert!(run(&[1, 3, 24, 32], &[1, 1, 24, 32], 0.0).contains("strength 0 must be in (0, 1]"));
    let wrong_noise = Tensor::zeros(&[1, 4, 5, 5], DType::F32);
    let input = InpaintInput { image: Tensor::zeros(&[1, 3, 24, 32], DType::F32), mask: Tensor::ones(&[1, 1, 24, 32], DType::F32), strength: 1.0 };
    let e = pipe.inpaint_latents(&req, &ctx, &input, Some(&wrong_noise), &mut SeededNoise::new(0), &mut || {}).unwrap_err().to_string();
    assert!(e.contains("initial noise must be [1, 4, 12, 16]"), "{e}");
    // a 9-channel UNet refuses plain text-to-image with a hint
    let nine = pipeline(true);
    let e = nine.latents(&req, &Tensor::zeros(&[1, 4, 12, 16], DType::F32), &mut SeededNoise::new(0), &mut || {}).unwrap_err().to_string();
    assert!(e.contains("takes 9 input channels") && e.contains("needs an init image and a mask"), "{e}");
}
