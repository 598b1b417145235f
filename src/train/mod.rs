//! Training: optimisers, losses (LPIPS, PatchGAN), data, checkpoints, metrics and pictures.

pub mod ae_loss;
pub mod ae_trainer;
pub mod checkpoint;
pub mod data;
pub mod discriminator;
pub mod ema;
pub mod ldm_config;
pub mod ldm_data;
pub mod ldm_export;
pub mod ldm_trainer;
pub mod lpips;
pub mod metrics;
pub mod optim;
pub mod plot;

/// A row of a run's losses.csv: the step, then each value as `{:.6e}` (both trainers' logs, and
/// the CLI's rewrite of them on resume).
pub fn csv_line(step: u64, values: &[f64]) -> String {
    std::iter::once(step.to_string()).chain(values.iter().map(|x| format!("{x:.6e}"))).collect::<Vec<_>>().join(",")
}
