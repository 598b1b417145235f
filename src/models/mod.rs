//! The paper's networks on the engine's tensors: the first stage (KL and VQ autoencoders), the
//! UNet with cross-attention, the CLIP text conditioner and its tokenizer, the layout-to-image
//! model's layout tokens, and the loaders for diffusers folders and CompVis single files.

pub mod autoencoder;
pub mod checkpoint;
pub mod clip;
pub mod clip_tokenizer;
pub mod layout;
pub mod ldm_bert;
pub mod transformer;
pub mod unet;
pub mod unet_blocks;
pub mod vq;
