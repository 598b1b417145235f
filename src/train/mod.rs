//! Training: optimisers, losses (LPIPS, PatchGAN), data and checkpoints.

pub mod optim;
pub mod checkpoint;
pub mod discriminator;
pub mod ae_loss;
pub mod ae_trainer;
pub mod plot;
