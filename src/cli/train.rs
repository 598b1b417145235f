//! `ldm-engine train autoencoder` and `ldm-engine eval autoencoder`: the paper's first stage (a KL or VQ
//! autoencoder with the PatchGAN and, given LPIPS weights, the perceptual loss) on an image folder
//! or a built-in dataset. A run directory holds everything a person and a resumed run need:
//! config.json, checkpoint.safetensors (atomic, every save_every steps and at the end), losses.csv,
//! losses.png and recon_<step>.png (inputs over reconstructions).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ldm_engine::train::ae_trainer::{AeTrainConfig, AeTrainer, StepLog};
use ldm_engine::train::data::{Dataset, Digits, DigitsOptions, Fit, ImageFolder, ImageTransform, Loader, LoaderConfig, Start};
use ldm_engine::train::lpips::{Lpips, VGG16_WEIGHTS};
use ldm_engine::train::metrics::{psnr, ssim};
use ldm_engine::train::plot::{save_loss_plot, save_recon_grid};
use ldm_engine::{Error, Result, Tensor};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// What to train: autoencoder (stage 1) or ldm (stage 2, over a trained autoencoder).
    pub what: Option<String>,
    /// The run's JSON config (model, loss, disc, train sections; see configs/).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// An image folder (png/jpg, searched recursively), or mnist / fashion-mnist (fetched into
    /// data/ by tools/fetch_datasets.py).
    #[arg(long)]
    pub data: Option<String>,
    /// Where the built-in datasets were fetched to.
    #[arg(long, default_value = "data")]
    pub data_root: PathBuf,
    /// The run directory (created; must not hold a run unless --resume).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop (with a checkpoint) after this many minutes.
    #[arg(long, allow_negative_numbers = true)]
    pub max_minutes: Option<f64>,
    /// Image-decoding threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// LPIPS-VGG16 weights (tools/fetch_lpips.py), used when loss.perceptual_weight > 0.
    #[arg(long, default_value = VGG16_WEIGHTS)]
    pub lpips: PathBuf,
    /// train ldm: the frozen first stage, a `train autoencoder` checkpoint.
    #[arg(long)]
    pub autoencoder: Option<PathBuf>,
    /// Stop (with a checkpoint) at this step even if the config's train.steps is larger; the
    /// weights are those an uninterrupted run has at this step.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// train ldm: the dtype of the exported model.safetensors (f32, or f16 for half the size).
    #[arg(long, default_value = "f32")]
    pub export_dtype: String,
    /// cpu | cuda | cuda:N — where the weights live and the steps run (a run can resume on
    /// another device: checkpoints are device-free).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A training checkpoint (RUN_DIR/checkpoint.safetensors).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// An image folder, or mnist / fashion-mnist.
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long, default_value = "data")]
    pub data_root: PathBuf,
    /// Evaluate at most this many images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// LPIPS-VGG16 weights (tools/fetch_lpips.py); without them LPIPS is left out of the report.
    #[arg(long, default_value = VGG16_WEIGHTS)]
    pub lpips: PathBuf,
    /// Also write 8 inputs over their reconstructions to this PNG.
    #[arg(long)]
    pub grid: Option<PathBuf>,
}

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid("train", msg.into())
}

/// --device for the trainers: cpu, cuda or cuda:N, checked to be there.
pub(crate) fn parse_device(s: &str) -> Result<ldm_engine::Device> {
    let device: ldm_engine::Device = s.parse().map_err(|e| invalid(format!("--device {s}: {e}")))?;
    if let ldm_engine::Device::Cuda(i) = device {
        ldm_engine::backend::cuda::device(i)?;
    }
    Ok(device)
}

/// Under LDM_CUDA_DRY_RUN: what the run launched and copied on `device` (nothing otherwise).
pub(crate) fn print_dry_run_report(device: ldm_engine::Device) -> Result<()> {
    if let ldm_engine::Device::Cuda(i) = device
        && let Some(dry) = ldm_engine::backend::cuda::device(i)?.dry_run()
    {
        println!("{}", dry.report());
    }
    Ok(())
}

pub(crate) fn require<'a, T>(v: &'a Option<T>, flag: &str) -> Result<&'a T> {
    v.as_ref().ok_or_else(|| invalid(format!("{flag} is required")))
}

fn check_what(what: &Option<String>, verb: &str) -> Result<()> {
    match what.as_deref() {
        Some("autoencoder") => Ok(()),
        Some("ldm") if verb == "train" => Ok(()),
        Some(other) => Err(invalid(format!("{verb} {other}: expected `autoencoder` or `ldm`"))),
        None => Err(invalid(format!("say what to {verb}: `ldm-engine {verb} autoencoder --help`"))),
    }
}

/// The dataset a run reads: a built-in one by name, else an image folder.
pub(crate) fn dataset(data: &str, root: &Path, channels: usize, size: usize, train: bool) -> Result<Arc<dyn Dataset>> {
    let opts = DigitsOptions { channels, size, fit: if size >= 28 { Fit::Pad } else { Fit::Resize } };
    let ds: Arc<dyn Dataset> = match data {
        "mnist" => Arc::new(Digits::mnist(root, opts)?),
        "fashion-mnist" => Arc::new(Digits::fashion_mnist(root, opts)?),
        dir => {
            if channels != 3 {
                return Err(invalid(format!("image folders are RGB: the model must take 3 channels, not {channels}")));
            }
            Arc::new(ImageFolder::open(dir, if train { ImageTransform::train(size) } else { ImageTransform::eval(size) })?)
        }
    };
    Ok(ds)
}

/// Rows of losses.csv before `step` (a run killed between logging and checkpointing logged steps
/// the resumed run takes again) that have all of `header`'s columns, as (step, values).
pub(crate) fn read_log(path: &Path, header: &str, before: u64) -> Result<Vec<(u64, Vec<f64>)>> {
    let columns = header.split(',').count() - 1;
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(vec![]) };
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut it = l.split(',');
            let step: u64 = it.next()?.parse().ok()?;
            let values: Vec<f64> = it.filter_map(|x| x.parse().ok()).collect();
            // a row that is not whole (or not this log's) is left out
            (step < before && values.len() == columns).then_some((step, values))
        })
        .collect())
}

/// losses.csv as `header` and `rows`, written atomically.
pub(crate) fn write_log(path: &Path, header: &str, rows: &[(u64, Vec<f64>)]) -> Result<()> {
    let mut text = String::from(header) + "\n";
    for (s, v) in rows {
        text += &(ldm_engine::train::csv_line(*s, v) + "\n");
    }
    ldm_engine::io::safetensors::write_atomic(path, text.as_bytes())
}

/// The curves a person looks at: the CSV's total, rec, kl, g and disc losses.
fn plot(path: &Path, rows: &[(u64, Vec<f64>)]) -> Result<()> {
    // columns after `step`: lr, total, rec, nll, kl, g, d_weight, disc_factor, disc_loss, …
    let col = |i: usize| rows.iter().filter_map(|(s, v)| v.get(i).map(|x| (*s as f64, *x))).collect::<Vec<_>>();
    save_loss_plot(path, &[("total loss", col(1)), ("L1 reconstruction", col(2)), ("KL or VQ codebook loss", col(4)), ("generator (-D(x_rec))", col(5)), ("discriminator hinge", col(8))])
}

/// Grey images as RGB for LPIPS (a VGG trained on colour photos).
fn rgb(x: &Tensor) -> Result<Tensor> {
    if x.dim(1)? == 1 { Tensor::cat(&[x, x, x], 1) } else { Ok(x.clone()) }
}

/// The images of the reconstruction pictures: the same 8 every time, drawn across the dataset by
/// a fixed shuffle (the built-in datasets are sorted by class), centre-cropped.
fn preview_batch(data: &str, root: &Path, cfg: &AeTrainConfig) -> Result<Tensor> {
    let ds = dataset(data, root, cfg.model.in_channels, cfg.image_size, false)?;
    let n = ds.len().min(8);
    Ok(Loader::new(ds, LoaderConfig { workers: 0, ..LoaderConfig::new(n, 0) })?.next_batch()?.images)
}

/// Why a run's loop ended at `step`: its config's last step, --max-steps (`last`), or the clock.
pub(crate) fn stop_reason(step: u64, steps: u64, last: u64) -> &'static str {
    if step >= steps {
        "done"
    } else if step >= last {
        "stopped (--max-steps)"
    } else {
        "stopped (time limit)"
    }
}

pub fn train(a: &TrainArgs) -> Result<()> {
    check_what(&a.what, "train")?;
    if let Some(m) = a.max_minutes.filter(|m| !(m.is_finite() && *m > 0.0)) {
        return Err(invalid(format!("--max-minutes {m}: must be a positive number of minutes")));
    }
    if a.what.as_deref() == Some("ldm") {
        return super::train_ldm::train_ldm(a);
    }
    if a.autoencoder.is_some() {
        return Err(invalid("--autoencoder belongs to `train ldm`"));
    }
    let device = parse_device(&a.device)?;
    let out = require(&a.out, "--out")?;
    let data = require(&a.data, "--data")?;
    let ckpt = out.join("checkpoint.safetensors");
    let mut trainer = if a.resume {
        if a.config.is_some() {
            return Err(invalid("--resume continues with the configuration saved in the run: drop --config"));
        }
        if !ckpt.is_file() {
            return Err(invalid(format!("--resume: {} has no checkpoint.safetensors to continue from", out.display())));
        }
        AeTrainer::resume_on(&ckpt, device)?
    } else {
        if ckpt.exists() {
            return Err(invalid(format!("{} already holds a run: pass --resume to continue it, or choose another --out", out.display())));
        }
        let path = require(&a.config, "--config")?;
        let text = std::fs::read_to_string(path).map_err(|e| Error::File { path: path.display().to_string(), msg: e.to_string() })?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::File { path: path.display().to_string(), msg: format!("not JSON: {e}") })?;
        AeTrainer::new_on(AeTrainConfig::from_json(&v)?, device)?
    };
    let cfg = trainer.cfg.clone();
    if cfg.loss.perceptual_weight > 0.0 {
        let lpips = Lpips::load_vgg16_on(&a.lpips, device)?.frozen();
        trainer.set_perceptual(Box::new(move |x: &Tensor, xrec: &Tensor| lpips.forward(&rgb(x)?, &rgb(xrec)?)));
    }
    let ds = dataset(data, &a.data_root, cfg.model.in_channels, cfg.image_size, true)?;
    std::fs::create_dir_all(out).map_err(|e| Error::File { path: out.display().to_string(), msg: e.to_string() })?;
    ldm_engine::io::safetensors::write_atomic(&out.join("config.json"), serde_json::to_string_pretty(&cfg.to_json()).unwrap_or_default().as_bytes())?;
    let mut loader = Loader::new(ds.clone(), LoaderConfig { workers: a.workers, start: Start::Step(trainer.step), ..LoaderConfig::new(cfg.batch_size, cfg.seed) })?;
    let preview = preview_batch(data, &a.data_root, &cfg)?;
    let csv = out.join("losses.csv");
    let mut rows = read_log(&csv, StepLog::CSV_HEADER, trainer.step)?;
    write_log(&csv, StepLog::CSV_HEADER, &rows)?;
    let mut csv_file = std::fs::OpenOptions::new().append(true).open(&csv).map_err(|e| Error::File { path: csv.display().to_string(), msg: e.to_string() })?;

    let bar = ProgressBar::new(cfg.steps);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {per_sec}, eta {eta} {msg}").map_err(|e| invalid(e.to_string()))?);
    bar.set_position(trainer.step);
    let started = Instant::now();
    let out_of_time = || a.max_minutes.is_some_and(|m| started.elapsed().as_secs_f64() > 60.0 * m);
    let pictures = |trainer: &AeTrainer, rows: &[(u64, Vec<f64>)]| -> Result<()> {
        plot(&out.join("losses.png"), rows)?;
        save_recon_grid(&out.join(format!("recon_{:06}.png", trainer.step)), &preview, &trainer.reconstruct(&preview)?, &format!("step {}: inputs (top), reconstructions (bottom)", trainer.step))
    };
    let last = cfg.steps.min(a.max_steps.unwrap_or(u64::MAX));
    while trainer.step < last && !out_of_time() {
        let batch = loader.next_batch()?;
        let log = trainer.train_step(&batch.images)?;
        writeln!(csv_file, "{}", log.csv_row()).map_err(|e| Error::File { path: csv.display().to_string(), msg: e.to_string() })?;
        rows.push((log.step, log.values().to_vec()));
        bar.set_position(trainer.step);
        if trainer.step.is_multiple_of(cfg.log_every) {
            bar.set_message(format!("rec {:.4} reg {:.3} g {:.3} d {:.3}", log.rec, log.reg, log.g, log.disc_loss));
        }
        if trainer.step.is_multiple_of(cfg.save_every) {
            trainer.save(&ckpt)?;
        }
        if trainer.step.is_multiple_of(cfg.image_every) {
            pictures(&trainer, &rows)?;
        }
    }
    bar.finish_and_clear();
    trainer.save(&ckpt)?;
    pictures(&trainer, &rows)?;
    let done = stop_reason(trainer.step, cfg.steps, last);
    println!("{done} at step {} in {:.1} min; run in {}", trainer.step, started.elapsed().as_secs_f64() / 60.0, out.display());
    print_dry_run_report(device)
}

pub fn eval(a: &EvalArgs) -> Result<()> {
    let ckpt = require(&a.checkpoint, "--checkpoint")?;
    let data = require(&a.data, "--data")?;
    let trainer = AeTrainer::resume(ckpt)?;
    let cfg = &trainer.cfg;
    let ds = dataset(data, &a.data_root, cfg.model.in_channels, cfg.image_size, false)?;
    let n = a.limit.unwrap_or(usize::MAX).min(ds.len());
    if n == 0 {
        return Err(invalid("nothing to evaluate (--limit 0 or an empty dataset)"));
    }
    // a fixed permutation: --limit takes a sample across the dataset (the built-in ones are
    // sorted by class), and without it every image is seen once
    let mut loader = Loader::new(ds, LoaderConfig::new(cfg.batch_size.min(n), 0))?;
    let lpips = if a.lpips.is_file() { Some(Lpips::load_vgg16(&a.lpips)?.frozen()) } else { None };
    let (mut p, mut s, mut l, mut identical) = (Vec::new(), Vec::new(), Vec::new(), 0usize);
    while p.len() + identical < n {
        let x = loader.next_batch()?.images;
        let take = (n - p.len() - identical).min(x.dim(0)?);
        let x = x.narrow(0, 0, take)?;
        let xr: Tensor = trainer.reconstruct(&x)?.clamp(-1.0, 1.0)?;
        for v in psnr(&x, &xr, 2.0)? {
            if v.is_finite() { p.push(v) } else { identical += 1 }
        }
        s.extend(ssim(&x, &xr, 2.0)?);
        if let Some(net) = &lpips {
            let _g = ldm_engine::no_grad();
            l.extend(net.forward(&rgb(&x)?, &rgb(&xr)?)?.to_vec::<f32>()?.into_iter().map(f64::from));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!("images: {n} at {}x{} (step {} of {})", cfg.image_size, cfg.image_size, trainer.step, ckpt.display());
    println!("psnr_db: {:.3}{}", mean(&p), if identical > 0 { format!(" ({identical} reconstructed exactly, left out of the mean)") } else { String::new() });
    println!("ssim: {:.4}", mean(&s));
    if let Some(path) = &a.grid {
        let x = preview_batch(data, &a.data_root, cfg)?;
        save_recon_grid(path, &x, &trainer.reconstruct(&x)?, &format!("step {}: inputs (top), reconstructions (bottom)", trainer.step))?;
        println!("wrote {}", path.display());
    }
    match lpips {
        Some(_) => println!("lpips_vgg: {:.4}", mean(&l)),
        None => println!("lpips_vgg: skipped ({} not found: run tools/fetch_lpips.py)", a.lpips.display()),
    }
    Ok(())
}
