//! Training: data pipelines today; optimizers, EMA, losses (LPIPS, PatchGAN) and checkpoints build
//! here (see ARCHITECTURE.md).

pub mod data;
