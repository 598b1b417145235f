//! `ldm-engine train ldm`: the paper's second stage over a frozen `train autoencoder` checkpoint.
//! The run directory holds config.json, checkpoint.safetensors (atomic, every save_every steps and
//! at the end), latents.safetensors (the encoded training set, when cached), losses.csv,
//! losses.png, samples_<step>.png (EMA weights, DDIM, one column per class) and model.safetensors
//! (the exported model `ldm-engine sample --model` reads).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use ldm_engine::train::data::{Dataset, Loader, LoaderConfig, Start};
use ldm_engine::train::ldm_data::{random_masks, Holdout, LatentCache};
use ldm_engine::train::ldm_export::export_model;
use ldm_engine::train::ldm_trainer::{LatentBatch, LdmStepLog, LdmTrainer};
use ldm_engine::train::ldm_config::LdmCond;
use ldm_engine::train::plot::{save_image_grid, save_loss_plot, save_recon_grid};
use ldm_engine::{DType, Error, Result, Tensor};

use super::train::{dataset, invalid, read_log, require, stop_reason, write_log, TrainArgs};

/// DDIM steps and guidance of the sample grids written while training.
const GRID_STEPS: usize = 50;
const GRID_GUIDANCE: f64 = 3.0;
const GRID_ROWS: usize = 4;

fn file_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::File { path: path.display().to_string(), msg: e.to_string() }
}

/// Where batches come from: the cached latents, or images encoded as they arrive.
enum Source {
    Cached(LatentCache),
    Images(Loader),
}

fn next_batch(source: &mut Source, t: &LdmTrainer, step: u64, batch: usize, seed: u64) -> Result<LatentBatch> {
    match source {
        Source::Cached(c) => c.batch(step, batch, seed),
        Source::Images(l) => {
            let b = l.next_batch()?;
            if t.cfg.cond == LdmCond::Inpaint {
                // a fresh mask per image and step, reproducible from the seed and the step
                let [n, _, h, w] = [b.images.dim(0)?, 0, b.images.dim(2)?, b.images.dim(3)?];
                let masks = random_masks(n, h, w, seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))?;
                return t.encode_inpainting(&b.images, &masks, b.labels);
            }
            t.encode(&b.images, b.labels, &[])
        }
    }
}

/// A grid of samples: for class models GRID_ROWS rows of every class, for text models GRID_ROWS
/// rows of up to 10 distinct training captions (one column each), for super-resolution models 8
/// low-res inputs (enlarged) over their samples, else 4×8 unconditional.
fn sample_grid(t: &LdmTrainer, path: &Path, preview: Option<&Preview>, prompts: &[String]) -> Result<()> {
    let caption = format!("step {}: EMA weights, DDIM {GRID_STEPS} steps, guidance {GRID_GUIDANCE}", t.step);
    if let Some(Preview::Inpaint { images, masks }) = preview {
        let x = t.sample_inpainting(images, masks, GRID_STEPS, 0)?.clamp(-1.0, 1.0)?;
        // the inputs as the model saw them: the masked region grey
        let shown = masks.affine(-1.0, 1.0)?.mul(images)?;
        return save_recon_grid(path, &shown, &x, &format!("{caption}: masked inputs (top), inpainted (bottom)"));
    }
    if let Some(Preview::LowRes(lr)) = preview {
        let x = t.sample(None, Some(lr), 0, GRID_STEPS, 1.0, 0)?.clamp(-1.0, 1.0)?;
        let up = lr.upsample_nearest2d(x.dim(2)?, x.dim(3)?)?;
        return save_recon_grid(path, &up, &x, &format!("{caption}: low-res inputs (top), samples (bottom)"));
    }
    let (x, cols) = match t.cfg.cond {
        LdmCond::Class { n_classes, .. } => {
            let labels: Vec<i64> = (0..GRID_ROWS * n_classes).map(|i| (i % n_classes) as i64).collect();
            (t.sample(Some(&labels), None, labels.len(), GRID_STEPS, GRID_GUIDANCE, 0)?, n_classes)
        }
        LdmCond::Text { .. } if !prompts.is_empty() => {
            let p: Vec<String> = (0..GRID_ROWS * prompts.len()).map(|i| prompts[i % prompts.len()].clone()).collect();
            (t.sample_prompts(None, None, Some(&p), p.len(), GRID_STEPS, GRID_GUIDANCE, 0)?, prompts.len())
        }
        _ => (t.sample(None, None, 32, GRID_STEPS, 1.0, 0)?, 8),
    };
    save_image_grid(path, &x.clamp(-1.0, 1.0)?, cols, &caption)
}

/// Up to 10 distinct captions drawn across the training set (text models' sample grids).
fn preview_prompts(t: &LdmTrainer, ds: &dyn Dataset) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    if !matches!(t.cfg.cond, LdmCond::Text { .. }) {
        return Ok(out);
    }
    let n = ds.len();
    for i in (0..n).step_by((n / 500).max(1)) {
        if let Some(c) = ds.caption(i)?
            && !out.contains(&c)
        {
            out.push(c);
        }
        if out.len() == 10 {
            break;
        }
    }
    out.sort();
    Ok(out)
}

/// What the sample grids of concat-conditioned models start from: for super-resolution the
/// low-res versions of the first 8 training images, for inpainting those images and fixed masks.
enum Preview {
    LowRes(Tensor),
    Inpaint { images: Tensor, masks: Tensor },
}

fn preview_images(t: &LdmTrainer, ds: &dyn Dataset) -> Result<Option<Preview>> {
    if t.cfg.cond != LdmCond::LowRes && t.cfg.cond != LdmCond::Inpaint {
        return Ok(None);
    }
    let n = ds.len().min(8);
    let [c, h, w] = ds.sample_shape();
    let mut px = vec![0f32; n * c * h * w];
    let mut rng = rand::SeedableRng::seed_from_u64(0);
    for (i, out) in px.chunks_mut(c * h * w).enumerate() {
        ds.fill(i, &mut rng, out)?;
    }
    let images = Tensor::from_vec(px, &[n, c, h, w])?;
    if t.cfg.cond == LdmCond::Inpaint {
        return Ok(Some(Preview::Inpaint { masks: random_masks(n, h, w, 0)?, images }));
    }
    Ok(t.encode(&images, None, &[])?.concat.map(Preview::LowRes))
}

pub fn train_ldm(a: &TrainArgs) -> Result<()> {
    let out = require(&a.out, "--out")?;
    let data = require(&a.data, "--data")?;
    let export_dtype = match a.export_dtype.as_str() {
        "f32" => DType::F32,
        "f16" => DType::F16,
        other => return Err(invalid(format!("--export-dtype {other}: expected f32 or f16"))),
    };
    let device = super::train::parse_device(&a.device)?;
    let ckpt = out.join("checkpoint.safetensors");
    let mut t = if a.resume {
        if a.config.is_some() || a.autoencoder.is_some() {
            return Err(invalid("--resume continues with the configuration and autoencoder saved in the run: drop --config and --autoencoder"));
        }
        if !ckpt.is_file() {
            return Err(invalid(format!("--resume: {} has no checkpoint.safetensors to continue from", out.display())));
        }
        LdmTrainer::resume(&ckpt, device)?
    } else {
        if ckpt.exists() {
            return Err(invalid(format!("{} already holds a run: pass --resume to continue it, or choose another --out", out.display())));
        }
        let path = require(&a.config, "--config")?;
        let ae = require(&a.autoencoder, "--autoencoder (a `train autoencoder` checkpoint)")?;
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(path, format!("not JSON: {e}")))?;
        LdmTrainer::new(&v, ae, device)?
    };
    let cfg = t.cfg.clone();
    let (channels, size) = (t.ae_cfg.model.in_channels, t.ae_cfg.image_size);
    let full = dataset(data, &a.data_root, channels, size, !cfg.cache_latents)?;
    if matches!(cfg.cond, LdmCond::Class { .. }) && !full.has_labels() {
        return Err(invalid(format!("a class-conditional config needs labelled data (mnist, fashion-mnist); {data} has no labels")));
    }
    let ds: Arc<dyn Dataset> = Arc::new(Holdout::new(full, cfg.holdout_every, false));
    if ds.is_empty() {
        return Err(invalid(format!("{data}: no training images")));
    }
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e))?;
    ldm_engine::io::safetensors::write_atomic(&out.join("config.json"), serde_json::to_string_pretty(&cfg.to_json()).unwrap_or_default().as_bytes())?;

    let mut source = if cfg.cache_latents {
        let cache_path = out.join("latents.safetensors");
        let cache = if cache_path.is_file() {
            LatentCache::load(&cache_path)?
        } else {
            let bar = ProgressBar::new(ds.len() as u64).with_message("encoding the training set");
            bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} images, {per_sec}, eta {eta} {msg}").map_err(|e| invalid(e.to_string()))?);
            let c = LatentCache::encode(&*ds, 64, matches!(cfg.cond, LdmCond::Text { .. }), &|x, captions| t.encode(x, None, captions), &mut |n| bar.set_position(n as u64))?;
            bar.finish_and_clear();
            c.save(&cache_path)?;
            c
        };
        if cache.len() != ds.len() {
            return Err(invalid(format!("{} holds {} latents but the data has {} training images: delete it to re-encode", cache_path.display(), cache.len(), ds.len())));
        }
        Source::Cached(cache)
    } else {
        Source::Images(Loader::new(ds.clone(), LoaderConfig { workers: a.workers, start: Start::Step(t.step), ..LoaderConfig::new(cfg.batch_size, cfg.seed) })?)
    };
    let next = |source: &mut Source, t: &LdmTrainer, step: u64| next_batch(source, t, step, cfg.batch_size, cfg.seed);
    // the image loader's first batch, when it was read to measure the scale factor
    let mut pending = None;
    if !t.scale_known {
        // CompVis scale_by_std measures the first batch; cached latents give a larger sample
        let probe = match &source {
            Source::Cached(c) => {
                let n = c.len().min(4096);
                LatentBatch { mean: c.mean.narrow(0, 0, n)?, logvar: c.logvar.as_ref().map(|l| l.narrow(0, 0, n)).transpose()?, labels: None, concat: None, tokens: None }
            }
            Source::Images(_) => next(&mut source, &t, 0)?,
        };
        let s = t.measure_scale_factor(&probe)?;
        println!("scale factor {s:.5} (1 / std of the training latents)");
        if matches!(source, Source::Images(_)) {
            pending = Some(probe);
        }
    }
    let preview = preview_images(&t, &*ds)?;
    let prompts = preview_prompts(&t, &*ds)?;
    let csv = out.join("losses.csv");
    let mut rows = read_log(&csv, LdmStepLog::CSV_HEADER, t.step)?;
    write_log(&csv, LdmStepLog::CSV_HEADER, &rows)?;
    let mut csv_file = std::fs::OpenOptions::new().append(true).open(&csv).map_err(|e| file_err(&csv, e))?;

    let bar = ProgressBar::new(cfg.steps);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {per_sec}, eta {eta} {msg}").map_err(|e| invalid(e.to_string()))?);
    bar.set_position(t.step);
    let started = Instant::now();
    let out_of_time = || a.max_minutes.is_some_and(|m| started.elapsed().as_secs_f64() > 60.0 * m);
    let pictures = |t: &LdmTrainer, rows: &[(u64, Vec<f64>)]| -> Result<()> {
        // columns after `step`: lr, loss, grad_norm
        let col = |i: usize| rows.iter().filter_map(|(s, v)| v.get(i).map(|x| (*s as f64, *x))).collect::<Vec<_>>();
        save_loss_plot(&out.join("losses.png"), &[("loss (MSE)", col(1)), ("gradient norm", col(2))])?;
        sample_grid(t, &out.join(format!("samples_{:06}.png", t.step)), preview.as_ref(), &prompts)
    };
    let last = cfg.steps.min(a.max_steps.unwrap_or(u64::MAX));
    while t.step < last && !out_of_time() {
        let batch = match pending.take() {
            Some(b) => b,
            None => next(&mut source, &t, t.step)?,
        };
        let log = t.train_step(&batch)?;
        writeln!(csv_file, "{}", log.csv_row()).map_err(|e| file_err(&csv, e))?;
        rows.push((log.step, log.values().to_vec()));
        bar.set_position(t.step);
        if t.step.is_multiple_of(cfg.log_every) {
            let recent = &rows[rows.len().saturating_sub(cfg.log_every as usize)..];
            bar.set_message(format!("loss {:.4}", recent.iter().map(|(_, v)| v[1]).sum::<f64>() / recent.len() as f64));
        }
        if t.step.is_multiple_of(cfg.save_every) {
            t.save(&ckpt)?;
        }
        if t.step.is_multiple_of(cfg.image_every) {
            pictures(&t, &rows)?;
        }
    }
    bar.finish_and_clear();
    t.save(&ckpt)?;
    pictures(&t, &rows)?;
    export_model(&t, &out.join("model.safetensors"), export_dtype)?;
    let done = stop_reason(t.step, cfg.steps, last);
    println!("{done} at step {} in {:.1} min; run in {}, model in {}", t.step, started.elapsed().as_secs_f64() / 60.0, out.display(), out.join("model.safetensors").display());
    super::train::print_dry_run_report(device)?;
    Ok(())
}
