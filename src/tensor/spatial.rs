//! Spatial resampling and padding on NCHW tensors: upsample_nearest2d, avg_pool2d, pad.
//! OWNED BY THE NORM/SPATIAL WORK ITEM — signatures fixed, bodies to be implemented.

use super::Tensor;
use crate::autograd::PadMode;
use crate::{Error, Result};

impl Tensor {
    /// Nearest-neighbour resize of the last two dims to (out_h, out_w) (torch 'nearest' indexing).
    pub fn upsample_nearest2d(&self, _out_h: usize, _out_w: usize) -> Result<Tensor> {
        Err(Error::invalid("upsample_nearest2d", "not implemented yet"))
    }

    /// Average pooling of the last two dims, no padding (count = kernel area).
    pub fn avg_pool2d(&self, _kernel: (usize, usize), _stride: (usize, usize)) -> Result<Tensor> {
        Err(Error::invalid("avg_pool2d", "not implemented yet"))
    }

    /// Pads the last two dims by [left, right, top, bottom].
    pub fn pad2d(&self, _pad: [usize; 4], _mode: PadMode) -> Result<Tensor> {
        Err(Error::invalid("pad2d", "not implemented yet"))
    }
}

pub(crate) fn upsample_nearest2d_backward(_x: &Tensor, _g: &Tensor) -> Result<Tensor> {
    Err(Error::invalid("upsample_nearest2d_backward", "not implemented yet"))
}

pub(crate) fn avg_pool2d_backward(_x: &Tensor, _kernel: (usize, usize), _stride: (usize, usize), _g: &Tensor) -> Result<Tensor> {
    Err(Error::invalid("avg_pool2d_backward", "not implemented yet"))
}

pub(crate) fn pad_backward(_x: &Tensor, _pad: [usize; 4], _mode: PadMode, _g: &Tensor) -> Result<Tensor> {
    Err(Error::invalid("pad_backward", "not implemented yet"))
}
