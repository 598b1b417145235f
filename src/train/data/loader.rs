//! Batches from a `Dataset`, decoded on worker threads ahead of the training step, in an order that
//! depends only on (seed, position) — never on thread timing — so a run resumed at step k sees the
//! same batches as one that never stopped.
//!
//! The data is an endless stream of samples: epoch e is a permutation of 0..N seeded by (seed, e),
//! the epochs are laid end to end, and batch k is stream positions [k·B, (k+1)·B). A batch may
//! straddle two epochs; no sample is dropped and a dataset smaller than a batch still works.
//! Sample i of epoch e gets its random crop/flip from an RNG seeded by (seed, e, i), so it is also
//! independent of the batch size and of which thread decodes it.
//!
//! Threads: worker w of W builds batches w, w+W, w+2W, … and hands them over through its own
//! bounded channel; the consumer takes batch k from worker k mod W. That gives the fixed order
//! without a reordering buffer, and the channel bound (`prefetch`) caps memory. Workers are plain
//! OS threads rather than rayon tasks so that decoding does not queue behind (or stall) the
//! tensor ops that run on rayon's pool. Dropping the loader stops and joins them.
//!
//! Reproducibility holds for one build: the streams come from rand's StdRng, which rand does not
//! promise to keep across its releases (Cargo.lock pins it).

use super::Dataset;
use crate::{Error, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Where in the sample stream the loader begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Batch k (stream position k·batch_size): resuming a run at its step counter.
    Step(u64),
    /// The first sample of epoch e (position e·N; mid-batch when N is not a multiple of B).
    Epoch(u64),
    /// Any stream position.
    Sample(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub seed: u64,
    /// A new permutation every epoch; off, the order is 0..N every epoch.
    pub shuffle: bool,
    /// Decoding threads. 0 decodes on the caller's thread when a batch is asked for (debugging,
    /// tests); the batches are the same either way.
    pub workers: usize,
    /// Finished batches each worker may hold ahead of the consumer (plus the one it is building).
    pub prefetch: usize,
    pub start: Start,
}

impl LoaderConfig {
    /// Shuffled, 2 workers with 2 batches each ready ahead, from step 0.
    pub fn new(batch_size: usize, seed: u64) -> Self {
        LoaderConfig { batch_size, seed, shuffle: true, workers: 2, prefetch: 2, start: Start::Step(0) }
    }
}

pub struct Batch {
    /// [B, C, H, W] f32 in [-1, 1].
    pub images: Tensor,
    /// [B] i64 class labels, for datasets that have them.
    pub labels: Option<Tensor>,
    /// Stream position of the first sample / batch size.
    pub step: u64,
    /// The epoch of the first sample.
    pub epoch: u64,
    /// Stream position of the first sample.
    pub sample: u64,
}

/// What every worker needs to build any batch: pure data, shared.
struct Plan {
    dataset: Arc<dyn Dataset>,
    batch: usize,
    seed: u64,
    shuffle: bool,
    sample_len: usize,
}

/// A finished batch before it becomes tensors (the tensors are made on the consumer's thread).
struct RawBatch {
    images: Vec<f32>,
    labels: Option<Vec<i64>>,
    sample: u64,
}

/// The last epoch's permutation a thread computed; batches move through epochs in order, so one
/// entry is enough.
#[derive(Default)]
struct PermCache {
    epoch: Option<u64>,
    perm: Vec<usize>,
}

const SHUFFLE_STREAM: u64 = 0x5348_5546_464c_4521;
const AUGMENT_STREAM: u64 = 0x4155_474d_454e_5421;

/// SplitMix64's finaliser: turns nearby integers (seeds, epochs, indices) into unrelated seeds.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mix(a: u64, b: u64) -> u64 {
    splitmix(a ^ splitmix(b))
}

impl Plan {
    fn n(&self) -> usize {
        self.dataset.len()
    }

    /// Dataset index at stream position `pos`, and its epoch.
    fn index(&self, pos: u64, cache: &mut PermCache) -> (u64, usize) {
        let n = self.n() as u64;
        let (epoch, i) = (pos / n, (pos % n) as usize);
        if !self.shuffle {
            return (epoch, i);
        }
        if cache.epoch != Some(epoch) {
            // Fisher–Yates from the epoch's own stream.
            let mut rng = StdRng::seed_from_u64(mix(mix(self.seed, SHUFFLE_STREAM), epoch));
            cache.perm.clear();
            cache.perm.extend(0..self.n());
            for k in (1..cache.perm.len()).rev() {
                cache.perm.swap(k, rng.random_range(0..=k));
            }
            cache.epoch = Some(epoch);
        }
        (epoch, cache.perm[i])
    }

    fn build(&self, first: u64, cache: &mut PermCache, stop: &AtomicBool) -> Result<RawBatch> {
        let mut images = vec![0f32; self.batch * self.sample_len];
        let mut labels = self.dataset.has_labels().then(|| Vec::with_capacity(self.batch));
        for (j, out) in images.chunks_exact_mut(self.sample_len).enumerate() {
            if stop.load(Ordering::Relaxed) {
                crate::bail!("Loader", "stopped");
            }
            let (epoch, idx) = self.index(first + j as u64, cache);
            let mut rng = StdRng::seed_from_u64(mix(mix(mix(self.seed, AUGMENT_STREAM), epoch), idx as u64));
            let label = self.dataset.fill(idx, &mut rng, out)?;
            if let Some(l) = labels.as_mut() {
                l.push(label.unwrap_or(-1));
            }
        }
        Ok(RawBatch { images, labels, sample: first })
    }

    /// `build` with a panic in the dataset turned into an error, so a worker never dies silently.
    fn build_caught(&self, first: u64, cache: &mut PermCache, stop: &AtomicBool) -> Result<RawBatch> {
        catch_unwind(AssertUnwindSafe(|| self.build(first, cache, stop)))
            .unwrap_or_else(|_| Err(Error::invalid("Loader", format!("the dataset panicked building the batch at sample {first}"))))
    }
}

struct Worker {
    rx: Option<Receiver<Result<RawBatch>>>,
    handle: Option<JoinHandle<()>>,
}

pub struct Loader {
    plan: Arc<Plan>,
    /// Stream position of the next batch's first sample.
    next: u64,
    /// Batches handed out so far: batch t came from worker t mod W.
    taken: u64,
    workers: Vec<Worker>,
    stop: Arc<AtomicBool>,
    /// For `workers: 0`.
    cache: PermCache,
    /// Set by the first error; every later call repeats it instead of handing out batches out of order.
    failed: Option<String>,
}

impl Loader {
    pub fn new(dataset: Arc<dyn Dataset>, cfg: LoaderConfig) -> Result<Self> {
        let n = dataset.len();
        if n == 0 {
            crate::bail!("Loader", "the dataset is empty");
        }
        if cfg.batch_size == 0 {
            crate::bail!("Loader", "batch_size must be > 0");
        }
        let sample_len: usize = dataset.sample_shape().iter().product();
        if sample_len == 0 {
            crate::bail!("Loader", "the dataset's samples have shape {:?}", dataset.sample_shape());
        }
        let b = cfg.batch_size as u64;
        let start = match cfg.start {
            Start::Step(k) => k.checked_mul(b),
            Start::Epoch(e) => e.checked_mul(n as u64),
            Start::Sample(p) => Some(p),
        };
        let Some(start) = start else {
            crate::bail!("Loader", "start position {:?} is out of range", cfg.start);
        };
        let plan = Arc::new(Plan { dataset, batch: cfg.batch_size, seed: cfg.seed, shuffle: cfg.shuffle, sample_len });
        let stop = Arc::new(AtomicBool::new(false));
        let mut loader =
            Loader { plan: plan.clone(), next: start, taken: 0, workers: Vec::new(), stop: stop.clone(), cache: PermCache::default(), failed: None };
        let w_count = cfg.workers as u64;
        for w in 0..w_count {
            let (tx, rx) = sync_channel(cfg.prefetch);
            let (plan, stop) = (plan.clone(), stop.clone());
            let spawned = std::thread::Builder::new().name(format!("ldm-data-{w}")).spawn(move || {
                let mut cache = PermCache::default();
                let mut t = w;
                while !stop.load(Ordering::Relaxed) {
                    let res = plan.build_caught(start + t * b, &mut cache, &stop);
                    let failed = res.is_err();
                    // A send fails only once the loader is gone: time to stop.
                    if tx.send(res).is_err() || failed {
                        break;
                    }
                    t += w_count;
                }
            });
            match spawned {
                Ok(handle) => loader.workers.push(Worker { rx: Some(rx), handle: Some(handle) }),
                // `loader` drops here and joins the workers already started
                Err(e) => crate::bail!("Loader", "cannot start data worker thread {w}: {e}"),
            }
        }
        Ok(loader)
    }

    pub fn batch_size(&self) -> usize {
        self.plan.batch
    }
    /// Batches per pass over the data (fractional when N is not a multiple of the batch size).
    pub fn steps_per_epoch(&self) -> f64 {
        self.plan.n() as f64 / self.plan.batch as f64
    }
    /// Stream position of the next batch's first sample; `Start::Sample` of it resumes here.
    pub fn position(&self) -> u64 {
        self.next
    }

    pub fn next_batch(&mut self) -> Result<Batch> {
        if let Some(msg) = &self.failed {
            crate::bail!("Loader", "stopped after an earlier error: {msg}");
        }
        let raw = match self.take_raw() {
            Ok(raw) => raw,
            Err(e) => {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        };
        debug_assert_eq!(raw.sample, self.next);
        let p = &self.plan;
        let [c, h, w] = p.dataset.sample_shape();
        let images = Tensor::from_vec(raw.images, &[p.batch, c, h, w])?;
        let labels = raw.labels.map(|l| Tensor::from_vec(l, &[p.batch])).transpose()?;
        let batch = Batch { images, labels, step: raw.sample / p.batch as u64, epoch: raw.sample / p.n() as u64, sample: raw.sample };
        self.next += p.batch as u64;
        self.taken += 1;
        Ok(batch)
    }

    fn take_raw(&mut self) -> Result<RawBatch> {
        if self.workers.is_empty() {
            return self.plan.build_caught(self.next, &mut self.cache, &self.stop);
        }
        let w = (self.taken % self.workers.len() as u64) as usize;
        let exited = || Err(Error::invalid("Loader", format!("data worker {w} exited without a batch")));
        match &self.workers[w].rx {
            Some(rx) => rx.recv().unwrap_or_else(|_| exited()),
            None => exited(),
        }
    }
}

/// An endless stream of batches; take as many as the run needs.
impl Iterator for Loader {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        Some(self.next_batch())
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Every receiver first: a worker blocked on a full channel wakes with an error and exits;
        // one mid-batch sees `stop` at its next sample.
        for w in &mut self.workers {
            w.rx.take();
        }
        for w in &mut self.workers {
            if let Some(h) = w.handle.take() {
                let _ = h.join();
            }
        }
    }
}
