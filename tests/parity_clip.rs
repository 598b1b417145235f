//! CLIP text transformer vs transformers' CLIPTextModel (quick_gelu as in SD1.x, gelu as in
//! OpenCLIP). Bar: max|ours − ref| / max|ref| ≤ 1e-4 in f32.

mod common;
use common::fixture::{assert_parity, Fixture};
use ldm_engine::models::clip::{ClipActivation, ClipTextConfig, ClipTextModel};
use ldm_engine::nn::VarBuilder;
use ldm_engine::DType;

#[test]
fn clip_text_model_matches_transformers() {
    for (name, act) in [("clip_text_quick_gelu", ClipActivation::QuickGelu), ("clip_text_gelu", ClipActivation::Gelu)] {
        let f = Fixture::open(name);
        let cfg = ClipTextConfig {
            vocab: f.meta("vocab"),
            width: f.meta("width"),
            intermediate: f.meta("intermediate"),
            layers: f.meta("layers"),
            heads: f.meta("heads"),
            max_positions: f.meta("max_positions"),
            activation: act,
        };
        let vb = f.weights(|n| n.to_string());
        let clip = ClipTextModel::new(&vb, &cfg).unwrap();
        vb.finish(false).unwrap();
        let ids = f.tensor("ids");
        assert_parity(&clip.forward(&ids, 0).unwrap(), &f.tensor("last_hidden_state"), &format!("{name} last layer"));
        assert_parity(&clip.forward(&ids, 1).unwrap(), &f.tensor("penultimate"), &format!("{name} penultimate"));
        assert!(clip.forward(&ids, 3).is_err());
        assert!(clip.forward(&ids.reshape(&[154]).unwrap(), 0).is_err());
    }
}

#[test]
fn sd15_clip_text_has_the_published_parameter_count() {
    let vb = VarBuilder::shapes_only(DType::F32);
    ClipTextModel::new(&vb.pp("cond_stage_model.transformer"), &ClipTextConfig::sd15()).unwrap();
    // transformers CLIPTextModel for openai/clip-vit-large-patch14: 123,060,480 parameters
    assert_eq!(vb.num_params(), 123_060_480);
}
