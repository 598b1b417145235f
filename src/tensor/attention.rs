//! Fused scaled-dot-product attention. OWNED BY THE ATTENTION WORK ITEM — signatures fixed,
//! bodies to be implemented.

use super::Tensor;
use crate::{Error, Result};

impl Tensor {
    /// softmax(q kᵀ · scale + mask) v for q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv];
    /// `mask` is additive and broadcasts to [B, H, Lq, Lk]; `scale` defaults to 1/√D.
    pub fn scaled_dot_product_attention(_q: &Tensor, _k: &Tensor, _v: &Tensor, _mask: Option<&Tensor>, _scale: Option<f64>) -> Result<Tensor> {
        Err(Error::invalid("scaled_dot_product_attention", "not implemented yet"))
    }
}

/// (dq, dk, dv) given the forward output and its row log-sum-exp.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    _q: &Tensor,
    _k: &Tensor,
    _v: &Tensor,
    _mask: Option<&Tensor>,
    _scale: f64,
    _out: &Tensor,
    _lse: &Tensor,
    _g: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    Err(Error::invalid("attention_backward", "not implemented yet"))
}
