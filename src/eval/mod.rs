//! Evaluation: the FID Inception network and Fréchet distance (`ldm-engine eval fid`), paired-folder
//! image metrics (`eval lpips / psnr / ssim`, the metrics themselves live in `train::metrics` and
//! `train::lpips`, where the trainers use them).

pub mod fid;
pub mod folders;
pub mod inception;
pub mod linalg;
