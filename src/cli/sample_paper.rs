//! `ldm-engine sample --preset NAME`: the paper's models from CompVis single files. Which flags a
//! model takes follows from its conditioning: nothing (celeba256, ffhq256, lsun_*), --class
//! (cin256, cin256_v2), --prompt (text2img256, txt2img_1p4b; bert-base-uncased's vocabulary is
//! built in), --layout (layout2img_openimages256), --init-image + --mask (inpainting_big),
//! --init-image as the low-resolution input (bsr_sr: the output is 4× larger), --segmentation
//! (semantic_synthesis256). Sizes other than the training size sample convolutionally.

use std::path::Path;
use std::time::Instant;

use ldm_engine::diffusion::{SamplerKind, SamplerOptions, SeededNoise};
use ldm_engine::io::image::load_png;
use ldm_engine::models::bert_tokenizer::BertTokenizer;
use ldm_engine::models::layout::BoundingBox;
use ldm_engine::models::presets::{CondStageConfig, FirstStageConfig, LdmPreset};
use ldm_engine::pipelines::ldm::{inpaint_paste, LatentDiffusion, LdmCondition, LdmRequest};
use ldm_engine::{DType, Error, Result, Tensor};
use rand::SeedableRng;
use serde_json::Value;

use super::sample::{common_settings, invalid, with_progress, Outcome, SampleArgs, DEFAULT_MODEL_NAME, ENGINE_MODEL};
use super::sample_io::{read_image, read_mask, read_noise};

/// A text model gets the built-in vocabulary; every other model is ready as loaded.
pub(super) fn prepare(pipe: LatentDiffusion, p: &LdmPreset) -> Result<LatentDiffusion> {
    match p.cond_stage {
        CondStageConfig::Bert(_) => pipe.with_tokenizer(BertTokenizer::builtin()?),
        _ => Ok(pipe),
    }
}

/// The model's condition from the flags; a flag the model does not take is an error.
fn condition(a: &SampleArgs, p: &LdmPreset) -> Result<LdmCondition> {
    let n = a.batch;
    let given: Vec<&str> = [
        ("--prompt", a.prompt.is_some()),
        ("--class", a.class.is_some()),
        ("--layout", a.layout.is_some()),
        ("--init-image", a.init_image.is_some()),
        ("--mask", a.mask.is_some()),
        ("--segmentation", a.segmentation.is_some()),
        ("--strength", a.strength.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, on)| on.then_some(f))
    .collect();
    let takes: &[&str] = match &p.cond_stage {
        CondStageConfig::None => &[],
        CondStageConfig::Class { .. } => &["--class"],
        CondStageConfig::Bert(_) => &["--prompt"],
        CondStageConfig::Layout { .. } => &["--layout"],
        CondStageConfig::FirstStage => &["--init-image", "--mask"],
        CondStageConfig::Identity => &["--init-image"],
        CondStageConfig::Rescaler { .. } => &["--segmentation"],
        CondStageConfig::Clip(_) => return Err(invalid("--preset sd_v1: give the Stable Diffusion file without --preset")),
    };
    if let Some(extra) = given.iter().find(|f| !takes.contains(f)) {
        let wants = if takes.is_empty() { "no conditioning flags".to_string() } else { takes.join(" and ") };
        return Err(invalid(format!("{extra}: the {} model takes {wants}", p.name)));
    }
    let engine = [ENGINE_MODEL, DEFAULT_MODEL_NAME].contains(&p.name);
    if let (true, CondStageConfig::Class { n_classes, .. }) = (engine, &p.cond_stage) {
        // engine-trained class models keep the null class in the last row
        let real = n_classes - 1;
        return Ok(match a.class {
            Some(c) if c < 0 || c as usize >= real => return Err(invalid(format!("--class {c}: the {} model has classes 0..{}", p.name, real - 1))),
            Some(c) => LdmCondition::Class(vec![c; n]),
            None => LdmCondition::Class((0..n * real).map(|i| (i % real) as i64).collect()),
        });
    }
    if let Some(missing) = takes.iter().find(|f| !given.contains(f)) {
        return Err(invalid(format!("the {} model needs {missing} (it takes {})", p.name, takes.join(" and "))));
    }
    // the paper pipeline takes images in [0, 1]; a grey model (MNIST) takes the PNG's luminance
    // as its one channel
    let grey_model = matches!(&p.first_stage, FirstStageConfig::Kl(c) | FirstStageConfig::Vq { cfg: c, .. } if c.in_channels == 1);
    let image01 = |path: &Path, what: &str| -> Result<Tensor> {
        let rgb = read_image(path, n, what)?.affine(0.5, 0.5)?;
        if !grey_model {
            return Ok(rgb);
        }
        let ch = |i| rgb.narrow(1, i, 1);
        ch(0)?.add(&ch(1)?)?.add(&ch(2)?)?.mul_scalar(1.0 / 3.0)
    };
    Ok(match &p.cond_stage {
        CondStageConfig::None => LdmCondition::None,
        CondStageConfig::Class { .. } => LdmCondition::Class(vec![a.class.unwrap_or_default(); n]),
        CondStageConfig::Bert(_) => LdmCondition::Text(vec![a.prompt.clone().unwrap_or_default(); n]),
        CondStageConfig::Layout { .. } => LdmCondition::Layout(vec![read_layout(a.layout.as_deref().unwrap_or(Path::new("")))?; n]),
        CondStageConfig::FirstStage => {
            let image = image01(a.init_image.as_deref().unwrap_or(Path::new("")), "init image")?;
            let mask = read_mask(a.mask.as_deref().unwrap_or(Path::new("")), image.dim(3)?, image.dim(2)?)?;
            LdmCondition::Inpaint { mask: Tensor::cat(&vec![&mask; n], 0)?, image }
        }
        CondStageConfig::Identity => LdmCondition::LowRes(image01(a.init_image.as_deref().unwrap_or(Path::new("")), "low-resolution image")?),
        CondStageConfig::Rescaler { .. } => LdmCondition::Segmentation(read_segmentation(a.segmentation.as_deref().unwrap_or(Path::new("")), n)?),
        CondStageConfig::Clip(_) => unreachable!("refused above"),
    })
}

/// A layout JSON file: `[{"class": 12, "box": [x0, y0, x1, y1]}, …]`, corners in [0, 1]
/// (x right, y down), classes as the model's layout vocabulary numbers them.
pub fn read_layout(path: &Path) -> Result<Vec<BoundingBox>> {
    let bad = |msg: String| Error::File { path: path.display().to_string(), msg };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let items = v.as_array().ok_or_else(|| bad("expected a list of {\"class\": N, \"box\": [x0, y0, x1, y1]} objects".into()))?;
    items
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let class = o["class"].as_u64().ok_or_else(|| bad(format!("object {i}: \"class\" must be a non-negative integer")))?;
            let b: Vec<f64> = o["box"].as_array().map(|b| b.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
            match b[..] {
                [x0, y0, x1, y1] if (0.0..=1.0).contains(&x0) && (0.0..=1.0).contains(&y1) && x0 < x1 && y0 < y1 && x1 <= 1.0 && y0 >= 0.0 => {
                    Ok(BoundingBox::new(class as usize, x0, y0, x1, y1))
                }
                _ => Err(bad(format!("object {i}: \"box\" must be [x0, y0, x1, y1] with 0 ≤ x0 < x1 ≤ 1 and 0 ≤ y0 < y1 ≤ 1"))),
            }
        })
        .collect()
}

/// A segmentation PNG whose grey value (the first channel) is each pixel's class id, as [n, H, W]
/// I64; the model checks the ids against its classes.
pub fn read_segmentation(path: &Path, n: usize) -> Result<Tensor> {
    let (rgb, w, h, _) = load_png(path)?;
    let ids: Vec<i64> = rgb.chunks(3).map(|p| i64::from(p[0])).collect();
    let one = Tensor::from_vec(ids, &[1, h, w])?;
    Tensor::cat(&vec![&one; n], 0)
}

/// Samples a paper model.
pub(super) fn run(a: &SampleArgs, pipe: &LatentDiffusion, p: &LdmPreset) -> Result<Outcome> {
    let cond = condition(a, p)?;
    let kind: SamplerKind = a.sampler.as_deref().unwrap_or("ddim").parse()?;
    // the CompVis scripts' scales: 3 for cin256-v2's notebook, 5 for txt2img.py; 1 otherwise
    let cfg = a.cfg_scale.unwrap_or(match cond {
        LdmCondition::Class(_) => 3.0,
        LdmCondition::Text(_) => 5.0,
        _ => 1.0,
    });
    let size = match (a.height, a.width) {
        (None, None) => None,
        (h, w) => {
            let native = pipe.latent_size * pipe.first_stage.factor();
            Some((h.unwrap_or(native), w.unwrap_or(native)))
        }
    };
    let images_asked = match &cond {
        LdmCondition::Class(labels) => labels.len(),
        _ => a.batch,
    };
    // without --class an engine-trained class model draws every class: one column each
    let grid_cols = (images_asked != a.batch).then(|| images_asked / a.batch);
    let shape = pipe.latent_shape(&cond, images_asked, size)?;
    let f = pipe.first_stage.factor();
    super::sample::check_pixels(shape[0], shape[3] * f, shape[2] * f)?;
    let initial = match &a.init_noise {
        Some(path) => read_noise(path, &shape)?,
        None => Tensor::randn(&shape, 0.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(a.seed)),
    };
    let (width, height) = (shape[3] * f, shape[2] * f);
    let mut settings = common_settings(a, kind, cfg, width, height);
    if let Some(c) = a.class {
        settings.push(format!("Class: {c}"));
    }
    let prompt_lines = match &a.prompt {
        Some(t) => format!("{t}\nNegative prompt: "),
        None => format!("({})", p.name),
    };
    let req = LdmRequest { condition: cond, guidance: cfg, sampler: SamplerOptions { kind, steps: a.steps, eta: a.eta } };
    // the conditioning (text, layout, concat channels) is built and checked before the bar starts
    let t0 = Instant::now();
    let inputs = pipe.unet_inputs(&req, shape)?;
    let text_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (latents, unet_ms) = with_progress(kind, a.steps, |progress| {
        let l = pipe.latents_from(&req, &inputs, &initial, &mut SeededNoise::new(a.seed.wrapping_add(1)), progress)?;
        // device work is queued asynchronously: wait for it, so the time is the sampling's
        ldm_engine::backend::synchronize(l.device())?;
        Ok(l)
    })?;
    let t2 = Instant::now();
    // decoded, then brought to the host (the paste and the PNG writer read host memory)
    let mut images = pipe.decode(&latents)?.to_device(ldm_engine::Device::Cpu)?;
    if let LdmCondition::Inpaint { .. } = req.condition {
        images = inpaint_paste(&req.condition, &images)?;
    }
    let vae_ms = t2.elapsed().as_secs_f64() * 1e3;
    Ok(Outcome { latents, images, settings, prompt_lines, text_ms, unet_ms, vae_ms, grid_cols })
}

#[cfg(test)]
mod tests {
    //! The flag → condition mapping for every kind of paper model (the pipelines themselves are
    //! at parity in tests/pipeline_ldm_tasks.rs, loaded from single files the same way).
    use super::*;
    use clap::Parser;
    use ldm_engine::io::image::save_png;
    use ldm_engine::models::presets::preset;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: SampleArgs,
    }

    fn args(extra: &[&str]) -> SampleArgs {
        Cli::parse_from(std::iter::once("sample").chain(extra.iter().copied()).chain(["--batch", "2"])).a
    }

    fn cond(name: &str, extra: &[&str]) -> Result<LdmCondition> {
        condition(&args(extra), &preset(name).unwrap())
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("ldm-sample-paper-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn each_model_takes_its_own_flags() {
        assert!(matches!(cond("celeba256", &[]).unwrap(), LdmCondition::None));
        let e = cond("celeba256", &["--class", "3"]).unwrap_err().to_string();
        assert!(e.contains("--class: the celeba256 model takes no conditioning flags"), "{e}");
        assert!(matches!(cond("cin256_v2", &["--class", "207"]).unwrap(), LdmCondition::Class(l) if l == [207, 207]));
        assert!(cond("cin256_v2", &[]).unwrap_err().to_string().contains("the cin256_v2 model needs --class"));
        let text = cond("txt2img_1p4b", &["--prompt", "a virus monster"]).unwrap();
        assert!(matches!(text, LdmCondition::Text(t) if t == ["a virus monster", "a virus monster"]));
        let e = cond("bsr_sr", &["--init-image", "x.png", "--strength", "0.5"]).unwrap_err().to_string();
        assert!(e.contains("--strength: the bsr_sr model takes --init-image"), "{e}");
        let e = cond("inpainting_big", &["--init-image", "x.png"]).unwrap_err().to_string();
        assert!(e.contains("the inpainting_big model needs --mask (it takes --init-image and --mask)"), "{e}");
        assert!(cond("sd_v1", &[]).unwrap_err().to_string().contains("without --preset"));
    }

    #[test]
    fn images_masks_layouts_and_segmentations_are_read() {
        let (img, mask, seg, lay) = (tmp("img.png"), tmp("mask.png"), tmp("seg.png"), tmp("layout.json"));
        save_png(&img, &[255u8; 16 * 8 * 3], 16, 8, &[]).unwrap();
        let m: Vec<u8> = (0..16 * 8).flat_map(|p| [if p % 16 < 8 { 255 } else { 0 }; 3]).collect();
        save_png(&mask, &m, 16, 8, &[]).unwrap();
        let s: Vec<u8> = (0..16 * 8).flat_map(|p| [(p % 5) as u8; 3]).collect();
        save_png(&seg, &s, 16, 8, &[]).unwrap();
        std::fs::write(&lay, r#"[{"class": 12, "box": [0.1, 0.2, 0.5, 0.9]}, {"class": 3, "box": [0, 0, 1, 1]}]"#).unwrap();

        let LdmCondition::LowRes(lr) = cond("bsr_sr", &["--init-image", img.to_str().unwrap()]).unwrap() else { panic!() };
        assert_eq!(lr.shape(), [2, 3, 8, 16]);
        assert!(lr.to_vec::<f32>().unwrap().iter().all(|&v| (v - 1.0).abs() < 1e-6), "white is 1 in [0, 1]");
        let LdmCondition::Inpaint { image, mask: mk } = cond("inpainting_big", &["--init-image", img.to_str().unwrap(), "--mask", mask.to_str().unwrap()]).unwrap() else { panic!() };
        assert_eq!((image.shape(), mk.shape()), (&[2, 3, 8, 16][..], &[2, 1, 8, 16][..]));
        assert_eq!(mk.to_vec::<f32>().unwrap()[..9], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        let LdmCondition::Segmentation(ids) = cond("semantic_synthesis256", &["--segmentation", seg.to_str().unwrap()]).unwrap() else { panic!() };
        assert_eq!((ids.shape(), &ids.to_vec::<i64>().unwrap()[..6]), (&[2, 8, 16][..], &[0, 1, 2, 3, 4, 0][..]));
        let LdmCondition::Layout(l) = cond("layout2img_openimages256", &["--layout", lay.to_str().unwrap()]).unwrap() else { panic!() };
        assert_eq!((l.len(), l[0].len(), l[0][0]), (2, 2, BoundingBox::new(12, 0.1, 0.2, 0.5, 0.9)));

        std::fs::write(&lay, r#"[{"class": 1, "box": [0.5, 0.2, 0.4, 0.9]}]"#).unwrap();
        let e = read_layout(&lay).unwrap_err().to_string();
        assert!(e.contains("object 0: \"box\" must be [x0, y0, x1, y1] with 0 ≤ x0 < x1 ≤ 1"), "{e}");
        std::fs::write(&lay, "{not json").unwrap();
        assert!(read_layout(&lay).unwrap_err().to_string().contains("not JSON"));
        std::fs::remove_dir_all(img.parent().unwrap()).unwrap();
    }
}
