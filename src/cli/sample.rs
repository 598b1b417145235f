//! `ldm-engine sample`: images from a Stable Diffusion model (a diffusers folder or an SD v1
//! single file: text-to-image, image-to-image, inpainting) or from one of the paper's models (a
//! CompVis single file with --preset), written as PNGs with their parameters in a tEXt chunk.
//! Every argument that can be checked before loading a model is, and nothing is written unless
//! the whole run succeeds.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ldm_engine::diffusion::{SamplerKind, SamplerOptions, SeededNoise};
use ldm_engine::io::image::MAX_PIXELS;
use ldm_engine::io::safetensors::save;
use ldm_engine::models::checkpoint::{DiffusersFolder, SingleFile};
use ldm_engine::models::presets::{self, LdmPreset};
use ldm_engine::pipelines::inpaint::InpaintInput;
use ldm_engine::pipelines::ldm::LatentDiffusion;
use ldm_engine::pipelines::txt2img::{img2img_start, TextToImage, TextToImageRequest};
use ldm_engine::train::ldm_export::{preset_of, EngineModel};
use ldm_engine::{DType, Device, Error, Result, Tensor};
use rand::SeedableRng;

use super::sample_io::{output_paths, read_image, read_mask, read_noise, write_images};

// The numeric flags take negative numbers as values (`allow_negative_numbers`), so `--cfg-scale -3`
// or `--class -1` reach the checks below and get their own message instead of clap's "unexpected
// argument '-3' found".
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A diffusers pipeline folder, a Stable Diffusion v1 single file (.safetensors, CompVis
    /// names), or a paper model's single file (with --preset).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Which paper model a CompVis single file is (e.g. cin256_v2, celeba256; see the error for
    /// the list). Not needed for SD v1 files or diffusers folders.
    #[arg(long)]
    pub preset: Option<String>,
    /// Build --preset's model (sd_v1, or a paper model) with random weights (seed 0) instead of
    /// loading --model: to time the real architecture where no pretrained weights exist, or to
    /// dry-run it (LDM_CUDA_DRY_RUN). The images are noise.
    #[arg(long)]
    pub random_weights: bool,
    #[arg(long)]
    pub prompt: Option<String>,
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// ddpm | ddim | plms | euler | euler-a | heun | dpm++2m [default: euler; ddim for paper models]
    #[arg(long)]
    pub sampler: Option<String>,
    /// Karras sigma spacing (Euler, Heun, DPM++ 2M).
    #[arg(long)]
    pub karras: bool,
    /// DDIM's η (0 = deterministic).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub eta: f64,
    #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
    pub steps: usize,
    /// Classifier-free guidance scale [default: 7.5; 3 for class-conditional paper models, 1 for others].
    #[arg(long, allow_negative_numbers = true)]
    pub cfg_scale: Option<f64>,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// [default: 512; a paper model's training size]
    #[arg(long, allow_negative_numbers = true)]
    pub width: Option<usize>,
    #[arg(long, allow_negative_numbers = true)]
    pub height: Option<usize>,
    #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
    pub batch: usize,
    /// img2img / inpainting: start from this PNG (its size sets the output size; sides must be multiples of 8).
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// How much of the schedule to run from the noised image, in (0, 1] [default: 0.8 for img2img, 1 for inpainting].
    #[arg(long, allow_negative_numbers = true)]
    pub strength: Option<f64>,
    /// Inpainting: a PNG the size of --init-image, white where the image is repainted.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// The class label for class-conditional models (e.g. an ImageNet id for cin256_v2).
    #[arg(long, allow_negative_numbers = true)]
    pub class: Option<i64>,
    /// Layout-to-image: a JSON list of {"class": N, "box": [x0, y0, x1, y1]} (corners in [0, 1]).
    #[arg(long)]
    pub layout: Option<PathBuf>,
    /// Semantic synthesis: a PNG whose grey value is each pixel's class id.
    #[arg(long)]
    pub segmentation: Option<PathBuf>,
    /// Output PNG; a batch writes NAME-0.png, NAME-1.png, … (or one grid with --grid).
    #[arg(long, default_value = "out.png")]
    pub out: PathBuf,
    /// Write a batch as one grid image at --out instead of numbered files.
    #[arg(long)]
    pub grid: bool,
    /// auto | cpu | cuda | cuda:N: where the weights live and the sampling runs; `auto` is the CPU
    /// until the CUDA path has been verified on a GPU.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Weight and compute dtype of a Stable Diffusion model on CUDA: f32, f16 or bf16 (the sampler
    /// keeps its latents in f32). The CPU computes in f32; f16/bf16 files are widened on load.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// A safetensors file with one f32 tensor `noise` [batch, C, H/f, W/f]: the unscaled
    /// standard-normal initial latents, replacing the seeded draw.
    #[arg(long)]
    pub init_noise: Option<PathBuf>,
    /// Also write the final latents (tensor `latents`, before 1/scaling_factor) here.
    #[arg(long)]
    pub save_latents: Option<PathBuf>,
    /// Print `timings: text_encode_ms=… unet_ms_per_step=… vae_decode_ms=… total_ms=… load_ms=…`
    /// (total: text encoding + sampling + decoding, the generation itself; load_ms: reading the
    /// model), plus the caching allocator's peak on CUDA.
    #[arg(long)]
    pub timings: bool,
    /// Generate this many times in one process (same seed, same images) and time the runs after
    /// the first: the first pays one-time costs (kernel modules, first allocations, weight
    /// layouts), as a warm-up does for PyTorch. --timings then prints the medians of the warm runs
    /// and the peak memory measured from the end of the first run.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

/// img2img's strength when --init-image comes without --strength or --mask.
const DEFAULT_STRENGTH: f64 = 0.8;

pub(super) fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid("sample", msg.into())
}

/// A run makes at most 8192×8192 pixels, all its images together: the largest PNG this engine
/// reads back. Past it the sizes only exhaust memory (100000x100000 was killed by the OOM killer)
/// or overflow the shape arithmetic (a panic), long before a sampler step.
pub(super) fn check_pixels(images: usize, width: usize, height: usize) -> Result<()> {
    let total = images as u128 * width as u128 * height as u128;
    if total > u128::from(MAX_PIXELS) {
        return Err(invalid(format!(
            "{images} image(s) of {width}x{height} pixels is more than the {MAX_PIXELS} pixels (8192x8192) one run makes: ask for fewer or smaller images"
        )));
    }
    Ok(())
}

/// Everything that can be checked without loading a model.
fn check(a: &SampleArgs) -> Result<()> {
    for (flag, v) in [("--width", a.width), ("--height", a.height)] {
        if let Some(v) = v
            && (v == 0 || !v.is_multiple_of(8))
        {
            return Err(invalid(format!("{flag} {v}: width and height must be positive multiples of 8")));
        }
    }
    if a.steps == 0 {
        return Err(invalid("--steps must be at least 1"));
    }
    if a.batch == 0 {
        return Err(invalid("--batch must be at least 1"));
    }
    if a.repeat == 0 {
        return Err(invalid("--repeat 0: at least one run is needed"));
    }
    // a lower bound (no image is smaller than 8x8); run_sd and sample_paper check the real size
    check_pixels(a.batch, a.width.unwrap_or(8), a.height.unwrap_or(8))?;
    if !(a.eta >= 0.0 && a.cfg_scale.is_none_or(f64::is_finite)) {
        return Err(invalid("--eta must be ≥ 0 and --cfg-scale finite"));
    }
    if let Some(s) = &a.sampler {
        s.parse::<SamplerKind>()?;
    }
    if a.init_image.is_none() && (a.strength.is_some() || a.mask.is_some()) {
        return Err(invalid("--strength and --mask need --init-image"));
    }
    if let Some(s) = a.strength
        && !(s > 0.0 && s <= 1.0)
    {
        return Err(invalid(format!("--strength {s} must be in (0, 1]")));
    }
    if a.device != "auto" {
        a.device.parse::<Device>().map_err(|e| invalid(format!("--device {}: {e}", a.device)))?;
    }
    weight_dtype(a)?;
    if a.out.extension().and_then(|e| e.to_str()).map(|e| e.eq_ignore_ascii_case("png")) != Some(true) {
        return Err(invalid(format!("--out {}: the output must be a .png file", a.out.display())));
    }
    Ok(())
}

enum Model {
    StableDiffusion(Box<TextToImage>),
    Paper(Box<LatentDiffusion>, Box<LdmPreset>),
}

/// The engine-trained class-conditional MNIST model (tools/train_default_model.sh), built in.
#[cfg(ldm_default_model)]
const DEFAULT_MODEL: Option<&[u8]> = Some(include_bytes!("../../weights/mnist_class_ldm.safetensors"));
#[cfg(not(ldm_default_model))]
const DEFAULT_MODEL: Option<&[u8]> = None;

/// The name sample_paper.rs knows engine-trained models by (they sample every class when no
/// --class is given).
pub(super) const ENGINE_MODEL: &str = "engine-trained";
pub(super) const DEFAULT_MODEL_NAME: &str = "built-in MNIST";

fn engine_model(m: EngineModel, name: &'static str) -> Model {
    let mut p = preset_of(&m.config, &m.autoencoder);
    p.name = name;
    Model::Paper(Box::new(m.ldm), Box::new(p))
}

/// --dtype: f32 anywhere; f16 or bf16 for Stable Diffusion on CUDA.
fn weight_dtype(a: &SampleArgs) -> Result<DType> {
    let dtype = match a.dtype.as_str() {
        "f32" => return Ok(DType::F32),
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        other => return Err(invalid(format!("--dtype {other}: expected f32, f16 or bf16"))),
    };
    if !a.device.starts_with("cuda") {
        return Err(invalid(format!("--dtype {}: the CPU backend computes in f32 (f16/bf16 weight files are widened on load); half precision needs --device cuda", a.dtype)));
    }
    Ok(dtype)
}

/// The device --device names, checked to be there (one line when it is not).
fn device(a: &SampleArgs) -> Result<Device> {
    let dev = match a.device.as_str() {
        "auto" => Device::Cpu,
        d => d.parse::<Device>().map_err(|e| invalid(format!("--device {d}: {e}")))?,
    };
    if let Device::Cuda(i) = dev {
        ldm_engine::backend::cuda::device(i)?;
    }
    Ok(dev)
}

fn load(a: &SampleArgs) -> Result<Model> {
    let device = device(a)?;
    let dtype = weight_dtype(a)?;
    let f32_only = || -> Result<()> {
        if dtype != DType::F32 {
            return Err(invalid(format!("--dtype {}: half precision is for Stable Diffusion models; engine-trained and paper models run in f32", a.dtype)));
        }
        Ok(())
    };
    if a.random_weights {
        return random_model(a, dtype, device);
    }
    let Some(model) = &a.model else {
        if a.preset.is_some() {
            return Err(invalid("--preset names what a --model file is; without --model the built-in MNIST model is used"));
        }
        f32_only()?;
        let bytes = DEFAULT_MODEL.ok_or_else(|| {
            invalid("no --model given and this build has no built-in model (weights/mnist_class_ldm.safetensors was missing when it was compiled); pass a diffusers Stable Diffusion folder or a single-file checkpoint")
        })?;
        return Ok(engine_model(EngineModel::from_bytes(DEFAULT_MODEL_NAME, bytes, DType::F32, device)?, DEFAULT_MODEL_NAME));
    };
    if !model.exists() {
        return Err(Error::File { path: model.display().to_string(), msg: "no such file or directory".into() });
    }
    if model.is_dir() {
        if a.preset.is_some() {
            return Err(invalid("--preset is for single-file checkpoints; a diffusers folder describes itself"));
        }
        let mut folder = DiffusersFolder::open(model)?.on_device(device);
        if folder.weight_files("unet").is_err() {
            folder.variant = Some("fp16".into());
        }
        return Ok(Model::StableDiffusion(Box::new(TextToImage::from_diffusers(&folder, dtype)?)));
    }
    let file = SingleFile::open(model)?.on_device(device);
    if EngineModel::is_engine_model(&file) {
        if a.preset.is_some() {
            return Err(invalid(format!("{}: an ldm-engine trained model describes itself; drop --preset", model.display())));
        }
        f32_only()?;
        return Ok(engine_model(EngineModel::from_single_file(&file, &model.display().to_string(), DType::F32)?, ENGINE_MODEL));
    }
    if file.is_sd_v1() && a.preset.as_deref().is_none_or(|p| p == "sd_v1") {
        return Ok(Model::StableDiffusion(Box::new(TextToImage::from_single_file(&file, dtype)?)));
    }
    let names: Vec<&str> = presets::paper_presets().iter().map(|p| p.name).collect();
    let Some(name) = &a.preset else {
        return Err(invalid(format!("{}: not a Stable Diffusion v1 file; say which paper model it is with --preset (one of: {})", model.display(), names.join(", "))));
    };
    let p = presets::preset(name)?;
    f32_only()?;
    let pipe = super::sample_paper::prepare(LatentDiffusion::from_single_file(&file, &p, DType::F32)?, &p)?;
    Ok(Model::Paper(Box::new(pipe), Box::new(p)))
}

/// --random-weights: --preset's architecture with fresh weights from seed 0.
fn random_model(a: &SampleArgs, dtype: DType, device: Device) -> Result<Model> {
    if a.model.is_some() {
        return Err(invalid("--random-weights builds the model instead of loading one: drop --model or --random-weights"));
    }
    let names: Vec<&str> = presets::paper_presets().iter().map(|p| p.name).collect();
    let Some(name) = &a.preset else {
        return Err(invalid(format!("--random-weights needs --preset: sd_v1 or a paper model ({})", names.join(", "))));
    };
    if name == "sd_v1" {
        return Ok(Model::StableDiffusion(Box::new(TextToImage::seeded(0, dtype, device)?)));
    }
    let p = presets::preset(name)?;
    if dtype != DType::F32 {
        return Err(invalid(format!("--dtype {}: half precision is for Stable Diffusion models; paper models run in f32", a.dtype)));
    }
    let pipe = super::sample_paper::prepare(LatentDiffusion::seeded(&p, 0, DType::F32, device)?, &p)?;
    Ok(Model::Paper(Box::new(pipe), Box::new(p)))
}

/// Runs `denoise` (`steps` steps of `kind`) under a progress bar over its UNet calls; returns
/// the latents and the milliseconds per call.
pub(super) fn with_progress(kind: SamplerKind, steps: usize, denoise: impl FnOnce(&mut dyn FnMut()) -> Result<Tensor>) -> Result<(Tensor, f64)> {
    // saturating: an absurd --steps reaches the scheduler, which refuses it in one line
    let calls = match kind {
        SamplerKind::Heun => steps.saturating_mul(2).saturating_sub(1),
        SamplerKind::Plms if steps >= 2 => steps.saturating_add(1),
        _ => steps,
    };
    let bar = ProgressBar::new(calls as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} UNet calls, {per_sec}, eta {eta}").map_err(|e| invalid(e.to_string()))?);
    let mut n_calls = 0usize;
    let t = Instant::now();
    let latents = denoise(&mut || {
        n_calls += 1;
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    Ok((latents, t.elapsed().as_secs_f64() * 1e3 / n_calls.max(1) as f64))
}

/// What a run produced, for the writer.
pub(super) struct Outcome {
    pub latents: Tensor,
    pub images: Tensor,
    /// the parameters line after the prompt lines (A1111's third line)
    pub settings: Vec<String>,
    pub prompt_lines: String,
    pub text_ms: f64,
    pub unet_ms: f64,
    pub vae_ms: f64,
    /// a grid with this many columns (one per class) instead of --grid's square one
    pub grid_cols: Option<usize>,
}

pub fn run(a: &SampleArgs) -> Result<()> {
    check(a)?;
    let start = Instant::now();
    let mut model = load(a)?;
    let load_ms = start.elapsed().as_secs_f64() * 1e3;
    // where the model runs (paper pipelines hand their images back on the host): its GPU, if any
    let device = device(a)?;
    let gpu = match device {
        Device::Cuda(i) => Some(ldm_engine::backend::cuda::device(i)?),
        Device::Cpu => None,
    };
    let mut runs: Vec<[f64; 4]> = Vec::new();
    let mut last = None;
    for run in 0..a.repeat {
        let t = Instant::now();
        let outcome = match &mut model {
            Model::StableDiffusion(pipe) => run_sd(a, pipe)?,
            Model::Paper(pipe, p) => super::sample_paper::run(a, pipe, p)?,
        };
        runs.push([outcome.text_ms, outcome.unet_ms, outcome.vae_ms, t.elapsed().as_secs_f64() * 1e3]);
        if run == 0
            && a.repeat > 1
            && let Some(dev) = &gpu
        {
            // PyTorch's bench resets its peak after the warm-up run too
            dev.reset_peak_memory();
            if let Some(dry) = dev.dry_run() {
                dry.reset();
            }
        }
        last = Some(outcome);
    }
    let outcome = last.expect("at least one run");
    // everything is computed: now write
    let random_name = a.preset.as_ref().filter(|_| a.random_weights).map(|p| format!("{p} (random weights)"));
    let model_name = a.model.as_ref().and_then(|m| m.file_name()).and_then(|n| n.to_str()).or(random_name.as_deref()).unwrap_or(DEFAULT_MODEL_NAME);
    let params = format!("{}\n{}, Model: {model_name}", outcome.prompt_lines, outcome.settings.join(", "));
    if let Some(p) = &a.save_latents {
        save(p, &[("latents", &outcome.latents.to_device(Device::Cpu)?)], None)?;
    }
    let images = outcome.images.to_device(Device::Cpu)?;
    let n = images.dim(0)?;
    let paths = output_paths(&a.out, n, a.grid || outcome.grid_cols.is_some());
    write_images(&images, &paths, &[("parameters", &params), ("Software", "ldm-engine")], outcome.grid_cols)?;
    if a.timings {
        // the warm runs when there are any, else the one run
        let timed = if runs.len() > 1 { &runs[1..] } else { &runs[..] };
        let median = |k: usize| {
            let mut v: Vec<f64> = timed.iter().map(|r| r[k]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "timings: text_encode_ms={:.1} unet_ms_per_step={:.1} vae_decode_ms={:.1} total_ms={:.1} load_ms={load_ms:.1} timed_runs={}",
            median(0),
            median(1),
            median(2),
            median(3),
            timed.len()
        );
        if let Some(dev) = &gpu {
            if dev.dry_run().is_some() {
                println!("(a dry run: these are the host's times, with no GPU work behind them)");
            }
            // requested bytes, as torch.cuda.max_memory_allocated counts; held: rounded to the
            // allocator's size classes
            let s = dev.memory_stats();
            let mib = |b: usize| b as f64 / (1u64 << 20) as f64;
            println!("peak_gpu_memory_mib={:.0} peak_gpu_held_mib={:.0}", mib(s.requested_peak), mib(s.peak));
        }
    }
    if let Some(table) = ldm_engine::backend::cuda::profile::report() {
        println!("{table}");
    }
    // what one run launched (the last: the warm-up's counts were dropped)
    super::train::print_dry_run_report(device)?;
    Ok(())
}

pub(super) fn common_settings(a: &SampleArgs, kind: SamplerKind, cfg: f64, width: usize, height: usize) -> Vec<String> {
    let karras = if a.karras { " Karras" } else { "" };
    // AUTOMATIC1111's sampler names, which the tools that read "parameters" know
    let name = match kind {
        SamplerKind::Ddpm => "DDPM",
        SamplerKind::Ddim => "DDIM",
        SamplerKind::Plms => "PLMS",
        SamplerKind::Euler => "Euler",
        SamplerKind::EulerAncestral => "Euler a",
        SamplerKind::Heun => "Heun",
        SamplerKind::DpmPP2M => "DPM++ 2M",
    };
    vec![format!("Steps: {}", a.steps), format!("Sampler: {name}{karras}"), format!("CFG scale: {cfg}"), format!("Seed: {}", a.seed), format!("Size: {width}x{height}")]
}

/// Text-to-image, image-to-image or inpainting with a Stable Diffusion model.
fn run_sd(a: &SampleArgs, pipe: &mut TextToImage) -> Result<Outcome> {
    let prompt = a.prompt.clone().ok_or_else(|| invalid("--prompt is required"))?;
    if a.class.is_some() {
        return Err(invalid("--class is for class-conditional paper models; Stable Diffusion takes a --prompt"));
    }
    if a.layout.is_some() || a.segmentation.is_some() {
        return Err(invalid("--layout and --segmentation are for the paper's layout and semantic-synthesis models (--preset)"));
    }
    if a.init_image.is_some() && a.mask.is_none() && a.init_noise.is_some() {
        return Err(invalid("--init-noise is for text-to-image and inpainting: img2img draws its noise from --seed"));
    }
    let kind: SamplerKind = a.sampler.as_deref().unwrap_or("euler").parse()?;
    let cfg = a.cfg_scale.unwrap_or(7.5);
    let image = a.init_image.as_deref().map(|p| read_image(p, a.batch, "init image")).transpose()?;
    let (width, height) = match &image {
        Some(t) => (t.dim(3)?, t.dim(2)?),
        None => (a.width.unwrap_or(512), a.height.unwrap_or(512)),
    };
    check_pixels(a.batch, width, height)?;
    let mask = a.mask.as_deref().map(|p| read_mask(p, width, height)).transpose()?;
    pipe.scheduler.karras_sigmas |= a.karras;
    let req = TextToImageRequest {
        prompts: vec![prompt.clone(); a.batch],
        negative_prompts: vec![a.negative_prompt.clone(); a.batch],
        guidance: cfg,
        sampler: SamplerOptions { kind, steps: a.steps, eta: a.eta },
        height,
        width,
    };
    let shape = pipe.latent_shape(&req)?;
    let initial = match &a.init_noise {
        Some(p) => read_noise(p, &shape)?,
        None => Tensor::randn(&shape, 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(a.seed)),
    };
    if mask.is_some() {
        pipe.inpaint_mode()?; // a UNet that can inpaint, before the text encoder runs
    }

    let t0 = Instant::now();
    let context = pipe.context(&req)?;
    // launches are asynchronous on CUDA: each stage's time ends when its work has
    ldm_engine::backend::synchronize(pipe.device())?;
    let text_ms = t0.elapsed().as_secs_f64() * 1e3;
    let strength = a.strength.unwrap_or(if mask.is_some() { 1.0 } else { DEFAULT_STRENGTH });
    let run_steps = if image.is_some() { a.steps - img2img_start(a.steps, strength)? } else { a.steps };
    let mut draws = SeededNoise::new(a.seed.wrapping_add(1));
    let (latents, unet_ms) = with_progress(kind, run_steps, |progress| match (&image, &mask) {
        (Some(img), Some(m)) => {
            let input = InpaintInput { image: img.clone(), mask: m.clone(), strength };
            pipe.inpaint_latents(&req, &context, &input, Some(&initial), &mut draws, progress)
        }
        (Some(img), None) => pipe.img2img_latents(&req, &context, img, strength, &mut SeededNoise::new(a.seed), progress),
        _ => pipe.denoise(&req, &context, &initial, &mut draws, progress),
    }
    .and_then(|l| ldm_engine::backend::synchronize(l.device()).map(|_| l)))?;
    let t2 = Instant::now();
    let images = pipe.decode(&latents)?;
    ldm_engine::backend::synchronize(images.device())?;
    let vae_ms = t2.elapsed().as_secs_f64() * 1e3;
    let mut settings = common_settings(a, kind, cfg, width, height);
    if image.is_some() {
        settings.push(format!("Denoising strength: {strength}"));
    }
    if mask.is_some() {
        settings.push("Inpainting: true".into());
    }
    Ok(Outcome { latents, images, settings, prompt_lines: format!("{prompt}\nNegative prompt: {}", a.negative_prompt), text_ms, unet_ms, vae_ms, grid_cols: None })
}
