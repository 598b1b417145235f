//! CUDA launches of the fused schedule and optimiser kernels (kernels/schedule.cu,
//! kernels/optim.cu) and the GEGLU gate (kernels/elementwise.cu); validation is in
//! src/tensor/fused.rs and src/tensor/geglu.rs.

use super::launch::elementwise_config;
use super::ops::{alloc_out, data_ptr, dense, device_and_ptr, float_suffix, launch, optional_operand, wrap};
use crate::tensor::fused::{AdamWStep, StepCoeffs};
use crate::tensor::{Device, Tensor};
use crate::Result;
use cudarc::driver::DeviceRepr;

// SAFETY: #[repr(C)] structs of f32 mirroring `struct StepCoeffs` / `struct AdamWStep`.
unsafe impl DeviceRepr for StepCoeffs {}
unsafe impl DeviceRepr for AdamWStep {}


pub fn q_sample(x0: &Tensor, eps: &Tensor, a: &[f32], s: &[f32]) -> Result<Tensor> {
    let sfx = float_suffix("q_sample", x0.dtype())?;
    let (x0, eps) = (dense(x0)?, dense(eps)?);
    let (dev, _) = device_and_ptr("q_sample", &x0)?;
    let out = alloc_out(&dev, x0.dtype(), x0.shape())?;
    let b = a.len();
    if x0.numel() > 0 {
        let on = |v: &[f32]| Tensor::from_vec(v.to_vec(), &[b]).and_then(|t| t.to_device(Device::Cuda(dev.ordinal())));
        let (at, st) = (on(a)?, on(s)?);
        launch!(dev, "schedule", format!("q_sample_{sfx}"), elementwise_config(x0.numel());
            (x0.numel() / b) as i64, b as i64, data_ptr(&x0)?, data_ptr(&eps)?, data_ptr(&at)?, data_ptr(&st)?, out.ptr());
    }
    Ok(wrap(out, x0.shape(), None))
}

pub fn guided_step(
    x: &Tensor,
    uncond: &Tensor,
    cond: Option<&Tensor>,
    history: [Option<&Tensor>; 3],
    noise: Option<&Tensor>,
    c: &StepCoeffs,
    want_guided: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let sfx = float_suffix("guided_step", x.dtype())?;
    let (x, mu) = (dense(x)?, dense(uncond)?);
    let (dev, _) = device_and_ptr("guided_step", &x)?;
    let (_mc, mcp) = optional_operand(cond)?;
    let (_h1, h1) = optional_operand(history[0])?;
    let (_h2, h2) = optional_operand(history[1])?;
    let (_h3, h3) = optional_operand(history[2])?;
    let (_z, zp) = optional_operand(noise)?;
    let out = alloc_out(&dev, x.dtype(), x.shape())?;
    let guided = if want_guided { Some(alloc_out(&dev, x.dtype(), x.shape())?) } else { None };
    if x.numel() > 0 {
        launch!(dev, "schedule", format!("guided_step_{sfx}"), elementwise_config(x.numel());
            x.numel() as i64, data_ptr(&x)?, data_ptr(&mu)?, mcp, h1, h2, h3, zp, *c, out.ptr(), guided.as_ref().map_or(0, |g| g.ptr()));
    }
    Ok((wrap(out, x.shape(), None), guided.map(|g| wrap(g, x.shape(), None))))
}

pub fn adamw(w: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, s: &AdamWStep) -> Result<()> {
    super::conv_tc::weights_written();
    let sfx = float_suffix("adamw", g.dtype())?;
    let g = dense(g)?;
    let (dev, _) = device_and_ptr("adamw", w)?;
    if w.numel() > 0 {
        launch!(dev, "optim", format!("adamw_f32_grad_{sfx}"), elementwise_config(w.numel());
            w.numel() as i64, data_ptr(w)?, data_ptr(&g)?, data_ptr(m)?, data_ptr(v)?, *s);
    }
    Ok(())
}

pub fn ema(shadow: &Tensor, p: &Tensor, one_minus: f32) -> Result<()> {
    super::conv_tc::weights_written();
    let sfx = float_suffix("ema", p.dtype())?;
    let p = dense(p)?;
    let (dev, _) = device_and_ptr("ema", shadow)?;
    if shadow.numel() > 0 {
        launch!(dev, "optim", format!("ema_f32_from_{sfx}"), elementwise_config(shadow.numel());
            shadow.numel() as i64, data_ptr(shadow)?, data_ptr(&p)?, one_minus);
    }
    Ok(())
}

/// dst ← src in place, by the driver's device-to-device copy.
pub fn copy_values(dst: &Tensor, src: &Tensor) -> Result<()> {
    super::conv_tc::weights_written();
    let src = dense(src)?;
    let (dev, _) = device_and_ptr("copy_values", dst)?;
    let bytes = dst.numel() * dst.dtype().size_in_bytes();
    if bytes > 0 {
        dev.copy_device_to_device("copy_values", data_ptr(dst)?, data_ptr(&src)?, bytes)?;
    }
    Ok(())
}

/// GEGLU: x [..., 2·inner] → x[..., :inner] · gelu_erf(x[..., inner:]) in one kernel pass.
pub fn geglu(x: &Tensor) -> Result<Tensor> {
    let sfx = float_suffix("geglu", x.dtype())?;
    let x = dense(x)?;
    let (dev, _) = device_and_ptr("geglu", &x)?;
    let last = x.shape().len() - 1;
    let inner = x.shape()[last] / 2;
    let mut shape = x.shape().to_vec();
    shape[last] = inner;
    let n: usize = shape.iter().product();
    let out = alloc_out(&dev, x.dtype(), &shape)?;
    if n > 0 {
        launch!(dev, "elementwise", format!("geglu_{sfx}"), elementwise_config(n); n as i64, inner as i64, data_ptr(&x)?, out.ptr());
    }
    Ok(wrap(out, &shape, None))
}
