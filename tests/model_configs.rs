//! Full-size configs, built shapes-only (no weight memory) so CI can check them: parameter counts
//! against the published models.

use ldm_engine::models::unet::{UNet, UNetConfig};
use ldm_engine::nn::VarBuilder;
use ldm_engine::DType;

#[test]
fn sd15_unet_has_the_published_parameter_count() {
    let vb = VarBuilder::shapes_only(DType::F32);
    UNet::new(&vb.pp("model.diffusion_model"), &UNetConfig::sd15()).unwrap();
    // diffusers' UNet2DConditionModel for runwayml/stable-diffusion-v1-5: 859,520,964 parameters
    assert_eq!(vb.num_params(), 859_520_964);
    // the CompVis key tree, as SD1.x single files name it
    let names: Vec<String> = vb.params().into_iter().map(|(n, _)| n).collect();
    for k in [
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "model.diffusion_model.input_blocks.3.0.op.weight",
        "model.diffusion_model.middle_block.1.proj_out.weight",
        "model.diffusion_model.output_blocks.2.1.conv.weight",
        "model.diffusion_model.output_blocks.5.2.conv.weight",
        "model.diffusion_model.out.2.bias",
    ] {
        assert!(names.iter().any(|n| n == k), "missing {k}");
    }
    assert_eq!(names.len(), 686);
}

/// Every paper preset against tools/paper_configs.py: the CompVis YAML blocks it transcribes parse
/// to the same configs, and the CompVis classes count the same parameters.
#[test]
fn paper_presets_match_the_compvis_configs_and_parameter_counts() {
    use ldm_engine::models::autoencoder::AutoencoderKL;
    use ldm_engine::models::embedders::{ClassEmbedder, SpatialRescaler};
    use ldm_engine::models::ldm_bert::LdmBert;
    use ldm_engine::models::presets::{first_stage_from_compvis, preset, unet_from_compvis, CondStageConfig, ConditioningKey, FirstStageConfig};
    use ldm_engine::models::vq::VQModel;

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/paper_param_counts.json");
    let all: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let all = all.as_object().unwrap();
    assert_eq!(all.len(), 12);
    for (name, r) in all {
        let p = preset(name).unwrap();
        assert_eq!(unet_from_compvis(&r["unet"]).unwrap(), p.unet, "{name}: unet config");
        let fs = &r["first_stage"];
        assert_eq!(first_stage_from_compvis(fs, fs["kind"] == "vq").unwrap(), p.first_stage, "{name}: first stage config");
        let d = &r["diffusion"];
        assert_eq!((d["linear_start"].as_f64().unwrap(), d["linear_end"].as_f64().unwrap()), (p.diffusion.linear_start, p.diffusion.linear_end), "{name}");
        assert_eq!((d["image_size"].as_u64().unwrap() as usize, d["channels"].as_u64().unwrap() as usize), (p.diffusion.image_size, p.diffusion.channels), "{name}");
        assert_eq!(d["scale_factor"].as_f64().unwrap(), p.diffusion.scale_factor, "{name}");
        let key = match d["conditioning_key"].as_str() {
            None => ConditioningKey::None,
            Some("crossattn") => ConditioningKey::CrossAttn,
            Some("concat") => ConditioningKey::Concat,
            Some(k) => panic!("{name}: key {k}"),
        };
        assert_eq!(key, p.diffusion.conditioning_key, "{name}");

        let counts = &r["params"];
        let count = |build: &dyn Fn(&VarBuilder)| {
            let vb = VarBuilder::shapes_only(DType::F32);
            build(&vb);
            vb.num_params() as u64
        };
        let unet = count(&|vb| drop(UNet::new(vb, &p.unet).unwrap()));
        assert_eq!(unet, counts["unet"].as_u64().unwrap(), "{name}: UNet parameters");
        let first = count(&|vb| match &p.first_stage {
            FirstStageConfig::Kl(c) => drop(AutoencoderKL::new(vb, c).unwrap()),
            FirstStageConfig::Vq { cfg, n_embed } => drop(VQModel::new(vb, cfg, *n_embed, 0.25, true).unwrap()),
        });
        assert_eq!(first, counts["first_stage"].as_u64().unwrap(), "{name}: first-stage parameters");
        let c = &r["cond"];
        let cond = count(&|vb| match &p.cond_stage {
            CondStageConfig::Class { n_classes, embed_dim } => {
                assert_eq!((c["n_classes"].as_u64(), c["embed_dim"].as_u64()), (Some(*n_classes as u64), Some(*embed_dim as u64)));
                drop(ClassEmbedder::new(vb, *n_classes, *embed_dim).unwrap())
            }
            CondStageConfig::Bert(b) | CondStageConfig::Layout { bert: b, .. } => {
                assert_eq!((c["n_embed"].as_u64(), c["n_layer"].as_u64()), (Some(b.d_model as u64), Some(b.layers as u64)));
                assert_eq!((c["vocab_size"].as_u64(), c["max_seq_len"].as_u64()), (Some(b.vocab as u64), Some(b.max_positions as u64)));
                drop(LdmBert::new(vb, b).unwrap())
            }
            CondStageConfig::Rescaler { n_stages, in_channels, out_channels } => drop(SpatialRescaler::new(vb, *n_stages, *in_channels, Some(*out_channels)).unwrap()),
            other => assert!(matches!(other, CondStageConfig::None | CondStageConfig::FirstStage | CondStageConfig::Identity), "{name}"),
        });
        assert_eq!(cond, counts["cond"].as_u64().unwrap(), "{name}: conditioner parameters");
        println!("{name}: UNet {:.2}M, first stage {:.2}M, conditioner {:.2}M", unet as f64 / 1e6, first as f64 / 1e6, cond as f64 / 1e6);
    }
    // the paper's own figures (Tab. 13/14/15 and the text2img section): 274M, 294M, 400M, 1.45B
    let unet_of = |n: &str| all[n]["params"]["unet"].as_u64().unwrap();
    assert_eq!(unet_of("celeba256") / 1_000_000, 274);
    assert_eq!(unet_of("lsun_churches256") / 1_000_000, 294);
    assert_eq!(unet_of("cin256_v2") / 1_000_000, 400);
    let t2i = &all["txt2img_1p4b"]["params"];
    assert_eq!((t2i["unet"].as_u64().unwrap() + t2i["cond"].as_u64().unwrap()) / 10_000_000, 145);
    assert!(preset("nope").unwrap_err().to_string().contains("known: celeba256"));
}
