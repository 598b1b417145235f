//! File formats: safetensors (memory-mapped, zero-copy on the CPU where the dtype allows).

pub mod safetensors;
