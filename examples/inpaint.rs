//! Inpainting from Rust, without the CLI: a square in the middle of a picture is repainted from a
//! prompt, with an inpainting UNet or (as here with the tiny folder) by mask blending.
//!
//!   cargo run --release --example inpaint -- tests/fixtures/tiny_sd "a red cube" inpainted.png
//!
//! (random tiny weights: the square comes back as noise, the rest of the picture stays).

use ldm_engine::diffusion::{SamplerOptions, SeededNoise};
use ldm_engine::io::image::{save_png, to_rgb8};
use ldm_engine::models::checkpoint::DiffusersFolder;
use ldm_engine::pipelines::inpaint::InpaintInput;
use ldm_engine::pipelines::txt2img::{TextToImage, TextToImageRequest};
use ldm_engine::{DType, Tensor};

fn main() -> ldm_engine::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [folder, prompt, out] = args.as_slice() else {
        eprintln!("usage: inpaint FOLDER PROMPT OUT.png");
        std::process::exit(2);
    };
    let mut folder = DiffusersFolder::open(folder)?;
    if folder.weight_files("unet").is_err() {
        folder.variant = Some("fp16".into());
    }
    let pipe = TextToImage::from_diffusers(&folder, DType::F32)?;
    let (h, w) = (64, 64);
    // a horizontal gradient as the picture ([-1, 1]), the middle 32×32 to repaint (1 = repaint)
    let image: Vec<f32> = (0..3 * h * w).map(|i| ((i % w) as f32 / w as f32) * 2.0 - 1.0).collect();
    let mask: Vec<f32> = (0..h * w).map(|p| if (16..48).contains(&(p / w)) && (16..48).contains(&(p % w)) { 1.0 } else { 0.0 }).collect();
    let input = InpaintInput { image: Tensor::from_vec(image, &[1, 3, h, w])?, mask: Tensor::from_vec(mask, &[1, 1, h, w])?, strength: 1.0 };
    let req = TextToImageRequest {
        prompts: vec![prompt.clone()],
        negative_prompts: vec![],
        guidance: 7.5,
        sampler: SamplerOptions { kind: "euler".parse()?, steps: 20, eta: 0.0 },
        height: h,
        width: w,
    };
    println!("mode: {:?}", pipe.inpaint_mode()?);
    let context = pipe.context(&req)?;
    let latents = pipe.inpaint_latents(&req, &context, &input, None, &mut SeededNoise::new(7), &mut || {})?;
    let (rgb, w, h) = to_rgb8(&pipe.decode(&latents)?)?;
    save_png(std::path::Path::new(out), &rgb, w, h, &[("parameters", prompt)])?;
    println!("wrote {out} ({w}x{h})");
    Ok(())
}
