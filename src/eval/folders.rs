//! Folders of images as evaluation inputs: Inception features of a folder, and the pairs of two
//! folders matched by relative path (for the paired metrics).
//!
//! A folder is every .png/.jpg/.jpeg under it, recursively, sorted (the training loader's listing,
//! `train::data::ImageFolder`). Unlike training, evaluation never skips a bad file: a score over
//! "the folder minus what failed to decode" would be a different number with the same name, so an
//! unreadable image is an error that names it.

use super::inception::{preprocess, FidInception, FEATURE_DIM, INPUT_SIZE};
use crate::train::data::{load_rgb, ImageFolder, ImageTransform};
use crate::{Error, Result, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The images of a folder, sorted; an error for a missing or image-less folder.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(ImageFolder::open(dir, ImageTransform::eval(1))?.files().to_vec())
}

/// Pool3 features of `files` ([files.len() × 2048], row-major), `batch` images per network call,
/// decoding and resizing on all cores; `progress` is told how many images are done after each batch.
pub fn inception_features(net: &FidInception, files: &[PathBuf], batch: usize, progress: &mut dyn FnMut(usize)) -> Result<Vec<f32>> {
    let batch = batch.max(1);
    let per_image = 3 * INPUT_SIZE * INPUT_SIZE;
    let mut out = Vec::with_capacity(files.len() * FEATURE_DIM);
    for chunk in files.chunks(batch) {
        let mut x = vec![0f32; chunk.len() * per_image];
        x.par_chunks_mut(per_image).zip(chunk.par_iter()).try_for_each(|(dst, path)| preprocess(&load_rgb(path)?, dst))?;
        let x = Tensor::from_vec(x, &[chunk.len(), 3, INPUT_SIZE, INPUT_SIZE])?;
        out.extend(net.features(&x)?.to_vec::<f32>()?);
        progress(out.len() / FEATURE_DIM);
    }
    Ok(out)
}

/// The images of two folders paired by their path relative to each folder (a/x/1.png with
/// b/x/1.png). Every image must have its partner: the message names how many lack one and the first
/// of them on each side.
pub fn paired_images(a: &Path, b: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let rel = |root: &Path| -> Result<BTreeMap<PathBuf, PathBuf>> {
        Ok(list_images(root)?.into_iter().map(|p| (p.strip_prefix(root).map(Path::to_path_buf).unwrap_or_else(|_| p.clone()), p)).collect())
    };
    let (ra, rb) = (rel(a)?, rel(b)?);
    let only = |x: &BTreeMap<PathBuf, PathBuf>, y: &BTreeMap<PathBuf, PathBuf>| x.keys().filter(|k| !y.contains_key(*k)).cloned().collect::<Vec<_>>();
    let (only_a, only_b) = (only(&ra, &rb), only(&rb, &ra));
    if !only_a.is_empty() || !only_b.is_empty() {
        let side = |v: &[PathBuf], dir: &Path| match v.first() {
            Some(first) => format!("{} only in {} (first: {})", v.len(), dir.display(), first.display()),
            None => String::new(),
        };
        let parts: Vec<String> = [side(&only_a, a), side(&only_b, b)].into_iter().filter(|s| !s.is_empty()).collect();
        return Err(Error::invalid("eval", format!("the folders do not pair up by file name: {}", parts.join("; "))));
    }
    Ok(ra.into_iter().map(|(k, pa)| (pa, rb[&k].clone())).collect())
}

/// Both images of a pair as [1, 3, H, W] f32 in [0, 1]; they must have the same size.
pub fn load_pair(a: &Path, b: &Path) -> Result<(Tensor, Tensor)> {
    let (ia, ib) = (load_rgb(a)?, load_rgb(b)?);
    if ia.dimensions() != ib.dimensions() {
        return Err(Error::invalid(
            "eval",
            format!("{} is {}x{} but {} is {}x{}: paired images must have the same size", a.display(), ia.width(), ia.height(), b.display(), ib.width(), ib.height()),
        ));
    }
    Ok((unit_tensor(&ia)?, unit_tensor(&ib)?))
}

/// An RGB image as [1, 3, H, W] f32 in [0, 1].
fn unit_tensor(img: &RgbImage) -> Result<Tensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let planar: Vec<f32> = (0..3).flat_map(|c| raw.iter().skip(c).step_by(3).map(|&v| v as f32 / 255.0)).collect();
    Tensor::from_vec(planar, &[1, 3, h, w])
}
