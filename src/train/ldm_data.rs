//! Stage-2 training data: the frozen autoencoder's latents, encoded once and cached (posterior
//! mean and log-variance per image: the posterior is still sampled afresh every step, as CompVis'
//! `get_first_stage_encoding` does), and a hold-out split that keeps every k-th image away from
//! training (the built-in datasets are sorted by class, so a contiguous tail would hold out one
//! class only).
//!
//! The cached batches follow the image loader's rule: sample k of the stream is position k mod N of
//! the permutation of epoch ⌊k / N⌋, seeded by (seed, epoch), so a resumed run reads the same
//! batches as an uninterrupted one.

use std::path::Path;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::data::Dataset;
use super::ldm_trainer::LatentBatch;
use crate::io::safetensors::{save, SafeTensorsFile};
use crate::{Error, Result, Tensor};

/// The images of `inner` whose index is (or, `held_out`, is not) k − 1 mod k.
pub struct Holdout {
    inner: Arc<dyn Dataset>,
    every: usize,
    held_out: bool,
    len: usize,
}

impl Holdout {
    /// `every` 0 keeps everything (and holds out nothing).
    pub fn new(inner: Arc<dyn Dataset>, every: usize, held_out: bool) -> Self {
        let n = inner.len();
        let out = if every >= 2 { n / every } else { 0 };
        Holdout { len: if held_out { out } else { n - out }, inner, every, held_out }
    }

    fn source_index(&self, i: usize) -> usize {
        match (self.every, self.held_out) {
            (k, true) => i * k + k - 1,
            (k, false) if k >= 2 => i / (k - 1) * k + i % (k - 1),
            _ => i,
        }
    }
}

impl Dataset for Holdout {
    fn len(&self) -> usize {
        self.len
    }
    fn sample_shape(&self) -> [usize; 3] {
        self.inner.sample_shape()
    }
    fn has_labels(&self) -> bool {
        self.inner.has_labels()
    }
    fn fill(&self, index: usize, rng: &mut rand::rngs::StdRng, out: &mut [f32]) -> Result<Option<i64>> {
        self.inner.fill(self.source_index(index), rng, out)
    }
    fn caption(&self, index: usize) -> Result<Option<String>> {
        self.inner.caption(self.source_index(index))
    }
}

/// Maps an image batch and its captions to latents (and caption ids): the trainer's `encode`.
pub type EncodeFn<'a> = &'a dyn Fn(&Tensor, &[Option<String>]) -> Result<LatentBatch>;

/// Every training image's latent distribution, in memory.
pub struct LatentCache {
    /// [N, C, h, w]
    pub mean: Tensor,
    pub logvar: Option<Tensor>,
    pub labels: Option<Vec<i64>>,
    /// super-resolution models: each image's low-res version [N, C, h, w]
    pub concat: Option<Tensor>,
    /// text models: each caption's WordPiece ids [N, L]
    pub tokens: Option<Tensor>,
    perm: Option<(u64, Vec<usize>)>,
}

impl LatentCache {
    /// Encodes `images` in batches of `batch`; `encode` maps an image batch and its captions to
    /// latents (and caption ids), `progress` hears how many images are done. Captions are read
    /// only `with_captions` (text models): for an image folder each is a file read.
    pub fn encode(ds: &dyn Dataset, batch: usize, with_captions: bool, encode: EncodeFn, progress: &mut dyn FnMut(usize)) -> Result<Self> {
        let n = ds.len();
        if n == 0 {
            return Err(Error::invalid("train", "the training set is empty"));
        }
        let [c, h, w] = ds.sample_shape();
        let (mut means, mut logvars, mut labels, mut concats, mut tokens) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut start = 0;
        while start < n {
            let b = batch.min(n - start);
            let mut px = vec![0f32; b * c * h * w];
            let mut lab = Vec::with_capacity(b);
            for (j, out) in px.chunks_mut(c * h * w).enumerate() {
                lab.push(ds.fill(start + j, &mut rng, out)?.unwrap_or(-1));
            }
            let captions = if with_captions { (start..start + b).map(|i| ds.caption(i)).collect::<Result<Vec<_>>>()? } else { Vec::new() };
            let lb = encode(&Tensor::from_vec(px, &[b, c, h, w])?, &captions)?;
            means.push(lb.mean);
            logvars.extend(lb.logvar);
            concats.extend(lb.concat);
            tokens.extend(lb.tokens);
            labels.extend(lab);
            start += b;
            progress(start);
        }
        let cat = |v: &[Tensor]| Tensor::cat(&v.iter().collect::<Vec<_>>(), 0);
        Ok(LatentCache {
            mean: cat(&means)?,
            logvar: if logvars.is_empty() { None } else { Some(cat(&logvars)?) },
            labels: ds.has_labels().then_some(labels),
            concat: if concats.is_empty() { None } else { Some(cat(&concats)?) },
            tokens: if tokens.is_empty() { None } else { Some(cat(&tokens)?) },
            perm: None,
        })
    }

    pub fn len(&self) -> usize {
        self.mean.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let labels = self.labels.as_ref().map(|l| Tensor::from_vec(l.clone(), &[l.len()])).transpose()?;
        let mut t: Vec<(&str, &Tensor)> = vec![("mean", &self.mean)];
        if let Some(lv) = &self.logvar {
            t.push(("logvar", lv));
        }
        if let Some(l) = &labels {
            t.push(("labels", l));
        }
        if let Some(c) = &self.concat {
            t.push(("concat", c));
        }
        if let Some(c) = &self.tokens {
            t.push(("tokens", c));
        }
        save(path, &t, None)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let f = SafeTensorsFile::open(path)?;
        let get = |k: &str| f.entry(k).map(|_| f.get(k).and_then(|t| t.contiguous())).transpose();
        let mean = get("mean")?.ok_or_else(|| Error::File { path: path.display().to_string(), msg: "not a latent cache (no 'mean')".into() })?;
        Ok(LatentCache { mean, logvar: get("logvar")?, labels: get("labels")?.map(|t| t.to_vec::<i64>()).transpose()?, concat: get("concat")?, tokens: get("tokens")?, perm: None })
    }

    /// The training batch of `step`.
    pub fn batch(&mut self, step: u64, batch: usize, seed: u64) -> Result<LatentBatch> {
        let n = self.len() as u64;
        let mut idx = Vec::with_capacity(batch);
        for k in step * batch as u64..(step + 1) * batch as u64 {
            let epoch = k / n;
            if self.perm.as_ref().is_none_or(|(e, _)| *e != epoch) {
                let mut p: Vec<usize> = (0..n as usize).collect();
                p.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(0x2545_F491_4F6C_DD1D).wrapping_add(epoch)));
                self.perm = Some((epoch, p));
            }
            idx.push(self.perm.as_ref().expect("set above").1[(k % n) as usize] as i64);
        }
        let ids = Tensor::from_vec(idx.clone(), &[batch])?;
        Ok(LatentBatch {
            mean: self.mean.index_select(&ids, 0)?,
            logvar: self.logvar.as_ref().map(|l| l.index_select(&ids, 0)).transpose()?,
            labels: self.labels.as_ref().map(|l| Tensor::from_vec(idx.iter().map(|&i| l[i as usize]).collect(), &[batch])).transpose()?,
            concat: self.concat.as_ref().map(|c| c.index_select(&ids, 0)).transpose()?,
            tokens: self.tokens.as_ref().map(|c| c.index_select(&ids, 0)).transpose()?,
        })
    }
}

/// Random inpainting masks [n, 1, h, w] (1 = repaint, 0 = keep), reproducible from `seed`: each
/// image gets 1–3 axis-aligned rectangles with sides between 1/4 and 3/4 of the image's. (The paper
/// trained on LaMa's large masks — random thick strokes and boxes; rectangles are the box half of
/// that recipe, and what `sample --mask` users draw most.)
pub fn random_masks(n: usize, h: usize, w: usize, seed: u64) -> Result<Tensor> {
    use rand::Rng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut m = vec![0f32; n * h * w];
    for plane in m.chunks_mut(h * w) {
        for _ in 0..rng.random_range(1..=3) {
            let (rh, rw) = (rng.random_range(h.div_ceil(4)..=(3 * h / 4).max(h.div_ceil(4))), rng.random_range(w.div_ceil(4)..=(3 * w / 4).max(w.div_ceil(4))));
            let (y0, x0) = (rng.random_range(0..=h - rh), rng.random_range(0..=w - rw));
            for y in y0..y0 + rh {
                plane[y * w + x0..y * w + x0 + rw].fill(1.0);
            }
        }
    }
    Tensor::from_vec(m, &[n, 1, h, w])
}
