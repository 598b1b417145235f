//! The paper's networks on the engine's tensors: the first stage (KL and VQ autoencoders), the
//! UNet with cross-attention, the conditioners (CLIP and LDMBert text models with their
//! tokenizers, the class embedder, the layout-to-image model's layout tokens, the segmentation
//! rescaler), the paper's released configs, and the loaders for diffusers folders and CompVis
//! single files.

pub mod autoencoder;
pub mod bert_tokenizer;
pub mod checkpoint;
pub mod clip;
pub mod clip_tokenizer;
pub mod embedders;
pub mod layout;
pub mod ldm_bert;
pub mod presets;
pub mod transformer;
pub mod unet;
pub mod unet_blocks;
pub mod vq;
mod wrapped_tokenizer;
