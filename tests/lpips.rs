//! LPIPS (VGG16, v0.1) vs the `lpips` 0.1.4 package, fixtures by tools/gen_lpips_fixture.py:
//! distances and input gradients of Σ distance, computed there in float64. Bar: max|ours − ref| /
//! max|ref| ≤ 1e-4 with our f32 forward and backward.
//!
//! - a reduced-width VGG16 (5…13 channels) with random weights, always (the fixture is small);
//! - the real weights, when weights/lpips/vgg16_lpips.safetensors exists (tools/fetch_lpips.py;
//!   59 MB, not committed), otherwise the test says why it skipped and passes;
//! - finite differences through a tiny random net, shape and load errors, the NaN-free norm.

mod common;
use common::fixture::{assert_parity_within, Fixture};
use common::{grad_check_kinked, rand, vals};
use ldm_engine::nn::VarBuilder;
use ldm_engine::train::lpips::{normalize_channels, Lpips, LpipsConfig, VGG16_WEIGHTS};
use ldm_engine::{DType, Tensor};

const PARITY: f64 = 1e-4;

/// The fixture's uint8 pairs [4, 3, 64, 64] as lpips reads them: x / 127.5 − 1.
fn pairs() -> (Tensor, Tensor) {
    let f = Fixture::open("lpips/pairs");
    let img = |name: &str| f.tensor(name).to_dtype(DType::F32).unwrap().affine(1.0 / 127.5, -1.0).unwrap();
    (img("x0"), img("x1"))
}

/// Distances and d(Σ dist)/d(x0, x1).
fn run(net: &Lpips, x0: &Tensor, x1: &Tensor) -> (Tensor, Tensor, Tensor) {
    let (v0, v1) = (x0.requires_grad(), x1.requires_grad());
    let d = net.forward(&v0, &v1).unwrap();
    assert_eq!(d.shape(), &[x0.dim(0).unwrap(), 1, 1, 1]);
    let g = d.sum_all().unwrap().backward().unwrap();
    let (g0, g1) = (g.get(&v0).unwrap().clone(), g.get(&v1).unwrap().clone());
    (d.flatten_all().unwrap(), g0, g1)
}

#[test]
fn small_random_vgg_matches_lpips_package() {
    let f = Fixture::open("lpips/vgg_small_random");
    let c = f.list("channels");
    let cfg = LpipsConfig { channels: [c[0], c[1], c[2], c[3], c[4]] };
    let vb = f.weights(|n| n.to_string());
    let net = Lpips::new(&vb, &cfg).unwrap();
    vb.finish(false).unwrap();
    // 37×29 crops (odd sizes: every pool floors) taken as strided views of the 64×64 images.
    let crop = f.list("crop");
    let (x0, x1) = pairs();
    let cut = |x: &Tensor| x.narrow(2, crop[0], crop[1]).unwrap().narrow(3, crop[2], crop[3]).unwrap();
    let (d, g0, g1) = run(&net, &cut(&x0), &cut(&x1));
    println!("small net dist {:?}", vals(&d));
    assert_parity_within(&d, &f.tensor("dist"), "small net distance", PARITY);
    assert_parity_within(&g0, &f.tensor("grad_x0"), "small net d/dx0", PARITY);
    // d/dx1 at 4e-5: at one pixel of pair 3 a ReLU or pool sits at a near-tie that f32 and the
    // f64 reference resolve differently (the error is local, ~7e-8 absolute around (14, 11)).
    assert_parity_within(&g1, &f.tensor("grad_x1"), "small net d/dx1", PARITY);

    // The training case: only the reconstruction needs a gradient, the target runs unrecorded.
    let v1 = cut(&x1).requires_grad();
    let d1 = net.forward(&cut(&x0), &v1).unwrap();
    let g = d1.sum_all().unwrap().backward().unwrap();
    assert_eq!(vals(&d1.flatten_all().unwrap()), vals(&d), "one tracked input: same distances");
    assert_parity_within(g.get(&v1).unwrap(), &f.tensor("grad_x1"), "small net d/dx1, x0 untracked", PARITY);
}

#[test]
fn real_vgg16_matches_lpips_package() {
    let path = format!("{}/{VGG16_WEIGHTS}", env!("CARGO_MANIFEST_DIR"));
    if !std::path::Path::new(&path).is_file() {
        println!("SKIPPED real-weights LPIPS parity: {path} is missing (run tools/fetch_lpips.py to make it)");
        return;
    }
    let net = Lpips::load_vgg16(&path).unwrap();
    let f = Fixture::open("lpips/vgg16_pairs");
    let (x0, x1) = pairs();
    let (d, g0, _) = run(&net, &x0, &x1);
    let want = f.tensor("dist");
    for (i, (a, b)) in vals(&d).iter().zip(vals(&want)).enumerate() {
        println!("pair {i}: ours {a:.8} lpips {b:.8} rel {:.2e}", (a - b).abs() / b.abs());
    }
    assert_parity_within(&d, &want, "vgg16 distance", PARITY);
    assert_parity_within(&g0, &f.tensor("grad_x0"), "vgg16 d/dx0", PARITY);
}

/// A VGG16-structured net narrow enough for finite differences (random weights).
fn tiny_net(seed: u64) -> Lpips {
    let vb = VarBuilder::seeded_init(DType::F32, seed);
    Lpips::new(&vb, &LpipsConfig { channels: [3, 4, 4, 5, 5] }).unwrap()
}

#[test]
fn input_gradients_match_finite_differences() {
    let net = tiny_net(1);
    // ×100: distances of random nets are ~1e-2, so the gradients are O(1) against the check's
    // absolute tolerance. 17×19: odd sizes, 1×1 at stage 5.
    let f = |t: &[Tensor]| net.forward(&t[0], &t[1])?.mul_scalar(100.0);
    let (x0, x1) = (rand(&[2, 3, 17, 19], -1.0, 1.0, 2), rand(&[2, 3, 17, 19], -1.0, 1.0, 3));
    grad_check_kinked(f, &[x0, x1], 1e-3, 3e-3, 2e-2, 30, "lpips tiny net");
}

#[test]
fn distance_is_zero_on_equal_images_and_symmetric() {
    let net = tiny_net(4);
    let (a, b) = (rand(&[3, 3, 16, 20], -1.0, 1.0, 5), rand(&[3, 3, 16, 20], -1.0, 1.0, 6));
    assert!(vals(&net.forward(&a, &a).unwrap()).iter().all(|&v| v == 0.0));
    let (ab, ba) = (vals(&net.forward(&a, &b).unwrap()), vals(&net.forward(&b, &a).unwrap()));
    assert!(ab.iter().all(|&v| v != 0.0));
    common::assert_close(&ab, &ba, 1e-7, 1e-6, "d(a, b) = d(b, a)");
    // per-layer terms add up to the distance
    let (total, layers) = net.forward_per_layer(&a, &b).unwrap();
    assert_eq!(layers.len(), 5);
    let sum: Vec<f64> = (0..3).map(|i| layers.iter().map(|l| vals(l)[i]).sum()).collect();
    common::assert_close(&vals(&total), &sum, 1e-7, 1e-6, "Σ layers");
}

#[test]
fn normalize_has_finite_gradient_where_features_are_zero() {
    // Pixel (0, 0) has features, pixel (0, 1) is all zero (as after a ReLU): torch's
    // normalize_tensor gives NaN gradients there (0/0 in sqrt's backward); ours stays finite.
    let x = Tensor::from_vec(vec![1f32, 0.0, 2.0, 0.0, 3.0, 0.0], &[1, 3, 1, 2]).unwrap().requires_grad();
    let y = normalize_channels(&x).unwrap();
    let yv = vals(&y);
    let n = 14f64.sqrt();
    common::assert_close(&yv, &[1.0 / n, 0.0, 2.0 / n, 0.0, 3.0 / n, 0.0], 1e-7, 1e-6, "unit norm");
    let w = Tensor::from_vec(vec![0.3f32, -1.0, 0.7, 2.0, -0.2, 0.5], &[1, 3, 1, 2]).unwrap();
    let g = y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
    let gv = vals(g.get(&x).unwrap());
    assert!(gv.iter().all(|v| v.is_finite()), "{gv:?}");
    // the non-zero pixel's gradient is the unit-norm Jacobian (I − y yᵀ)/‖x‖ applied to w
    let (y0, w0) = ([1.0 / n, 2.0 / n, 3.0 / n], [0.3, 0.7, -0.2]);
    let dot: f64 = y0.iter().zip(&w0).map(|(a, b)| a * b).sum();
    let want: Vec<f64> = (0..3).map(|c| (w0[c] - y0[c] * dot) / n).collect();
    common::assert_close(&[gv[0], gv[2], gv[4]], &want, 1e-6, 1e-5, "normalize Jacobian");
}

#[test]
fn errors_are_one_line_and_say_what_to_do() {
    let e = Lpips::load_vgg16("/nonexistent/vgg16_lpips.safetensors").err().unwrap().to_string();
    assert!(e.contains("tools/fetch_lpips.py") && !e.contains('\n'), "{e}");
    // a file of other weights: every VGG16 name is reported missing, the file's names unexpected
    let other = format!("{}/tests/fixtures/lpips/vgg_small_random.safetensors", env!("CARGO_MANIFEST_DIR"));
    let e = Lpips::load_vgg16(&other).err().unwrap().to_string();
    assert!(e.contains("missing") && e.contains("features.0.weight") && e.contains("unexpected") && !e.contains('\n'), "{e}");

    let net = tiny_net(7);
    let img = |s: &[usize]| rand(s, -1.0, 1.0, 8);
    for (a, b, want) in [
        (img(&[1, 3, 16, 16]), img(&[1, 3, 16, 17]), "shape mismatch"),
        (img(&[1, 1, 16, 16]), img(&[1, 1, 16, 16]), "RGB"),
        (img(&[3, 16, 16]), img(&[3, 16, 16]), "RGB"),
        (img(&[1, 3, 15, 40]), img(&[1, 3, 15, 40]), "16×16"),
    ] {
        let e = net.forward(&a, &b).err().unwrap().to_string();
        assert!(e.contains("lpips") && e.contains(want), "{e}");
    }
    assert!(Lpips::new(&VarBuilder::seeded_init(DType::F32, 0), &LpipsConfig { channels: [4, 0, 4, 4, 4] }).is_err());
}
