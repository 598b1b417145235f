//! Training: optimisers, losses (LPIPS, PatchGAN), data, checkpoints, metrics and pictures.

pub mod ae_loss;
pub mod ae_trainer;
pub mod checkpoint;
pub mod data;
pub mod discriminator;
pub mod lpips;
pub mod metrics;
pub mod optim;
pub mod plot;
