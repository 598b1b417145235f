//! The paper's networks on the engine's tensors: UNet blocks today; autoencoders, the full UNet
//! and the text conditioners next (issue: model zoo).

pub mod autoencoder;
pub mod checkpoint;
pub mod clip;
pub mod unet;
pub mod vq;
pub mod unet_blocks;
