//! Training: optimizers, EMA, losses (LPIPS, PatchGAN), data, checkpoints (ARCHITECTURE.md: `train`).

pub mod lpips;
