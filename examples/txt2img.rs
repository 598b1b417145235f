//! Text-to-image from Rust, without the CLI: the same pipeline `ldm-engine sample` runs.
//!
//!   cargo run --release --example txt2img -- tests/fixtures/tiny_sd "a red cube on a table" cube.png
//!
//! (the tiny fixture folder has random weights: the picture is noise, the path is the real one).

use ldm_engine::diffusion::{SamplerOptions, SeededNoise};
use ldm_engine::io::image::{save_png, to_rgb8};
use ldm_engine::models::checkpoint::DiffusersFolder;
use ldm_engine::pipelines::txt2img::{TextToImage, TextToImageRequest};
use ldm_engine::{DType, Tensor};
use rand::SeedableRng;

fn main() -> ldm_engine::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [folder, prompt, out] = args.as_slice() else {
        eprintln!("usage: txt2img FOLDER PROMPT OUT.png");
        std::process::exit(2);
    };
    let mut folder = DiffusersFolder::open(folder)?;
    if folder.weight_files("unet").is_err() {
        folder.variant = Some("fp16".into()); // folders that only ship *.fp16.safetensors
    }
    let pipe = TextToImage::from_diffusers(&folder, DType::F32)?;
    let req = TextToImageRequest {
        prompts: vec![prompt.clone()],
        negative_prompts: vec![],
        guidance: 7.5,
        sampler: SamplerOptions { kind: "dpm++2m".parse()?, steps: 20, eta: 0.0 },
        height: 64,
        width: 64,
    };
    let shape = pipe.latent_shape(&req)?;
    let initial = Tensor::randn(&shape, 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(42));
    let latents = pipe.latents(&req, &initial, &mut SeededNoise::new(43), &mut || {})?;
    let (rgb, w, h) = to_rgb8(&pipe.decode(&latents)?)?;
    save_png(std::path::Path::new(out), &rgb, w, h, &[("parameters", prompt)])?;
    println!("wrote {out} ({w}x{h})");
    Ok(())
}
