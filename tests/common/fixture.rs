//! Parity fixtures made by tools/gen_fixtures.py: reference weights under `weights.*`, inputs and
//! outputs beside them, config in the metadata.

use super::vals;
use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::nn::VarBuilder;
use ldm_engine::{DType, Tensor};
use std::collections::HashMap;

pub struct Fixture {
    file: SafeTensorsFile,
}

impl Fixture {
    pub fn open(name: &str) -> Self {
        let built = format!("{}/tests/fixtures/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
        // a test binary carried to another machine (tools/gpu_check.sh) runs from a copy of the
        // repository: the fixtures are then relative to the working directory
        let path = if std::path::Path::new(&built).is_file() { built } else { format!("tests/fixtures/{name}.safetensors") };
        Fixture { file: SafeTensorsFile::open(path).unwrap() }
    }
    pub fn tensor(&self, name: &str) -> Tensor {
        self.file.get(name).unwrap()
    }
    pub fn meta(&self, key: &str) -> usize {
        self.file.metadata()[key].parse().unwrap_or_else(|_| panic!("metadata {key}"))
    }
    pub fn meta_f(&self, key: &str) -> f64 {
        self.file.metadata()[key].parse().unwrap()
    }
    /// A metadata value written as JSON (tools/gen_compvis_fixtures.py); absent keys are Null.
    #[allow(dead_code)]
    pub fn json(&self, key: &str) -> serde_json::Value {
        self.file.metadata().get(key).map(|v| serde_json::from_str(v).unwrap_or_else(|_| panic!("metadata {key}: {v}"))).unwrap_or(serde_json::Value::Null)
    }
    /// Local names of the reference weights (`weights.` stripped).
    #[allow(dead_code)]
    pub fn weight_names(&self) -> Vec<String> {
        self.file.entries().iter().filter_map(|e| e.name.strip_prefix("weights.").map(str::to_string)).collect()
    }
    /// Names under `prefix`, the prefix stripped.
    #[allow(dead_code)]
    pub fn weight_names_with(&self, prefix: &str) -> Vec<String> {
        self.file.entries().iter().filter_map(|e| e.name.strip_prefix(prefix).map(str::to_string)).collect()
    }
    pub fn list(&self, key: &str) -> Vec<usize> {
        self.file.metadata()[key].split(',').map(|v| v.parse().unwrap()).collect()
    }
    /// A stage-2 training step of tools/gen_ldm_train_fixture.py: the batch (`step{k}.mean`,
    /// `.logvar`, `.labels`) and torch's draws (`.t`, `.eps`, `.noise`, `.drop`).
    pub fn ldm_step(&self, step: usize) -> (ldm_engine::train::ldm_trainer::LatentBatch, ldm_engine::train::ldm_trainer::StepDraws) {
        use ldm_engine::train::ldm_trainer::{LatentBatch, StepDraws};
        let get = |k: &str| self.tensor(&format!("step{step}.{k}"));
        let batch = LatentBatch { mean: get("mean"), logvar: Some(get("logvar")), labels: Some(get("labels")), concat: None, tokens: None };
        let draws = StepDraws {
            t: get("t").to_vec::<i64>().unwrap().into_iter().map(|v| v as usize).collect(),
            eps: get("eps"),
            posterior: Some(get("noise")),
            drop: get("drop").to_vec::<u8>().unwrap().into_iter().map(|d| d != 0).collect(),
        };
        (batch, draws)
    }

    pub fn weights(&self, rename: impl Fn(&str) -> String) -> VarBuilder {
        self.weights_with(|name, t| (rename(name), t))
    }
    /// Renames and reshapes each reference weight (`weights.*` in the file).
    pub fn weights_with(&self, convert: impl Fn(&str, Tensor) -> (String, Tensor)) -> VarBuilder {
        self.weights_in(DType::F32, convert)
    }
    /// The same, the model built in `dtype` (half-precision runs of a parity model).
    pub fn weights_in(&self, dtype: DType, convert: impl Fn(&str, Tensor) -> (String, Tensor)) -> VarBuilder {
        let m: HashMap<String, Tensor> = self
            .file
            .entries()
            .iter()
            .filter_map(|e| e.name.strip_prefix("weights.").map(|local| convert(local, self.tensor(&e.name))))
            .collect();
        VarBuilder::from_tensors(m, dtype)
    }
}

/// The model-zoo bar: max|ours − ref| / max|ref| ≤ 1e-4.
pub fn assert_parity(ours: &Tensor, reference: &Tensor, what: &str) {
    assert_parity_within(ours, reference, what, 1e-4);
}

/// max|ours − ref| / max|ref| ≤ `tol` (printed), shapes equal.
pub fn assert_parity_within(ours: &Tensor, reference: &Tensor, what: &str, tol: f64) {
    assert_eq!(ours.shape(), reference.shape(), "{what}: shape");
    let (o, r) = (vals(ours), vals(reference));
    let max_ref = r.iter().fold(0f64, |m, v| m.max(v.abs()));
    let max_err = o.iter().zip(&r).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    println!("{what}: max|err|/max|ref| = {:.2e}", max_err / max_ref);
    assert!(max_err / max_ref <= tol, "{what}: max|err| {max_err:e} vs max|ref| {max_ref:e}");
}

/// A CompVis-code fixture's UNet config: its UNetModel kwargs read back as the YAML block they
/// came from, with the fixture's group count.
#[allow(dead_code)]
pub fn compvis_unet_config(f: &Fixture) -> ldm_engine::models::unet::UNetConfig {
    let mut cfg = ldm_engine::models::presets::unet_from_compvis(&unet_params(f)).unwrap();
    cfg.groups = f.meta("groups");
    cfg
}

/// A CompVis-code VQ fixture's first-stage config (tools/gen_compvis_fixtures.py metadata).
#[allow(dead_code)]
pub fn compvis_vq_config(f: &Fixture) -> ldm_engine::models::autoencoder::AutoencoderConfig {
    ldm_engine::models::autoencoder::AutoencoderConfig {
        in_channels: 3,
        out_channels: 3,
        ch: f.meta("ch"),
        ch_mult: serde_json::from_value(f.json("ch_mult")).unwrap(),
        num_res_blocks: f.meta("num_res_blocks"),
        attn_levels: serde_json::from_value(f.json("attn_levels")).unwrap(),
        z_channels: f.meta("z_channels"),
        embed_dim: f.meta("embed_dim"),
        groups: f.meta("groups"),
        mid_attn: f.json("attn_type") == serde_json::json!("vanilla"),
    }
}

/// The diffusers config a fixture keeps in its `config_json` metadata, parsed.
#[allow(dead_code)]
pub fn config_json(f: &Fixture) -> serde_json::Value {
    serde_json::from_str(&f.file.metadata()["config_json"]).unwrap()
}

/// The fixture's UNetModel kwargs, read back as the CompVis YAML block they came from.
fn unet_params(f: &Fixture) -> serde_json::Value {
    let keys = [
        "in_channels", "out_channels", "model_channels", "num_res_blocks", "attention_resolutions", "channel_mult", "num_heads",
        "num_head_channels", "use_scale_shift_norm", "resblock_updown", "conv_resample", "use_spatial_transformer",
        "transformer_depth", "context_dim",
    ];
    serde_json::Value::Object(keys.iter().map(|k| (k.to_string(), f.json(k))).filter(|(_, v)| !v.is_null()).collect())
}

/// A diffusers folder reading its fp16 variant files (as the tiny fixture folders store them);
/// a bare name is a folder under tests/fixtures.
pub fn fp16_folder(path: impl AsRef<std::path::Path>) -> ldm_engine::models::checkpoint::DiffusersFolder {
    let p = path.as_ref();
    let p = if p.is_absolute() { p.to_path_buf() } else { std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p) };
    // a carried test binary (tools/gpu_check.sh) runs from a copy of the repository
    let p = if p.is_dir() { p } else { std::path::Path::new("tests/fixtures").join(path.as_ref()) };
    let mut f = ldm_engine::models::checkpoint::DiffusersFolder::open(p).unwrap();
    f.variant = Some("fp16".into());
    f
}

/// The tiny SD pipeline (tests/fixtures/tiny_sd) computing in f32.
pub fn tiny_sd() -> ldm_engine::pipelines::txt2img::TextToImage {
    ldm_engine::pipelines::txt2img::TextToImage::from_diffusers(&fp16_folder("tiny_sd"), DType::F32).unwrap()
}

/// One prompt, no guidance, 4 DDIM steps at 24×32: the request the error-path tests vary.
pub fn small_request() -> ldm_engine::pipelines::txt2img::TextToImageRequest {
    ldm_engine::pipelines::txt2img::TextToImageRequest {
        prompts: vec!["a".into()],
        negative_prompts: vec![],
        guidance: 1.0,
        sampler: ldm_engine::diffusion::SamplerOptions { kind: "ddim".parse().unwrap(), steps: 4, eta: 0.0 },
        height: 24,
        width: 32,
    }
}
