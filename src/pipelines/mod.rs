//! The tasks, on top of models and samplers. Each pipeline does what its diffusers counterpart
//! does, step for step, so the same weights, settings and initial noise give the same latents.

pub mod ldm;
pub mod txt2img;
