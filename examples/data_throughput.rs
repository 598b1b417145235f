//! How fast the image-folder pipeline feeds a training loop: decode + resize + random crop + flip
//! per image on one thread, then batches per second through the threaded loader.
//!
//!   python3 tools/fetch_datasets.py --only skimage
//!   cargo run --release --example data_throughput -- data/skimage 256 2 8 40
//!
//! Arguments: FOLDER SIZE WORKERS BATCH BATCHES. The loader is drained as fast as it can produce,
//! so images/s is the pipeline's ceiling; a training step that takes longer than BATCH / (images/s)
//! never waits for data.

use ldm_engine::train::data::{load_rgb, Dataset, ImageFolder, ImageTransform, Loader, LoaderConfig};
use rand::SeedableRng;
use std::sync::Arc;
use std::time::Instant;

fn main() -> ldm_engine::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [folder, size, workers, batch, batches] = args.as_slice() else {
        eprintln!("usage: data_throughput FOLDER SIZE WORKERS BATCH BATCHES");
        std::process::exit(2);
    };
    let num = |s: &str| s.parse::<usize>().unwrap_or_else(|_| { eprintln!("not a number: {s}"); std::process::exit(2) });
    let (size, workers, batch, batches) = (num(size), num(workers), num(batch), num(batches));
    let folder = Arc::new(ImageFolder::open(folder, ImageTransform::train(size))?);
    println!("{} images in {}", folder.len(), folder.root().display());

    // one thread, one pass: where the time goes
    let (mut decode, mut transform, mut whole, mut pixels) = (0.0, 0.0, 0.0, 0usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut out = vec![0f32; 3 * size * size];
    for path in folder.files() {
        let t = Instant::now();
        let Ok(img) = load_rgb(path) else { continue };
        decode += t.elapsed().as_secs_f64();
        pixels += (img.width() * img.height()) as usize;
        let t = Instant::now();
        folder.transform().apply(&img, &mut rng, &mut out)?;
        transform += t.elapsed().as_secs_f64();
        // for comparison: the image crate resizing the whole picture (its CatmullRom is the same
        // bicubic kernel), before any crop
        let t = Instant::now();
        let (w, h) = (img.width() as f64, img.height() as f64);
        let k = size as f64 / w.min(h);
        let r = image::imageops::resize(&img, (w * k).round() as u32, (h * k).round() as u32, image::imageops::FilterType::CatmullRom);
        std::hint::black_box(r);
        whole += t.elapsed().as_secs_f64();
    }
    let n = folder.len() as f64;
    println!(
        "one thread: decode {:.2} ms/image ({:.1} Mpixel/s), resize+crop+flip {:.2} ms/image, {:.1} images/s \
         (image::imageops::resize of the whole picture alone: {:.2} ms/image)",
        1e3 * decode / n, pixels as f64 / decode / 1e6, 1e3 * transform / n, n / (decode + transform), 1e3 * whole / n
    );

    let cfg = LoaderConfig { workers, ..LoaderConfig::new(batch, 0) };
    let mut loader = Loader::new(folder.clone(), cfg)?;
    let t = Instant::now();
    for _ in 0..batches {
        loader.next_batch()?;
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "loader, {workers} workers, batch {batch} at {size}x{size}: {batches} batches in {s:.2} s = {:.1} images/s ({:.1} ms/batch)",
        (batches * batch) as f64 / s, 1e3 * s / batches as f64
    );
    Ok(())
}
