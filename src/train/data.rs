//! Training data: datasets that write one sample at a time into a caller's buffer, and a loader
//! (`loader.rs`) that batches them on worker threads in a deterministic order.
//!
//! * `ImageFolder`: every .png/.jpg/.jpeg under a folder, decoded with the `image` crate, resized so
//!   the shorter side is `size`, cropped to `size`×`size` (random for training, centred for eval),
//!   randomly flipped, scaled to [-1, 1] as x/127.5 − 1 — the recipe of taming-transformers'
//!   `ImagePaths` (albumentations SmallestMaxSize + RandomCrop) and latent-diffusion's LSUN loader
//!   (PIL bicubic resize, RandomHorizontalFlip(0.5), x/127.5 − 1).
//! * `Digits` (`digits.rs`): MNIST and Fashion-MNIST from the u8 safetensors files that
//!   tools/fetch_datasets.py writes.
//!
//! Bad data never crashes a run: a file that cannot be decoded (or whose decoder panics) is
//! reported once on stderr and replaced by the next readable file, so the batch keeps its size and
//! the substitution is the same on every run.

mod digits;
mod loader;
mod resample;

pub use digits::{Digits, DigitsOptions, Fit};
pub use loader::{Batch, Loader, LoaderConfig, Start};
pub use resample::Resample;

use crate::{Error, Result, Tensor};
use image::RgbImage;
use rand::rngs::StdRng;
use rand::Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// A source of fixed-shape samples. Implementations are shared by the loader's worker threads.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// [C, H, W] of every sample.
    fn sample_shape(&self) -> [usize; 3];
    /// Whether `fill` returns class labels.
    fn has_labels(&self) -> bool {
        false
    }
    /// Writes sample `index` (< len) into `out` (C·H·W values, CHW order, in [-1, 1]) and returns
    /// its label if the dataset has labels. `rng` drives the random augmentation; the loader seeds
    /// it per (seed, epoch, index), so a sample's crop and flip are reproducible.
    fn fill(&self, index: usize, rng: &mut StdRng, out: &mut [f32]) -> Result<Option<i64>>;

    /// Sample `index`'s caption, for text-conditional training: a sidecar `.txt` next to a
    /// folder's image, a class name for the built-in datasets; None if it has none.
    fn caption(&self, _index: usize) -> Result<Option<String>> {
        Ok(None)
    }

    /// One sample as a [C, H, W] tensor (for inspection and tests; training goes through `Loader`).
    fn get(&self, index: usize, rng: &mut StdRng) -> Result<Tensor> {
        let [c, h, w] = self.sample_shape();
        let mut out = vec![0f32; c * h * w];
        self.fill(index, rng, &mut out)?;
        Tensor::from_vec(out, &[c, h, w])
    }
}

/// How a sample's size×size window is chosen from the resized image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crop {
    /// Uniform over all positions (training).
    Random,
    /// The middle (evaluation, and reproducible previews).
    Center,
}

/// The per-sample transform of an `ImageFolder`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ImageTransform {
    /// Output side: the shorter image side is resized to this, then a square of it is cropped.
    pub size: usize,
    pub crop: Crop,
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// Bicubic by default: PIL's BICUBIC, what latent-diffusion's data modules resize with; the
    /// kernel is widened by the downscale factor as in PIL, so shrinking a large photo
    /// antialiases instead of aliasing (see `resample.rs`).
    pub filter: Resample,
}

impl ImageTransform {
    /// Random crop and flip: the training transform.
    pub fn train(size: usize) -> Self {
        ImageTransform { size, crop: Crop::Random, flip: true, filter: Resample::Bicubic }
    }
    /// Centre crop, no flip: the same image every time.
    pub fn eval(size: usize) -> Self {
        ImageTransform { size, crop: Crop::Center, flip: false, filter: Resample::Bicubic }
    }

    /// Resize (shorter side → size), crop and flip `img` into `out` ([3, size, size], [-1, 1]);
    /// only the crop window is resampled.
    /// Random draws, in this order: crop x, crop y, flip — only those the settings ask for.
    pub fn apply(&self, img: &RgbImage, rng: &mut StdRng, out: &mut [f32]) -> Result<()> {
        let s = self.size;
        if s == 0 {
            crate::bail!("ImageTransform", "size must be > 0");
        }
        if out.len() != 3 * s * s {
            return Err(Error::bad_shape("ImageTransform", format!("output buffer of {} values", out.len()), &[3, s, s]));
        }
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w == 0 || h == 0 {
            crate::bail!("ImageTransform", "image is {w}x{h}");
        }
        // Shorter side to exactly s; the longer side rounded, never below s so a crop always fits.
        // A small image is upscaled the same way.
        let scaled = |long: usize, short: usize| ((long as f64 * s as f64 / short as f64).round() as usize).max(s);
        let (nw, nh) = if w <= h { (s, scaled(h, w)) } else { (scaled(w, h), s) };
        let (x0, y0) = match self.crop {
            Crop::Random => (rng.random_range(0..=nw - s), rng.random_range(0..=nh - s)),
            Crop::Center => ((nw - s) / 2, (nh - s) / 2),
        };
        let flip = self.flip && rng.random_bool(0.5);
        if (nw, nh) != (w, h) {
            resample::resize_crop(img.as_raw(), (w, h), (nw, nh), (x0, y0), s, flip, self.filter, out);
            return Ok(());
        }
        let px = img.as_raw();
        let plane = s * s;
        for y in 0..s {
            let row = &px[3 * ((y0 + y) * w + x0)..3 * ((y0 + y) * w + x0 + s)];
            for x in 0..s {
                let sx = if flip { s - 1 - x } else { x };
                for c in 0..3 {
                    out[c * plane + y * s + x] = row[3 * sx + c] as f32 / 127.5 - 1.0;
                }
            }
        }
        Ok(())
    }
}

/// Decodes an image file to 8-bit RGB: grey is replicated, alpha is dropped (as PIL's
/// `convert("RGB")`, which the reference loaders use), 16-bit is narrowed. The format is taken from
/// the file's bytes, so a JPEG saved as .png still loads. EXIF orientation is not applied, as PIL
/// does not apply it on open either. A decoder panic is turned into an error.
pub fn load_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::File { path: path.display().to_string(), msg: format!("cannot read: {e}") })?;
    load_rgb_bytes(&path.display().to_string(), &bytes)
}

/// `load_rgb` on a file's bytes (`label` names it in errors; the fuzz target feeds this).
pub fn load_rgb_bytes(label: &str, bytes: &[u8]) -> Result<RgbImage> {
    let file_err = |msg: String| Error::File { path: label.to_string(), msg };
    if bytes.is_empty() {
        return Err(file_err("empty file".into()));
    }
    if jpeg_is_truncated(bytes) {
        return Err(file_err("truncated JPEG (no end-of-image marker after the last scan)".into()));
    }
    let decoded = catch_unwind(AssertUnwindSafe(|| -> image::ImageResult<image::DynamicImage> {
        image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?.decode()
    }));
    match decoded {
        Ok(Ok(img)) if img.width() > 0 && img.height() > 0 => Ok(img.to_rgb8()),
        Ok(Ok(img)) => Err(file_err(format!("image is {}x{}", img.width(), img.height()))),
        Ok(Err(e)) => Err(file_err(format!("not a readable image: {}", one_line(&e)))),
        Err(_) => Err(file_err("the image decoder panicked on this file".into())),
    }
}

/// zune-jpeg (the `image` crate's JPEG decoder) fills the missing blocks of a cut-off file with grey
/// and reports success, where PIL refuses it ("image file is truncated"); a half-grey training
/// image is bad data, so it is caught here. A complete JPEG has its end-of-image marker FF D9 after
/// its last start-of-scan FF DA: inside entropy-coded data every FF byte is followed by 00 or a
/// restart marker, so neither pair can appear there by accident.
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xff, 0xd8]) {
        return false;
    }
    match bytes.windows(2).rposition(|w| w == [0xff, 0xda]) {
        Some(sos) => !bytes[sos..].windows(2).any(|w| w == [0xff, 0xd9]),
        None => false, // no scan at all: the decoder reports that itself
    }
}

fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every .png/.jpg/.jpeg (any case) under a folder, recursively, in sorted path order.
pub struct ImageFolder {
    root: PathBuf,
    files: Vec<PathBuf>,
    transform: ImageTransform,
    /// Set the first time a file fails; later draws skip it without decoding it again.
    bad: Vec<AtomicBool>,
    skipped: Mutex<Vec<(PathBuf, String)>>,
}

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

impl ImageFolder {
    pub fn open(root: impl AsRef<Path>, transform: ImageTransform) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let folder_err = |msg: String| Error::File { path: root.display().to_string(), msg };
        if transform.size == 0 {
            return Err(folder_err("image size must be > 0".into()));
        }
        if !root.is_dir() {
            return Err(folder_err(if root.exists() { "not a folder" } else { "no such folder" }.into()));
        }
        let (mut files, mut others) = (Vec::new(), 0usize);
        scan(&root, &mut files, &mut others).map_err(|e| folder_err(format!("cannot list: {e}")))?;
        if files.is_empty() {
            let what = if others == 0 { "the folder is empty".to_string() } else { format!("{others} other files") };
            return Err(folder_err(format!("no .png/.jpg/.jpeg images found (searched subfolders too; {what})")));
        }
        files.sort();
        let bad = files.iter().map(|_| AtomicBool::new(false)).collect();
        Ok(ImageFolder { root, files, transform, bad, skipped: Mutex::new(Vec::new()) })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The image files, sorted; sample i is files()[i] (or its substitute if it is unreadable).
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
    pub fn transform(&self) -> &ImageTransform {
        &self.transform
    }
    /// The files skipped so far and why, in the order they were found bad.
    pub fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.skipped.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn mark_bad(&self, i: usize, err: &Error) {
        if !self.bad[i].swap(true, Ordering::Relaxed) {
            // once per file and process: `train` opens the folder twice (the loader and the
            // preview images), and a folder of only bad files printed each warning twice
            static WARNED: Mutex<std::collections::BTreeSet<PathBuf>> = Mutex::new(std::collections::BTreeSet::new());
            if WARNED.lock().map(|mut w| w.insert(self.files[i].clone())).unwrap_or(true) {
                eprintln!("warning: skipping unreadable image {err}");
            }
            if let Ok(mut s) = self.skipped.lock() {
                s.push((self.files[i].clone(), err.to_string()));
            }
        }
    }
}

/// Recursive listing. Hidden entries (".git", macOS "._x.jpg" resource forks, notebook
/// checkpoints) are not data and are left out; symlinked folders are not followed, so a link
/// cycle cannot loop. An unreadable subfolder is reported and skipped; only the root must list.
fn scan(dir: &Path, files: &mut Vec<PathBuf>, others: &mut usize) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if let Err(e) = scan(&path, files, others) {
                eprintln!("warning: skipping folder {}: {e}", path.display());
            }
        } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
            let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
            match ext {
                Some(e) if EXTENSIONS.contains(&e.as_str()) => files.push(path),
                _ => *others += 1,
            }
        }
    }
    Ok(())
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.files.len()
    }
    fn sample_shape(&self) -> [usize; 3] {
        [3, self.transform.size, self.transform.size]
    }
    /// An unreadable file is replaced by the next readable one in sorted order (wrapping), so the
    /// substitute depends only on which files are bad, not on thread timing.
    fn fill(&self, index: usize, rng: &mut StdRng, out: &mut [f32]) -> Result<Option<i64>> {
        let n = self.files.len();
        if index >= n {
            crate::bail!("ImageFolder", "sample {index} of a dataset of {n}");
        }
        for k in 0..n {
            let i = (index + k) % n;
            if self.bad[i].load(Ordering::Relaxed) {
                continue;
            }
            match load_rgb(&self.files[i]) {
                Ok(img) => {
                    self.transform.apply(&img, rng, out)?;
                    return Ok(None);
                }
                Err(e) => self.mark_bad(i, &e),
            }
        }
        Err(Error::File {
            path: self.root.display().to_string(),
            msg: format!("none of the {n} image files could be decoded (see the warnings above)"),
        })
    }

    /// `photo.png`'s caption is `photo.txt` beside it (trimmed), the convention of caption-folder
    /// training sets; an image without one has none.
    fn caption(&self, index: usize) -> Result<Option<String>> {
        let Some(file) = self.files.get(index) else { crate::bail!("ImageFolder", "sample {index} of a dataset of {}", self.files.len()) };
        let txt = file.with_extension("txt");
        match std::fs::read_to_string(&txt) {
            Ok(t) => Ok(Some(t.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::File { path: txt.display().to_string(), msg: format!("cannot read the caption: {e}") }),
        }
    }
}
