//! File formats: safetensors (memory-mapped, zero-copy on the CPU where the dtype allows).

pub mod image;
pub mod name_map;
pub mod safetensors;
