//! Whole models on every available device against the CPU: a small SD-style UNet (cross-attention
//! to a context, class embedding, two resolutions) forward and backward, a KL autoencoder
//! encode/decode, the built-in model's sampling, both trainers' steps, and Stable Diffusion
//! text-to-image / image-to-image in f32, f16 and bf16 — the integration check that every op a model uses runs on the device and that
//! the backward rules work on device tensors. Weights are the same seeded init on both devices.
//! Without a GPU the CUDA runs are skipped with the reason printed (the CPU run checks the test).
//!
//! Tolerance: f32, |out − cpu| ≤ 1e-3·max|cpu| — a few hundred ops deep, summation orders differ
//! (tiled GEMM vs the CPU gemm crate, block reductions); a wrong op is off by O(max|cpu|).
mod common;

use common::randn;
use ldm_engine::backend::cuda;
use ldm_engine::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use ldm_engine::models::unet::{UNet, UNetConfig};
use ldm_engine::nn::VarBuilder;
use ldm_engine::{DType, Device, Tensor};

fn devices() -> Vec<Device> {
    let n = cuda::device_count();
    if n == 0 {
        eprintln!("CUDA runs skipped: {}", cuda::no_device_reason());
    }
    std::iter::once(Device::Cpu).chain((0..n).map(Device::Cuda)).collect()
}

fn assert_near(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let (g, w) = (got.to_vec_f64().unwrap(), want.to_vec_f64().unwrap());
    let scale = w.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-6);
    let worst = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
    assert!(worst.is_finite() && worst <= 1e-3 * scale, "{what}: worst |diff| {worst:.3e} vs max|ref| {scale:.3e}");
}

fn unet_config() -> UNetConfig {
    UNetConfig {
        in_channels: 4,
        out_channels: 4,
        model_channels: 32,
        channel_mult: vec![1, 2],
        num_res_blocks: 1,
        attention_levels: vec![0, 1],
        heads: vec![2, 4],
        spatial_transformer: true,
        transformer_depth: 1,
        context_dim: 24,
        linear_proj: false,
        groups: 8,
        num_classes: Some(5),
        conv_resample: true,
        scale_shift: false,
        resblock_updown: false,
    }
}

#[test]
fn unet_forward_and_backward_match_the_cpu_on_every_device() {
    let cfg = unet_config();
    let (x, t, ctx) = (randn(&[2, 4, 12, 10], 1), Tensor::from_vec(vec![10f32, 870.0], &[2]).unwrap(), randn(&[2, 7, 24], 2));
    let labels = Tensor::from_vec(vec![3i64, 0], &[2]).unwrap();
    let run = |dev: Device| {
        let vb = VarBuilder::seeded_init(DType::F32, 7).on_device(dev);
        let unet = UNet::new(&vb, &cfg).unwrap();
        let to = |t: &Tensor| t.to_device(dev).unwrap();
        let y = unet.forward(&to(&x), &to(&t), Some(&to(&ctx)), Some(&to(&labels))).unwrap();
        assert_eq!(y.device(), dev);
        // A training-style loss: every parameter's gradient goes through the device backward rules.
        let loss = y.sub(&to(&randn(&[2, 4, 12, 10], 3))).unwrap().sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        let params = vb.params();
        let picked: Vec<(String, Tensor)> = ["input_blocks.0.0.weight", "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "label_emb.weight", "out.2.bias"]
            .iter()
            .map(|name| {
                let (_, p) = params.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no parameter {name}"));
                (name.to_string(), grads.get(p).unwrap_or_else(|| panic!("no gradient for {name}")).to_device(Device::Cpu).unwrap())
            })
            .collect();
        (y.to_device(Device::Cpu).unwrap(), loss.to_scalar().unwrap(), picked)
    };
    let (y_cpu, loss_cpu, g_cpu) = run(Device::Cpu);
    for dev in devices().into_iter().filter(|d| d.is_cuda()) {
        let (y, loss, g) = run(dev);
        assert_near(&y, &y_cpu, &format!("unet output on {dev:?}"));
        assert!((loss - loss_cpu).abs() <= 1e-4 * loss_cpu.abs(), "loss {loss} vs {loss_cpu}");
        for ((name, a), (_, b)) in g.iter().zip(&g_cpu) {
            assert_near(a, b, &format!("d loss / d {name} on {dev:?}"));
        }
    }
    assert!(y_cpu.to_vec_f64().unwrap().iter().all(|v| v.is_finite()));
}

#[test]
fn kl_autoencoder_encode_decode_match_the_cpu_on_every_device() {
    let cfg = AutoencoderConfig {
        in_channels: 3,
        out_channels: 3,
        ch: 32,
        ch_mult: vec![1, 2],
        num_res_blocks: 1,
        attn_levels: vec![],
        z_channels: 4,
        embed_dim: 4,
        groups: 8,
        mid_attn: true,
    };
    let img = randn(&[1, 3, 17, 22], 4).clamp(-1.0, 1.0).unwrap();
    let run = |dev: Device| {
        let vb = VarBuilder::seeded_init(DType::F32, 8).on_device(dev);
        let ae = AutoencoderKL::new(&vb, &cfg).unwrap();
        let post = ae.encode(&img.to_device(dev).unwrap()).unwrap();
        let rec = ae.decode(post.mode()).unwrap();
        (post.mode().to_device(Device::Cpu).unwrap(), rec.to_device(Device::Cpu).unwrap())
    };
    let (z_cpu, rec_cpu) = run(Device::Cpu);
    for dev in devices().into_iter().filter(|d| d.is_cuda()) {
        let (z, rec) = run(dev);
        assert_near(&z, &z_cpu, &format!("latent on {dev:?}"));
        assert_near(&rec, &rec_cpu, &format!("reconstruction on {dev:?}"));
    }
}

/// The built-in MNIST model sampled on every device from the same initial noise: the whole
/// pipeline (class embedding, guided UNet, DDIM, VAE decode) against the CPU.
#[test]
fn the_built_in_model_samples_the_same_digits_on_every_device() {
    use ldm_engine::diffusion::{SamplerKind, SamplerOptions, SeededNoise};
    use ldm_engine::pipelines::ldm::{LdmCondition, LdmRequest};
    use ldm_engine::train::ldm_export::EngineModel;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/weights/mnist_class_ldm.safetensors");
    let Ok(bytes) = std::fs::read(path).or_else(|_| std::fs::read("weights/mnist_class_ldm.safetensors")) else {
        eprintln!("skipped: {path} is not in this checkout");
        return;
    };
    let req = LdmRequest { condition: LdmCondition::Class(vec![0, 3, 7]), guidance: 3.0, sampler: SamplerOptions { kind: SamplerKind::Ddim, steps: 8, eta: 0.0 } };
    let run = |dev: Device| {
        let m = EngineModel::from_bytes("built-in", &bytes, DType::F32, dev).unwrap();
        let shape = m.ldm.latent_shape(&req.condition, 3, None).unwrap();
        let initial = Tensor::randn(&shape, 0.0, 1.0, DType::F32, &mut common::rng(11));
        let images = m.ldm.generate(&req, &initial, &mut SeededNoise::new(12), &mut || {}).unwrap();
        assert_eq!(images.device(), dev);
        images.to_device(Device::Cpu).unwrap()
    };
    let cpu = run(Device::Cpu);
    for dev in devices().into_iter().filter(|d| d.is_cuda()) {
        assert_near(&run(dev), &cpu, &format!("digits on {dev:?}"));
    }
}

/// Stage-2 training steps (tests/train_ldm_steps.rs' fixture: weights, batch, draws) on every
/// device, in f32 and in bf16 mixed precision: the loss and the weights after two AdamW steps
/// against the CPU's.
#[test]
fn ldm_training_steps_match_the_cpu_on_every_device() {
    use common::fixture::Fixture;
    use ldm_engine::train::ae_trainer::AeTrainConfig;
    use ldm_engine::train::ldm_trainer::LdmTrainer;
    let f = Fixture::open("train/ldm_steps");
    let ae = || {
        let v = serde_json::json!({"model": {"in_channels": 3, "ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 3, "embed_dim": 3, "groups": 8},
                                   "train": {"lr": 1e-3, "batch_size": 2, "image_size": 16, "steps": 1}});
        AeTrainConfig::from_json(&v).unwrap()
    };
    let (batch, draws) = f.ldm_step(0);
    for precision in ["f32", "bf16"] {
        let run = |dev: Device| {
            let mut cfg = f.json("config");
            cfg["train"]["precision"] = serde_json::json!(precision);
            let mut t = LdmTrainer::with_autoencoder_config(&cfg, ae(), dev).unwrap();
            for (n, p) in t.params() {
                let init = f.tensor(&format!("init.{n}")).to_device(dev).unwrap();
                ldm_engine::tensor::fused::copy_values(p, &init).unwrap();
            }
            t.restart_ema().unwrap();
            let losses: Vec<f64> = (0..2).map(|_| t.train_step_with(&batch, &draws).unwrap().loss).collect();
            let w = t.params().iter().find(|(n, _)| n.ends_with("input_blocks.0.0.weight")).unwrap().1.to_device(Device::Cpu).unwrap();
            (losses, w)
        };
        let (l_cpu, w_cpu) = run(Device::Cpu);
        for dev in devices().into_iter().filter(|d| d.is_cuda()) {
            let (l, w) = run(dev);
            for (a, b) in l.iter().zip(&l_cpu) {
                let tol = if precision == "f32" { 1e-4 } else { 1e-2 };
                assert!((a - b).abs() <= tol * b.abs(), "{precision} loss on {dev:?}: {a} vs {b}");
            }
            if precision == "f32" {
                assert_near(&w, &w_cpu, &format!("{precision} weights after 2 steps on {dev:?}"));
            } else {
                // Adam divides each gradient by its own magnitude: a near-zero gradient whose bf16
                // rounding differs between devices can move its weight by up to lr per step either
                // way, so the bound is 2 steps × 2·lr, absolute.
                let lr = f.json("config")["train"]["lr"].as_f64().unwrap();
                let worst = w.to_vec_f64().unwrap().iter().zip(w_cpu.to_vec_f64().unwrap()).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
                assert!(worst <= 4.0 * lr, "bf16 weights after 2 steps on {dev:?}: worst |diff| {worst:.3e} > 4·lr");
            }
        }
    }
}

/// First-stage training steps (KL with the PatchGAN and LPIPS-free loss, and VQ with the EMA
/// codebook) on every device, f32 and bf16, against the CPU: the reconstruction loss per step.
#[test]
fn autoencoder_training_steps_match_the_cpu_on_every_device() {
    use ldm_engine::train::ae_trainer::{AeTrainConfig, AeTrainer};
    let base = serde_json::json!({
        "model": {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 2, "embed_dim": 2, "groups": 8},
        "loss": {"disc_start": 1, "kl_weight": 1e-3, "perceptual_weight": 0.0},
        "disc": {"ndf": 8, "n_layers": 2},
        "train": {"lr": 2e-3, "batch_size": 2, "image_size": 16, "steps": 3, "seed": 7}
    });
    let batch = |i: u64| Tensor::rand(&[2, 3, 16, 16], -1.0, 1.0, DType::F32, &mut common::rng(200 + i));
    for (kind, precision) in [("kl", "f32"), ("kl", "bf16"), ("vq", "f32"), ("vq", "bf16")] {
        let mut v = base.clone();
        v["train"]["precision"] = serde_json::json!(precision);
        if kind == "vq" {
            v["model"]["kind"] = serde_json::json!("vq");
            v["model"]["n_embed"] = serde_json::json!(16);
            v["model"]["codebook_ema_decay"] = serde_json::json!(0.9);
        }
        let run = |dev: Device| -> Vec<f64> {
            let mut t = AeTrainer::new_on(AeTrainConfig::from_json(&v).unwrap(), dev).unwrap();
            (0..3).map(|i| t.train_step(&batch(i)).unwrap().rec).collect()
        };
        let cpu = run(Device::Cpu);
        for dev in devices().into_iter().filter(|d| d.is_cuda()) {
            let tol = if precision == "f32" { 1e-4 } else { 2e-2 };
            for (i, (a, b)) in run(dev).iter().zip(&cpu).enumerate() {
                assert!((a - b).abs() <= tol * b.abs(), "{kind} {precision} step {i} on {dev:?}: rec {a} vs {b}");
            }
        }
    }
}

/// Stable Diffusion text-to-image (the tiny random SD folder: CLIP, cross-attention UNet, KL VAE,
/// DDIM with guidance, image-to-image through the VAE encoder) on every device against the CPU;
/// on CUDA also with f16 and bf16 weights, where the sampler's latents stay f32 and the bar is the
/// CPU twin's at the same precision: the worst |out − cpu f32| at most twice the CPU f16/bf16
/// run's (measured on this pipeline: 4.3e-2 in f16 and 3.2e-1 in bf16 of max 8.1 — guidance 5
/// amplifies bf16's 8-bit mantissa; a wrong op is off by O(max|cpu|)).
#[test]
fn stable_diffusion_text_to_image_matches_the_cpu_on_every_device() {
    use ldm_engine::diffusion::{SamplerOptions, SeededNoise};
    use ldm_engine::pipelines::txt2img::{TextToImage, TextToImageRequest};
    let req = TextToImageRequest {
        prompts: vec!["a red cube".into(), "a cat".into()],
        negative_prompts: vec![],
        guidance: 5.0,
        sampler: SamplerOptions { kind: "ddim".parse().unwrap(), steps: 4, eta: 0.0 },
        height: 32,
        width: 48,
    };
    let run = |dev: Device, dtype: DType| {
        let pipe = TextToImage::from_diffusers(&common::fixture::fp16_folder("tiny_sd").on_device(dev), dtype).unwrap();
        let shape = pipe.latent_shape(&req).unwrap();
        let initial = Tensor::randn(&shape, 0.0, 1.0, DType::F32, &mut common::rng(5));
        let latents = pipe.latents(&req, &initial, &mut SeededNoise::new(6), &mut || {}).unwrap();
        assert_eq!((latents.device(), latents.dtype()), (dev, DType::F32), "latents stay f32 on the pipeline's device");
        let images = pipe.decode(&latents).unwrap();
        // image-to-image from the decoded images: the encoder path
        let again = pipe.img2img_latents(&req, &pipe.context(&req).unwrap(), &images.clamp(-1.0, 1.0).unwrap(), 0.5, &mut SeededNoise::new(7), &mut || {}).unwrap();
        (images.to_device(Device::Cpu).unwrap(), again.to_device(Device::Cpu).unwrap())
    };
    let (cpu_img, cpu_again) = run(Device::Cpu, DType::F32);
    for dev in devices().into_iter().filter(|d| d.is_cuda()) {
        let (img, again) = run(dev, DType::F32);
        assert_near(&img, &cpu_img, &format!("sd images on {dev:?}"));
        assert_near(&again, &cpu_again, &format!("sd img2img latents on {dev:?}"));
        let w = cpu_img.to_vec_f64().unwrap();
        let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
        let worst_vs_f32 = |img: &Tensor| img.to_vec_f64().unwrap().iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max);
        for half in [DType::F16, DType::BF16] {
            let (twin, _) = run(Device::Cpu, half);
            let (img, _) = run(dev, half);
            let (worst, allowed) = (worst_vs_f32(&img), 2.0 * worst_vs_f32(&twin) + 1e-3 * scale);
            println!("sd {half:?} on {dev:?}: worst |diff| {worst:.3e} of max {scale:.3e}, the CPU twin's {:.3e}", worst_vs_f32(&twin));
            assert!(worst.is_finite() && worst <= allowed, "sd images {half:?} on {dev:?}: worst {worst:.3e} > {allowed:.3e} (2x the CPU twin's + 1e-3 of max)");
        }
    }
}

/// A UNet forward recorded as a CUDA graph (backend/cuda/graph.rs) replays to the eager result,
/// again after new inputs are copied into the recorded buffers; a host copy inside a capture is
/// one clear error and leaves the device usable. On the CPU: skipped (graphs are CUDA-only).
#[test]
fn a_captured_unet_forward_replays_to_the_eager_result() {
    let cfg = UNetConfig { num_classes: None, ..unet_config() };
    for dev in devices().into_iter().filter(|d| d.is_cuda()) {
        let Device::Cuda(ordinal) = dev else { unreachable!() };
        let gpu = cuda::device(ordinal).unwrap();
        let _g = ldm_engine::no_grad();
        for dtype in [DType::F32, DType::F16] {
            let unet = UNet::new(&VarBuilder::seeded_init(dtype, 7).on_device(dev), &cfg).unwrap();
            let on = |t: Tensor| t.to_dtype(dtype).unwrap().to_device(dev).unwrap();
            let features = |t: f32| on(unet.timestep_features(&Tensor::from_vec(vec![t, t], &[2]).unwrap(), DType::F32).unwrap());
            let (x1, x2, ctx) = (on(randn(&[2, 4, 12, 10], 11)), on(randn(&[2, 4, 12, 10], 12)), on(randn(&[2, 7, 24], 13)));
            let (t1, t2) = (features(500.0), features(20.0));
            let eager1 = unet.forward_embedded(&x1, &t1, Some(&ctx), None).unwrap().to_device(Device::Cpu).unwrap();
            let eager2 = unet.forward_embedded(&x2, &t2, Some(&ctx), None).unwrap().to_device(Device::Cpu).unwrap();
            // Recording buffers of its own, as the sampler's caller does.
            let (xs, ts) = (x1.copy().unwrap(), t1.copy().unwrap());
            let (graph, out) = gpu.capture(|| unet.forward_embedded(&xs, &ts, Some(&ctx), None)).unwrap();
            graph.replay().unwrap();
            let bits = |t: &Tensor| t.to_vec_f64().unwrap();
            assert_eq!(bits(&out.to_device(Device::Cpu).unwrap()), bits(&eager1), "{dtype:?}: replay 1 = eager (same kernels, same order)");
            ldm_engine::backend::cuda::fused::copy_values(&xs, &x2).unwrap();
            ldm_engine::backend::cuda::fused::copy_values(&ts, &t2).unwrap();
            graph.replay().unwrap();
            assert_eq!(bits(&out.to_device(Device::Cpu).unwrap()), bits(&eager2), "{dtype:?}: replay with new inputs = eager");
            drop((graph, out));
        }
        // A host copy while recording: refused in one line, and the device works afterwards.
        let err = gpu.capture(|| Tensor::from_vec(vec![1f32, 2.0], &[2]).unwrap().to_device(dev)).unwrap_err().to_string();
        assert!(err.contains("inside a CUDA graph capture") && !err.contains('\n'), "{err}");
        let after = Tensor::from_vec(vec![1f32, 2.0], &[2]).unwrap().to_device(dev).unwrap().mul_scalar(2.0).unwrap();
        assert_eq!(after.to_vec_f64().unwrap(), vec![2.0, 4.0]);
    }
}
