//! conv2d and conv_transpose2d (NCHW input, OIHW / IOHW weights, as torch.nn.functional).
//! OWNED BY THE CONV WORK ITEM — signatures fixed, bodies to be implemented.

use super::Tensor;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: (1, 1), padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub output_padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for ConvTranspose2dParams {
    fn default() -> Self {
        ConvTranspose2dParams { stride: (1, 1), padding: (0, 0), output_padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

impl Tensor {
    /// x [N, C_in, H, W], w [C_out, C_in/groups, KH, KW], bias [C_out] → [N, C_out, H', W'].
    pub fn conv2d(&self, _w: &Tensor, _bias: Option<&Tensor>, _p: Conv2dParams) -> Result<Tensor> {
        Err(Error::invalid("conv2d", "not implemented yet"))
    }

    /// x [N, C_in, H, W], w [C_in, C_out/groups, KH, KW], bias [C_out] → [N, C_out, H', W'].
    pub fn conv_transpose2d(&self, _w: &Tensor, _bias: Option<&Tensor>, _p: ConvTranspose2dParams) -> Result<Tensor> {
        Err(Error::invalid("conv_transpose2d", "not implemented yet"))
    }
}

/// (dL/dx, dL/dw) of `conv2d(x, w)` (no bias; bias is a broadcast add recorded separately).
pub(crate) fn conv2d_backward(_x: &Tensor, _w: &Tensor, _p: &Conv2dParams, _g: &Tensor) -> Result<(Tensor, Tensor)> {
    Err(Error::invalid("conv2d_backward", "not implemented yet"))
}

pub(crate) fn conv_transpose2d_backward(
    _x: &Tensor,
    _w: &Tensor,
    _p: &ConvTranspose2dParams,
    _g: &Tensor,
) -> Result<(Tensor, Tensor)> {
    Err(Error::invalid("conv_transpose2d_backward", "not implemented yet"))
}
