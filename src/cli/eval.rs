//! `ldm-engine eval`: `autoencoder` (reconstructions of a trained first stage, in cli/train.rs),
//! `fid` (Fréchet Inception Distance between two folders), `is` (Inception Score of one folder) and
//! the paired-folder metrics `lpips`,
//! `psnr`, `ssim` (each image of --fake against the image of the same relative path in --real).

use super::train::{parse_device, EvalArgs as AutoencoderArgs};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use ldm_engine::eval::fid::{frechet_distance, FeatureStats};
use ldm_engine::eval::folders::{inception_features, list_images, load_pair, paired_images};
use ldm_engine::eval::inception::{FidInception, FEATURE_DIM, FID_WEIGHTS};
use ldm_engine::eval::inception_score::{inception_score, LogitsLayer, CLASSES, LOGITS_WEIGHTS};
use ldm_engine::train::lpips::{Lpips, VGG16_WEIGHTS};
use ldm_engine::train::metrics::{psnr, ssim, SSIM_WIN};
use ldm_engine::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct EvalCommand {
    #[command(subcommand)]
    pub what: Option<EvalWhat>,
}

#[derive(Subcommand)]
pub enum EvalWhat {
    /// PSNR, SSIM and LPIPS of a trained autoencoder's reconstructions of a dataset.
    Autoencoder(AutoencoderArgs),
    /// Fréchet Inception Distance between two folders of images (any sizes, resized to 299²).
    Fid(FidArgs),
    /// Inception Score of a folder of generated images (the FID Inception network's 1008 classes).
    Is(IsArgs),
    /// LPIPS (VGG16) between paired images of two folders.
    Lpips(PairArgs),
    /// PSNR (dB) between paired images of two folders.
    Psnr(PairArgs),
    /// SSIM (Gaussian 11×11, σ 1.5) between paired images of two folders.
    Ssim(PairArgs),
}

/// How the Inception network runs over folders (eval fid, eval is).
#[derive(Args, Debug)]
pub struct InceptionRunArgs {
    /// The FID Inception weights (tools/fetch_fid_inception.py).
    #[arg(long, default_value = FID_WEIGHTS)]
    pub weights: PathBuf,
    /// Images per network call.
    #[arg(long, default_value_t = 25)]
    pub batch: usize,
    /// Use only the first N images (sorted by path) of each folder.
    #[arg(long)]
    pub limit: Option<usize>,
    /// cpu | cuda | cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

impl InceptionRunArgs {
    /// The images of `dir`, sorted, at most --limit of them.
    fn images(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut files = list_images(dir)?;
        files.truncate(self.limit.unwrap_or(usize::MAX));
        Ok(files)
    }

    /// Pool3 features of `files` ([files.len() × 2048]), --batch images per call, with a progress bar.
    fn features(&self, net: &FidInception, files: &[PathBuf], what: String) -> Result<Vec<f32>> {
        let bar = bar(files.len(), what);
        let f = inception_features(net, files, self.batch, &mut |done| bar.set_position(done as u64));
        bar.finish_and_clear();
        f
    }
}

#[derive(Args, Debug)]
pub struct FidArgs {
    /// Folder of reference images (searched recursively for .png/.jpg/.jpeg).
    #[arg(long)]
    pub real: PathBuf,
    /// Folder of generated images.
    #[arg(long)]
    pub fake: PathBuf,
    #[command(flatten)]
    pub net: InceptionRunArgs,
    /// Also write the features of both folders here (safetensors: real [N, 2048], fake [M, 2048]).
    #[arg(long)]
    pub save_features: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct IsArgs {
    /// Folder of generated images (searched recursively for .png/.jpg/.jpeg, taken in sorted order).
    #[arg(long)]
    pub fake: PathBuf,
    #[command(flatten)]
    pub net: InceptionRunArgs,
    /// The network's softmax layer (tools/convert_inception_logits.py).
    #[arg(long, default_value = LOGITS_WEIGHTS)]
    pub logits_layer: PathBuf,
    /// Consecutive splits the score is averaged over (10 in the paper and torch-fidelity).
    #[arg(long, default_value_t = 10)]
    pub splits: usize,
    /// Also write the logits here (safetensors: logits [N, 1008]).
    #[arg(long)]
    pub save_logits: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PairArgs {
    /// Folder of reference images.
    #[arg(long)]
    pub real: PathBuf,
    /// Folder of images to compare, same relative paths and sizes as --real.
    #[arg(long)]
    pub fake: PathBuf,
    /// LPIPS-VGG16 weights (tools/fetch_lpips.py); eval lpips only.
    #[arg(long, default_value = VGG16_WEIGHTS)]
    pub lpips: PathBuf,
}

pub fn run(cmd: &EvalCommand) -> Result<()> {
    match &cmd.what {
        None => Err(Error::invalid("eval", "say what to evaluate: autoencoder, fid, is, lpips, psnr or ssim (`ldm-engine eval fid --help`)")),
        Some(EvalWhat::Autoencoder(a)) => super::train::eval(a),
        Some(EvalWhat::Fid(a)) => fid(a),
        Some(EvalWhat::Is(a)) => is(a),
        Some(EvalWhat::Lpips(a)) => paired(a, Metric::Lpips),
        Some(EvalWhat::Psnr(a)) => paired(a, Metric::Psnr),
        Some(EvalWhat::Ssim(a)) => paired(a, Metric::Ssim),
    }
}

fn bar(len: usize, what: String) -> ProgressBar {
    let bar = ProgressBar::new(len as u64).with_message(what);
    if let Ok(style) = ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} [{elapsed} < {eta}, {per_sec}]") {
        bar.set_style(style);
    }
    bar
}

fn fid(a: &FidArgs) -> Result<()> {
    let device = parse_device(&a.net.device)?;
    // list both folders before the slow part, so a typo fails at once
    let take = |dir: &Path| -> Result<Vec<PathBuf>> {
        let files = a.net.images(dir)?;
        if files.len() < 2 {
            return Err(Error::invalid("eval", format!("{}: FID needs at least 2 images per folder, found {}", dir.display(), files.len())));
        }
        Ok(files)
    };
    let (real, fake) = (take(&a.real)?, take(&a.fake)?);
    let net = FidInception::load(&a.net.weights, device)?;
    let started = Instant::now();
    let features = |files: &[PathBuf], name: &str| a.net.features(&net, files, format!("inception features ({name})"));
    let (fr, ff) = (features(&real, "real")?, features(&fake, "fake")?);
    let secs = started.elapsed().as_secs_f64();
    if let Some(path) = &a.save_features {
        let t = |v: &[f32]| ldm_engine::Tensor::from_slice(v, &[v.len() / FEATURE_DIM, FEATURE_DIM]);
        let meta = [("made_by".to_string(), "ldm-engine eval fid".to_string())].into_iter().collect();
        ldm_engine::io::safetensors::save(path, &[("real", &t(&fr)?), ("fake", &t(&ff)?)], Some(meta))?;
    }
    let r = frechet_distance(&FeatureStats::from_features(&fr, FEATURE_DIM)?, &FeatureStats::from_features(&ff, FEATURE_DIM)?)?;
    let n_images = real.len() + fake.len();
    println!("real: {} images in {}", real.len(), a.real.display());
    println!("fake: {} images in {}", fake.len(), a.fake.display());
    println!("features: {:.1} s ({:.1} images/s on {:?})", secs, n_images as f64 / secs, device);
    println!("mean term |mu_r - mu_f|^2: {:.4}", r.mean_term);
    println!("trace term tr(S_r + S_f) - 2 tr((S_r S_f)^1/2): {:.4}", r.trace_sum - 2.0 * r.cross_trace);
    println!("fid: {:.4}", r.fid);
    Ok(())
}

fn is(a: &IsArgs) -> Result<()> {
    let device = parse_device(&a.net.device)?;
    let files = a.net.images(&a.fake)?;
    if files.len() < a.splits.max(1) {
        return Err(Error::invalid("eval", format!("{}: {} images cannot be cut into {} splits (--splits)", a.fake.display(), files.len(), a.splits)));
    }
    // both weight files before the slow part
    let layer = LogitsLayer::load(&a.logits_layer)?;
    let net = FidInception::load(&a.net.weights, device)?;
    let started = Instant::now();
    let logits = layer.logits(&a.net.features(&net, &files, "inception logits".into())?);
    let secs = started.elapsed().as_secs_f64();
    if let Some(path) = &a.save_logits {
        let t = ldm_engine::Tensor::from_slice(&logits, &[files.len(), CLASSES])?;
        let meta = [("made_by".to_string(), "ldm-engine eval is".to_string())].into_iter().collect();
        ldm_engine::io::safetensors::save(path, &[("logits", &t)], Some(meta))?;
    }
    let s = inception_score(&logits, CLASSES, a.splits)?;
    println!("images: {} in {}", files.len(), a.fake.display());
    println!("features: {:.1} s ({:.1} images/s on {:?})", secs, files.len() as f64 / secs, device);
    println!("per split: {}", s.per_split.iter().map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(" "));
    println!("inception_score: {:.4} (std {:.4} over {} splits)", s.mean, s.std, a.splits);
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Metric {
    Lpips,
    Psnr,
    Ssim,
}

fn paired(a: &PairArgs, metric: Metric) -> Result<()> {
    let pairs = paired_images(&a.real, &a.fake)?;
    let net = match metric {
        Metric::Lpips => Some(Lpips::load_vgg16(&a.lpips)?.frozen()),
        _ => None,
    };
    let name = match metric {
        Metric::Lpips => "lpips_vgg",
        Metric::Psnr => "psnr_db",
        Metric::Ssim => "ssim",
    };
    let bar = bar(pairs.len(), name.to_string());
    let (mut values, mut identical) = (Vec::with_capacity(pairs.len()), 0usize);
    for (pr, pf) in &pairs {
        let (xr, xf) = load_pair(pr, pf)?;
        let v = match metric {
            Metric::Psnr => psnr(&xr, &xf, 1.0)?[0],
            Metric::Ssim => {
                let (h, w) = (xr.dim(2)?, xr.dim(3)?);
                if h < SSIM_WIN || w < SSIM_WIN {
                    return Err(Error::invalid("eval", format!("{} is {w}x{h}: SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN}", pr.display())));
                }
                ssim(&xr, &xf, 1.0)?[0]
            }
            Metric::Lpips => {
                let _g = ldm_engine::no_grad();
                let to_pm1 = |x: &ldm_engine::Tensor| x.affine(2.0, -1.0);
                net.as_ref().expect("loaded above").forward(&to_pm1(&xr)?, &to_pm1(&xf)?)?.to_vec::<f32>()?[0] as f64
            }
        };
        if v.is_infinite() {
            identical += 1; // PSNR of an exact copy
        } else {
            values.push(v);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let sd = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / values.len().max(1) as f64).sqrt();
    println!("pairs: {} ({} vs {})", pairs.len(), a.real.display(), a.fake.display());
    if values.is_empty() {
        println!("{name}: inf (every pair is identical)");
    } else {
        let note = if identical > 0 { format!(" ({identical} identical pairs left out of the mean)") } else { String::new() };
        println!("{name}: {mean:.4} (sd {sd:.4}){note}");
    }
    Ok(())
}
