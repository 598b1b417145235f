//! LPIPS-VGG16 timing on this machine: forward, and forward + backward to one image (the
//! training case: d(reconstruction, target) with the gradient to the reconstruction), for a
//! batch of 4 at 64×64 and 256×256. Median of a few runs after one warm-up.
//!
//! `cargo run --release --example lpips_timing` (uses weights/lpips/vgg16_lpips.safetensors when
//! present, otherwise random weights of the same shapes: the cost does not depend on the values).

use ldm_engine::nn::VarBuilder;
use ldm_engine::train::lpips::{Lpips, LpipsConfig, VGG16_WEIGHTS};
use ldm_engine::{no_grad, DType, Tensor};
use rand::SeedableRng;
use std::time::Instant;

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

fn main() -> ldm_engine::Result<()> {
    let (net, weights) = if std::path::Path::new(VGG16_WEIGHTS).is_file() {
        (Lpips::load_vgg16(VGG16_WEIGHTS)?, "real weights")
    } else {
        let vb = VarBuilder::seeded_init(DType::F32, 0);
        (Lpips::new(&vb, &LpipsConfig::default())?.frozen(), "random weights (no weights file)")
    };
    println!("LPIPS-VGG16, {weights}, {} threads", rayon::current_num_threads());
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for (hw, runs) in [(64, 7), (256, 3)] {
        let x = Tensor::rand(&[4, 3, hw, hw], -1.0, 1.0, DType::F32, &mut rng);
        let y = Tensor::rand(&[4, 3, hw, hw], -1.0, 1.0, DType::F32, &mut rng);
        let fwd = median_ms(runs, || {
            let _g = no_grad();
            net.forward(&x, &y).unwrap();
        });
        let train = median_ms(runs, || {
            let v = y.requires_grad();
            let g = net.forward(&x, &v).unwrap().mean_all().unwrap().backward().unwrap();
            assert!(g.get(&v).is_some());
        });
        println!("batch 4 at {hw}x{hw}: forward {fwd:.1} ms, forward+backward {train:.1} ms");
    }
    Ok(())
}
