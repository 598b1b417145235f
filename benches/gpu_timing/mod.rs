//! Shared by the GPU benches (cuda_bandwidth.rs, tensor_core.rs): the first GPU (or the reason
//! there is none) and the median time of a call with its queued device work included.

use ldm_engine::backend::cuda;
use std::sync::Arc;
use std::time::Instant;

/// CUDA device 0 with its description printed, or None after printing why `bench` skips.
pub fn first_device(bench: &str) -> Option<Arc<cuda::CudaDevice>> {
    if cuda::device_count() == 0 {
        println!("{bench}: skipped: {}", cuda::no_device_reason());
        return None;
    }
    let dev = cuda::device(0).unwrap();
    if dev.dry_run().is_some() {
        println!("{bench}: a dry run (LDM_CUDA_DRY_RUN): each call below is launched once, its launches checked against the kernels' PTX; nothing is computed or timed (times print as NaN)");
    }
    let (major, minor) = dev.compute_capability();
    println!("device: {} (sm_{major}{minor}, {:.1} GiB)", dev.name(), dev.total_memory() as f64 / (1u64 << 30) as f64);
    Some(dev)
}

/// Median seconds per call of `f` over batches of `per_batch` calls, each batch ending with a
/// synchronize; at least 5 batches, then more until 1 s has passed or `max_batches` are done.
/// In a dry run: `f` once, and NaN.
pub fn median_seconds(dev: &cuda::CudaDevice, per_batch: usize, max_batches: usize, mut f: impl FnMut()) -> f64 {
    if dev.dry_run().is_some() {
        f();
        return f64::NAN;
    }
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
