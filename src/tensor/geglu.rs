//! GEGLU (Shazeer 2020), the gate of the SD transformer's feed-forward (ldm/modules/attention.py
//! `GEGLU`: `x, gate = proj(x).chunk(2, dim=-1); x * F.gelu(gate)`), as one fused pass where
//! nothing is recorded: the CPU walks both halves once (backend/cpu zip over the two views), CUDA
//! runs kernels/elementwise.cu's `geglu`. When a gradient is wanted it is the recorded ops — chunk,
//! erf GELU, product — whose backward rules already exist; the values are the same.

use super::Tensor;
use crate::{Error, Result};

impl Tensor {
    /// x [..., 2·n] → x[..., :n] · gelu(x[..., n:]) (erf GELU), [..., n].
    pub fn geglu(&self) -> Result<Tensor> {
        self.require_float("geglu")?;
        let last = match self.shape().last() {
            Some(&d) if d % 2 == 0 && d > 0 => d,
            _ => return Err(Error::bad_shape("geglu", "the last dim must be even and > 0 (value and gate halves)", self.shape())),
        };
        if Tensor::will_record(&[self]) {
            let parts = self.chunk(2, -1)?;
            return parts[0].mul(&parts[1].gelu()?);
        }
        if self.device().is_cuda() {
            return crate::backend::cuda::fused::geglu(self);
        }
        let (value, gate) = (self.narrow(-1, 0, last / 2)?, self.narrow(-1, last / 2, last / 2)?);
        let gelu = |g: f32| crate::backend::cpu::math::unary_f32(crate::tensor::UnaryOp::GeluErf, g);
        crate::backend::cpu::elementwise::zip_map(&value, &gate, value.shape(), move |v, g| v * gelu(g), self.dtype())
    }
}
