//! ldm-engine: Latent Diffusion Models (Rombach et al., CVPR 2022) in Rust, from scratch.
//!
//! Layers, bottom up: `tensor` (runtime: storage, layouts, dtypes, ops) and `autograd` (the
//! backward rules), `backend` (CPU today, CUDA next), `io` (safetensors). Models, samplers,
//! pipelines and training build on these (see ARCHITECTURE.md in the shared folder).

pub mod autograd;
pub mod backend;
pub mod diffusion;
pub mod error;
pub mod eval;
pub mod io;
pub mod models;
pub mod nn;
pub mod pipelines;
pub mod tensor;
pub mod train;

pub use autograd::{no_grad, GradStore};
pub use error::{Error, Result};
pub use tensor::{DType, Device, Tensor};
