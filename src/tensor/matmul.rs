//! Matrix products: `a [..., M, K] @ b [..., K, N]` with batch dims broadcast (torch.matmul for
//! rank ≥ 2). 1-D operands are not promoted; reshape them explicitly.

use super::{broadcast_shapes, Tensor};
use crate::autograd::Op;
use crate::backend::cpu::matmul as cpu;
use crate::{Error, Result};

impl Tensor {
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        Tensor::same_dtype("matmul", self, rhs)?;
        self.require_float("matmul")?;
        let (ra, rb) = (self.rank(), rhs.rank());
        if ra < 2 || rb < 2 || self.shape()[ra - 1] != rhs.shape()[rb - 2] {
            return Err(Error::ShapeMismatch { op: "matmul", lhs: self.shape().to_vec(), rhs: rhs.shape().to_vec() });
        }
        let batch = broadcast_shapes("matmul", &self.shape()[..ra - 2], &rhs.shape()[..rb - 2])?;
        let rec = Tensor::track(&[self, rhs], || Op::Matmul(self.clone(), rhs.clone()));
        if self.device().is_cuda() {
            return crate::backend::cuda::linalg::matmul(self, rhs, &batch, rec);
        }
        cpu::matmul(self, rhs, &batch, rec)
    }

    /// `x @ wᵀ + b` with torch.nn.Linear's weight layout [out, in]; x may have any leading dims.
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        if w.rank() != 2 {
            return Err(Error::bad_shape("linear", "weight must be [out, in]", w.shape()));
        }
        // Inference on CUDA in f16/bf16: the bias joins the product's epilogue.
        if let Some(bias) = b
            && self.epilogue_fusable(w, bias, &[])
            && let Some(y) = crate::backend::cuda::linalg::linear_with_bias(self, w, bias, None)?
        {
            return Ok(y);
        }
        let y = self.matmul(&w.t()?)?;
        match b {
            Some(b) => y.add(b),
            None => Ok(y),
        }
    }

    /// Whether `self @ wᵀ + bias` (and the `extra` epilogue operands) may take the CUDA
    /// tensor-core product with the sums in its epilogue: inference (nothing recorded), one dtype
    /// and device, the shapes a Linear takes. The backend still declines sizes it has no kernel for.
    fn epilogue_fusable(&self, w: &Tensor, bias: &Tensor, extra: &[&Tensor]) -> bool {
        let recorded: Vec<&Tensor> = [self, w, bias].into_iter().chain(extra.iter().copied()).collect();
        self.device().is_cuda()
            && !Tensor::will_record(&recorded)
            && self.rank() >= 2
            && self.dtype() == w.dtype()
            && self.dtype() == bias.dtype()
            && self.device() == w.device()
            && self.device() == bias.device()
            && self.shape()[self.rank() - 1] == w.shape()[1]
            && bias.shape() == [w.shape()[0]]
    }

    /// `x @ wᵀ + b + residual` — a Linear that closes a residual connection (every attention
    /// and feed-forward output of a transformer block). Where a fused kernel exists (CUDA f16/bf16
    /// tensor cores with a bias, a dense residual of the output's shape and dtype, no gradient
    /// recorded) the residual joins the product's epilogue, saving a launch and a full read and
    /// write of the activation; everywhere else it is `linear` then `add`, with the same result
    /// up to the one rounding the fused form saves.
    pub fn linear_add(&self, w: &Tensor, b: Option<&Tensor>, residual: &Tensor) -> Result<Tensor> {
        if w.rank() != 2 {
            return Err(Error::bad_shape("linear", "weight must be [out, in]", w.shape()));
        }
        if let Some(bias) = b
            && self.epilogue_fusable(w, bias, &[residual])
            && let Some(y) = crate::backend::cuda::linalg::linear_with_bias(self, w, bias, Some(residual))?
        {
            return Ok(y);
        }
        self.linear(w, b)?.add(residual)
    }

    /// `geglu(x @ wᵀ + b)` — the first product of a GEGLU feed-forward and its gate, w [2·inner,
    /// in] (value rows, then gate rows). Where a fused kernel exists (CUDA f16/bf16, the 128×128
    /// tensor-core product, nothing recorded) the gate is applied in the product's epilogue and
    /// the [..., 2·inner] product is never written; everywhere else it is `linear` then `geglu`,
    /// with the same result up to the roundings of the product the fused form saves.
    pub fn linear_geglu(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        if w.rank() != 2 {
            return Err(Error::bad_shape("linear", "weight must be [out, in]", w.shape()));
        }
        if let Some(bias) = b
            && w.shape()[0] % 2 == 0
            && self.epilogue_fusable(w, bias, &[])
            && let Some(y) = crate::backend::cuda::linalg::linear_geglu(self, w, bias)?
        {
            return Ok(y);
        }
        self.linear(w, b)?.geglu()
    }
}
