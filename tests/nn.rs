//! The nn layer: loading by checkpoint names, one error for every problem in a checkpoint,
//! shape-only builds, and fresh seeded parameters that train.

mod common;
use common::*;
use ldm_engine::io::safetensors::save;
use ldm_engine::nn::{Conv2d, GroupNorm, LayerNorm, Linear, Module, VarBuilder};
use ldm_engine::tensor::conv::Conv2dParams;
use ldm_engine::{DType, Tensor};
use std::collections::HashMap;

/// A tiny block with torch-style names: conv_in → norm → proj.
struct Block {
    conv: Conv2d,
    norm: GroupNorm,
    proj: Linear,
    ln: LayerNorm,
}

impl Block {
    fn new(vb: &VarBuilder) -> ldm_engine::Result<Self> {
        Ok(Block {
            conv: Conv2d::same(&vb.pp("conv_in"), 3, 8, 3)?,
            norm: GroupNorm::new(&vb.pp("norm"), 4, 8, 1e-6)?,
            proj: Linear::new(&vb.pp("proj"), 8, 5, true)?,
            ln: LayerNorm::new(&vb.pp("ln"), 5, 1e-5)?,
        })
    }
    fn forward(&self, x: &Tensor) -> ldm_engine::Result<Tensor> {
        let h = self.norm.forward(&self.conv.forward(x)?)?.silu()?; // [n, 8, h, w]
        let (n, c, hh, ww) = (h.dim(0)?, h.dim(1)?, h.dim(2)?, h.dim(3)?);
        let tokens = h.reshape(&[n, c, hh * ww])?.transpose(1, 2)?; // [n, hw, 8]
        self.ln.forward(&self.proj.forward(&tokens)?)
    }
}

fn weights() -> Vec<(String, Tensor)> {
    vec![
        ("model.conv_in.weight".into(), randn(&[8, 3, 3, 3], 1)),
        ("model.conv_in.bias".into(), randn(&[8], 2)),
        ("model.norm.weight".into(), randn(&[8], 3)),
        ("model.norm.bias".into(), randn(&[8], 4)),
        ("model.proj.weight".into(), randn(&[5, 8], 5)),
        ("model.proj.bias".into(), randn(&[5], 6)),
        ("model.ln.weight".into(), randn(&[5], 7)),
        ("model.ln.bias".into(), randn(&[5], 8)),
    ]
}

#[test]
fn loads_by_checkpoint_names_and_computes_the_composition() {
    let dir = std::env::temp_dir().join(format!("ldm-nn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("block.safetensors");
    let w = weights();
    let refs: Vec<(&str, &Tensor)> = w.iter().map(|(n, t)| (n.as_str(), t)).collect();
    save(&path, &refs, None).unwrap();

    let vb = VarBuilder::from_safetensors(&[&path], DType::F32).unwrap();
    let block = Block::new(&vb.pp("model")).unwrap();
    vb.pp("model").finish(false).unwrap();
    assert_eq!(vb.num_params(), 8 * 27 + 8 + 8 + 8 + 40 + 5 + 5 + 5);
    assert!(block.conv.weight.is_memory_mapped(), "f32 weights are borrowed from the file");

    let x = randn(&[2, 3, 5, 4], 9);
    let m: HashMap<String, Tensor> = w.into_iter().collect();
    let p = |k: &str| m[&format!("model.{k}")].clone();
    let same = Conv2dParams { padding: (1, 1), ..Default::default() };
    let h = x.conv2d(&p("conv_in.weight"), Some(&p("conv_in.bias")), same).unwrap();
    let h = h.group_norm(4, Some(&p("norm.weight")), Some(&p("norm.bias")), 1e-6).unwrap().silu().unwrap();
    let t = h.reshape(&[2, 8, 20]).unwrap().transpose(1, 2).unwrap();
    let want = t.matmul(&p("proj.weight").t().unwrap()).unwrap().add(&p("proj.bias")).unwrap();
    let want = want.layer_norm(Some(&p("ln.weight")), Some(&p("ln.bias")), 1e-5).unwrap();
    assert_close(&vals(&block.forward(&x).unwrap()), &vals(&want), 0.0, 0.0, "block forward");

    // dtype conversion on load
    let vb16 = VarBuilder::from_safetensors(&[&path], DType::F16).unwrap();
    let b16 = Block::new(&vb16.pp("model")).unwrap();
    assert_eq!(b16.proj.weight.dtype(), DType::F16);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_checkpoint_problem_is_reported_by_full_name_in_one_error() {
    let mut m: HashMap<String, Tensor> = weights().into_iter().collect();
    m.remove("model.norm.bias");
    m.remove("model.ln.weight");
    m.insert("model.proj.weight".into(), randn(&[5, 7], 10));
    m.insert("model.extra.weight".into(), randn(&[2], 11));
    m.insert("other.thing".into(), randn(&[2], 12));
    let vb = VarBuilder::from_tensors(m, DType::F32);
    Block::new(&vb.pp("model")).expect("the model still builds so every problem can be listed");
    let e = vb.pp("model").finish(false).unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    for needle in [
        "2 missing: model.norm.bias, model.ln.weight",
        "1 shape mismatches: model.proj.weight (model [5, 8], file [5, 7])",
        "1 unexpected: model.extra.weight",
    ] {
        assert!(e.contains(needle), "{needle:?} not in: {e}");
    }
    // keys outside the prefix are not this model's business
    assert!(!e.contains("other.thing"), "{e}");
    assert!(vb.pp("model").finish(true).unwrap_err().to_string().contains("missing"));
}

#[test]
fn shapes_only_counts_parameters_without_memory() {
    let vb = VarBuilder::shapes_only(DType::F32);
    let big = Linear::new(&vb.pp("big"), 20_000, 30_000, true).unwrap(); // 2.4 GB if allocated
    assert_eq!(vb.num_params(), 20_000 * 30_000 + 30_000);
    assert_eq!(big.weight.shape(), &[30_000, 20_000]);
    assert_eq!(big.weight.layout().strides(), &[0, 0], "a broadcast of one zero, not a buffer");
    vb.finish(false).unwrap();
}

#[test]
fn seeded_init_is_reproducible_follows_fan_in_and_trains() {
    let build = |seed| {
        let vb = VarBuilder::seeded_init(DType::F32, seed);
        (Block::new(&vb).unwrap(), vb)
    };
    let (a, vb) = build(3);
    let (b, _) = build(3);
    assert_eq!(vals(&a.proj.weight), vals(&b.proj.weight));
    assert_ne!(vals(&a.proj.weight), vals(&build(4).0.proj.weight));
    let bound = 1.0 / 8f64.sqrt();
    assert!(vals(&a.proj.weight).iter().all(|v| v.abs() <= bound));
    assert_eq!(vals(&a.norm.weight), vec![1.0; 8]);
    assert_eq!(vals(&a.ln.bias.clone().unwrap()), vec![0.0; 5]);

    // every parameter is a variable: a loss backprops into all 8 of them, and plain SGD lowers it
    let x = randn(&[2, 3, 4, 4], 5);
    let target = randn(&[2, 16, 5], 6);
    let loss_of = |blk: &Block| blk.forward(&x).unwrap().sub(&target).unwrap().sqr().unwrap().mean_all().unwrap();
    let loss = loss_of(&a);
    let grads = loss.backward().unwrap();
    let params = vb.params();
    assert_eq!(params.len(), 8);
    let updated: HashMap<String, Tensor> = params
        .iter()
        .map(|(n, p)| (n.clone(), p.sub(&grads.get(p).unwrap_or_else(|| panic!("no grad for {n}")).mul_scalar(0.1).unwrap()).unwrap().detach()))
        .collect();
    let stepped = Block::new(&VarBuilder::from_tensors(updated, DType::F32)).unwrap();
    let after = loss_of(&stepped).to_scalar().unwrap();
    assert!(after < loss.to_scalar().unwrap(), "one SGD step lowers the loss: {} → {after}", loss.to_scalar().unwrap());
}

#[test]
fn a_pointwise_conv_runs_as_a_linear_on_channels_last_tokens() {
    // SpatialTransformer's proj_in on a channels-last image (CUDA's inference group_norm output):
    // the 1×1 conv as a Linear over the contiguous [N, H·W, C] tokens, equal to convolving
    let vb = VarBuilder::seeded_init(DType::F32, 7);
    let conv = Conv2d::new(&vb.pp("p"), 8, 6, 1, Conv2dParams::default(), true).unwrap();
    let x = randn(&[2, 8, 3, 5], 8);
    let tokens = |t: &Tensor| t.reshape(&[2, t.dim(1).unwrap(), 15]).unwrap().transpose(1, 2).unwrap();
    let stored_nhwc = x.permute(&[0, 2, 3, 1]).unwrap().contiguous().unwrap().permute(&[0, 3, 1, 2]).unwrap();
    let fast = conv.pointwise_on_tokens(&tokens(&stored_nhwc)).unwrap().expect("contiguous tokens take the Linear");
    assert!(fast.is_contiguous());
    assert_eq!(fast.shape(), &[2, 15, 6]);
    assert_close(&vals(&fast), &vals(&tokens(&conv.forward(&x).unwrap())), 1e-6, 1e-6, "1x1 conv as a Linear");
    // NCHW tokens are strided, and a 3×3 or strided conv is no Linear: the caller convolves
    assert!(conv.pointwise_on_tokens(&tokens(&x)).unwrap().is_none());
    let conv3 = Conv2d::same(&vb.pp("q"), 8, 6, 3).unwrap();
    assert!(conv3.pointwise_on_tokens(&tokens(&stored_nhwc)).unwrap().is_none());
}
