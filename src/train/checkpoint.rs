//! Training checkpoints: one safetensors file holding the models' weights, the optimisers'
//! moments and the step counter, written atomically (temp file, fsync, rename: a kill at any
//! moment leaves the previous checkpoint or the new one, never half of one). Resuming copies the
//! values back into the live parameters and optimisers, so training continues exactly where the
//! saved step left it (the data order and every random draw are functions of the step and seed).
//!
//! Names: `{group}.{param}` for weights (e.g. `model.encoder.conv_in.weight`, `disc.main.0.weight`),
//! `optim.{optimiser}.{param}.exp_avg|exp_avg_sq|step` for AdamW's state; metadata `step` and
//! `format` (plus whatever the trainer adds, e.g. its config).

use std::collections::HashMap;
use std::path::Path;

use super::optim::AdamW;
use crate::io::safetensors::{save, SafeTensorsFile};
use crate::{Error, Result, Tensor};

pub const FORMAT: &str = "ldm-engine-train-1";

/// What a checkpoint holds, read back.
pub struct Checkpoint {
    pub step: u64,
    pub metadata: HashMap<String, String>,
    tensors: HashMap<String, Tensor>,
}

/// Writes weights (`groups`: name → parameters) and optimiser state at `step`, atomically.
pub fn save_checkpoint(path: &Path, step: u64, groups: &[(&str, &[(String, Tensor)])], optimisers: &[(&str, &AdamW)], extra: &[(&str, String)]) -> Result<()> {
    let mut all: Vec<(String, Tensor)> = Vec::new();
    for (group, params) in groups {
        all.extend(params.iter().map(|(n, t)| (format!("{group}.{n}"), t.clone())));
    }
    for (name, opt) in optimisers {
        all.extend(opt.state(&format!("optim.{name}."))?);
    }
    let mut meta: HashMap<String, String> = extra.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    meta.insert("step".into(), step.to_string());
    meta.insert("format".into(), FORMAT.into());
    let refs: Vec<(&str, &Tensor)> = all.iter().map(|(n, t)| (n.as_str(), t)).collect();
    save(path, &refs, Some(meta))
}

impl Checkpoint {
    /// Reads a checkpoint; a file that is not one of ours says so in one line.
    pub fn load(path: &Path) -> Result<Self> {
        let file = SafeTensorsFile::open(path)?;
        let bad = |msg: String| Error::File { path: path.display().to_string(), msg };
        let metadata = file.metadata().clone();
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!("not an ldm-engine training checkpoint (metadata format is {:?}, expected {FORMAT:?})", metadata.get("format"))));
        }
        let step = metadata.get("step").and_then(|s| s.parse().ok()).ok_or_else(|| bad("the checkpoint has no step counter".into()))?;
        let mut tensors = HashMap::new();
        for e in file.entries() {
            // windows into the mapped file: restoring copies the values into the live tensors
            tensors.insert(e.name.clone(), file.get(&e.name)?);
        }
        Ok(Checkpoint { step, metadata, tensors })
    }

    /// Copies the saved weights of `group` into `params` (every one must be there, same shape).
    pub fn restore_params(&self, group: &str, params: &[(String, Tensor)]) -> Result<()> {
        for (name, p) in params {
            let key = format!("{group}.{name}");
            let t = self.tensors.get(&key).ok_or_else(|| Error::Weights(format!("the checkpoint has no weight '{key}'")))?;
            if t.shape() != p.shape() {
                return Err(Error::Weights(format!("checkpoint weight '{key}' has shape {:?}, the model's is {:?}", t.shape(), p.shape())));
            }
            // an owned f32 copy on the parameter's device, then copied into it in place
            let v = Tensor::from_vec(t.to_vec::<f32>()?, p.shape())?.to_device(p.device())?;
            crate::tensor::fused::copy_values(p, &v)?;
        }
        Ok(())
    }

    /// Restores optimiser `name`'s moments and step counts.
    pub fn restore_optimiser(&self, name: &str, opt: &mut AdamW) -> Result<()> {
        opt.load_state(&self.tensors, &format!("optim.{name}."))
    }
}
