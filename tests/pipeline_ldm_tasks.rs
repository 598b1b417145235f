//! The paper's conditioned tasks (inpainting, super-resolution, semantic synthesis, layout-to-image,
//! sampling above the training size, text-to-image) against tools/gen_ldm_task_fixtures.py:
//! CompVis modules or diffusers' LDMSuperResolutionPipeline / LDMTextToImagePipeline with fixture
//! weights, stepped by DDIM with the LDM schedule (5 steps). Every model is built the way a
//! user's would be: through `LatentDiffusion::from_single_file` on a CompVis-keyed single file
//! written from the fixture weights and a small preset, or (text) `from_diffusers` on a pipeline
//! folder. Bar: 1e-4 relative.

mod common;
use common::fixture::{assert_parity, compvis_unet_config, compvis_vq_config, Fixture};
use ldm_engine::diffusion::{SamplerOptions, SeededNoise};
use ldm_engine::io::name_map::{vae_fix_shape, vae_to_compvis};
use ldm_engine::io::safetensors::{save, SafeTensorsFile};
use ldm_engine::models::bert_tokenizer::BertTokenizer;
use ldm_engine::models::checkpoint::{vq_config, DiffusersFolder, SingleFile};
use ldm_engine::models::layout::{BoundingBox, LayoutConfig, LayoutTokenizer};
use ldm_engine::models::ldm_bert::LdmBertConfig;
use ldm_engine::models::presets::{unet_from_compvis, CondStageConfig, ConditioningKey, DiffusionConfig, FirstStageConfig, LdmPreset};
use ldm_engine::models::unet::UNetConfig;
use ldm_engine::pipelines::ldm::{inpaint_paste, one_hot, CondStage, LatentDiffusion, LdmCondition, LdmRequest};
use ldm_engine::{DType, Tensor};

fn reference(name: &str) -> SafeTensorsFile {
    SafeTensorsFile::open(format!("{}/tests/fixtures/pipelines/{name}.safetensors", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn meta(r: &SafeTensorsFile, key: &str) -> String {
    r.metadata()[key].clone()
}

/// A fixture's reference weights (`weights.{from}*`) under `to` + their name, for a single file.
fn component(f: &Fixture, from: &str, to: &str, rename: &dyn Fn(&str, Tensor) -> (String, Tensor)) -> Vec<(String, Tensor)> {
    f.weight_names()
        .into_iter()
        .filter_map(|n| n.strip_prefix(from).map(|local| rename(local, f.tensor(&format!("weights.{n}")))))
        .filter(|(n, _)| !n.starts_with("cond."))
        .map(|(n, t)| (format!("{to}{n}"), t))
        .collect()
}

fn as_is(n: &str, t: Tensor) -> (String, Tensor) {
    (n.to_string(), t)
}

/// Writes the components as a CompVis single file and loads the model from it with `preset`.
fn from_single_file(tag: &str, parts: Vec<Vec<(String, Tensor)>>, preset: &LdmPreset) -> LatentDiffusion {
    let path = std::env::temp_dir().join(format!("ldm-tasks-{tag}-{}.safetensors", std::process::id()));
    let all: Vec<(String, Tensor)> = parts.into_iter().flatten().collect();
    save(&path, &all.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>(), None).unwrap();
    let m = LatentDiffusion::from_single_file(&SingleFile::open(&path).unwrap(), preset, DType::F32).unwrap();
    std::fs::remove_file(&path).unwrap();
    m
}

fn preset(unet: UNetConfig, first_stage: FirstStageConfig, cond_stage: CondStageConfig, linear_end: f64, key: ConditioningKey, image_size: usize) -> LdmPreset {
    let channels = unet.out_channels;
    let diffusion = DiffusionConfig { linear_start: 0.0015, linear_end, timesteps: 1000, conditioning_key: key, image_size, channels, scale_factor: 1.0 };
    LdmPreset { name: "tiny", unet, first_stage, cond_stage, diffusion }
}

fn vq_noattn() -> (Vec<(String, Tensor)>, FirstStageConfig) {
    let f = Fixture::open("vq_noattn");
    (component(&f, "", "first_stage_model.", &as_is), FirstStageConfig::Vq { cfg: compvis_vq_config(&f), n_embed: f.meta("n_embed") })
}

fn ddim(r: &SafeTensorsFile) -> SamplerOptions {
    SamplerOptions { kind: "ddim".parse().unwrap(), steps: meta(r, "steps").parse().unwrap(), eta: 0.0 }
}

fn request(condition: LdmCondition, r: &SafeTensorsFile) -> LdmRequest {
    LdmRequest { condition, guidance: 1.0, sampler: ddim(r) }
}

fn err(m: &LatentDiffusion, req: &LdmRequest, noise: &Tensor) -> String {
    m.latents(req, noise, &mut SeededNoise::new(0), &mut || {}).expect_err("an error").to_string()
}

fn inpainting_model(linear_end: f64) -> LatentDiffusion {
    let f = Fixture::open("unet_ldm_concat");
    let (vq, first_stage) = vq_noattn();
    let p = preset(compvis_unet_config(&f), first_stage, CondStageConfig::FirstStage, linear_end, ConditioningKey::Concat, 10);
    from_single_file("inpaint", vec![component(&f, "", "model.diffusion_model.", &as_is), vq], &p)
}

#[test]
fn inpainting_follows_the_compvis_script() {
    let r = reference("ldm_inpaint");
    let m = inpainting_model(meta(&r, "linear_end").parse().unwrap());
    let (image, mask) = (r.get("image").unwrap(), r.get("mask").unwrap());
    let cond = LdmCondition::Inpaint { image: image.clone(), mask: mask.clone() };
    // scripts/inpaint.py: latents of c.shape[1] − 1 channels at the encoded image's size
    assert_eq!(m.latent_shape(&cond, 2, None).unwrap(), [2, 3, 10, 10]);
    let req = request(cond.clone(), &r);
    let noise = r.get("noise").unwrap();
    let inputs = m.unet_inputs(&req, [2, 3, 10, 10]).unwrap();
    assert_parity(inputs.concat.as_ref().unwrap(), &r.get("cond").unwrap(), "inpainting concat (masked-image latents, mask)");
    let mut calls = 0;
    let lat = m.latents(&req, &noise, &mut SeededNoise::new(0), &mut || calls += 1).unwrap();
    assert_eq!(calls, 5);
    assert_parity(&lat, &r.get("latents").unwrap(), "inpainting latents");
    // quantisation is a hard choice: decode and paste from the reference's latents and image
    let decoded = r.get("decoded").unwrap();
    assert_parity(&m.decode(&r.get("latents").unwrap()).unwrap(), &decoded, "inpainting decode");
    let inpainted = r.get("inpainted").unwrap().affine(2.0, -1.0).unwrap(); // the script's [0, 1] → [−1, 1]
    assert_parity(&inpaint_paste(&cond, &decoded).unwrap(), &inpainted, "inpainting paste-back");
    assert_parity(&m.generate(&req, &noise, &mut SeededNoise::new(0), &mut || {}).unwrap(), &inpainted, "inpainting end to end");

    // bad input: one line naming the problem
    let small = LdmCondition::Inpaint { image: image.clone(), mask: mask.narrow(2, 0, 18).unwrap() };
    assert!(err(&m, &request(small, &r), &noise).contains("the inpainting mask must be [2, 1, 20, 20]"));
    let wrong_size = err(&m, &req, &noise.narrow(3, 0, 8).unwrap());
    assert!(wrong_size.contains("the image to inpaint must be [2, C, 20, 16]"), "{wrong_size}");
    let signed = LdmCondition::Inpaint { image: image.affine(2.0, -1.0).unwrap(), mask: mask.clone() };
    assert!(err(&m, &request(signed, &r), &noise).contains("outside [0, 1]"));
    assert!(err(&m, &LdmRequest { guidance: 3.0, ..req.clone() }, &noise).contains("classifier-free guidance 3 needs 1"));
    assert!(err(&m, &request(LdmCondition::Class(vec![1, 2]), &r), &noise).contains("this model takes an image and mask to inpaint, not class labels"));
    let one = LdmCondition::Inpaint { image: image.narrow(0, 0, 1).unwrap(), mask: mask.narrow(0, 0, 1).unwrap() };
    assert!(err(&m, &request(one, &r), &noise).contains("1 an image and mask to inpaint for 2 images"));
    assert!(inpaint_paste(&LdmCondition::None, &decoded).is_err());
}

fn sr_unet() -> (Vec<(String, Tensor)>, UNetConfig) {
    let f = Fixture::open("pipelines/ldm_superres");
    let r = reference("ldm_superres");
    let mut cfg = unet_from_compvis(&serde_json::from_str(&meta(&r, "unet_kwargs")).unwrap()).unwrap();
    cfg.groups = 8; // the fixtures' norms (tools/gen_compvis_fixtures.py GROUPS)
    (component(&f, "unet.", "model.diffusion_model.", &as_is), cfg)
}

#[test]
fn super_resolution_matches_diffusers_pipeline() {
    let r = reference("ldm_superres");
    let f = Fixture::open("pipelines/ldm_superres");
    let (unet, unet_cfg) = sr_unet();
    let (vq_cfg, n_embed) = vq_config(&serde_json::from_str(&meta(&r, "vqvae_config")).unwrap()).unwrap();
    let levels = vq_cfg.ch_mult.len();
    // diffusers VQModel names → CompVis, as DiffusersFolder::vqvae maps them
    let to_compvis = move |n: &str, t: Tensor| {
        let c = vae_to_compvis(n, levels);
        let t = vae_fix_shape(&c, t).unwrap();
        (c, t)
    };
    let vq = component(&f, "vqvae.", "first_stage_model.", &to_compvis);
    let p = preset(unet_cfg, FirstStageConfig::Vq { cfg: vq_cfg, n_embed }, CondStageConfig::Identity, meta(&r, "linear_end").parse().unwrap(), ConditioningKey::Concat, 8);
    let m = from_single_file("sr", vec![unet, vq], &p);
    let low = r.get("low_res").unwrap();
    let cond = LdmCondition::LowRes(low.clone());
    // diffusers: latents (N, in_channels // 2, h, w) at the low-res size; the output is f× larger
    assert_eq!(m.latent_shape(&cond, 2, None).unwrap(), [2, 3, 8, 12]);
    assert_eq!(m.latent_shape(&cond, 2, Some((16, 24))).unwrap(), [2, 3, 8, 12]);
    assert!(m.latent_shape(&cond, 2, Some((32, 48))).unwrap_err().to_string().contains("does not match a low-resolution image"));
    let req = request(cond, &r);
    let noise = r.get("noise").unwrap();
    let lat = m.latents(&req, &noise, &mut SeededNoise::new(0), &mut || {}).unwrap();
    assert_parity(&lat, &r.get("latents").unwrap(), "super-resolution latents");
    assert_parity(&m.decode(&r.get("latents").unwrap()).unwrap(), &r.get("decoded").unwrap(), "super-resolution VQ decode");
    // the pipeline's output: clamp to [−1, 1], then /2 + 0.5
    let image01 = m.generate(&req, &noise, &mut SeededNoise::new(0), &mut || {}).unwrap().clamp(-1.0, 1.0).unwrap().affine(0.5, 0.5).unwrap();
    assert_parity(&image01, &r.get("image01").unwrap(), "super-resolution image end to end");

    let off_size = request(LdmCondition::LowRes(low.narrow(3, 0, 10).unwrap()), &r);
    assert!(err(&m, &off_size, &noise).contains("the low-res image must be [2, C, 8, 12]"));
    let four = request(LdmCondition::LowRes(Tensor::cat(&[&low, &low.narrow(1, 0, 1).unwrap()], 1).unwrap()), &r);
    let e = err(&m, &four, &noise);
    assert!(e.contains("the UNet takes 6 input channels, but the latents' 3 and a low-resolution image's 4 make 7"), "{e}");
    assert!(err(&m, &req, &noise.narrow(1, 0, 2).unwrap()).contains("initial noise must have the UNet's 3 latent channels"));
}

fn semantic_model(r: &SafeTensorsFile) -> LatentDiffusion {
    let (unet, unet_cfg) = sr_unet();
    let (vq, first_stage) = vq_noattn();
    let rescaler = Fixture::open("spatial_rescaler");
    let n_classes: usize = meta(r, "n_classes").parse().unwrap();
    let cond = CondStageConfig::Rescaler { n_stages: rescaler.meta("n_stages"), in_channels: n_classes, out_channels: rescaler.meta("out_channels") };
    let size = meta(r, "training_latent_size").parse().unwrap();
    let p = preset(unet_cfg, first_stage, cond, meta(r, "linear_end").parse().unwrap(), ConditioningKey::Concat, size);
    from_single_file("semantic", vec![unet, vq, component(&rescaler, "", "cond_stage_model.", &as_is)], &p)
}

#[test]
fn semantic_synthesis_matches_compvis() {
    let r = reference("ldm_semantic");
    let m = semantic_model(&r);
    let labels = r.get("labels").unwrap();
    let cond = LdmCondition::Segmentation(labels.clone());
    assert_eq!(m.latent_shape(&cond, 2, None).unwrap(), [2, 3, 8, 8]);
    let req = request(cond, &r);
    let inputs = m.unet_inputs(&req, [2, 3, 8, 8]).unwrap();
    assert_parity(inputs.concat.as_ref().unwrap(), &r.get("cond").unwrap(), "one-hot segmentation through the SpatialRescaler");
    let noise = r.get("noise").unwrap();
    let lat = m.latents(&req, &noise, &mut SeededNoise::new(0), &mut || {}).unwrap();
    assert_parity(&lat, &r.get("latents").unwrap(), "semantic synthesis latents");

    let mut ids = labels.to_vec::<i64>().unwrap();
    ids[37] = 12;
    let out_of_range = request(LdmCondition::Segmentation(Tensor::from_vec(ids, labels.shape()).unwrap()), &r);
    let e = err(&m, &out_of_range, &noise);
    assert!(e.contains("segmentation class 12 at [0, 1, 5] is outside 0..12"), "{e}");
    let e = err(&m, &request(LdmCondition::Segmentation(labels.narrow(1, 0, 16).unwrap()), &r), &noise);
    assert!(e.contains("the segmentation must be [2, 32, 32] class ids"), "{e}");
    assert!(err(&m, &request(LdmCondition::Segmentation(labels.to_dtype(DType::F32).unwrap()), &r), &noise).contains("I64 class ids"));
}

#[test]
fn one_hot_of_class_ids() {
    let ids = Tensor::from_vec(vec![2i64, 0, 1, 2], &[1, 2, 2]).unwrap();
    let h = one_hot(&ids, 3).unwrap();
    assert_eq!(h.shape(), &[1, 3, 2, 2]);
    assert_eq!(h.to_vec::<f32>().unwrap(), vec![0., 1., 0., 0., 0., 0., 1., 0., 1., 0., 0., 1.]);
    assert!(one_hot(&Tensor::from_vec(vec![-1i64], &[1, 1, 1]).unwrap(), 3).is_err());
}

/// The paper samples its convolutional models above their training size (semantic synthesis and
/// super-resolution at 512² and beyond): here 12×20 latents from a model trained at 8×8.
#[test]
fn sampling_above_the_training_size_matches_compvis() {
    let r = reference("ldm_semantic");
    let m = semantic_model(&r);
    let cond = LdmCondition::Segmentation(r.get("large_labels").unwrap());
    let shape = m.latent_shape(&cond, 1, None).unwrap();
    assert_eq!(shape, [1, 3, 12, 20]);
    assert!(shape[2] > m.latent_size && shape[3] > m.latent_size);
    let req = request(cond, &r);
    assert_parity(m.unet_inputs(&req, shape).unwrap().concat.as_ref().unwrap(), &r.get("large_cond").unwrap(), "12×20 segmentation conditioning");
    let lat = m.latents(&req, &r.get("large_noise").unwrap(), &mut SeededNoise::new(0), &mut || {}).unwrap();
    assert_parity(&lat, &r.get("large_latents").unwrap(), "semantic synthesis latents at 12×20 (trained at 8×8)");
}

#[test]
fn layout_to_image_matches_compvis() {
    let r = reference("ldm_layout");
    let f = Fixture::open("pipelines/ldm_layout");
    let cfg: serde_json::Value = serde_json::from_str(&meta(&r, "layout_config")).unwrap();
    let num = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let layout = LayoutConfig {
        num_classes: num("no_object_classes"),
        max_objects: num("no_max_objects"),
        num_tokens: num("no_tokens"),
        encode_crop: cfg["encode_crop"].as_bool().unwrap(),
        use_group: cfg["use_group_parameter"].as_bool().unwrap(),
        use_additional: cfg["use_additional_parameters"].as_bool().unwrap(),
    };
    let ids = r.get("ids").unwrap();
    let d: usize = meta(&r, "n_embed").parse().unwrap();
    let bert = LdmBertConfig {
        vocab: layout.num_tokens,
        max_positions: ids.dim(1).unwrap(),
        layers: meta(&r, "n_layer").parse().unwrap(),
        ffn_dim: 4 * d,
        heads: meta(&r, "heads").parse().unwrap(),
        head_dim: meta(&r, "dim_head").parse().unwrap(),
        d_model: d,
    };
    // the objects in the order the reference builder used them; boxes as Python reprs
    let objects: Vec<Vec<BoundingBox>> = serde_json::from_str::<serde_json::Value>(&meta(&r, "objects")).unwrap().as_array().unwrap()
        .iter()
        .map(|l| {
            l.as_array().unwrap().iter().map(|o| {
                let b: Vec<f64> = o["box"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().parse().unwrap()).collect();
                BoundingBox::new(o["class_id"].as_u64().unwrap() as usize, b[0], b[1], b[2], b[3])
            }).collect()
        })
        .collect();
    let tok = LayoutTokenizer::new(layout.clone()).unwrap();
    for (i, objs) in objects.iter().enumerate() {
        let want: Vec<u32> = ids.narrow(0, i, 1).unwrap().to_vec::<i64>().unwrap().into_iter().map(|v| v as u32).collect();
        assert_eq!(tok.encode(objs).unwrap(), want, "layout {i} tokens");
    }
    let uf = Fixture::open("unet_ldm_cin");
    let p = preset(compvis_unet_config(&uf), vq_noattn().1, CondStageConfig::Layout { bert, layout }, meta(&r, "linear_end").parse().unwrap(), ConditioningKey::CrossAttn, 8);
    let parts = vec![component(&uf, "", "model.diffusion_model.", &as_is), vq_noattn().0, component(&f, "bert.", "cond_stage_model.transformer.", &as_is)];
    let m = from_single_file("layout", parts, &p);
    let req = request(LdmCondition::Layout(objects.clone()), &r);
    let noise = r.get("noise").unwrap();
    let inputs = m.unet_inputs(&req, [2, 4, 8, 8]).unwrap();
    assert_parity(inputs.context.as_ref().unwrap(), &r.get("context").unwrap(), "layout context (BERTEmbedder over the box tokens)");
    let lat = m.latents(&req, &noise, &mut SeededNoise::new(0), &mut || {}).unwrap();
    assert_parity(&lat, &r.get("latents").unwrap(), "layout-to-image latents");

    let mut bad = objects.clone();
    bad[1][0].class_id = 5;
    assert!(err(&m, &request(LdmCondition::Layout(bad), &r), &noise).contains("layout 1: layout: invalid argument: object 0: class 5 out of range 0..5"));
    assert!(err(&m, &LdmRequest { guidance: 2.0, ..req.clone() }, &noise).contains("has no unconditional input"));
    assert!(err(&m, &request(LdmCondition::Layout(objects[..1].to_vec()), &r), &noise).contains("1 layouts for 2 images"));
}

/// A diffusers LDMTextToImagePipeline folder in a temp dir: tiny_sd's UNet and KL autoencoder (as
/// `vqvae/`, as CompVis/ldm-text2im-large-256 has it), the fixture's LDMBert, vocabulary and scheduler.
fn text2img_folder(r: &SafeTensorsFile) -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("ldm-tasks-text2img-{}", std::process::id()));
    let tiny = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny_sd");
    for (from, to) in [("unet", "unet"), ("vae", "vqvae")] {
        std::fs::create_dir_all(root.join(to)).unwrap();
        for file in ["config.json", "diffusion_pytorch_model.fp16.safetensors"] {
            std::fs::copy(tiny.join(from).join(file), root.join(to).join(file)).unwrap();
        }
    }
    for dir in ["bert", "tokenizer", "scheduler"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("model_index.json"), r#"{"_class_name": "LDMTextToImagePipeline"}"#).unwrap();
    std::fs::write(root.join("bert/config.json"), meta(r, "bert_config")).unwrap();
    std::fs::write(root.join("tokenizer/vocab.txt"), meta(r, "vocab")).unwrap();
    std::fs::write(root.join("scheduler/scheduler_config.json"), meta(r, "scheduler_json")).unwrap();
    let f = Fixture::open("pipelines/ldm_text2img");
    let bert = component(&f, "bert.", "", &as_is);
    save(root.join("bert/model.safetensors"), &bert.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>(), None).unwrap();
    root
}

#[test]
fn text_to_image_matches_diffusers_pipeline() {
    let r = reference("ldm_text2img");
    let root = text2img_folder(&r);
    let mut folder = DiffusersFolder::open(&root).unwrap();
    folder.variant = Some("fp16".into());
    let mut m = LatentDiffusion::from_diffusers(&folder, DType::F32).unwrap();
    let tok = BertTokenizer::from_dir(root.join("tokenizer")).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(m.scale_factor, 0.18215);
    let prompts: Vec<String> = serde_json::from_str(&meta(&r, "prompts")).unwrap();
    let ids = r.get("ids").unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let want: Vec<u32> = ids.narrow(0, i, 1).unwrap().to_vec::<i64>().unwrap().into_iter().map(|v| v as u32).collect();
        assert_eq!(tok.encode_padded(p, 77).unwrap().0, want, "prompt {i} ids");
    }
    let cond = LdmCondition::Text(prompts.clone());
    assert_eq!(m.latent_shape(&cond, 2, Some((16, 24))).unwrap(), [2, 4, 8, 12]);
    let req = LdmRequest { condition: cond, guidance: meta(&r, "guidance").parse().unwrap(), sampler: ddim(&r) };
    let inputs = m.unet_inputs(&req, [2, 4, 8, 12]).unwrap();
    assert!(inputs.guided);
    let context = inputs.context.unwrap();
    assert_eq!(context.shape(), &[4, 77, 32]); // [empty prompt ×2; prompts]
    assert_parity(&context.narrow(0, 2, 2).unwrap(), &r.get("context").unwrap(), "LDMBert context of the prompts");
    let noise = r.get("noise").unwrap();
    let mut calls = 0;
    let lat = m.latents(&req, &noise, &mut SeededNoise::new(0), &mut || calls += 1).unwrap();
    assert_eq!(calls, 5);
    assert_parity(&lat, &r.get("latents").unwrap(), "text-to-image latents (guidance 3 against the empty prompt)");
    assert_parity(&m.decode(&r.get("latents").unwrap()).unwrap(), &r.get("decoded").unwrap(), "text-to-image KL decode (latents / 0.18215)");
    let image01 = m.generate(&req, &noise, &mut SeededNoise::new(0), &mut || {}).unwrap().affine(0.5, 0.5).unwrap().clamp(0.0, 1.0).unwrap();
    assert_parity(&image01, &r.get("image01").unwrap(), "text-to-image image end to end");

    assert!(err(&m, &request(LdmCondition::Text(prompts[..1].to_vec()), &r), &noise).contains("1 text prompts for 2 images"));
    if let CondStage::Text { tokenizer, .. } = &mut m.cond_stage {
        *tokenizer = None;
    }
    assert!(err(&m, &req, &noise).contains("no tokenizer"));
    let m = m.with_tokenizer(tok).unwrap();
    assert!(m.latents(&req, &noise, &mut SeededNoise::new(0), &mut || {}).is_ok());
}

#[test]
fn stable_diffusion_presets_are_left_to_txt2img() {
    let file = SingleFile::open(format!("{}/tests/fixtures/pipelines/ldm_inpaint.safetensors", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let p = ldm_engine::models::presets::preset("sd_v1").unwrap();
    let e = LatentDiffusion::from_single_file(&file, &p, DType::F32).err().expect("an error").to_string();
    assert!(e.contains("sample it with the txt2img pipeline"), "{e}");
}
