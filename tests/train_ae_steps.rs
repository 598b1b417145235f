//! First-stage training against the reference, step for step (tools/gen_ae_train_fixture.py): a
//! tiny KL autoencoder with CompVis' LPIPSWithDiscriminator, and a tiny VQ autoencoder with
//! taming's VQLPIPSWithDiscriminator, each with a PatchGAN, trained for 3 steps (perceptual weight
//! 0; LPIPS has its own test) with Adam(0.5, 0.9), the two optimisers alternating per batch as
//! under Lightning. Each step's logged loss terms and
//! every parameter gradient of both optimiser steps are compared, then the weights after 3 steps.
//! Tolerances: losses 1e-5 relative (to 0.1 at least: mean logits cancel); gradients and weights 1e-4 relative to the tensor's largest
//! value (f32 sums in a different order through a whole encoder/decoder/discriminator backward),
//! except that a gradient which vanishes analytically — a conv bias feeding a GroupNorm with one
//! channel per group, a key bias under softmax — is rounding noise on both sides (|ref| ~ 1e-6 to
//! 1e-8) and is held to 1e-6 of the step's largest gradient instead.

mod common;
use std::collections::HashMap;

use common::fixture::assert_parity_within;
use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use ldm_engine::nn::VarBuilder;
use ldm_engine::models::vq::VQModel;
use ldm_engine::train::ae_loss::{discriminator_loss, generator_loss, LossConfig, Reconstruction, Regulariser};
use ldm_engine::train::discriminator::{Discriminator, DiscriminatorConfig};
use ldm_engine::train::optim::{AdamW, AdamWConfig};
use ldm_engine::{DType, Tensor};

/// Trainable copies of the fixture's `{prefix}*` tensors, by their name without the prefix.
fn vars(f: &SafeTensorsFile, prefix: &str) -> HashMap<String, Tensor> {
    f.entries()
        .iter()
        .filter_map(|e| e.name.strip_prefix(prefix).map(|n| (n.to_string(), e.name.clone())))
        .filter(|(n, _)| !n.contains("running_") && !n.contains("num_batches"))
        .map(|(n, full)| {
            let t = f.get(&full).unwrap();
            (n, Tensor::from_vec(t.to_vec::<f32>().unwrap(), t.shape()).unwrap().requires_grad())
        })
        .collect()
}

/// `ours` vs `reference` at 1e-4 of max|reference|, or 1e-6·`scale` where that is larger.
/// Returns whether the gradient is noise: below 1e-4 of the step's scale.
fn grad_close(ours: &Tensor, reference: &Tensor, scale: f64, what: &str) -> bool {
    let (a, b) = (ours.to_vec::<f32>().unwrap(), reference.to_vec::<f32>().unwrap());
    let err = a.iter().zip(&b).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max);
    let max = b.iter().map(|y| f64::from(y.abs())).fold(0.0, f64::max);
    let bar = (1e-4 * max).max(1e-6 * scale);
    println!("{what}: max|err| {err:.2e}, max|ref| {max:.2e} (bar {bar:.1e})");
    assert!(err <= bar, "{what}: max|err| {err} > {bar}");
    max < 1e-4 * scale
}

/// The largest |value| of the fixture's `{prefix}*` tensors.
fn scale(f: &SafeTensorsFile, prefix: &str) -> f64 {
    f.entries().iter().filter(|e| e.name.starts_with(prefix)).flat_map(|e| f.get(&e.name).unwrap().to_vec::<f32>().unwrap()).map(|v| f64::from(v.abs())).fold(0.0, f64::max)
}

fn close(ours: f64, theirs: f64, what: &str) {
    // relative to the value, or to 0.1 for means that cancel (the logits are O(0.1) each)
    let rel = (ours - theirs).abs() / theirs.abs().max(0.1);
    println!("{what}: ours {ours:.6} torch {theirs:.6} (rel {rel:.1e})");
    assert!(rel <= 1e-5, "{what}: {ours} vs {theirs}");
}

#[test]
fn three_kl_training_steps_match_compvis() {
    three_steps("ae_kl_steps");
}

#[test]
fn three_vq_training_steps_match_taming() {
    three_steps("ae_vq_steps");
}

enum Model {
    Kl(AutoencoderKL),
    Vq(VQModel),
}

fn three_steps(fixture: &str) {
    let f = SafeTensorsFile::open(format!("{}/tests/fixtures/train/{fixture}.safetensors", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let m = f.metadata().clone();
    let lc: serde_json::Value = serde_json::from_str(&m["loss"]).unwrap();
    let cfg = LossConfig {
        disc_start: lc["disc_start"].as_u64().unwrap(),
        kl_weight: lc["kl_weight"].as_f64().unwrap(),
        disc_weight: lc["disc_weight"].as_f64().unwrap(),
        perceptual_weight: 0.0,
        ..LossConfig::default()
    };
    let ae_cfg = AutoencoderConfig { in_channels: 3, out_channels: 3, ch: 8, ch_mult: vec![1, 2], num_res_blocks: 1, attn_levels: vec![], z_channels: 2, embed_dim: 2, groups: 8, mid_attn: true };
    let ae_vb = VarBuilder::from_tensors(vars(&f, "ae."), DType::F32);
    let ae = match m["kind"].as_str() {
        "kl" => Model::Kl(AutoencoderKL::new(&ae_vb, &ae_cfg).unwrap()),
        _ => Model::Vq(VQModel::new(&ae_vb, &ae_cfg, m["n_embed"].parse().unwrap(), 0.25, true).unwrap()),
    };
    ae_vb.finish(false).unwrap();
    let d_vb = VarBuilder::from_tensors(vars(&f, "disc."), DType::F32);
    let disc = Discriminator::new(&d_vb, DiscriminatorConfig { in_channels: 3, ndf: m["ndf"].parse().unwrap(), n_layers: lc["disc_num_layers"].as_u64().unwrap() as usize }).unwrap();
    d_vb.finish(false).unwrap();
    let adam = AdamWConfig { lr: m["lr"].parse().unwrap(), beta1: 0.5, beta2: 0.9, weight_decay: 0.0, ..AdamWConfig::default() };
    let (ae_params, d_params) = (ae_vb.params(), d_vb.params());
    let mut opt_ae = AdamW::new(ae_params.clone(), adam).unwrap();
    let mut opt_d = AdamW::new(d_params.clone(), adam).unwrap();
    let logs: Vec<serde_json::Value> = serde_json::from_str(&m["logs"]).unwrap();
    let last_layer = match &ae {
        Model::Kl(a) => a.decoder.last_layer().clone(),
        Model::Vq(a) => a.decoder.last_layer().clone(),
    };
    // parameters whose gradient was rounding noise at some step: Adam turns noise into steps of
    // about ±lr in both frameworks, so their final values are held to that, not to 1e-4
    let mut noisy: std::collections::HashSet<String> = Default::default();
    // (reconstruction, posterior or codebook loss); the VQ model is deterministic
    let forward = |x: &Tensor, eps: &Tensor| match &ae {
        Model::Kl(a) => {
            let post = a.encode(x).unwrap();
            let z = post.mean.add(&post.logvar.mul_scalar(0.5).unwrap().exp().unwrap().mul(eps).unwrap()).unwrap();
            (a.decode(&z).unwrap(), Some(post), None)
        }
        Model::Vq(a) => {
            let q = a.quantize.forward(&a.encode(x).unwrap()).unwrap();
            (a.decode_code(&q.z_q).unwrap(), None, Some(q.loss))
        }
    };
    for (step, log) in logs.iter().enumerate() {
        let s = step as u64;
        let x = f.get(&format!("x{step}")).unwrap();
        // optimiser 0: the autoencoder
        let (rec, post, codebook) = forward(&x, &f.get(&format!("eps{step}_ae")).unwrap());
        let reg = match (&post, &codebook) {
            (Some(p), _) => Regulariser::Kl(p),
            (_, Some(c)) => Regulariser::Vq(c),
            _ => unreachable!(),
        };
        let r = Reconstruction { x: &x, xrec: &rec, reg, perceptual: None };
        let gl = generator_loss(&cfg, &r, &disc, &last_layer, s).unwrap();
        close(gl.loss.to_scalar().unwrap(), log["total_loss"].as_f64().unwrap(), &format!("step {step} total loss"));
        close(gl.nll, log["nll_loss"].as_f64().unwrap(), &format!("step {step} nll"));
        let reg_key = if post.is_some() { "kl_loss" } else { "quant_loss" };
        close(gl.reg, log[reg_key].as_f64().unwrap(), &format!("step {step} {reg_key}"));
        close(gl.g, log["g_loss"].as_f64().unwrap(), &format!("step {step} g_loss"));
        close(gl.d_weight, log["d_weight"].as_f64().unwrap(), &format!("step {step} adaptive weight"));
        let grads = gl.loss.backward().unwrap();
        let ae_scale = scale(&f, &format!("grad{step}_ae."));
        for (name, p) in &ae_params {
            let g = grads.get(p).unwrap_or_else(|| panic!("no gradient for {name}"));
            if grad_close(g, &f.get(&format!("grad{step}_ae.{name}")).unwrap(), ae_scale, &format!("step {step} grad ae.{name}")) {
                noisy.insert(format!("ae.{name}"));
            }
        }
        opt_ae.step(&grads, adam.lr, 1.0).unwrap();
        // optimiser 1: the discriminator, on a fresh forward of the updated autoencoder
        let (rec, _, _) = forward(&x, &f.get(&format!("eps{step}_disc")).unwrap());
        let (d_loss, real, fake) = discriminator_loss(&cfg, &x, &rec, &disc, s).unwrap();
        close(d_loss.to_scalar().unwrap(), log["disc_loss"].as_f64().unwrap(), &format!("step {step} disc loss"));
        close(real, log["logits_real"].as_f64().unwrap(), &format!("step {step} logits_real"));
        close(fake, log["logits_fake"].as_f64().unwrap(), &format!("step {step} logits_fake"));
        // before disc_start the loss is 0·hinge: zero gradients, but Adam still counts the step
        // (its bias corrections depend on the count), as torch's does
        let grads = d_loss.backward().unwrap();
        let d_scale = scale(&f, &format!("grad{step}_disc."));
        for (name, p) in &d_params {
            if grad_close(grads.get(p).unwrap(), &f.get(&format!("grad{step}_disc.{name}")).unwrap(), d_scale, &format!("step {step} grad disc.{name}")) {
                noisy.insert(format!("disc.{name}"));
            }
        }
        opt_d.step(&grads, adam.lr, 1.0).unwrap();
    }
    let steps = logs.len() as f64;
    for (group, params) in [("ae", &ae_params), ("disc", &d_params)] {
        for (name, p) in params.iter() {
            let (key, reference) = (format!("{group}.{name}"), f.get(&format!("after.{group}.{name}")).unwrap());
            if noisy.contains(&key) {
                let err = p.sub(&reference).unwrap().abs().unwrap().to_vec::<f32>().unwrap().into_iter().fold(0f32, f32::max);
                println!("after 3 steps {key} (noise gradient): max|err| {err:.2e}");
                assert!(f64::from(err) <= 2.0 * adam.lr * steps, "{key}: {err}");
            } else {
                assert_parity_within(p, &reference, &format!("after 3 steps {key}"), 1e-4);
            }
        }
    }
    for (name, b) in disc.buffers().unwrap().iter().filter(|(n, _)| n.contains("running_")) {
        assert_parity_within(b, &f.get(&format!("after.disc.{name}")).unwrap(), &format!("batch-norm {name}"), 1e-4);
    }
}
