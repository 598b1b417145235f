//! Text-to-image against diffusers' StableDiffusionPipeline on the tiny SD folder (with its
//! tokenizer and scheduler; tools/gen_pipeline_fixtures.py): same prompts, negative prompts,
//! guidance 7.5, 40×56 pixels (20×28 latents: the tiny VAE downsamples 2×; one case at 36×52, whose
//! second UNet level is 9×13), batch 2 and initial latents ⇒ final latents within
//! the 1e-3 relative, for each deterministic sampler.

mod common;
use common::fixture::{assert_parity_within, small_request, tiny_sd};
use ldm_engine::diffusion::{SamplerOptions, SchedulerConfig, SeededNoise};
use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::pipelines::txt2img::{TextToImage, TextToImageRequest};
use ldm_engine::DType;


/// The fixture's scheduler into the pipeline, and its request.
fn setup(f: &SafeTensorsFile, pipe: &mut TextToImage) -> TextToImageRequest {
    let m = f.metadata();
    pipe.scheduler = SchedulerConfig::from_diffusers(&serde_json::from_str(&m["scheduler_json"]).unwrap()).unwrap();
    let prompts: Vec<String> = serde_json::from_str(&m["prompts"]).unwrap();
    TextToImageRequest {
        negative_prompts: vec![m["negative"].clone(); prompts.len()],
        prompts,
        guidance: m["guidance"].parse().unwrap(),
        sampler: SamplerOptions { kind: m["sampler"].parse().unwrap(), steps: m["steps"].parse().unwrap(), eta: 0.0 },
        height: m["height"].parse().unwrap(),
        width: m["width"].parse().unwrap(),
    }
}

fn check(name: &str, pipe: &mut TextToImage) {
    let f = SafeTensorsFile::open(format!("{}/tests/fixtures/pipelines/txt2img_{name}.safetensors", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let req = setup(&f, pipe);
    let mut calls = 0;
    let out = pipe.latents(&req, &f.get("noise").unwrap(), &mut SeededNoise::new(0), &mut || calls += 1).unwrap();
    assert_parity_within(&out, &f.get("latents").unwrap(), &format!("txt2img {name} ({calls} UNet calls)"), 1e-3);
}

#[test]
fn txt2img_matches_diffusers_for_each_sampler() {
    let mut pipe = tiny_sd();
    assert_eq!(pipe.tokenizer.vocab_size(), 1000);
    // transformers' CLIPTokenizer on the folder's vocab.json + merges.txt (printed by the generator)
    let ids = pipe.tokenizer.encode("a photograph of an astronaut riding a horse").unwrap();
    assert_eq!(ids, [998, 320, 816, 580, 782, 79, 327, 539, 550, 64, 807, 521, 627, 339, 553, 796, 320, 71, 523, 611, 999]);
    // dpmpp2m_odd: 36×52 pixels, latents 18×26 whose second UNet level is odd (9×13)
    for name in ["plms", "ddim", "euler", "heun", "dpmpp2m", "ddim_vpred_trailing", "euler_karras", "dpmpp2m_odd"] {
        check(name, &mut pipe);
    }
}

/// Image-to-image against StableDiffusionImg2ImgPipeline at strength 0.6 of 10 steps: the
/// posterior sample and the start-step noise replayed from the reference's two draws.
#[test]
fn img2img_matches_diffusers_for_each_sampler() {
    use ldm_engine::diffusion::RecordedNoise;
    let mut pipe = tiny_sd();
    for name in ["ddim", "plms", "euler", "heun", "dpmpp2m"] {
        let f = SafeTensorsFile::open(format!("{}/tests/fixtures/pipelines/img2img_{name}.safetensors", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let m = f.metadata();
        let req = setup(&f, &mut pipe);
        let ctx = pipe.context(&req).unwrap();
        let mut draws = RecordedNoise(vec![f.get("draw_0").unwrap(), f.get("draw_1").unwrap()].into());
        let mut calls = 0;
        let strength: f64 = m["strength"].parse().unwrap();
        let out = pipe.img2img_latents(&req, &ctx, &f.get("image").unwrap(), strength, &mut draws, &mut || calls += 1).unwrap();
        assert_parity_within(&out, &f.get("latents").unwrap(), &format!("img2img {name} ({calls} UNet calls)"), 1e-3);
        assert!(draws.0.is_empty(), "img2img {name}: both reference draws used");
    }
    let req = small_request();
    let ctx = pipe.context(&req).unwrap();
    let image = ldm_engine::Tensor::zeros(&[1, 3, 24, 32], DType::F32);
    let err = |s: f64| pipe.img2img_latents(&req, &ctx, &image, s, &mut SeededNoise::new(0), &mut || {}).err().unwrap().to_string();
    assert!(err(0.1).contains("strength 0.1 with 4 steps leaves no step to run"));
    assert!(err(1.5).contains("strength 1.5 must be in (0, 1]"));
    let wrong = ldm_engine::Tensor::zeros(&[1, 3, 16, 32], DType::F32);
    assert!(pipe.img2img_latents(&req, &ctx, &wrong, 0.5, &mut SeededNoise::new(0), &mut || {}).err().unwrap().to_string().contains("init image must be [1, 3, 24, 32]"));
}

#[test]
fn bad_requests_are_one_line_errors() {
    let pipe = tiny_sd();
    let base = TextToImageRequest {
        prompts: vec!["a cat".into()],
        negative_prompts: vec![],
        guidance: 7.5,
        sampler: SamplerOptions { kind: "ddim".parse().unwrap(), steps: 2, eta: 0.0 },
        height: 40,
        width: 56,
    };
    let noise = ldm_engine::Tensor::zeros(&[1, 4, 20, 28], DType::F32);
    let run = |r: &TextToImageRequest| pipe.latents(r, &noise, &mut SeededNoise::new(0), &mut || {}).unwrap_err().to_string();
    assert!(run(&TextToImageRequest { width: 51, ..base.clone() }).contains("size 51x40 must be positive multiples of 2"));
    assert!(run(&TextToImageRequest { height: 0, ..base.clone() }).contains("must be positive multiples"));
    assert!(run(&TextToImageRequest { prompts: vec![], ..base.clone() }).contains("no prompt"));
    assert!(run(&TextToImageRequest { negative_prompts: vec!["a".into(), "b".into()], ..base.clone() }).contains("2 negative prompts for 1 prompts"));
    let e = run(&TextToImageRequest { sampler: SamplerOptions { steps: 0, ..base.sampler }, ..base.clone() });
    assert!(e.contains("0 steps"), "{e}");
    let wrong = ldm_engine::Tensor::zeros(&[1, 4, 6, 7], DType::F32);
    assert!(pipe.latents(&base, &wrong, &mut SeededNoise::new(0), &mut || {}).unwrap_err().to_string().contains("initial noise must be [1, 4, 20, 28]"));
}
