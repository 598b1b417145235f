//! Layers and the parameter builder the models are made of (ARCHITECTURE.md: `nn`).

mod layers;
mod var_builder;

pub use layers::{Conv2d, Embedding, GroupNorm, LayerNorm, Linear, Module};
pub(crate) use layers::in_dtype;
pub use var_builder::{Fixer, Init, VarBuilder};
