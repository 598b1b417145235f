//! group_norm (NC..., as torch.nn.functional.group_norm) and layer_norm over the last dim.
//! OWNED BY THE NORM/SPATIAL WORK ITEM — signatures fixed, bodies to be implemented.

use super::Tensor;
use crate::{Error, Result};

impl Tensor {
    /// x [N, C, *], weight/bias [C].
    pub fn group_norm(&self, _groups: usize, _weight: Option<&Tensor>, _bias: Option<&Tensor>, _eps: f64) -> Result<Tensor> {
        Err(Error::invalid("group_norm", "not implemented yet"))
    }

    /// Normalises over the last dim; weight/bias [D].
    pub fn layer_norm(&self, _weight: Option<&Tensor>, _bias: Option<&Tensor>, _eps: f64) -> Result<Tensor> {
        Err(Error::invalid("layer_norm", "not implemented yet"))
    }
}

/// (dx, dweight, dbias); the weight/bias grads are Some exactly when the inputs are.
pub(crate) fn group_norm_backward(
    _x: &Tensor,
    _weight: Option<&Tensor>,
    _bias: Option<&Tensor>,
    _groups: usize,
    _eps: f64,
    _g: &Tensor,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    Err(Error::invalid("group_norm_backward", "not implemented yet"))
}

pub(crate) fn layer_norm_backward(
    _x: &Tensor,
    _weight: Option<&Tensor>,
    _bias: Option<&Tensor>,
    _eps: f64,
    _g: &Tensor,
) -> Result<(Tensor, Option<Tensor>, Option<Tensor>)> {
    Err(Error::invalid("layer_norm_backward", "not implemented yet"))
}
