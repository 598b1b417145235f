//! The paper's unconditional and class-conditional sampling against the CompVis modules stepped
//! by diffusers' DDIMScheduler (tools/gen_ldm_pipeline_fixtures.py): final latents and, for the
//! unconditional VQ model, the decoded images. Bar: 1e-4 relative (the is 1e-3).

mod common;
use common::fixture::{assert_parity, compvis_unet_config, compvis_vq_config, Fixture};
use ldm_engine::diffusion::{SamplerOptions, SchedulerConfig, SeededNoise};
use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::models::embedders::ClassEmbedder;
use ldm_engine::models::unet::UNet;
use ldm_engine::models::vq::VQModel;
use ldm_engine::pipelines::ldm::{CondStage, FirstStage, LatentDiffusion, LdmCondition, LdmRequest};

fn reference(name: &str) -> SafeTensorsFile {
    SafeTensorsFile::open(format!("{}/tests/fixtures/pipelines/{name}.safetensors", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn model(unet_fixture: &str, with_classes: bool) -> LatentDiffusion {
    let f = Fixture::open(unet_fixture);
    let cfg = compvis_unet_config(&f);
    let vb = f.weights(|n| n.to_string());
    let unet = UNet::new(&vb, &cfg).unwrap();
    let cond_stage = match with_classes {
        true => CondStage::Class(ClassEmbedder::new(&vb.pp("cond"), f.meta("n_classes"), cfg.context_dim).unwrap()),
        false => CondStage::None,
    };
    let vq_f = Fixture::open("vq_noattn");
    let vq_vb = vq_f.weights(|n| n.to_string());
    let vq = VQModel::new(&vq_vb, &compvis_vq_config(&vq_f), vq_f.meta("n_embed"), 0.25, true).unwrap();
    let scheduler = SchedulerConfig::from_diffusers(&serde_json::from_str(&reference("ldm_uncond").metadata()["scheduler_json"]).unwrap()).unwrap();
    LatentDiffusion { unet, first_stage: FirstStage::Vq(vq), cond_stage, scheduler, scale_factor: 1.0, latent_size: 8 }
}

fn ddim(steps: &str) -> SamplerOptions {
    SamplerOptions { kind: "ddim".parse().unwrap(), steps: steps.parse().unwrap(), eta: 0.0 }
}

#[test]
fn unconditional_sampling_and_vq_decode_match_compvis() {
    let r = reference("ldm_uncond");
    let m = model("unet_ldm_uncond", false);
    let req = LdmRequest { condition: LdmCondition::None, guidance: 1.0, sampler: ddim(&r.metadata()["steps"]) };
    let lat = m.latents(&req, &r.get("noise").unwrap(), &mut SeededNoise::new(0), &mut || {}).unwrap();
    assert_parity(&lat, &r.get("latents").unwrap(), "ldm uncond latents");
    // decode our latents: quantisation is a hard choice, so the image is compared from the same codes
    assert_parity(&m.decode(&r.get("latents").unwrap()).unwrap(), &r.get("image").unwrap(), "ldm uncond image");
    let e = m.latents(&LdmRequest { condition: LdmCondition::Class(vec![1, 2]), ..req }, &r.get("noise").unwrap(), &mut SeededNoise::new(0), &mut || {}).err().unwrap();
    assert!(e.to_string().contains("takes no class labels"), "{e}");
}

#[test]
fn class_conditional_guided_sampling_matches_compvis() {
    let r = reference("ldm_class");
    let m = model("unet_ldm_cin", true);
    let labels = r.get("labels").unwrap().to_vec::<i64>().unwrap();
    let req = LdmRequest { condition: LdmCondition::Class(labels.clone()), guidance: r.metadata()["guidance"].parse().unwrap(), sampler: ddim(&r.metadata()["steps"]) };
    let mut calls = 0;
    let lat = m.latents(&req, &r.get("noise").unwrap(), &mut SeededNoise::new(0), &mut || calls += 1).unwrap();
    assert_eq!(calls, 6);
    assert_parity(&lat, &r.get("latents").unwrap(), "ldm class-conditional latents (guidance 3)");
    let wrong = LdmRequest { condition: LdmCondition::Class(vec![1]), ..req.clone() };
    assert!(m.latents(&wrong, &r.get("noise").unwrap(), &mut SeededNoise::new(0), &mut || {}).err().unwrap().to_string().contains("1 class labels for 2 images"));
    let out_of_range = LdmRequest { condition: LdmCondition::Class(vec![1, 99]), ..req };
    assert!(m.latents(&out_of_range, &r.get("noise").unwrap(), &mut SeededNoise::new(0), &mut || {}).err().unwrap().to_string().contains("class label 99"));
}
