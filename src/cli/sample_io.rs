//! What `ldm-engine sample` reads and writes besides the model: the init image and mask (PNG),
//! the initial noise (safetensors), and the output PNGs, one per image or one grid, each carrying
//! the run's parameters as AUTOMATIC1111 writes them.

use std::path::{Path, PathBuf};

use ldm_engine::io::image::{load_png, save_png, to_rgb8};
use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::{DType, Error, Result, Tensor};

fn file_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::File { path: path.display().to_string(), msg: msg.into() }
}

/// A PNG as [batch, 3, H, W] in [-1, 1] (x/127.5 − 1, diffusers' preprocess); `what` names it
/// in errors. Sides must be multiples of 8.
pub fn read_image(path: &Path, batch: usize, what: &str) -> Result<Tensor> {
    let (rgb, w, h, _) = load_png(path)?;
    if !w.is_multiple_of(8) || !h.is_multiple_of(8) {
        return Err(file_err(path, format!("the {what} is {w}x{h}: both sides must be multiples of 8")));
    }
    super::sample::check_pixels(batch, w, h)?;
    let mut planar = vec![0f32; 3 * h * w];
    for (p, px) in rgb.chunks(3).enumerate() {
        for c in 0..3 {
            planar[c * h * w + p] = f32::from(px[c]) / 127.5 - 1.0;
        }
    }
    let one = Tensor::from_vec(planar, &[1, 3, h, w])?;
    Tensor::cat(&vec![&one; batch], 0)
}

/// A mask PNG as [1, 1, H, W] in [0, 1] (white = repaint): RGB turned to grey with PIL's "L"
/// weights (ITU-R 601-2, in PIL's fixed point), as diffusers' mask processor does.
pub fn read_mask(path: &Path, width: usize, height: usize) -> Result<Tensor> {
    let (rgb, w, h, _) = load_png(path)?;
    if (w, h) != (width, height) {
        return Err(file_err(path, format!("the mask is {w}x{h} but the init image is {width}x{height}: they must be the same size")));
    }
    let grey = rgb
        .chunks(3)
        .map(|p| {
            let l = (u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16;
            l as f32 / 255.0
        })
        .collect();
    Tensor::from_vec(grey, &[1, 1, h, w])
}

/// Tensor `noise` of a safetensors file, which must have `shape`.
pub fn read_noise(path: &Path, shape: &[usize]) -> Result<Tensor> {
    let t = SafeTensorsFile::open(path)?.get("noise")?;
    if t.shape() != shape {
        return Err(file_err(path, format!("tensor 'noise' has shape {:?}, this run needs {shape:?}", t.shape())));
    }
    t.to_dtype(DType::F32)
}

/// Where a run's images go: `out` itself for one image or a grid, else NAME-0.png, NAME-1.png, …
pub fn output_paths(out: &Path, n: usize, grid: bool) -> Vec<PathBuf> {
    if n == 1 || grid {
        return vec![out.to_path_buf()];
    }
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    (0..n).map(|i| out.with_file_name(format!("{stem}-{i}.png"))).collect()
}

/// The images [N, 3, H, W] in [-1, 1] as PNGs at `paths`: one each, or (one path, N > 1) a grid
/// of `cols` (default ⌈√N⌉) columns, row by row, on black.
pub fn write_images(images: &Tensor, paths: &[PathBuf], text: &[(&str, &str)], cols: Option<usize>) -> Result<()> {
    let n = images.dim(0)?;
    if paths.len() == n {
        for (i, path) in paths.iter().enumerate() {
            let (rgb, w, h) = to_rgb8(&images.narrow(0, i, 1)?)?;
            save_png(path, &rgb, w, h, text)?;
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    let (h, w) = (images.dim(2)?, images.dim(3)?);
    let cols = cols.unwrap_or_else(|| (1..=n).find(|c| c * c >= n).unwrap_or(1)).clamp(1, n);
    let rows = n.div_ceil(cols);
    let (gw, gh) = (cols * w, rows * h);
    let mut grid = vec![0u8; 3 * gw * gh];
    for i in 0..n {
        let (rgb, _, _) = to_rgb8(&images.narrow(0, i, 1)?)?;
        let (x0, y0) = ((i % cols) * w, (i / cols) * h);
        for y in 0..h {
            let dst = 3 * ((y0 + y) * gw + x0);
            grid[dst..dst + 3 * w].copy_from_slice(&rgb[3 * y * w..3 * (y + 1) * w]);
        }
    }
    save_png(&paths[0], &grid, gw, gh, text)?;
    println!("wrote {} ({n} images, {cols}x{rows} grid)", paths[0].display());
    Ok(())
}
