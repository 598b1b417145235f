//! Training: optimisers, losses (LPIPS, PatchGAN), data and checkpoints.

pub mod optim;
pub mod checkpoint;
pub mod metrics;
