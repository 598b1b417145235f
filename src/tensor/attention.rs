//! Fused scaled-dot-product attention (torch.nn.functional.scaled_dot_product_attention, as used by
//! ldm/modules/attention.py's CrossAttention): validation, dtype handling and autograd recording.
//! The tiled kernels are in backend/cpu/attention.rs and, for f16/bf16 on CUDA, kernels/attention.cu
//! (backend/cuda/attention.rs).

use super::{DType, Layout, Tensor};
use crate::autograd::Op;
use crate::backend::cpu::attention::{self as cpu, Dims, Src};
use crate::backend::cpu::f32_strided;
use crate::{Error, Result};

const OP: &str = "scaled_dot_product_attention";

/// Checks q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] and returns their sizes.
fn check_qkv(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Dims> {
    Tensor::same_dtype(OP, q, k)?;
    Tensor::same_dtype(OP, q, v)?;
    q.require_float(OP)?;
    for (name, t) in [("q", q), ("k", k), ("v", v)] {
        if t.rank() != 4 {
            return Err(Error::bad_shape(OP, format!("{name} must be [B, H, L, D]"), t.shape()));
        }
    }
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    if qs[0] != ks[0] || qs[1] != ks[1] || qs[3] != ks[3] {
        return Err(Error::bad_shape(OP, format!("k must be [B, H, Lk, D] = [{}, {}, _, {}]", qs[0], qs[1], qs[3]), ks));
    }
    if vs[0] != ks[0] || vs[1] != ks[1] || vs[2] != ks[2] {
        return Err(Error::bad_shape(OP, format!("v must be [B, H, Lk, Dv] = [{}, {}, {}, _]", ks[0], ks[1], ks[2]), vs));
    }
    if ks[2] == 0 || qs[3] == 0 || vs[3] == 0 {
        // A softmax over zero keys, or a zero head dim (scale 1/√0), has no meaning.
        return Err(Error::bad_shape(OP, "Lk, D and Dv must be > 0", &[ks[2], qs[3], vs[3]]));
    }
    Ok(Dims { b: qs[0], h: qs[1], lq: qs[2], lk: ks[2], d: qs[3], dv: vs[3] })
}

fn src<'a>(data: &'a [f32], l: &Layout) -> Src<'a> {
    let s = l.strides();
    Src { data, offset: l.offset(), strides: [s[0], s[1], s[2], s[3]] }
}

/// The mask's layout broadcast to [B, H, Lq, Lk].
fn mask_layout(mask: &Tensor, l: &Layout, dims: &Dims) -> Result<Layout> {
    let target = [dims.b, dims.h, dims.lq, dims.lk];
    if mask.rank() > 4 {
        return Err(Error::bad_shape(OP, format!("mask must broadcast to [B, H, Lq, Lk] = {target:?}"), mask.shape()));
    }
    l.broadcast_as(&target)
        .map_err(|_| Error::bad_shape(OP, format!("mask must broadcast to [B, H, Lq, Lk] = {target:?}"), mask.shape()))
}

/// The mask as the CUDA kernels read it: f32, with its layout broadcast to [B, H, Lq, Lk].
fn f32_mask(mask: Option<&Tensor>, dims: &Dims) -> Result<Option<(Tensor, Layout)>> {
    mask.map(|m| {
        let m = m.to_dtype(DType::F32)?;
        let l = mask_layout(&m, m.layout(), dims)?;
        Ok((m, l))
    })
    .transpose()
}

impl Tensor {
    /// softmax(q kᵀ · scale + mask) v for q [B, H, Lq, D], k [B, H, Lk, D], v [B, H, Lk, Dv];
    /// `mask` is additive and broadcasts to [B, H, Lq, Lk]; `scale` defaults to 1/√D.
    ///
    /// Computes in f32 whatever the input dtype (f16/bf16 are widened) and returns q's dtype.
    /// A row whose keys are all masked (−inf) has no probability mass: its output is 0 (and its
    /// gradient 0), where a plain softmax would give NaN. The mask gets no gradient.
    pub fn scaled_dot_product_attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: Option<f64>) -> Result<Tensor> {
        let dims = check_qkv(q, k, v)?;
        if let Some(m) = mask {
            m.require_float(OP)?;
            Tensor::same_device(OP, q, m)?;
        }
        let scale = scale.unwrap_or(1.0 / (dims.d as f64).sqrt());
        if !scale.is_finite() {
            crate::bail!(OP, "scale must be finite, got {scale}");
        }
        if q.device().is_cuda() {
            Tensor::same_device(OP, q, k)?;
            Tensor::same_device(OP, q, v)?;
            if let Some(m) = mask {
                mask_layout(m, m.layout(), &dims)?;
            }
            use crate::backend::cuda::attention as flash;
            // Where a gradient will be asked for, the flash path needs its backward kernel too
            // (head dims ≤ 128); elsewhere the recorded matmul-softmax-matmul ops carry it.
            let usable = if Tensor::will_record(&[q, k, v]) { flash::eligible_backward(q.dtype(), &dims) } else { flash::eligible(q.dtype(), &dims) };
            if !usable {
                if q.dtype() == DType::F16 && mask.is_none() && !Tensor::will_record(&[q, k, v]) && !flash::forced_unfused() {
                    return Tensor::scaled_dot_product_attention_f16(q, k, v, scale);
                }
                return Tensor::scaled_dot_product_attention_unfused(q, k, v, mask, scale);
            }
            let m = f32_mask(mask, &dims)?;
            let (out, lse) = flash::flash_forward(q, k, v, m.as_ref().map(|(t, l)| (t, l)), scale, &dims)?;
            let rec = Tensor::track(&[q, k, v], || Op::Attention { q: q.clone(), k: k.clone(), v: v.clone(), mask: mask.cloned(), scale, lse });
            return Ok(out.with_op(rec));
        }
        let (qd, ql) = f32_strided(q)?;
        let (kd, kl) = f32_strided(k)?;
        let (vd, vl) = f32_strided(v)?;
        let md = mask.map(f32_strided).transpose()?;
        let ml = match (&md, mask) {
            (Some((_, l)), Some(m)) => Some(mask_layout(m, l, &dims)?),
            _ => None,
        };
        let msrc = md.as_ref().zip(ml.as_ref()).map(|((d, _), l)| src(d, l));
        let (out, lse) = cpu::forward(dims, src(&qd, &ql), src(&kd, &kl), src(&vd, &vl), msrc, scale as f32, cpu::FWD_TILES);
        drop((qd, kd, vd, md));
        let lse = Tensor::from_f32_values(lse, &[dims.b, dims.h, dims.lq], DType::F32, None);
        let rec = Tensor::track(&[q, k, v], || Op::Attention {
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            mask: mask.cloned(),
            scale,
            lse: lse.clone(),
        });
        Ok(Tensor::from_f32_values(out, &[dims.b, dims.h, dims.lq, dims.dv], q.dtype(), rec))
    }

    /// Attention from recorded tensor ops — batched matmul, softmax, matmul — for devices without the
    /// fused kernel yet (CUDA, until the flash-attention kernel lands). It materialises the
    /// [B, H, Lq, Lk] scores, computes in f32 like the fused CPU kernel, and keeps its semantics: a
    /// row whose keys are all masked gives 0 with a 0 gradient (its scores are zeroed before the
    /// softmax and its probabilities multiplied by 0 after), and the mask gets no gradient. Autograd
    /// differentiates the recorded ops, so no saved log-sum-exp is needed. Arguments are those of
    /// `scaled_dot_product_attention` (which validates them; this does not).
    pub fn scaled_dot_product_attention_unfused(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
        let (qf, kf, vf) = (q.to_dtype(DType::F32)?, k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
        let scores = qf.matmul(&kf.transpose(2, 3)?)?.mul_scalar(scale)?; // [B, H, Lq, Lk]
        let p = match mask {
            None => scores.softmax(3)?,
            Some(m) => {
                let scores = scores.add(&m.to_dtype(DType::F32)?.detach())?;
                let dead = {
                    let _g = crate::autograd::no_grad();
                    let neg_inf = Tensor::full_on(f64::NEG_INFINITY, &[], DType::F32, q.device())?;
                    scores.max_keepdim(&[3])?.eq(&neg_inf)? // [B, H, Lq, 1], 1 where every key is masked
                };
                let zero = Tensor::zeros_on(&[], DType::F32, q.device())?;
                let alive = dead.to_dtype(DType::F32)?.affine(-1.0, 1.0)?;
                dead.where_cond(&zero, &scores)?.softmax(3)?.mul(&alive)?
            }
        };
        p.matmul(&vf)?.to_dtype(q.dtype())
    }

    /// Unmasked attention for inference in f16 where the flash kernel does not apply (the
    /// autoencoders' single 512-wide head): both products on tensor cores in f16 with f32
    /// accumulation, the scores materialised in f16 and the softmax computed in f32 per row. The
    /// widened formula above took ~2.2 ms of CUDA-core f32 products per SD VAE decode (H100
    /// profile, run 4). q is scaled before its product, so the scores overflow only where the
    /// scaled ones would; what is lost is the scores' rounding to f16 (2⁻¹¹ relative), as in
    /// PyTorch's f16 math path. Nothing is recorded (the caller checked).
    pub fn scaled_dot_product_attention_f16(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
        let scores = q.mul_scalar(scale)?.matmul(&k.transpose(2, 3)?)?; // [B, H, Lq, Lk], f16
        scores.softmax(3)?.matmul(v)
    }

    /// The row log-sum-exp of the scaled, masked scores [B, H, Lq] that the forward saved for
    /// backward (natural log, −inf for fully masked rows), or None when nothing was recorded.
    pub fn attention_lse(&self) -> Option<&Tensor> {
        match self.op() {
            Some(Op::Attention { lse, .. }) => Some(lse),
            _ => None,
        }
    }
}

/// (dq, dk, dv) given the forward output and its row log-sum-exp.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
    out: &Tensor,
    lse: &Tensor,
    g: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let dims = check_qkv(q, k, v)?;
    let out_shape = [dims.b, dims.h, dims.lq, dims.dv];
    for (name, t, want) in [("output", out, &out_shape[..]), ("gradient", g, &out_shape[..]), ("lse", lse, &out_shape[..3])] {
        if t.shape() != want {
            return Err(Error::bad_shape("attention_backward", format!("{name} must have shape {want:?}"), t.shape()));
        }
    }
    if q.device().is_cuda() {
        let m = f32_mask(mask, &dims)?;
        return crate::backend::cuda::attention::flash_backward(q, k, v, m.as_ref().map(|(t, l)| (t, l)), scale, &dims, out, lse, g);
    }
    let out_data = out.f32_data()?;
    let lse_data = lse.f32_data()?;
    let (qd, ql) = f32_strided(q)?;
    let (kd, kl) = f32_strided(k)?;
    let (vd, vl) = f32_strided(v)?;
    let (gd, gl) = f32_strided(g)?;
    let md = mask.map(f32_strided).transpose()?;
    let ml = match (&md, mask) {
        (Some((_, l)), Some(m)) => Some(mask_layout(m, l, &dims)?),
        _ => None,
    };
    let msrc = md.as_ref().zip(ml.as_ref()).map(|((d, _), l)| src(d, l));
    let (dq, dk, dv) = cpu::backward(
        dims,
        src(&qd, &ql),
        src(&kd, &kl),
        src(&vd, &vl),
        msrc,
        scale as f32,
        &out_data,
        &lse_data,
        src(&gd, &gl),
        cpu::BWD_TILES,
    );
    Ok((
        Tensor::from_f32_values(dq, &[dims.b, dims.h, dims.lq, dims.d], q.dtype(), None),
        Tensor::from_f32_values(dk, &[dims.b, dims.h, dims.lk, dims.d], k.dtype(), None),
        Tensor::from_f32_values(dv, &[dims.b, dims.h, dims.lk, dims.dv], v.dtype(), None),
    ))
}
