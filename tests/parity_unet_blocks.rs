//! UNet blocks vs diffusers (ResnetBlock2D, Transformer2DModel) on fixtures made by
//! tools/gen_fixtures.py with random, perturbed weights. Weights are stored under diffusers' names
//! and renamed by io::name_map, so the mapping is tested too. The bar is the model-zoo issue's:
//! max|ours − ref| / max|ref| ≤ 1e-4 in f32.

mod common;
use common::fixture::{assert_parity, Fixture};
use ldm_engine::io::name_map::{resnet_to_compvis, transformer_to_compvis, unet_to_compvis, UNetLayout};
use ldm_engine::models::unet::{UNet, UNetConfig};
use ldm_engine::models::unet_blocks::{CrossContext, ResBlock, ResBlockConfig, SpatialTransformer, SpatialTransformerConfig};

#[test]
fn resblocks_match_diffusers() {
    for name in ["resblock_same", "resblock_shortcut", "resblock_scale_shift"] {
        let f = Fixture::open(name);
        let vb = f.weights(resnet_to_compvis);
        let cfg = ResBlockConfig { groups: f.meta("groups"), eps: f.meta_f("eps"), scale_shift: f.meta("scale_shift") == 1, conv_skip: false, resample: None };
        let block = ResBlock::new(&vb, f.meta("in_channels"), f.meta("out_channels"), f.meta("emb_channels"), cfg).unwrap();
        vb.finish(false).unwrap();
        let y = block.forward(&f.tensor("x"), &f.tensor("emb")).unwrap();
        assert_parity(&y, &f.tensor("out"), name);
    }
}

#[test]
fn spatial_transformers_match_diffusers() {
    for name in ["spatial_transformer_conv", "spatial_transformer_linear_depth2"] {
        let f = Fixture::open(name);
        let vb = f.weights(transformer_to_compvis);
        let cfg = SpatialTransformerConfig {
            heads: f.meta("heads"),
            head_dim: f.meta("head_dim"),
            depth: f.meta("depth"),
            context_dim: f.meta("context_dim"),
            linear_proj: f.meta("linear_proj") == 1,
            groups: f.meta("groups"),
        };
        let st = SpatialTransformer::new(&vb, f.meta("in_channels"), cfg).unwrap();
        vb.finish(false).unwrap();
        let y = st.forward(&f.tensor("x"), &f.tensor("context")).unwrap();
        // loaded weights project self-attention's q, k, v with one stacked matrix; the same
        // weights as trainable variables keep three products: both agree with diffusers
        let vars = vb.params().into_iter().map(|(k, t)| (k, t.requires_grad())).collect();
        let trainable = SpatialTransformer::new(&ldm_engine::nn::VarBuilder::from_tensors(vars, ldm_engine::DType::F32), f.meta("in_channels"), cfg).unwrap();
        let _g = ldm_engine::no_grad();
        assert_parity(&trainable.forward(&f.tensor("x"), &f.tensor("context")).unwrap(), &f.tensor("out"), &format!("{name} (three projections)"));
        assert_parity(&y, &f.tensor("out"), name);
        // a CrossContext kept across calls (a sampling run's): the second call reads the keys and
        // values the first projected, to the same bits; with a context that records a gradient
        // nothing is kept, and the result is the same
        let kept = CrossContext::new(&f.tensor("context"));
        let (first, second) = (st.forward_in(&f.tensor("x"), &kept).unwrap(), st.forward_in(&f.tensor("x"), &kept).unwrap());
        assert_eq!(first.to_vec_f64().unwrap(), y.to_vec_f64().unwrap(), "{name}: first call with a kept context");
        assert_eq!(second.to_vec_f64().unwrap(), y.to_vec_f64().unwrap(), "{name}: second call with a kept context");
        assert_eq!(kept.kept(), cfg.depth, "{name}: one projection kept per transformer block");
        drop(_g);
        let recorded = CrossContext::new(&f.tensor("context").requires_grad());
        let with_grad = st.forward_in(&f.tensor("x"), &recorded).unwrap();
        assert_parity(&with_grad, &f.tensor("out"), &format!("{name} (recorded)"));
        assert_eq!(recorded.kept(), 0, "{name}: nothing kept for a context that records a gradient");
    }
}

#[test]
fn a_wrong_block_config_is_a_load_error_not_a_panic() {
    let f = Fixture::open("resblock_shortcut");
    let vb = f.weights(resnet_to_compvis);
    // built as if channels did not change: no skip conv is asked for, so the file has extras
    ResBlock::new(&vb, 32, 32, f.meta("emb_channels"), ResBlockConfig { groups: 8, ..Default::default() }).unwrap();
    let e = vb.finish(false).unwrap_err().to_string();
    assert!(e.contains("in_layers.0.weight (model [32], file [16])") && e.contains("unexpected: skip_connection.bias"), "{e}");
}

#[test]
fn unets_match_diffusers() {
    for name in ["unet_sd1_style", "unet_sd2_style", "unet_class_cond"] {
        let f = Fixture::open(name);
        let attention_levels: Vec<usize> = f.list("attn_levels").iter().enumerate().filter(|(_, a)| **a == 1).map(|(i, _)| i).collect();
        let cfg = UNetConfig {
            in_channels: f.meta("in_channels"),
            out_channels: f.meta("out_channels"),
            model_channels: f.meta("model_channels"),
            channel_mult: f.list("channel_mult"),
            num_res_blocks: f.meta("num_res_blocks"),
            attention_levels: attention_levels.clone(),
            heads: f.list("heads"),
            transformer_depth: 1,
            context_dim: f.meta("context_dim"),
            linear_proj: f.meta("linear_proj") == 1,
            groups: f.meta("groups"),
            num_classes: Some(f.meta("num_classes")).filter(|&n| n > 0),
            conv_resample: true,
            spatial_transformer: true,
            scale_shift: false,
            resblock_updown: false,
        };
        let layout = UNetLayout { levels: cfg.channel_mult.len(), num_res_blocks: cfg.num_res_blocks, attention_levels };
        let vb = f.weights(|n| unet_to_compvis(n, &layout));
        let unet = UNet::new(&vb, &cfg).unwrap();
        vb.finish(false).unwrap();
        let labels = cfg.num_classes.map(|_| f.tensor("labels"));
        let y = unet.forward(&f.tensor("x"), &f.tensor("t"), Some(&f.tensor("context")), labels.as_ref()).unwrap();
        assert_parity(&y, &f.tensor("out"), name);
    }
}
