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
