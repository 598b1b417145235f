//! The training data pipeline: image folders (scan, decode, resize/crop/flip, bad files), the
//! threaded loader (order, determinism, resume, early drop) and the MNIST-format reader on the
//! committed fixture. No network and no Python: the images are written here with the `image` crate.

use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use ldm_engine::train::data::{
    Crop, Dataset, Digits, DigitsOptions, Fit, ImageFolder, ImageTransform, Loader, LoaderConfig, Resample, Start,
};
use image::imageops::FilterType;
use ldm_engine::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A fresh folder under the system temp dir, removed when the guard drops.
struct TmpDir(PathBuf);
impl TmpDir {
    fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!("ldm-train-data-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }
    fn path(&self, rel: &str) -> PathBuf {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    }
}
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A smooth, position-dependent colour image, different per `seed` (so crops and flips show).
fn rgb(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([((x * 7 + seed * 31) % 256) as u8, ((y * 5 + seed * 17) % 256) as u8, ((x * y + seed) % 256) as u8])
    })
}

/// Mixed sizes and kinds: wide, tall, tiny (upscaled), grey, RGBA, 16-bit, JPEG, nested folders.
fn write_mixed(dir: &TmpDir) {
    rgb(40, 30, 1).save(dir.path("a_wide.png")).unwrap();
    rgb(17, 50, 2).save(dir.path("B_TALL.JPG")).unwrap();
    rgb(6, 5, 3).save(dir.path("sub/tiny.png")).unwrap();
    GrayImage::from_fn(24, 24, |x, y| Luma([(x * 10 + y) as u8])).save(dir.path("sub/grey.jpeg")).unwrap();
    RgbaImage::from_fn(20, 33, |x, y| Rgba([x as u8 * 9, y as u8 * 7, 100, 0])).save(dir.path("sub/deeper/rgba.PNG")).unwrap();
    let wide: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(19, 19, |x, y| Rgb([x as u16 * 3000, y as u16 * 3000, 65535]));
    wide.save(dir.path("sub/deeper/sixteen_bit.png")).unwrap();
    std::fs::write(dir.path("notes.txt"), "not an image").unwrap();
    std::fs::write(dir.path(".hidden.png"), "a dotfile, not data").unwrap();
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn values(t: &ldm_engine::Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[test]
fn scan_is_recursive_sorted_and_case_insensitive() {
    let dir = TmpDir::new("scan");
    write_mixed(&dir);
    let folder = ImageFolder::open(&dir.0, ImageTransform::train(16)).unwrap();
    let names: Vec<String> = folder.files().iter().map(|p| p.strip_prefix(&dir.0).unwrap().display().to_string()).collect();
    assert_eq!(names, ["B_TALL.JPG", "a_wide.png", "sub/deeper/rgba.PNG", "sub/deeper/sixteen_bit.png", "sub/grey.jpeg", "sub/tiny.png"]);
    assert_eq!(folder.len(), 6);
    assert_eq!(folder.sample_shape(), [3, 16, 16]);
}

#[test]
fn every_kind_and_size_becomes_a_3_by_s_by_s_sample_in_range() {
    let dir = TmpDir::new("kinds");
    write_mixed(&dir);
    for t in [ImageTransform::train(16), ImageTransform::eval(16)] {
        let folder = ImageFolder::open(&dir.0, t).unwrap();
        for i in 0..folder.len() {
            let x = folder.get(i, &mut rng(i as u64)).unwrap();
            assert_eq!(x.shape(), &[3, 16, 16]);
            let v = values(&x);
            assert!(v.iter().all(|&p| (-1.0..=1.0).contains(&p)), "{:?} out of [-1, 1]", folder.files()[i]);
            assert!(v.iter().any(|&p| p != v[0]), "{:?} came out flat", folder.files()[i]);
        }
        assert!(folder.skipped().is_empty());
    }
}

#[test]
fn pixels_are_x_over_127_5_minus_1_and_grey_is_replicated() {
    let dir = TmpDir::new("exact");
    // already 8x8: no resize, so the eval transform returns the stored bytes exactly
    let img = rgb(8, 8, 5);
    img.save(dir.path("c.png")).unwrap();
    GrayImage::from_fn(8, 8, |x, y| Luma([(x * 30 + y) as u8])).save(dir.path("g.png")).unwrap();
    let folder = ImageFolder::open(&dir.0, ImageTransform::eval(8)).unwrap();
    let v = values(&folder.get(0, &mut rng(0)).unwrap());
    for (c, y, x) in [(0, 0, 0), (1, 3, 5), (2, 7, 7), (0, 6, 2)] {
        assert_eq!(v[c * 64 + y * 8 + x], img.get_pixel(x as u32, y as u32)[c] as f32 / 127.5 - 1.0);
    }
    let g = values(&folder.get(1, &mut rng(0)).unwrap());
    assert_eq!(&g[..64], &g[64..128]);
    assert_eq!(&g[..64], &g[128..]);
    assert_eq!(g[8 + 3], (3 * 30 + 1) as f32 / 127.5 - 1.0);
}

#[test]
fn crop_and_flip_are_windows_of_the_resized_image() {
    let dir = TmpDir::new("crop");
    // 8 high, 20 wide: the shorter side already is 8, so every crop is an exact 8x8 window
    let img = rgb(20, 8, 9);
    img.save(dir.path("w.png")).unwrap();
    let window = |x0: u32, flip: bool| -> Vec<f32> {
        let mut v = vec![0.0; 192];
        for c in 0..3 {
            for y in 0..8 {
                for x in 0..8u32 {
                    let sx = if flip { x0 + 7 - x } else { x0 + x };
                    v[c * 64 + y as usize * 8 + x as usize] = img.get_pixel(sx, y)[c] as f32 / 127.5 - 1.0;
                }
            }
        }
        v
    };
    let center = ImageFolder::open(&dir.0, ImageTransform::eval(8)).unwrap();
    assert_eq!(values(&center.get(0, &mut rng(0)).unwrap()), window(6, false));

    let train = ImageFolder::open(&dir.0, ImageTransform::train(8)).unwrap();
    let (mut offsets, mut flips) = (std::collections::HashSet::new(), [0; 2]);
    for s in 0..64 {
        let v = values(&train.get(0, &mut rng(s)).unwrap());
        let hit = (0..=12).flat_map(|x0| [(x0, false), (x0, true)]).find(|&(x0, f)| window(x0, f) == v);
        let (x0, f) = hit.expect("a train sample is not a (flipped) window of the image");
        offsets.insert(x0);
        flips[f as usize] += 1;
    }
    assert!(offsets.len() > 5, "random crops hit only offsets {offsets:?}");
    assert!(flips[0] > 10 && flips[1] > 10, "flips {flips:?} over 64 draws");
}

/// The crop-window resampler against the `image` crate resizing the whole picture and cropping
/// after: the same kernels and PIL's pixel-centre convention, so at most one 8-bit level apart
/// (float summation order decides a rounding now and then).
#[test]
fn crop_window_resampling_matches_resize_then_crop() {
    let noisy = |w, h| RgbImage::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)).wrapping_mul(2246822519) >> 8;
        Rgb([v as u8, (v >> 8) as u8, ((x + y) * 9) as u8])
    });
    let cases = [(97, 61, 24), (61, 97, 24), (40, 40, 24), (13, 9, 20), (300, 200, 32), (33, 100, 40)];
    for (filter, reference) in [(Resample::Bicubic, FilterType::CatmullRom), (Resample::Bilinear, FilterType::Triangle), (Resample::Lanczos3, FilterType::Lanczos3)] {
        for (w, h, s) in cases {
            let img = noisy(w, h);
            let t = ImageTransform { filter, ..ImageTransform::eval(s) };
            let mut ours = vec![0f32; 3 * s * s];
            t.apply(&img, &mut rng(0), &mut ours).unwrap();
            let (nw, nh) = if w <= h { (s as u32, ((h as f64 * s as f64 / w as f64).round() as u32).max(s as u32)) } else { (((w as f64 * s as f64 / h as f64).round() as u32).max(s as u32), s as u32) };
            let full = image::imageops::resize(&img, nw, nh, reference);
            let (x0, y0) = ((nw - s as u32) / 2, (nh - s as u32) / 2);
            let mut worst = 0f32;
            for c in 0..3 {
                for y in 0..s {
                    for x in 0..s {
                        let want = full.get_pixel(x0 + x as u32, y0 + y as u32)[c] as f32;
                        let got = (ours[c * s * s + y * s + x] + 1.0) * 127.5;
                        worst = worst.max((got - want).abs());
                    }
                }
            }
            assert!(worst <= 1.0 + 1e-3, "{filter:?} {w}x{h} -> {s}: {worst} levels apart");
        }
    }
}

#[test]
fn empty_and_imageless_folders_name_the_folder() {
    let dir = TmpDir::new("empty");
    let empty = dir.path("nothing");
    std::fs::create_dir_all(&empty).unwrap();
    let e = ImageFolder::open(&empty, ImageTransform::train(8)).err().unwrap().to_string();
    assert!(e.contains(&empty.display().to_string()) && e.contains("the folder is empty"), "{e}");

    std::fs::write(dir.path("texts/a.txt"), "x").unwrap();
    std::fs::write(dir.path("texts/deeper/b.csv"), "x").unwrap();
    let e = ImageFolder::open(dir.0.join("texts"), ImageTransform::train(8)).err().unwrap().to_string();
    assert!(e.contains("no .png/.jpg/.jpeg images found") && e.contains("2 other files"), "{e}");

    let e = ImageFolder::open(dir.0.join("missing"), ImageTransform::train(8)).err().unwrap().to_string();
    assert!(e.contains("missing") && e.contains("no such folder"), "{e}");
    assert_eq!(e.lines().count(), 1);
}

/// Good images plus four kinds of bad file.
fn write_with_bad(dir: &TmpDir) {
    for i in 0..5 {
        rgb(12 + i, 10, i).save(dir.path(&format!("good{i}.png"))).unwrap();
    }
    std::fs::write(dir.path("bad_random.png"), (0..500u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    let mut jpg = Vec::new();
    rgb(64, 64, 7).write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg).unwrap();
    std::fs::write(dir.path("sub/bad_truncated.jpg"), &jpg[..jpg.len() / 3]).unwrap();
    let mut png = Vec::new();
    rgb(64, 64, 8).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    std::fs::write(dir.path("sub/bad_truncated.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(dir.path("sub/bad_text.jpeg"), "hello, I am a text file").unwrap();
    std::fs::write(dir.path("bad_empty.png"), []).unwrap();
}

#[test]
fn bad_files_are_skipped_once_each_and_batches_stay_full() {
    let dir = TmpDir::new("bad");
    write_with_bad(&dir);
    let folder = Arc::new(ImageFolder::open(&dir.0, ImageTransform::train(8)).unwrap());
    assert_eq!(folder.len(), 10);
    let batches = |workers| -> Vec<Vec<f32>> {
        let cfg = LoaderConfig { workers, ..LoaderConfig::new(4, 3) };
        let loader = Loader::new(folder.clone(), cfg).unwrap();
        loader.take(7).map(|b| { let b = b.unwrap(); assert_eq!(b.images.shape(), &[4, 3, 8, 8]); values(&b.images) }).collect()
    };
    let inline = batches(0);
    let skipped = folder.skipped();
    let mut names: Vec<_> = skipped.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["bad_empty.png", "bad_random.png", "bad_text.jpeg", "bad_truncated.jpg", "bad_truncated.png"]);
    for (p, why) in &skipped {
        assert!(why.contains(&p.display().to_string()) && why.lines().count() == 1, "{why}");
    }
    // the substitute for a bad file does not depend on which thread found it bad
    assert_eq!(batches(3), inline);
    assert_eq!(folder.skipped().len(), 5, "a bad file was reported twice");
}

/// The warning itself: one stderr line per bad file, however many epochs and threads meet it.
/// The test runs itself as a child process (the env var says which folder) to read its stderr.
#[test]
fn each_bad_file_is_one_warning_line_on_stderr() {
    if let Ok(dir) = std::env::var("LDM_TRAIN_DATA_WARN_DIR") {
        let folder = Arc::new(ImageFolder::open(dir, ImageTransform::train(8)).unwrap());
        let loader = Loader::new(folder, LoaderConfig { workers: 3, ..LoaderConfig::new(4, 1) }).unwrap();
        loader.take(8).for_each(|b| drop(b.unwrap()));
        return;
    }
    let dir = TmpDir::new("warn");
    write_with_bad(&dir);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["each_bad_file_is_one_warning_line_on_stderr", "--exact", "--nocapture", "--test-threads=1"])
        .env("LDM_TRAIN_DATA_WARN_DIR", &dir.0)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 5, "{stderr}");
    for name in ["bad_empty.png", "bad_random.png", "bad_text.jpeg", "bad_truncated.jpg", "bad_truncated.png"] {
        assert_eq!(warnings.iter().filter(|w| w.contains(name)).count(), 1, "{name}: {stderr}");
    }
    assert!(warnings.iter().all(|w| w.starts_with("warning: skipping unreadable image ")), "{stderr}");
}

#[test]
fn a_folder_of_only_bad_files_is_one_clear_error() {
    let dir = TmpDir::new("allbad");
    std::fs::write(dir.path("x.png"), "no").unwrap();
    std::fs::write(dir.path("y.jpg"), [0xff, 0xd8, 0xff]).unwrap();
    let folder = Arc::new(ImageFolder::open(&dir.0, ImageTransform::train(8)).unwrap());
    let mut loader = Loader::new(folder, LoaderConfig::new(2, 0)).unwrap();
    let e = loader.next_batch().err().unwrap().to_string();
    assert!(e.contains(&dir.0.display().to_string()) && e.contains("none of the 2 image files could be decoded"), "{e}");
    let again = loader.next_batch().err().unwrap().to_string();
    assert!(again.contains("stopped after an earlier error"), "{again}");
}

/// Writes its index and one random draw: a cheap dataset to check the loader's bookkeeping.
struct Indexed {
    n: usize,
    delay: Duration,
}
impl Dataset for Indexed {
    fn len(&self) -> usize {
        self.n
    }
    fn sample_shape(&self) -> [usize; 3] {
        [1, 1, 2]
    }
    fn has_labels(&self) -> bool {
        true
    }
    fn fill(&self, index: usize, rng: &mut StdRng, out: &mut [f32]) -> Result<Option<i64>> {
        std::thread::sleep(self.delay);
        out[0] = index as f32;
        out[1] = rng.random::<f32>();
        Ok(Some(index as i64 * 10))
    }
}

fn indexed(n: usize) -> Arc<Indexed> {
    Arc::new(Indexed { n, delay: Duration::ZERO })
}

fn stream(ds: Arc<dyn Dataset>, cfg: LoaderConfig, batches: usize) -> Vec<Vec<f32>> {
    Loader::new(ds, cfg).unwrap().take(batches).map(|b| values(&b.unwrap().images)).collect()
}

#[test]
fn each_epoch_is_a_permutation_and_batches_run_across_epochs() {
    // 10 samples, batches of 4: batch 2 holds the last 2 of epoch 0 and the first 2 of epoch 1
    let mut loader = Loader::new(indexed(10), LoaderConfig::new(4, 11)).unwrap();
    let mut ids = Vec::new();
    for k in 0..5u64 {
        let b = loader.next_batch().unwrap();
        assert_eq!((b.step, b.sample, b.epoch), (k, 4 * k, 4 * k / 10));
        let v = values(&b.images);
        let labels = b.labels.unwrap().to_vec::<i64>().unwrap();
        for j in 0..4 {
            ids.push(v[2 * j] as usize);
            assert_eq!(labels[j], 10 * v[2 * j] as i64);
        }
    }
    for epoch in ids.chunks(10) {
        let mut e = epoch.to_vec();
        e.sort();
        assert_eq!(e, (0..10).collect::<Vec<_>>());
    }
    assert_ne!(&ids[..10], &ids[10..], "two epochs in the same order");
    assert_ne!(&ids[..10], &(0..10).collect::<Vec<_>>(), "not shuffled");
    // shuffle off: 0..N every epoch
    let plain = stream(indexed(10), LoaderConfig { shuffle: false, ..LoaderConfig::new(5, 11) }, 4);
    let order: Vec<usize> = plain.iter().flat_map(|b| b.iter().step_by(2).map(|&x| x as usize)).collect();
    assert_eq!(order, [(0..10).collect::<Vec<_>>(), (0..10).collect()].concat());
    // a dataset smaller than a batch still fills it
    let small = stream(indexed(3), LoaderConfig::new(8, 1), 2);
    assert_eq!(small[0].len(), 16);
}

#[test]
fn same_seed_same_batches_for_any_worker_count_and_other_seed_differs() {
    let ds = indexed(23);
    let base = stream(ds.clone(), LoaderConfig { workers: 0, ..LoaderConfig::new(5, 42) }, 12);
    for workers in [1, 2, 3, 4] {
        for prefetch in [0, 1, 3] {
            let cfg = LoaderConfig { workers, prefetch, ..LoaderConfig::new(5, 42) };
            assert_eq!(stream(ds.clone(), cfg, 12), base, "workers {workers}, prefetch {prefetch}");
        }
    }
    assert_ne!(stream(ds.clone(), LoaderConfig::new(5, 43), 12), base);

    // and on real images, with random crops and flips, bit for bit
    let dir = TmpDir::new("det");
    write_mixed(&dir);
    let folder: Arc<dyn Dataset> = Arc::new(ImageFolder::open(&dir.0, ImageTransform::train(12)).unwrap());
    let a = stream(folder.clone(), LoaderConfig { workers: 3, ..LoaderConfig::new(4, 5) }, 4);
    let b = stream(folder.clone(), LoaderConfig { workers: 0, ..LoaderConfig::new(4, 5) }, 4);
    assert_eq!(a, b);
    assert_ne!(stream(folder, LoaderConfig { workers: 3, ..LoaderConfig::new(4, 6) }, 4), a);
}

#[test]
fn resuming_at_a_step_gives_the_batches_of_an_uninterrupted_run() {
    let ds = indexed(13);
    let full = stream(ds.clone(), LoaderConfig::new(4, 9), 10);
    let resumed = stream(ds.clone(), LoaderConfig { start: Start::Step(6), ..LoaderConfig::new(4, 9) }, 4);
    assert_eq!(resumed, full[6..]);
    // the position a loader reports resumes it too
    let mut first = Loader::new(ds.clone(), LoaderConfig::new(4, 9)).unwrap();
    for _ in 0..3 {
        first.next_batch().unwrap();
    }
    let pos = first.position();
    drop(first);
    let again = stream(ds.clone(), LoaderConfig { start: Start::Sample(pos), workers: 3, ..LoaderConfig::new(4, 9) }, 2);
    assert_eq!(again, full[3..5]);
    // epoch 2 starts at sample 26 = batch 6 + 2 samples
    let e2 = stream(ds, LoaderConfig { start: Start::Epoch(2), ..LoaderConfig::new(4, 9) }, 1);
    assert_eq!(&e2[0][..4], &full[6][4..]);
}

#[test]
fn dropping_a_loader_early_joins_its_workers_without_hanging() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let slow = Arc::new(Indexed { n: 1000, delay: Duration::from_millis(2) });
        let t = Instant::now();
        // dropped before any batch, while every worker is busy
        drop(Loader::new(slow.clone(), LoaderConfig { workers: 4, prefetch: 1, ..LoaderConfig::new(16, 0) }).unwrap());
        // dropped after one batch, with full channels behind it
        let mut l = Loader::new(slow, LoaderConfig { workers: 3, prefetch: 1, ..LoaderConfig::new(2, 0) }).unwrap();
        l.next_batch().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(l);
        done_tx.send(t.elapsed()).unwrap();
    });
    let took = done_rx.recv_timeout(Duration::from_secs(20)).expect("dropping the loader hung");
    assert!(took < Duration::from_secs(5), "dropping took {took:?}");
}

/// Panics on one index: a dataset bug must come back as an error, not kill a thread silently.
struct Panicky;
impl Dataset for Panicky {
    fn len(&self) -> usize {
        4
    }
    fn sample_shape(&self) -> [usize; 3] {
        [1, 1, 1]
    }
    fn fill(&self, index: usize, _: &mut StdRng, _: &mut [f32]) -> Result<Option<i64>> {
        if index == 2 {
            panic!("dataset bug (expected by the test)");
        }
        Ok(None)
    }
}

#[test]
fn bad_configs_and_panicking_datasets_are_errors() {
    assert!(Loader::new(indexed(4), LoaderConfig::new(0, 0)).err().unwrap().to_string().contains("batch_size"));
    assert!(Loader::new(indexed(0), LoaderConfig::new(2, 0)).err().unwrap().to_string().contains("empty"));
    let mut l = Loader::new(Arc::new(Panicky), LoaderConfig { shuffle: false, ..LoaderConfig::new(4, 0) }).unwrap();
    let e = l.next_batch().err().unwrap().to_string();
    assert!(e.contains("panicked"), "{e}");
}

const FIXTURE: &str = "tests/fixtures/mnist_tiny.safetensors";

#[test]
fn mnist_fixture_reads_as_digits() {
    let d = Digits::load(FIXTURE, DigitsOptions::default()).unwrap();
    assert_eq!(d.len(), 20);
    assert_eq!(d.stored_size(), (28, 28));
    assert_eq!((0..20).map(|i| d.label(i).unwrap()).collect::<Vec<_>>(), (0..20).map(|i| i / 2).collect::<Vec<i64>>());
    let raw = d.raw(3).unwrap().to_vec();
    // a digit: mostly black background, some full-white stroke
    assert!(raw.iter().filter(|&&b| b == 0).count() > 500 && raw.iter().any(|&b| b > 250));
    let x = values(&d.get(3, &mut rng(0)).unwrap());
    assert_eq!(x.len(), 784);
    assert!(x.iter().zip(&raw).all(|(&v, &b)| v == b as f32 / 127.5 - 1.0));

    // 3 channels, padded to 32: a 2-pixel black border around the same pixels
    let d32 = Digits::load(FIXTURE, DigitsOptions { channels: 3, size: 32, fit: Fit::Pad }).unwrap();
    let y = values(&d32.get(3, &mut rng(0)).unwrap());
    assert_eq!(d32.sample_shape(), [3, 32, 32]);
    for c in 0..3 {
        for r in 0..32 {
            for col in 0..32 {
                let v = y[c * 1024 + r * 32 + col];
                let want = if (2..30).contains(&r) && (2..30).contains(&col) { x[(r - 2) * 28 + col - 2] } else { -1.0 };
                assert_eq!(v, want, "channel {c} ({r}, {col})");
            }
        }
    }
    // resized down to 16
    let d16 = Digits::load(FIXTURE, DigitsOptions { channels: 1, size: 16, fit: Fit::Resize }).unwrap();
    let z = values(&d16.get(3, &mut rng(0)).unwrap());
    assert_eq!(z.len(), 256);
    assert!(z.iter().all(|v| (-1.0..=1.0).contains(v)) && z.iter().any(|&v| v > 0.5));

    // through the loader, with labels
    let b = Loader::new(Arc::new(d32), LoaderConfig::new(6, 0)).unwrap().next_batch().unwrap();
    assert_eq!(b.images.shape(), &[6, 3, 32, 32]);
    let labels = b.labels.unwrap();
    assert_eq!(labels.shape(), &[6]);
    assert!(labels.to_vec::<i64>().unwrap().iter().all(|l| (0..10).contains(l)));
}

#[test]
fn digits_errors_say_what_to_do() {
    let e = Digits::mnist("no/such/dir", DigitsOptions::default()).err().unwrap().to_string();
    assert!(e.contains("no/such/dir/mnist.safetensors") && e.contains("tools/fetch_datasets.py"), "{e}");
    let e = Digits::fashion_mnist("nowhere", DigitsOptions::default()).err().unwrap().to_string();
    assert!(e.contains("fashion_mnist.safetensors") && e.contains("tools/fetch_datasets.py"), "{e}");
    let e = Digits::load(FIXTURE, DigitsOptions { channels: 1, size: 16, fit: Fit::Pad }).err().unwrap().to_string();
    assert!(e.contains("Fit::Resize"), "{e}");
    let e = Digits::load(FIXTURE, DigitsOptions { channels: 2, ..Default::default() }).err().unwrap().to_string();
    assert!(e.contains("channels must be 1 or 3"), "{e}");
    let e = Digits::load("tests/fixtures/vae_kl.safetensors", DigitsOptions::default()).err().unwrap().to_string();
    assert!(e.contains("'images'"), "{e}");
}

/// The scikit-image photos, when tools/fetch_datasets.py has been run (not in CI).
#[test]
fn skimage_photos_if_fetched() {
    let dir = Path::new("data/skimage");
    if !dir.is_dir() {
        println!("skipped: {} not fetched (python3 tools/fetch_datasets.py --only skimage)", dir.display());
        return;
    }
    let folder = Arc::new(ImageFolder::open(dir, ImageTransform { crop: Crop::Random, ..ImageTransform::train(32) }).unwrap());
    let n = folder.len();
    let b = Loader::new(folder.clone(), LoaderConfig::new(n, 0)).unwrap().next_batch().unwrap();
    assert_eq!(b.images.shape(), &[n, 3, 32, 32]);
    assert!(folder.skipped().is_empty(), "{:?}", folder.skipped());
}

/// MNIST and Fashion-MNIST as fetched (not in CI): the counts the packages hold, ten classes each.
#[test]
fn fetched_digits_if_present() {
    for (name, count) in [("mnist", 10_000), ("fashion_mnist", 70_000)] {
        let path = format!("data/{name}.safetensors");
        if !Path::new(&path).exists() {
            println!("skipped: {path} not fetched (python3 tools/fetch_datasets.py)");
            continue;
        }
        let d = Digits::load(&path, DigitsOptions { channels: 3, size: 32, fit: Fit::Pad }).unwrap();
        assert_eq!(d.len(), count);
        let mut seen = [0usize; 10];
        (0..d.len()).for_each(|i| seen[d.label(i).unwrap() as usize] += 1);
        assert!(seen.iter().all(|&c| c > count / 20), "{name}: class counts {seen:?}");
        let b = Loader::new(Arc::new(d), LoaderConfig::new(64, 0)).unwrap().next_batch().unwrap();
        assert_eq!(b.images.shape(), &[64, 3, 32, 32]);
    }
}
