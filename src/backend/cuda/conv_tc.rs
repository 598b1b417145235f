//! Tensor-core convolution (kernels/conv_tc.cu): implicit GEMM with mma.sync for f16/bf16, groups
//! = 1 — forward with the bias and an optional residual fused into the epilogue, backward data (also conv_transpose2d's
//! forward), backward weight with split-K into an f32 buffer. conv.rs sends each call here when
//! `eligible` says so and keeps the im2col + GEMM path for f32, grouped convs and sizes past int32.
//! `LDM_CUDA_CONV=gemm` forces the old path (for comparing the two on a GPU).

use super::ops::{alloc_out, data_ptr, dense, device_and_ptr, float_suffix, launch, optional_operand, wrap};
use super::CudaDevice;
use crate::backend::cpu::conv::Geom;
use crate::tensor::{DType, Tensor};
use crate::Result;
use cudarc::driver::{DeviceRepr, LaunchConfig};
use std::sync::{Arc, OnceLock};

const TILE_M: usize = 64;
const TILE_N: usize = 64;
const TILE_K: usize = 32;
const THREADS: u32 = 128;

/// Must match `struct TcConvGeom` in kernels/conv_tc.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TcConvGeom {
    n: i32,
    c: i32,
    h: i32,
    w: i32,
    k: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    dh: i32,
    dw: i32,
    ho: i32,
    wo: i32,
}
// SAFETY: plain #[repr(C)] integers mirroring the C struct.
unsafe impl DeviceRepr for TcConvGeom {}

impl TcConvGeom {
    pub(crate) fn of(g: &Geom) -> Self {
        let i = |v: usize| v as i32;
        TcConvGeom {
            n: i(g.n),
            c: i(g.c_in),
            h: i(g.h),
            w: i(g.w),
            k: i(g.c_out),
            kh: i(g.kh),
            kw: i(g.kw),
            sh: i(g.stride.0),
            sw: i(g.stride.1),
            ph: i(g.padding.0),
            pw: i(g.padding.1),
            dh: i(g.dilation.0),
            dw: i(g.dilation.1),
            ho: i(g.ho),
            wo: i(g.wo),
        }
    }
}

fn forced_gemm() -> bool {
    static FORCED: OnceLock<bool> = OnceLock::new();
    *FORCED.get_or_init(|| std::env::var("LDM_CUDA_CONV").is_ok_and(|v| v == "gemm"))
}

/// True when the tensor-core kernels take this conv: f16/bf16, one group, every index in int32
/// (the kernels' geometry is int32; products are widened where they address memory).
pub fn eligible(dtype: DType, g: &Geom) -> bool {
    let fits = |v: usize| v < i32::MAX as usize;
    matches!(dtype, DType::F16 | DType::BF16)
        && g.groups == 1
        && !forced_gemm()
        && g.n * g.c_in * g.h * g.w > 0
        && g.n * g.c_out * g.ho * g.wo > 0
        && fits(g.n * g.c_in.max(g.c_out) * g.h.max(g.ho) * g.w.max(g.wo))
        && fits(g.c_out * g.c_in * g.kh * g.kw)
        && fits(g.n * g.ho * g.wo * g.kh * g.kw)
}

fn config(m: usize, n: usize, splits: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (m.div_ceil(TILE_M) as u32, n.div_ceil(TILE_N) as u32, splits as u32), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// What every conv launch starts from: the kernel suffix of `a`'s dtype, `a` and `b` dense in that
/// dtype (a mixed-precision caller may pass f32 weights with bf16 activations), and the device.
pub(crate) fn operands(op: &'static str, a: &Tensor, b: &Tensor) -> Result<(&'static str, Tensor, Tensor, Arc<CudaDevice>)> {
    let sfx = float_suffix(op, a.dtype())?;
    let (a, b) = (dense(a)?, dense(&b.to_dtype(a.dtype())?)?);
    let (dev, _) = device_and_ptr(op, &a)?;
    Ok((sfx, a, b, dev))
}

/// An optional operand (bias, residual) in `dtype`, with its address (0: absent).
pub(crate) fn cast_operand(t: Option<&Tensor>, dtype: DType) -> Result<(Option<Tensor>, u64)> {
    optional_operand(t.map(|t| t.to_dtype(dtype)).transpose()?.as_ref())
}

/// y = conv2d(x, w) + bias (+ residual, a tensor of y's shape, added in the epilogue), [N, C_out, HO, WO].
pub fn forward(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, residual: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    let (sfx, x, w, dev) = operands("conv2d", x, w)?;
    let (_b, b_ptr) = cast_operand(bias, x.dtype())?;
    let shape = [g.n, g.c_out, g.ho, g.wo];
    if let Some(r) = residual
        && r.shape() != shape
    {
        return Err(crate::Error::ShapeMismatch { op: "conv2d_add", lhs: r.shape().to_vec(), rhs: shape.to_vec() });
    }
    let (_r, r_ptr) = cast_operand(residual, x.dtype())?;
    let out = alloc_out(&dev, x.dtype(), &shape)?;
    launch!(dev, "conv_tc", format!("conv_tc_fwd_{sfx}"), config(g.n * g.ho * g.wo, g.c_out, 1);
        TcConvGeom::of(g), data_ptr(&x)?, data_ptr(&w)?, b_ptr, r_ptr, out.ptr());
    Ok(wrap(out, &shape, None))
}

/// dx of conv2d given dy [N, C_out, HO, WO] (conv_transpose2d's forward, whose bias is on the
/// C_in side): [N, C_in, H, W].
pub fn backward_data(dy: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    let (sfx, dy, w, dev) = operands("conv2d_backward_data", dy, w)?;
    let (_b, b_ptr) = cast_operand(bias, dy.dtype())?;
    let shape = [g.n, g.c_in, g.h, g.w];
    let out = alloc_out(&dev, dy.dtype(), &shape)?;
    launch!(dev, "conv_tc", format!("conv_tc_bwd_data_{sfx}"), config(g.n * g.h * g.w, g.c_in, 1);
        TcConvGeom::of(g), data_ptr(&dy)?, data_ptr(&w)?, b_ptr, out.ptr());
    Ok(wrap(out, &shape, None))
}

/// How many slices of the k range (N·HO·WO) the weight gradient is split into: enough blocks to
/// fill ~2 waves of a 132-SM H100 when the C_out × C_in·KH·KW output has few tiles, while each
/// split keeps at least 8 k slices of work.
fn weight_splits(tiles: usize, k: usize) -> usize {
    let slices = k.div_ceil(TILE_K);
    (264usize.div_ceil(tiles)).min(slices.div_ceil(8)).clamp(1, 65_535)
}

/// dW of conv2d given x and dy: [C_out, C_in, KH, KW], summed in f32, returned in `wdtype`.
pub fn backward_weight(x: &Tensor, dy: &Tensor, g: &Geom, wdtype: DType) -> Result<Tensor> {
    let (sfx, x, dy, dev) = operands("conv2d_backward_weight", x, dy)?;
    let wshape = [g.c_out, g.c_in, g.kh, g.kw];
    let (j, k) = (g.c_in * g.kh * g.kw, g.n * g.ho * g.wo);
    let dw = super::ops::full(&dev, 0.0, &wshape, DType::F32)?;
    let splits = weight_splits(g.c_out.div_ceil(TILE_M) * j.div_ceil(TILE_N), k);
    let chunk = k.div_ceil(splits).div_ceil(TILE_K) * TILE_K;
    let splits = k.div_ceil(chunk);
    launch!(dev, "conv_tc", format!("conv_tc_bwd_weight_{sfx}"), config(g.c_out, j, splits);
        TcConvGeom::of(g), data_ptr(&x)?, data_ptr(&dy)?, data_ptr(&dw)?, chunk as i32);
    dw.to_dtype(wdtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(n: usize, c: usize, hw: usize, k: usize, groups: usize) -> Geom {
        Geom { n, c_in: c, h: hw, w: hw, c_out: c, kh: k, kw: k, stride: (1, 1), padding: (k / 2, k / 2), dilation: (1, 1), groups, ho: hw, wo: hw }
    }

    #[test]
    fn the_tensor_core_path_takes_half_precision_ungrouped_int32_convs() {
        if forced_gemm() {
            return; // LDM_CUDA_CONV=gemm in this environment: every conv is meant to go the old way
        }
        assert!(eligible(DType::F16, &geom(2, 320, 64, 3, 1)));
        assert!(eligible(DType::BF16, &geom(1, 4, 9, 1, 1)));
        assert!(!eligible(DType::F32, &geom(2, 320, 64, 3, 1)), "f32 keeps im2col + GEMM");
        assert!(!eligible(DType::F16, &geom(2, 320, 64, 3, 2)), "grouped convs keep im2col + GEMM");
        assert!(!eligible(DType::F16, &geom(0, 320, 64, 3, 1)), "an empty batch has nothing to launch");
        assert!(!eligible(DType::F16, &geom(64, 1280, 256, 3, 1)), "5.4e9 elements do not index in int32");
    }

    #[test]
    fn weight_splits_fill_the_device_without_starving_a_split() {
        // SD's 320-channel 3×3 conv at 64² latents, batch 2: 5 × 45 tiles already fill the GPU.
        assert_eq!(weight_splits(5 * 45, 2 * 64 * 64), 2);
        // 1280 channels at 8²: 20 × 180 tiles, one split.
        assert_eq!(weight_splits(20 * 180, 2 * 8 * 8), 1);
        // A tiny conv over many pixels: split up to 8 slices per split.
        assert_eq!(weight_splits(1, 4 * 256 * 256), 264);
        assert_eq!(weight_splits(1, 100), 1);
    }
}
