//! LDMBert (the paper's text model) vs diffusers' LDMBertModel. Bar: 1e-4 relative in f32.

mod common;
use common::fixture::{assert_parity, config_json, Fixture};
use ldm_engine::models::checkpoint::ldm_bert_config;
use ldm_engine::io::name_map::ldm_bert_to_compvis;
use ldm_engine::models::ldm_bert::{LdmBert, LdmBertConfig};
use ldm_engine::nn::VarBuilder;
use ldm_engine::DType;

#[test]
fn ldm_bert_matches_diffusers() {
    let f = Fixture::open("ldm_bert");
    let cfg = ldm_bert_config(&config_json(&f)).unwrap();
    let vb = f.weights(ldm_bert_to_compvis);
    let bert = LdmBert::new(&vb, &cfg).unwrap();
    vb.finish(false).unwrap();
    let hidden = bert.forward(&f.tensor("ids")).unwrap();
    assert_parity(&hidden, &f.tensor("last_hidden_state"), "ldm_bert");
    assert_eq!(bert.logits(&hidden).unwrap().shape(), &[2, 77, cfg.vocab]);
    assert!(bert.forward(&f.tensor("ids").reshape(&[154]).unwrap()).is_err());
}

#[test]
fn text2img_large_bert_size() {
    let vb = VarBuilder::shapes_only(DType::F32);
    LdmBert::new(&vb, &LdmBertConfig::text2img_large()).unwrap(); // shapes-only has every key, so the head is built too
    // 32 layers × (4·1280·512 attention + 512 bias + 2·1280·5120 ffn + 5120 + 1280 + 2·2·1280 norms)
    // + embeddings (30522 + 77)·1280 + final norm 2·1280 + the to_logits head 1280·30522 + 30522
    let per_layer = 3 * 1280 * 512 + 512 * 1280 + 1280 + 2 * 1280 * 5120 + 5120 + 1280 + 4 * 1280;
    assert_eq!(vb.num_params(), 32 * per_layer + (30522 + 77) * 1280 + 2 * 1280 + 1280 * 30522 + 30522);
}
