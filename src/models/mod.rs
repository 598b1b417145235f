//! Models built on the tensor runtime; for now the CLIP text tokenizer that SD conditioning needs.

pub mod clip_tokenizer;
