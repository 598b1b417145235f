//! The tasks, on top of models and samplers. Each pipeline does what its diffusers counterpart
//! does, step for step, so the same weights, settings and initial noise give the same latents.

pub mod inpaint;
pub mod ldm;
pub mod ldm_conditioning;
pub mod txt2img;
pub mod unet_graph;

use crate::diffusion::ModelOutput;
use crate::models::unet::UNet;
use crate::{DType, Result, Tensor};

/// An inpainting mask binarised as diffusers' mask processor and CompVis' inpaint.py do: 1 where
/// ≥ 0.5 (repaint), else 0, as f32.
pub(crate) fn binarize_mask(mask: &Tensor) -> Result<Tensor> {
    mask.cmp(&Tensor::full_on(0.5, &[], mask.dtype(), mask.device())?, crate::tensor::CmpOp::Ge)?.to_dtype(DType::F32)
}

/// The UNet as a sampler calls it. With `guidance` (classifier-free guidance), x goes in twice
/// in one batch against `context` = [unconditional; conditional] and the two halves come back
/// apart (ModelOutput::Guided): the sampler forms u + g·(c − u) — DDIM and PLMS inside their fused update;
/// without, once. `concat` [N, C', h, w] is appended to the model input's
/// channels (after the sampler's input scaling: the 9-channel inpainting UNet's mask and masked
/// image latents, the paper's concat conditioning), the same for both halves. `on_step` runs
/// after every UNet call (progress). The UNet sees its own dtype (an f16 model gets f16 inputs and
/// context); the sampler gets its output back in the dtype of its x (f32), so the schedule
/// arithmetic never runs in half precision. With LDM_CUDA_GRAPH=1 on a GPU the UNet call is
/// replayed from a CUDA graph (unet_graph.rs).
pub(crate) fn guided_unet<'a>(
    unet: &'a UNet,
    context: Option<&'a Tensor>,
    guidance: Option<f64>,
    concat: Option<&'a Tensor>,
    on_step: &'a mut dyn FnMut(),
) -> Result<impl FnMut(&Tensor, f64) -> Result<ModelOutput> + 'a> {
    // the context in the UNet's dtype once for the run; the caller keeps its cross-attention keys
    // and values from the first step on (CrossContext)
    let context = context.map(|c| c.to_dtype(unet.dtype())).transpose()?;
    let mut caller = unet_graph::UnetCaller::new(unet, context.as_ref());
    Ok(move |x: &Tensor, t: f64| -> Result<ModelOutput> {
        let x = &match concat {
            Some(c) => Tensor::cat(&[x, c], 1)?,
            None => x.clone(),
        };
        let x_in = if guidance.is_some() { Tensor::cat(&[x, x], 0)? } else { x.clone() };
        let x_in = x_in.to_dtype(unet.dtype())?;
        let out = caller.call(&x_in, t)?.to_dtype(x.dtype())?;
        on_step();
        let Some(scale) = guidance else { return Ok(ModelOutput::Plain(out)) };
        let n = x.dim(0)?;
        // the halves go back apart: DDIM applies the guidance inside its update
        Ok(ModelOutput::Guided { uncond: out.narrow(0, 0, n)?, cond: out.narrow(0, n, n)?, scale })
    })
}
