//! `ldm-engine sample`: text-to-image from a diffusers Stable Diffusion folder, written as PNGs
//! with their parameters in a tEXt chunk. Every argument is checked before any model is loaded,
//! and nothing is written unless the whole run succeeds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ldm_engine::diffusion::{SamplerKind, SamplerOptions, SeededNoise};
use ldm_engine::io::image::{load_png, save_png, to_rgb8};
use ldm_engine::io::safetensors::{save, SafeTensorsFile};
use ldm_engine::models::checkpoint::DiffusersFolder;
use ldm_engine::pipelines::txt2img::{img2img_start, TextToImage, TextToImageRequest};
use ldm_engine::{DType, Error, Result, Tensor};
use rand::SeedableRng;

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// ddpm | ddim | plms | euler | euler-a | heun | dpm++2m
    #[arg(long, default_value = "euler")]
    sampler: String,
    /// Karras sigma spacing (Euler, Heun, DPM++ 2M).
    #[arg(long)]
    karras: bool,
    /// DDIM's η (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 7.5)]
    cfg_scale: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 512)]
    width: usize,
    #[arg(long, default_value_t = 512)]
    height: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// img2img: start from this PNG (its size sets the output size; sides must be multiples of 8).
    #[arg(long)]
    init_image: Option<PathBuf>,
    /// img2img: how much of the schedule to run from the noised image (0, 1]; default 0.8.
    #[arg(long)]
    strength: Option<f64>,
    #[arg(long)]
    mask: Option<PathBuf>,
    #[arg(long)]
    class: Option<usize>,
    /// Output PNG; a batch writes NAME-0.png, NAME-1.png, ...
    #[arg(long, default_value = "out.png")]
    out: PathBuf,
    /// auto | cpu | cuda
    #[arg(long, default_value = "auto")]
    device: String,
    /// Weight dtype: f32 (f16/bf16 files are widened on load).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// A safetensors file with one f32 tensor `noise` [batch, C, H/f, W/f]: the unscaled
    /// standard-normal initial latents, replacing the seeded draw.
    #[arg(long)]
    init_noise: Option<PathBuf>,
    /// Also write the final latents (tensor `latents`, before 1/scaling_factor) here.
    #[arg(long)]
    save_latents: Option<PathBuf>,
    /// Print `timings: text_encode_ms=… unet_ms_per_step=… vae_decode_ms=… total_ms=…`.
    #[arg(long)]
    timings: bool,
}

/// img2img's strength when --init-image comes without --strength.
const DEFAULT_STRENGTH: f64 = 0.8;

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid("sample", msg.into())
}

/// Everything that can be checked without loading a model.
fn check(a: &SampleArgs) -> Result<SamplerKind> {
    if a.width == 0 || a.height == 0 || !a.width.is_multiple_of(8) || !a.height.is_multiple_of(8) {
        return Err(invalid(format!("--width {} / --height {}: both must be positive multiples of 8", a.width, a.height)));
    }
    if a.steps == 0 {
        return Err(invalid("--steps must be at least 1"));
    }
    if a.batch == 0 {
        return Err(invalid("--batch must be at least 1"));
    }
    if !(a.eta >= 0.0 && a.cfg_scale.is_finite()) {
        return Err(invalid("--eta must be ≥ 0 and --cfg-scale finite"));
    }
    let kind: SamplerKind = a.sampler.parse()?;
    if a.mask.is_some() || a.class.is_some() {
        return Err(invalid("--mask and --class (inpainting, class-conditional models) are not in this build yet"));
    }
    if a.init_image.is_none() && a.strength.is_some() {
        return Err(invalid("--strength needs --init-image"));
    }
    if a.init_image.is_some() && a.init_noise.is_some() {
        return Err(invalid("--init-noise is for text-to-image: img2img draws its noise from --seed"));
    }
    if let Some(s) = a.strength
        && !(s > 0.0 && s <= 1.0)
    {
        return Err(invalid(format!("--strength {s} must be in (0, 1]")));
    }
    match a.device.as_str() {
        "auto" | "cpu" => {}
        "cuda" => return Err(invalid("--device cuda: the CUDA backend is not in this build yet; use --device cpu")),
        d => return Err(invalid(format!("--device {d}: expected auto, cpu or cuda"))),
    }
    if a.dtype != "f32" {
        return Err(invalid(format!("--dtype {}: the CPU backend computes in f32; f16/bf16 weight files are widened on load", a.dtype)));
    }
    if a.out.extension().and_then(|e| e.to_str()).map(|e| e.eq_ignore_ascii_case("png")) != Some(true) {
        return Err(invalid(format!("--out {}: the output must be a .png file", a.out.display())));
    }
    Ok(kind)
}

fn load(a: &SampleArgs) -> Result<TextToImage> {
    let Some(model) = &a.model else {
        return Err(invalid(
            "no --model given: the built-in default model arrives with the training issues; pass a diffusers Stable Diffusion folder (see README: Using real weights)",
        ));
    };
    if !model.exists() {
        return Err(Error::File { path: model.display().to_string(), msg: "no such file or directory".into() });
    }
    if model.is_file() {
        return Err(invalid(format!("{}: single-file checkpoints are not supported by `sample` yet: use a diffusers folder", model.display())));
    }
    let mut folder = DiffusersFolder::open(model)?;
    if folder.weight_files("unet").is_err() {
        folder.variant = Some("fp16".into());
    }
    TextToImage::from_diffusers(&folder, DType::F32)
}

fn output_paths(out: &Path, n: usize) -> Vec<PathBuf> {
    if n == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    (0..n).map(|i| out.with_file_name(format!("{stem}-{i}.png"))).collect()
}

/// The init image as [batch, 3, H, W] in [-1, 1].
fn init_image(path: &Path, batch: usize) -> Result<Tensor> {
    let (rgb, w, h, _) = load_png(path)?;
    if !w.is_multiple_of(8) || !h.is_multiple_of(8) {
        return Err(Error::File { path: path.display().to_string(), msg: format!("the init image is {w}x{h}: both sides must be multiples of 8") });
    }
    // interleaved RGB → planar, x/127.5 − 1 (diffusers' preprocess: x/255·2 − 1)
    let mut planar = vec![0f32; 3 * h * w];
    for (p, px) in rgb.chunks(3).enumerate() {
        for c in 0..3 {
            planar[c * h * w + p] = f32::from(px[c]) / 127.5 - 1.0;
        }
    }
    let one = Tensor::from_vec(planar, &[1, 3, h, w])?;
    Tensor::cat(&vec![&one; batch], 0)
}

pub fn run(a: &SampleArgs) -> Result<()> {
    let kind = check(a)?;
    let prompt = a.prompt.clone().ok_or_else(|| invalid("--prompt is required"))?;
    let start = Instant::now();
    let image = a.init_image.as_deref().map(|p| init_image(p, a.batch)).transpose()?;
    let (width, height) = match &image {
        Some(t) => (t.dim(3)?, t.dim(2)?),
        None => (a.width, a.height),
    };
    let mut pipe = load(a)?;
    pipe.scheduler.karras_sigmas |= a.karras;
    let req = TextToImageRequest {
        prompts: vec![prompt.clone(); a.batch],
        negative_prompts: vec![a.negative_prompt.clone(); a.batch],
        guidance: a.cfg_scale,
        sampler: SamplerOptions { kind, steps: a.steps, eta: a.eta },
        height,
        width,
    };
    let shape = pipe.latent_shape(&req)?;
    let initial = match &a.init_noise {
        Some(p) => {
            let t = SafeTensorsFile::open(p)?.get("noise")?;
            if t.shape() != shape {
                return Err(Error::File { path: p.display().to_string(), msg: format!("tensor 'noise' has shape {:?}, this run needs {shape:?}", t.shape()) });
            }
            t.to_dtype(DType::F32)?
        }
        None => Tensor::randn(&shape, 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(a.seed)),
    };

    let t0 = Instant::now();
    let context = pipe.context(&req)?;
    let text_ms = t0.elapsed().as_secs_f64() * 1e3;
    // steps that run: img2img skips the first (1 − strength) of the schedule
    let strength = a.strength.unwrap_or(DEFAULT_STRENGTH);
    let run_steps = match &image {
        Some(_) => a.steps - img2img_start(a.steps, strength)?,
        None => a.steps,
    };
    let calls = if kind == SamplerKind::Heun { 2 * run_steps - 1 } else { run_steps };
    let bar = ProgressBar::new(calls as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} UNet calls, {per_sec}, eta {eta}").map_err(|e| invalid(e.to_string()))?);
    let mut n_calls = 0usize;
    let t1 = Instant::now();
    let mut progress = || {
        n_calls += 1;
        bar.inc(1);
    };
    let latents = match &image {
        Some(img) => pipe.img2img_latents(&req, &context, img, strength, &mut SeededNoise::new(a.seed), &mut progress)?,
        None => pipe.denoise(&req, &context, &initial, &mut SeededNoise::new(a.seed.wrapping_add(1)), &mut progress)?,
    };
    bar.finish_and_clear();
    let unet_ms = t1.elapsed().as_secs_f64() * 1e3 / n_calls.max(1) as f64;
    let t2 = Instant::now();
    let images = pipe.decode(&latents)?;
    let vae_ms = t2.elapsed().as_secs_f64() * 1e3;

    // everything is computed: now write
    let params = format!(
        "{prompt}\nNegative prompt: {}\nSteps: {}, Sampler: {}{}, CFG scale: {}, Seed: {}, Size: {}x{}, Model: {}",
        a.negative_prompt,
        a.steps,
        kind.name(),
        if a.karras { " Karras" } else { "" },
        a.cfg_scale,
        a.seed,
        width,
        height,
        a.model.as_ref().and_then(|m| m.file_name()).and_then(|n| n.to_str()).unwrap_or("?"),
    ) + &image.as_ref().map(|_| format!(", Denoising strength: {strength}")).unwrap_or_default();
    if let Some(p) = &a.save_latents {
        save(p, &[("latents", &latents)], None)?;
    }
    let paths = output_paths(&a.out, a.batch);
    for (i, path) in paths.iter().enumerate() {
        let (rgb, w, h) = to_rgb8(&images.narrow(0, i, 1)?)?;
        save_png(path, &rgb, w, h, &[("parameters", &params), ("Software", "ldm-engine")])?;
        println!("wrote {}", path.display());
    }
    if a.timings {
        println!("timings: text_encode_ms={text_ms:.1} unet_ms_per_step={unet_ms:.1} vae_decode_ms={vae_ms:.1} total_ms={:.1}", start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(())
}
