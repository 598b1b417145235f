//! Evaluation: the FID Inception network and Fréchet distance (`ldm-engine eval fid`), the Inception
//! Score (`eval is`), paired-folder
//! image metrics (`eval lpips / psnr / ssim`, the metrics themselves live in `train::metrics` and
//! `train::lpips`, where the trainers use them).

pub mod fid;
pub mod folders;
pub mod inception;
pub mod inception_score;
pub mod linalg;
