//! The EMA codebook against taming-transformers' own EMAVectorQuantizer (vendored verbatim,
//! fixture from tools/gen_vq_ema_fixture.py): 8 codes of dimension 4, three training forwards on
//! drifting encoder outputs. Per step: the code indices exactly, the loss (β·commitment only) and
//! its gradient to z, and the codebook, cluster sizes and embedding averages after the update,
//! each within 1e-5 of the reference relative to its largest value (f32 sums in another order;
//! the moving average is written d·c + (1−d)·x by torch and c − (1−d)·(c − x) here).

mod common;

use common::fixture::{assert_parity_within, Fixture};
use ldm_engine::models::vq::VectorQuantizer;
use ldm_engine::nn::VarBuilder;
use ldm_engine::tensor::fused::copy_values;
use ldm_engine::DType;

#[test]
fn ema_codebook_follows_taming_step_by_step() {
    let f = Fixture::open("train/vq_ema");
    let vb = VarBuilder::seeded_init(DType::F32, 0);
    let vq = VectorQuantizer::new_ema(&vb, 8, 4, 0.25, 0.9).unwrap();
    let init = f.tensor("init.weight");
    let ema = vq.ema.as_ref().unwrap();
    copy_values(&vq.codebook, &init).unwrap();
    copy_values(&ema.embed_avg, &init).unwrap();
    // what an optimiser must leave alone: every tensor the EMA writes
    let names: Vec<String> = vb.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, VectorQuantizer::EMA_STATE.to_vec());
    for step in 0..3 {
        let get = |k: &str| f.tensor(&format!("step{step}.{k}"));
        let z = get("z").requires_grad();
        let q = vq.forward(&z).unwrap();
        assert_eq!(q.indices.to_vec::<i64>().unwrap(), get("indices").to_vec::<i64>().unwrap(), "step {step}: indices");
        let grads = q.loss.backward().unwrap();
        assert_parity_within(&q.loss.reshape(&[1]).unwrap(), &get("loss"), &format!("step {step}: loss"), 1e-5);
        assert_parity_within(grads.get(&z).unwrap(), &get("z_grad"), &format!("step {step}: dloss/dz"), 1e-5);
        assert!(grads.get(&vq.codebook).is_none(), "the EMA codebook gets no gradient");
        vq.ema_update(&z, &q.indices).unwrap();
        assert_parity_within(&ema.cluster_size, &get("cluster_size"), &format!("step {step}: cluster sizes"), 1e-5);
        assert_parity_within(&ema.embed_avg, &get("embed_avg"), &format!("step {step}: embedding averages"), 1e-5);
        assert_parity_within(&vq.codebook, &get("weight"), &format!("step {step}: codebook"), 1e-5);
    }
}
