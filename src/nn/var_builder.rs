//! Building a model's parameters by name, the way checkpoints name them.
//!
//! Models take a `VarBuilder` and ask for each parameter by its local name under a prefix
//! (`vb.pp("input_blocks").pp(1).get(&[320, 4, 3, 3], "weight")`), so the struct tree *is* the
//! checkpoint key tree. A load does not stop at the first problem: every missing key and shape
//! mismatch is recorded (the model still builds, with zero placeholders), and `finish()` reports
//! them together with every key of the file the model never asked for, in one error.

use crate::io::safetensors::SafeTensorsFile;
use crate::tensor::{numel, DType, Device, Tensor};
use crate::{Error, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Where parameter values come from.
enum Source {
    /// One or more safetensors files (sharded checkpoints), under the engine's names: `index`
    /// maps each engine name to (file, name in the file); `fix` adjusts a tensor after loading
    /// (e.g. a Linear [C, C] stored where the engine has a 1×1 conv).
    Files { files: Vec<SafeTensorsFile>, index: HashMap<String, (usize, String)>, fix: Option<Fixer> },
    Tensors(HashMap<String, Tensor>),
    /// No values: every parameter is a zero-memory broadcast of one zero (shapes, counts).
    ShapesOnly,
    /// Fresh parameters from an initializer (training from scratch).
    Init(Initializer),
    /// Fresh values from an initializer, handed out as loaded weights are (inference: no
    /// autograd variables, the device's weight layouts).
    Weights(Initializer),
}

/// `init(full_name, shape, hint)`: a parameter's fresh value.
type Initializer = Box<dyn Fn(&str, &[usize], Init) -> Tensor + Send + Sync>;

/// How a parameter is initialised when a model is built from scratch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    /// Uniform(−b, b) with b = 1/√fan_in, torch's default for Linear and Conv weights and biases.
    FanInUniform { fan_in: usize },
    Normal { std: f64 },
}

pub type Fixer = Box<dyn Fn(&str, Tensor) -> Result<Tensor> + Send + Sync>;

#[derive(Default)]
struct Report {
    requested: BTreeMap<String, Vec<usize>>,
    missing: Vec<String>,
    mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// (full name, tensor) of every parameter handed out, in request order
    params: Vec<(String, Tensor)>,
}

#[derive(Clone)]
pub struct VarBuilder {
    source: Arc<Source>,
    report: Arc<Mutex<Report>>,
    prefix: String,
    dtype: DType,
    device: Device,
    /// Prepended to names in load errors when the source strips a component prefix from the
    /// file's keys (`model.diffusion_model.`), so a missing tensor is named as the file names it.
    file_prefix: Arc<str>,
}

impl VarBuilder {
    fn new(source: Source, dtype: DType) -> Self {
        VarBuilder { source: Arc::new(source), report: Arc::default(), prefix: String::new(), dtype, device: Device::Cpu, file_prefix: Arc::from("") }
    }

    /// Load errors name tensors as `file_prefix` + engine name (and mismatched or unexpected ones
    /// by their key in the file): for builders whose `rename` strips a component prefix.
    pub fn with_file_prefix(self, file_prefix: &str) -> Self {
        VarBuilder { file_prefix: Arc::from(file_prefix), ..self }
    }

    /// Parameters are handed out on `device` (copied there as they are requested), so a model
    /// built from this builder runs there. Fresh variables stay variables on the device.
    pub fn on_device(self, device: Device) -> Self {
        VarBuilder { device, ..self }
    }
    pub fn device(&self) -> Device {
        self.device
    }

    /// Parameters from safetensors files (memory-mapped), converted to `dtype`.
    pub fn from_safetensors<P: AsRef<Path>>(paths: &[P], dtype: DType) -> Result<Self> {
        Self::from_safetensors_mapped(paths, dtype, |n| Some(n.to_string()), None)
    }

    /// Parameters from files whose key names differ from the engine's: `rename` gives the engine
    /// name of a file key (None: not a parameter of this model, e.g. another component's), `fix`
    /// adjusts a loaded tensor by its engine name. Two file keys renamed to one name is an error.
    pub fn from_safetensors_mapped<P: AsRef<Path>>(
        paths: &[P],
        dtype: DType,
        rename: impl Fn(&str) -> Option<String>,
        fix: Option<Fixer>,
    ) -> Result<Self> {
        let files = paths.iter().map(SafeTensorsFile::open).collect::<Result<Vec<_>>>()?;
        Self::from_files_mapped(files, dtype, rename, fix)
    }

    /// `from_safetensors_mapped` over files already open (one file serving several models).
    pub fn from_files_mapped(
        files: Vec<SafeTensorsFile>,
        dtype: DType,
        rename: impl Fn(&str) -> Option<String>,
        fix: Option<Fixer>,
    ) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for e in f.entries() {
                if let Some(name) = rename(&e.name) {
                    if let Some((_, prev)) = index.insert(name.clone(), (i, e.name.clone())) {
                        return Err(Error::Weights(format!("both '{prev}' and '{}' map to '{name}'", e.name)));
                    }
                }
            }
        }
        Ok(Self::new(Source::Files { files, index, fix }, dtype))
    }

    pub fn from_tensors(tensors: HashMap<String, Tensor>, dtype: DType) -> Self {
        Self::new(Source::Tensors(tensors), dtype)
    }

    /// Builds a model without any weight memory: for parameter counts and shape checks of
    /// full-size configs.
    pub fn shapes_only(dtype: DType) -> Self {
        Self::new(Source::ShapesOnly, dtype)
    }

    /// Fresh parameters (as autograd variables): `init(full_name, shape, hint)` decides each value.
    pub fn from_init(dtype: DType, init: impl Fn(&str, &[usize], Init) -> Tensor + Send + Sync + 'static) -> Self {
        Self::new(Source::Init(Box::new(init)), dtype)
    }

    /// Fresh parameters following each layer's torch-default init, from a seeded RNG.
    pub fn seeded_init(dtype: DType, seed: u64) -> Self {
        Self::from_init(dtype, seeded_values(dtype, seed))
    }

    /// The values `seeded_init` draws, as inference weights (not variables): a full-size model
    /// with random weights, to time or dry-run where no pretrained weights exist.
    pub fn seeded_weights(dtype: DType, seed: u64) -> Self {
        // drawn in f32 on the host, then moved and cast like a loaded file's tensors
        Self::new(Source::Weights(Box::new(seeded_values(DType::F32, seed))), dtype)
    }

    /// The builder one level down: `vb.pp("down").pp(0)` names "down.0.…".
    pub fn pp(&self, name: impl std::fmt::Display) -> VarBuilder {
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        VarBuilder { prefix, ..self.clone() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) }
    }

    /// The parameter `name` under this prefix, which must have `shape`.
    pub fn get(&self, shape: &[usize], name: &str) -> Result<Tensor> {
        self.get_with_init(shape, name, Init::Zeros)
    }

    /// Like `get`, with the init used when building from scratch.
    pub fn get_with_init(&self, shape: &[usize], name: &str, init: Init) -> Result<Tensor> {
        let full = self.full_name(name);
        let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prev) = report.requested.insert(full.clone(), shape.to_vec()) {
            if prev != shape {
                return Err(Error::Weights(format!("{full} requested twice with shapes {prev:?} and {shape:?}")));
            }
        }
        let placeholder = || Tensor::zeros(&[], self.dtype).broadcast_as(shape);
        let found: Option<Tensor> = match &*self.source {
            Source::ShapesOnly => Some(placeholder()?),
            // fresh parameters are variables: a model built to train backprops into them directly
            Source::Init(f) => Some(f(&full, shape, init).to_dtype(self.dtype)?.requires_grad()),
            Source::Weights(f) => Some(f(&full, shape, init)),
            Source::Tensors(m) => m.get(&full).cloned(),
            Source::Files { files, index, fix } => match index.get(&full) {
                Some((i, key)) => {
                    let t = files[*i].get(key)?;
                    Some(match fix {
                        Some(f) => f(&full, t)?,
                        None => t,
                    })
                }
                None => None,
            },
        };
        let t = match found {
            None => {
                report.missing.push(full.clone());
                placeholder()?
            }
            Some(t) if t.shape() != shape => {
                report.mismatched.push((full.clone(), shape.to_vec(), t.shape().to_vec()));
                placeholder()?
            }
            Some(t) if t.is_var() => if self.device == Device::Cpu { t } else { t.to_device(self.device)?.requires_grad() },
            // moved first, then converted: on a GPU the cast is a device kernel (casting ~1e9 weights
            // f16 → bf16 on the host took ~15 s of an SD1.5 load on the H100 machine)
            Some(t) => stored_for_inference(t.to_device(self.device)?.to_dtype(self.dtype)?)?,
        };
        report.params.push((full, t.clone()));
        Ok(t)
    }

    /// Whether the source has `name` under this prefix (for optional parts of a checkpoint).
    pub fn contains(&self, name: &str) -> bool {
        let full = self.full_name(name);
        match &*self.source {
            Source::ShapesOnly | Source::Init(_) | Source::Weights(_) => true,
            Source::Tensors(m) => m.contains_key(&full),
            Source::Files { index, .. } => index.contains_key(&full),
        }
    }

    /// Every parameter handed out so far, by full name (for optimisers and saving).
    pub fn params(&self) -> Vec<(String, Tensor)> {
        self.report.lock().unwrap_or_else(|e| e.into_inner()).params.clone()
    }

    /// Total number of parameter elements handed out.
    pub fn num_params(&self) -> usize {
        self.report.lock().unwrap_or_else(|e| e.into_inner()).requested.values().map(|s| numel(s)).sum()
    }

    /// Ends a load: one error listing every missing key, shape mismatch, and (when
    /// `allow_unexpected` is false) every key in the source under `prefix` that no layer asked for.
    pub fn finish(&self, allow_unexpected: bool) -> Result<()> {
        let report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        let in_scope = |k: &str| self.prefix.is_empty() || k.starts_with(&format!("{}.", self.prefix));
        let source_keys: BTreeSet<String> = match &*self.source {
            Source::Tensors(m) => m.keys().filter(|k| in_scope(k)).cloned().collect(),
            Source::Files { index, .. } => index.keys().filter(|k| in_scope(k)).cloned().collect(),
            Source::ShapesOnly | Source::Init(_) | Source::Weights(_) => BTreeSet::new(),
        };
        let unexpected: Vec<&String> =
            if allow_unexpected { vec![] } else { source_keys.iter().filter(|k| !report.requested.contains_key(*k)).collect() };
        if report.missing.is_empty() && report.mismatched.is_empty() && unexpected.is_empty() {
            return Ok(());
        }
        // The name a person finds in the file: its own key where the source has one.
        let in_file = |n: &str| -> String {
            if let Source::Files { index, .. } = &*self.source
                && let Some((_, key)) = index.get(n)
            {
                return key.clone();
            }
            format!("{}{n}", self.file_prefix)
        };
        let mut parts = Vec::new();
        if !report.missing.is_empty() {
            let m: Vec<String> = report.missing.iter().map(|n| in_file(n)).collect();
            parts.push(format!("{} missing: {}", m.len(), list(&m)));
        }
        if !report.mismatched.is_empty() {
            let m: Vec<String> = report.mismatched.iter().map(|(n, want, got)| format!("{} (model {want:?}, file {got:?})", in_file(n))).collect();
            parts.push(format!("{} shape mismatches: {}", m.len(), list(&m)));
        }
        if !unexpected.is_empty() {
            let u: Vec<String> = unexpected.iter().map(|n| in_file(n)).collect();
            parts.push(format!("{} unexpected: {}", u.len(), list(&u)));
        }
        Err(Error::Weights(format!("checkpoint does not fit the model: {}", parts.join("; "))))
    }
}

/// A comma-separated list, shortened after 20 names so one line stays readable.
fn list<S: AsRef<str>>(names: &[S]) -> String {
    let shown: Vec<&str> = names.iter().take(20).map(|s| s.as_ref()).collect();
    let more = names.len().saturating_sub(20);
    if more > 0 { format!("{} … and {more} more", shown.join(", ")) } else { shown.join(", ") }
}

/// A loaded (not trainable) weight in the layout its device's kernels read fastest: on a GPU in
/// half precision, conv weights are stored channels-last once here rather than transposed per
/// call or cached beside the original (see backend::cuda::conv_tc::store_channels_last). Any
/// other tensor is returned as it is.
fn stored_for_inference(t: Tensor) -> Result<Tensor> {
    if t.device().is_cuda() && crate::backend::cuda::conv_tc::prefers_channels_last_weight(t.shape(), t.dtype()) {
        return crate::backend::cuda::conv_tc::store_channels_last(&t);
    }
    Ok(t)
}

/// torch's default init for each parameter, drawn from one RNG seeded with `seed`.
fn seeded_values(dtype: DType, seed: u64) -> impl Fn(&str, &[usize], Init) -> Tensor + Send + Sync + 'static {
    use rand::SeedableRng;
    let rng = Mutex::new(rand::rngs::StdRng::seed_from_u64(seed));
    move |_, shape, init| {
        let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
        match init {
            Init::Zeros => Tensor::zeros(shape, dtype),
            Init::Ones => Tensor::ones(shape, dtype),
            Init::FanInUniform { fan_in } => {
                let b = 1.0 / (fan_in.max(1) as f64).sqrt();
                Tensor::rand(shape, -b, b, dtype, &mut *rng)
            }
            Init::Normal { std } => Tensor::randn(shape, 0.0, std, dtype, &mut *rng),
        }
    }
}
