//! Shared by the GPU benches (cuda_bandwidth.rs, tensor_core.rs): the median time of a call with
//! its queued device work included.

use ldm_engine::backend::cuda;
use std::time::Instant;

/// Median seconds per call of `f` over batches of `per_batch` calls, each batch ending with a
/// synchronize; at least 5 batches, then more until 1 s has passed or `max_batches` are done.
pub fn median_seconds(dev: &cuda::CudaDevice, per_batch: usize, max_batches: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    dev.synchronize().unwrap();
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 5 || (start.elapsed().as_secs_f64() < 1.0 && samples.len() < max_batches) {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        dev.synchronize().unwrap();
        samples.push(t.elapsed().as_secs_f64() / per_batch as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}
