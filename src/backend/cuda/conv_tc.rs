//! Tensor-core convolution (kernels/conv_tc.cu): implicit GEMM with mma.sync for f16/bf16, groups
//! = 1 — forward with the bias and an optional residual fused into the epilogue, backward data (also conv_transpose2d's
//! forward), backward weight with split-K into an f32 buffer. conv.rs sends each call here when
//! `eligible` says so and keeps the im2col + GEMM path for f32, grouped convs and sizes past int32.
//! Forward (and stride-1 backward data) read a channels-last copy of the image when the channels
//! are a multiple of 8: 16-byte loads instead of 2-byte gathers; backward weight reads dy's image
//! planes and x channels-last (or as planes for 1×1) when each image's pixels are a multiple of 8.
//! `LDM_CUDA_CONV=gemm` forces im2col + GEMM, `LDM_CUDA_CONV=nchw` the NCHW gathers and
//! `LDM_CUDA_CONV=tile64` the 64×64 tile where the 128×128 one would run (to compare on a GPU),
//! and, in kernel-lab builds, `LDM_CUDA_CONV=lab-v4` / `lab-v5` the lab's variant 4 / 5 there.

use super::ops::{alloc_out, data_ptr, dense, device_and_ptr, float_suffix, launch, optional_operand, wrap};
use super::CudaDevice;
use crate::backend::cpu::conv::Geom;
use crate::tensor::{DType, Tensor};
use crate::Result;
use cudarc::driver::{DeviceRepr, LaunchConfig};
use crate::tensor::Storage;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

const TILE_M: usize = 64;
const TILE_N: usize = 64;
const TILE_K: usize = 32;
const THREADS: u32 = 128;
/// The 128×128 tile's side and threads (tc_tile.cuh TCW_BM/TCW_BN, TCW_THREADS).
const WIDE_TILE: usize = 128;
const WIDE_THREADS: u32 = 256;

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

fn forced(path: &str) -> bool {
    super::switch_is("LDM_CUDA_CONV", path)
}

fn forced_gemm() -> bool {
    forced("gemm")
}

/// `t` [A, B, C, D] as the [A, C, D, B] view of its storage when it is stored channels-last
/// already (a channels-last group_norm output, a stored weight), else None.
fn stored_channels_last(t: &Tensor) -> Result<Option<Tensor>> {
    let view = t.permute(&[0, 2, 3, 1])?;
    Ok(view.is_contiguous().then_some(view))
}

/// `t` [A, B, C, D] copied to [A, C, D, B] (channels-last), outside autograd: an operand layout.
/// One tiled transpose kernel (kernels/elementwise.cu transpose_last2) over the dense [A, B, C·D];
/// no copy for a tensor stored that way already (`stored_channels_last`).
fn channels_last(t: &Tensor) -> Result<Tensor> {
    if let Some(view) = stored_channels_last(t)? {
        return Ok(view);
    }
    let s = t.shape();
    let (a, b, cd) = (s[0], s[1], s[2] * s[3]);
    if a > 65_535 {
        // past the grid's z limit: the generic strided copy
        return super::ops::copy_contiguous(&t.detach().permute(&[0, 2, 3, 1])?, None);
    }
    let t = dense(t)?;
    let (dev, _) = device_and_ptr("channels_last", &t)?;
    let out = alloc_out(&dev, t.dtype(), &[a, s[2], s[3], b])?;
    if t.numel() > 0 {
        let cfg = LaunchConfig { grid_dim: (cd.div_ceil(32) as u32, b.div_ceil(32) as u32, a as u32), block_dim: (32, 8, 1), shared_mem_bytes: 0 };
        launch!(dev, "elementwise", format!("transpose_last2_{}", super::ops::suffix(t.dtype())), cfg; b as i64, cd as i64, data_ptr(&t)?, out.ptr());
    }
    Ok(wrap(out, &[a, s[2], s[3], b], None))
}

/// Bumped by every in-place write on a device (optimiser steps, EMA, copy_values): a cached weight
/// layout made before it may be stale, so the caches empty themselves when they see it change.
static WRITES: AtomicU64 = AtomicU64::new(0);

pub(crate) fn weights_written() {
    WRITES.fetch_add(1, Ordering::Relaxed);
}

/// Channels-last conv weights per device, keyed by the source weight's storage (alive, same
/// offset, shape and strides) and the dtype: SD1.5's conv weights are ~0.8 GB in f16, and transposing them
/// on every call cost a few ms per UNet step. Only for weights that are not variables (inference);
/// cleared when anything is written in place; never filled during a graph capture (the copy would
/// belong to the graph's private memory pool).
#[derive(Default)]
pub(crate) struct WeightLayouts {
    inner: Mutex<(u64, Vec<CachedLayout>)>,
}

/// The f32 workspace the split-K forward sums into (and its tiles' tickets), zeroed once and left
/// zeroed by every split conv's finishing blocks, so a split conv needs no memset launch of its own. The last is the
/// current one; one it outgrew stays allocated only if a CUDA graph was recorded with it (the
/// graph replays with its address).
#[derive(Default)]
pub(crate) struct SplitWorkspace {
    /// (workspace, recorded into a graph)
    inner: Mutex<Vec<(Tensor, bool)>>,
}

/// A zeroed f32 workspace of at least `len` elements on `dev` (the device's own, grown to fit
/// when no graph is being recorded; a fresh zeroed one in the capture's pool otherwise).
fn zeroed_workspace(dev: &Arc<CudaDevice>, len: usize) -> Result<Tensor> {
    let capturing = dev.capturing.load(Ordering::Relaxed);
    let mut held = dev.split_workspace.inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((ws, recorded)) = held.last_mut().filter(|(ws, _)| ws.numel() >= len) {
        *recorded |= capturing;
        return Ok(ws.clone());
    }
    let ws = super::ops::full(dev, 0.0, &[len], DType::F32)?;
    if !capturing {
        held.retain(|(_, recorded)| *recorded);
        held.push((ws.clone(), false));
    }
    Ok(ws)
}

struct CachedLayout {
    source: Weak<RwLock<Storage>>,
    offset: usize,
    shape: Vec<usize>,
    /// a transposed view of a square weight has the storage, offset and shape of the weight
    strides: Vec<usize>,
    dtype: DType,
    layout: Tensor,
}

const MAX_CACHED_LAYOUTS: usize = 1024;

/// Whether a conv weight of this shape and dtype is best stored channels-last on the device: it
/// feeds the channels-last tensor-core kernel (half precision, C_in a multiple of 8), which then
/// reads it as it is, with no per-call transpose and no cached second copy.
pub(crate) fn prefers_channels_last_weight(shape: &[usize], dtype: DType) -> bool {
    shape.len() == 4 && reads_channels_last(shape[1], dtype)
}

/// Whether a conv over `channels` input channels of `dtype` reads its input channels-last (the
/// tensor-core kernel's 16-byte path), so a producer can hand it that layout directly.
pub(crate) fn reads_channels_last(channels: usize, dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16) && channels_last_fits(channels) && !forced_gemm()
}

/// An inference weight [C_out, C_in, KH, KW] with its storage reordered to [C_out, KH, KW, C_in]:
/// the same shape, permuted strides. Every op reads it like any strided view; the conv kernels
/// read it directly (`channels_last_weight`). Loaders call this once per weight
/// (nn::VarBuilder on a GPU in half precision), so the model holds one copy in the layout the
/// kernel wants — the NCHW original and a cached channels-last copy were two.
pub(crate) fn store_channels_last(w: &Tensor) -> Result<Tensor> {
    channels_last(w)?.permute(&[0, 3, 1, 2])
}

/// w [C_out, C_in, KH, KW] as [C_out, KH, KW, C_in] in `dtype`: a weight stored that way already
/// (`store_channels_last`) as it is, else from the cache when it can be.
fn channels_last_weight(dev: &Arc<CudaDevice>, w: &Tensor, dtype: DType) -> Result<Tensor> {
    // before the cache: a cached view of the weight itself would keep its storage alive
    if w.dtype() == dtype
        && let Some(view) = stored_channels_last(w)?
    {
        return Ok(view);
    }
    let make = || channels_last(&w.to_dtype(dtype)?);
    if w.is_var() {
        return make();
    }
    let source = w.storage_weak();
    let found = |c: &CachedLayout| {
        c.source.ptr_eq(&source) && c.offset == w.layout().offset() && c.shape == w.shape() && c.strides == w.layout().strides() && c.dtype == dtype
    };
    let mut cache = dev.weight_layouts.inner.lock().unwrap_or_else(|e| e.into_inner());
    let writes = WRITES.load(Ordering::Relaxed);
    if cache.0 != writes {
        *cache = (writes, Vec::new());
    }
    if let Some(c) = cache.1.iter().find(|c| found(c)) {
        return Ok(c.layout.clone());
    }
    let layout = make()?;
    if !dev.capturing.load(Ordering::Relaxed) {
        cache.1.retain(|c| c.source.strong_count() > 0);
        if cache.1.len() < MAX_CACHED_LAYOUTS {
            let (offset, shape, strides) = (w.layout().offset(), w.shape().to_vec(), w.layout().strides().to_vec());
            cache.1.push(CachedLayout { source, offset, shape, strides, dtype, layout: layout.clone() });
        }
    }
    Ok(layout)
}

/// Whether the channels-last kernel reads an image of `channels` channels: 16-byte vectors of 8.
fn channels_last_fits(channels: usize) -> bool {
    channels % 8 == 0 && !forced("nchw")
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
    forward_with(x, w, bias, residual, g, lab_requested())
}

/// The kernel lab's conv variant asked for by `LDM_CUDA_CONV=lab-v4` / `lab-v5` in a build with
/// `--features kernel-lab` (None without it).
fn lab_requested() -> Option<LabConv> {
    if !cfg!(feature = "kernel-lab") {
        return None;
    }
    [(LabConv::V4, "lab-v4"), (LabConv::V5, "lab-v5")].into_iter().find(|(_, name)| forced(name)).map(|(v, _)| v)
}

/// A kernel-lab conv forward (tools/kernel_lab/): 4, the cp.async ring with ldmatrix
/// (conv_tc_v4.cu); 5, the ring feeding wgmma, Hopper only (conv_tc_wgmma_sm90a.cu). Both have the
/// shipped 128×128 forward's and split-K's signatures, grids and blocks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum LabConv {
    V4,
    V5,
}

impl LabConv {
    fn module(self) -> &'static str {
        match self {
            LabConv::V4 => "lab_conv_tc_v4",
            LabConv::V5 => "lab_conv_tc_wgmma_sm90a",
        }
    }
    fn tag(self) -> &'static str {
        match self {
            LabConv::V4 => "v4",
            LabConv::V5 => "v5",
        }
    }
}

/// `forward`, with `lab` choosing a kernel-lab variant where the 128×128 tile or split-K runs
/// (lab.rs conv2d_lab times it so next to the shipped kernels).
pub(crate) fn forward_with(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, residual: Option<&Tensor>, g: &Geom, lab: Option<LabConv>) -> Result<Tensor> {
    let sfx = float_suffix("conv2d", x.dtype())?;
    let (dev, _) = device_and_ptr("conv2d", x)?;
    let (_b, b_ptr) = cast_operand(bias, x.dtype())?;
    let shape = [g.n, g.c_out, g.ho, g.wo];
    if let Some(r) = residual
        && r.shape() != shape
    {
        return Err(crate::Error::ShapeMismatch { op: "conv2d_add", lhs: r.shape().to_vec(), rhs: shape.to_vec() });
    }
    let (_r, r_ptr) = cast_operand(residual, x.dtype())?;
    let out = alloc_out(&dev, x.dtype(), &shape)?;
    let cfg = config(g.n * g.ho * g.wo, g.c_out, 1);
    if channels_last_fits(g.c_in) {
        // k = (kh, kw, ci): x as [N, H, W, C_in], w as [C_out, KH, KW, C_in]
        let (xn, wk) = (channels_last(x)?, channels_last_weight(&dev, w, x.dtype())?);
        let k = g.c_in * g.kh * g.kw;
        let splits = forward_splits(cfg.grid_dim.0 as usize * cfg.grid_dim.1 as usize, k);
        if splits > 1 {
            // few output tiles (small images): the k range split over blocks, summed in f32
            let (module, name, cfg, chunk) = split_forward_kernel(sfx, g.n * g.ho * g.wo, g.c_out, k, splits, lab);
            let total = shape.iter().product::<usize>();
            // the sums, then one ticket per output tile (i32; zero bits are 0 either way)
            let ws = zeroed_workspace(&dev, total + (cfg.grid_dim.0 * cfg.grid_dim.1) as usize)?;
            let sums = data_ptr(&ws)?;
            let tickets = sums + 4 * total as u64;
            // the tile's last block finishes it (conv_tc.cuh conv_split_finish_tile; the lab's
            // split variants too)
            launch!(dev, module, name, cfg; TcConvGeom::of(g), 0i32, data_ptr(&xn)?, data_ptr(&wk)?, sums, tickets, chunk as i32, b_ptr, r_ptr, out.ptr());
        } else {
            let (module, name, cfg) = nhwc_forward_kernel(sfx, g.n * g.ho * g.wo, g.c_out, lab);
            launch!(dev, module, name, cfg; TcConvGeom::of(g), 0i32, data_ptr(&xn)?, data_ptr(&wk)?, b_ptr, r_ptr, out.ptr());
        }
    } else {
        let (x, w) = (dense(x)?, dense(&w.to_dtype(x.dtype())?)?);
        launch!(dev, "conv_tc", format!("conv_tc_fwd_{sfx}"), cfg;
            TcConvGeom::of(g), data_ptr(&x)?, data_ptr(&w)?, b_ptr, r_ptr, out.ptr());
    }
    Ok(wrap(out, &shape, None))
}

/// dx of conv2d given dy [N, C_out, HO, WO] (conv_transpose2d's forward, whose bias is on the
/// C_in side): [N, C_in, H, W].
pub fn backward_data(dy: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &Geom) -> Result<Tensor> {
    let (sfx, dy, w, dev) = operands("conv2d_backward_data", dy, w)?;
    let (_b, b_ptr) = cast_operand(bias, dy.dtype())?;
    let shape = [g.n, g.c_in, g.h, g.w];
    let out = alloc_out(&dev, dy.dtype(), &shape)?;
    let cfg = config(g.n * g.h * g.w, g.c_in, 1);
    if let Some(flipped) = backward_data_as_forward(g) {
        // the forward over dy [N, HO, WO, C_out] with w as [C_in, KH, KW, C_out], taps flipped
        let (dyn_, wt) = (channels_last(&dy)?, channels_last(&w.detach().transpose(0, 1)?)?); // dense() copies the transposed view first
        let (module, name, cfg) = nhwc_forward_kernel(sfx, g.n * g.h * g.w, g.c_in, lab_requested());
        launch!(dev, module, name, cfg; flipped, 1i32, data_ptr(&dyn_)?, data_ptr(&wt)?, b_ptr, 0u64, out.ptr());
    } else {
        launch!(dev, "conv_tc", format!("conv_tc_bwd_data_{sfx}"), cfg;
            TcConvGeom::of(g), data_ptr(&dy)?, data_ptr(&w)?, b_ptr, out.ptr());
    }
    Ok(wrap(out, &shape, None))
}

/// For a stride-1 conv whose C_out is a multiple of 8, backward data is a forward conv of dy with
/// the taps flipped, the channel roles swapped and padding dh·(KH−1) − ph (kernels/conv_tc.cu
/// conv_fwd_nhwc): its geometry, or None where that padding would be negative or the stride is not 1.
fn backward_data_as_forward(g: &Geom) -> Option<TcConvGeom> {
    let pad = |d: usize, k: usize, p: usize| (d * (k - 1)).checked_sub(p);
    let (ph, pw) = (pad(g.dilation.0, g.kh, g.padding.0)?, pad(g.dilation.1, g.kw, g.padding.1)?);
    if g.stride != (1, 1) || !channels_last_fits(g.c_out) {
        return None;
    }
    let swapped = Geom { c_in: g.c_out, h: g.ho, w: g.wo, c_out: g.c_in, padding: (ph, pw), ho: g.h, wo: g.w, ..*g };
    Some(TcConvGeom::of(&swapped))
}

/// The channels-last forward over `pixels` × `channels` outputs (no split): the 128×128 tile
/// (conv_tc_fwd_nhwc_wide, 256 threads) when its grid holds ≥ 128 blocks, about one per SM of an
/// H100 — the rule the GEMM's 128×128 tile was measured to pay under (linalg.rs wide_tile_pays) —
/// else the 64×64 tile. `LDM_CUDA_CONV=tile64` keeps the 64×64 tile everywhere (to compare); in a
/// build with `--features kernel-lab`, `LDM_CUDA_CONV=lab-v4` / `lab-v5` runs the kernel lab's
/// variant (`LabConv`) where the 128×128 tile would. Returns (module, kernel, launch); `lab`:
/// `lab_requested()`, or the lab's own entry.
fn nhwc_forward_kernel(sfx: &str, pixels: usize, channels: usize, lab: Option<LabConv>) -> (&'static str, String, LaunchConfig) {
    if wide_tile_pays(pixels, channels) {
        let grid = (pixels.div_ceil(WIDE_TILE) as u32, channels.div_ceil(WIDE_TILE) as u32, 1);
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (WIDE_THREADS, 1, 1), shared_mem_bytes: 0 };
        if let Some(v) = lab {
            return (v.module(), format!("conv_tc_fwd_nhwc_{}_{sfx}", v.tag()), cfg);
        }
        ("conv_tc", format!("conv_tc_fwd_nhwc_wide_{sfx}"), cfg)
    } else {
        ("conv_tc", format!("conv_tc_fwd_nhwc_{sfx}"), config(pixels, channels, 1))
    }
}

fn wide_tile_pays(pixels: usize, channels: usize) -> bool {
    !forced("tile64") && pixels.div_ceil(WIDE_TILE) * channels.div_ceil(WIDE_TILE) >= 128 && channels.div_ceil(WIDE_TILE) <= 65_535
}

/// The split-K forward over `pixels` × `channels` outputs and a k range of `k` in `splits` parts
/// (chunks of whole slices): the 64×64 tile, or in a build with `--features kernel-lab` under
/// `LDM_CUDA_CONV=lab-v4` / `lab-v5` the lab's 128×128 variant with its own split count for its tiles.
/// Returns (module, kernel, launch, chunk).
fn split_forward_kernel(sfx: &str, pixels: usize, channels: usize, k: usize, splits: usize, lab: Option<LabConv>) -> (&'static str, String, LaunchConfig, usize) {
    if let Some(v) = lab {
        let tiles = (pixels.div_ceil(WIDE_TILE), channels.div_ceil(WIDE_TILE));
        let chunk = k.div_ceil(forward_splits(tiles.0 * tiles.1, k)).div_ceil(TILE_K) * TILE_K;
        let grid = (tiles.0 as u32, tiles.1 as u32, k.div_ceil(chunk) as u32);
        let cfg = LaunchConfig { grid_dim: grid, block_dim: (WIDE_THREADS, 1, 1), shared_mem_bytes: 0 };
        return (v.module(), format!("conv_tc_fwd_nhwc_split_{}_{sfx}", v.tag()), cfg, chunk);
    }
    let chunk = k.div_ceil(splits).div_ceil(TILE_K) * TILE_K;
    ("conv_tc", format!("conv_tc_fwd_nhwc_split_{sfx}"), config(pixels, channels, k.div_ceil(chunk)), chunk)
}

/// How many parts the forward's k range (C_in·KH·KW) is split into: enough blocks for ~4 per SM
/// of a 132-SM H100 (an SM holds several of these 128-thread blocks; SD's 1280-channel convs at 8²
/// have 40 output tiles), each part keeping at least 8 k slices, at most 32 parts.
fn forward_splits(tiles: usize, k: usize) -> usize {
    528usize.div_ceil(tiles).min(k.div_ceil(TILE_K) / 8).clamp(1, 32)
}

/// How many slices of the k range (N·HO·WO) the weight gradient is split into: enough blocks to
/// fill ~2 waves of a 132-SM H100 when the C_out × C_in·KH·KW output has few tiles, while each
/// split keeps at least 8 k slices of work.
fn weight_splits(tiles: usize, k: usize) -> usize {
    let slices = k.div_ceil(TILE_K);
    (264usize.div_ceil(tiles)).min(slices.div_ceil(8)).clamp(1, 65_535)
}

/// dW of conv2d given x and dy: [C_out, C_in, KH, KW], summed in f32, returned in `wdtype`.
pub fn backward_weight(x_in: &Tensor, dy: &Tensor, g: &Geom, wdtype: DType) -> Result<Tensor> {
    let (sfx, x, dy, dev) = operands("conv2d_backward_weight", x_in, dy)?;
    let wshape = [g.c_out, g.c_in, g.kh, g.kw];
    let (j, k) = (g.c_in * g.kh * g.kw, g.n * g.ho * g.wo);
    let dw = super::ops::full(&dev, 0.0, &wshape, DType::F32)?;
    let splits = weight_splits(g.c_out.div_ceil(TILE_M) * j.div_ceil(TILE_N), k);
    let chunk = k.div_ceil(splits).div_ceil(TILE_K) * TILE_K;
    let splits = k.div_ceil(chunk);
    let cfg = config(g.c_out, j, splits);
    match weight_operands(g, data_ptr(&dy)?) {
        WeightOperands::Planes if data_ptr(&x)? % 16 == 0 => {
            launch!(dev, "conv_tc", format!("conv_tc_bwd_weight_dense_{sfx}"), cfg;
                TcConvGeom::of(g), 0i32, data_ptr(&x)?, data_ptr(&dy)?, data_ptr(&dw)?, chunk as i32);
        }
        WeightOperands::ChannelsLast => {
            // the caller's x, not the dense copy: an x stored channels-last needs no transpose
            let xn = channels_last(x_in)?;
            launch!(dev, "conv_tc", format!("conv_tc_bwd_weight_dense_{sfx}"), cfg;
                TcConvGeom::of(g), 1i32, data_ptr(&xn)?, data_ptr(&dy)?, data_ptr(&dw)?, chunk as i32);
        }
        _ => {
            launch!(dev, "conv_tc", format!("conv_tc_bwd_weight_{sfx}"), cfg;
                TcConvGeom::of(g), data_ptr(&x)?, data_ptr(&dy)?, data_ptr(&dw)?, chunk as i32);
        }
    }
    dw.to_dtype(wdtype)
}

/// How the weight gradient reads its operands (kernels/conv_tc.cu conv_bwd_weight_dense).
#[derive(Debug, PartialEq)]
enum WeightOperands {
    /// 1×1, stride 1, no padding: x and dy both as NCHW image planes, 16-byte loads.
    Planes,
    /// dy as planes, x as a channels-last copy (C_in % 8 = 0).
    ChannelsLast,
    /// the element gather (any geometry).
    Gather,
}

/// The dense kernel needs dy's planes in whole 16-byte vectors: HO·WO % 8 = 0 and dy aligned.
fn weight_operands(g: &Geom, dy_ptr: u64) -> WeightOperands {
    if forced("nchw") || (g.ho * g.wo) % 8 != 0 || dy_ptr % 16 != 0 {
        WeightOperands::Gather
    } else if (g.kh, g.kw, g.stride, g.padding) == (1, 1, (1, 1), (0, 0)) {
        WeightOperands::Planes
    } else if channels_last_fits(g.c_in) {
        WeightOperands::ChannelsLast
    } else {
        WeightOperands::Gather
    }
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
    fn stride_one_backward_data_becomes_a_flipped_forward_over_dy() {
        if forced("nchw") {
            return;
        }
        // SD's 3×3 pad 1, 320 → 640 channels at 32²: dy (640 channels) in, 320 out, padding 2·1 − 1.
        let g = Geom { c_out: 640, ..geom(2, 320, 32, 3, 1) };
        let f = backward_data_as_forward(&g).expect("3×3 stride 1 pad 1");
        assert_eq!((f.c, f.k, f.h, f.ho, f.ph, f.pw, f.sh), (640, 320, 32, 32, 1, 1, 1));
        // 1×1: padding 0; dilation 2 pad 2: padding 2·2 − 2 = 2
        assert_eq!(backward_data_as_forward(&geom(1, 64, 8, 1, 1)).map(|f| f.ph), Some(0));
        assert_eq!(backward_data_as_forward(&Geom { dilation: (2, 2), padding: (2, 2), ..geom(1, 64, 8, 3, 1) }).map(|f| f.ph), Some(2));
        assert!(backward_data_as_forward(&Geom { stride: (2, 2), ho: 32, wo: 32, ..geom(1, 64, 64, 3, 1) }).is_none(), "stride 2 keeps the gather");
        assert!(backward_data_as_forward(&Geom { padding: (3, 3), ..geom(1, 64, 8, 3, 1) }).is_none(), "padding past the kernel's reach");
        assert!(backward_data_as_forward(&geom(1, 4, 8, 3, 1)).is_none(), "4 output channels: no 16-byte vectors");
    }

    #[test]
    fn large_images_take_the_wide_tile() {
        if forced("tile64") {
            return;
        }
        // SD1.5 batch 2: 64² × 320 outputs is 64 × 3 = 192 wide blocks; 32² × 640 only 16 × 5 = 80
        // (those split the k range on the 64×64 tile instead); the VAE decoder at 512², 128 channels
        assert!(wide_tile_pays(2 * 64 * 64, 320));
        assert!(!wide_tile_pays(2 * 32 * 32, 640));
        assert!(wide_tile_pays(512 * 512, 128));
        let (module, name, cfg) = nhwc_forward_kernel("f16", 2 * 64 * 64, 320, None);
        assert_eq!((module, name.as_str(), cfg.grid_dim, cfg.block_dim.0), ("conv_tc", "conv_tc_fwd_nhwc_wide_f16", (64, 3, 1), 256));
        let (module, name, cfg) = nhwc_forward_kernel("bf16", 2 * 32 * 32, 640, None);
        assert_eq!((module, name.as_str(), cfg.grid_dim, cfg.block_dim.0), ("conv_tc", "conv_tc_fwd_nhwc_bf16", (32, 10, 1), 128));
        // the kernel lab's variants take the 128×128 tile's place, same grid and block
        let (module, name, cfg) = nhwc_forward_kernel("f16", 2 * 64 * 64, 320, Some(LabConv::V5));
        assert_eq!((module, name.as_str(), cfg.grid_dim, cfg.block_dim.0), ("lab_conv_tc_wgmma_sm90a", "conv_tc_fwd_nhwc_v5_f16", (64, 3, 1), 256));
        let (module, name, cfg, chunk) = split_forward_kernel("f16", 2 * 8 * 8, 1280, 1280 * 9, 7, Some(LabConv::V4));
        assert_eq!((module, name.as_str(), cfg.block_dim.0), ("lab_conv_tc_v4", "conv_tc_fwd_nhwc_split_v4_f16", 256));
        assert_eq!(chunk % TILE_K, 0);
    }

    #[test]
    fn small_images_split_the_forward_k_range() {
        // SD1.5 batch 2: 64² × 320 channels has 640 tiles, one part; 32² × 640: 320 tiles, 2 parts;
        // 16² × 1280: 160 tiles, 4; 8² × 1280: 40 tiles, 14 (K = 11520, 360 slices)
        assert_eq!(forward_splits(128 * 5, 320 * 9), 1);
        assert_eq!(forward_splits(32 * 10, 640 * 9), 2);
        assert_eq!(forward_splits(8 * 20, 1280 * 9), 4);
        assert_eq!(forward_splits(2 * 20, 1280 * 9), 14);
        // a short k range is not split below 8 slices per part
        assert_eq!(forward_splits(1, 320), 1);
        assert_eq!(forward_splits(1, 64 * 32), 8);
    }

    #[test]
    fn weight_gradients_read_dense_operands_where_the_pixels_come_in_whole_vectors() {
        if forced("nchw") {
            return;
        }
        // SD's 3×3 at 64², 1×1 at 32²; the conv_in over 4 channels can read x as planes only when 1×1
        assert_eq!(weight_operands(&geom(2, 320, 64, 3, 1), 0), WeightOperands::ChannelsLast);
        assert_eq!(weight_operands(&geom(2, 640, 32, 1, 1), 256), WeightOperands::Planes);
        assert_eq!(weight_operands(&geom(2, 4, 64, 1, 1), 0), WeightOperands::Planes);
        assert_eq!(weight_operands(&geom(2, 4, 64, 3, 1), 0), WeightOperands::Gather, "4 channels: no 16-byte pixels");
        assert_eq!(weight_operands(&geom(2, 320, 7, 3, 1), 0), WeightOperands::Gather, "49 pixels: vectors would cross images");
        assert_eq!(weight_operands(&geom(2, 320, 64, 3, 1), 8), WeightOperands::Gather, "dy not 16-byte aligned");
        // a padded 1×1 has windows, not planes
        assert_eq!(weight_operands(&Geom { padding: (1, 1), ho: 64, wo: 64, ..geom(1, 64, 62, 1, 1) }, 0), WeightOperands::ChannelsLast);
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
