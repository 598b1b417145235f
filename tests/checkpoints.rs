//! Loading real checkpoint layouts: a diffusers pipeline folder written by save_pretrained (fp16
//! variant files, transformers-5 CLIP keys) against diffusers' own outputs, the same weights as a
//! CompVis single file giving identical outputs, and broken checkpoints giving one clear error.

mod common;
use common::fixture::assert_parity;
use ldm_engine::io::safetensors::{save, SafeTensorsFile};
use ldm_engine::models::checkpoint::{clip_config, unet_config, vae_config, DiffusersFolder, SingleFile};
use ldm_engine::{DType, Tensor};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ldm-ckpt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn diffusers_folder_matches_diffusers_and_single_file_matches_folder() {
    let mut folder = DiffusersFolder::open(fixtures().join("tiny_sd")).unwrap();
    folder.variant = Some("fp16".into());
    let reference = SafeTensorsFile::open(fixtures().join("tiny_sd_outputs.safetensors")).unwrap();
    let r = |n: &str| reference.get(n).unwrap();

    // f16 weights, f32 compute (the reference computed in f32 from the same rounded weights)
    let clip = folder.text_encoder(DType::F32).unwrap();
    let unet = folder.unet(DType::F32).unwrap();
    let vae = folder.vae(DType::F32).unwrap();
    let ctx = clip.forward(&r("ids"), 0).unwrap();
    assert_parity(&ctx, &r("context"), "text encoder");
    let eps = unet.forward(&r("x"), &r("t"), Some(&r("context")), None).unwrap();
    assert_parity(&eps, &r("eps"), "unet");
    let img = vae.decode(&r("z")).unwrap();
    assert_parity(&img, &r("image"), "vae decode");

    // The same weights as one CompVis single file (as SD1.x ships): identical outputs.
    let dir = tmpdir("single");
    let single = dir.join("tiny_sd.safetensors");
    folder.to_single_file(&single).unwrap();
    let sf = SingleFile::open(&single).unwrap();
    let clip2 = sf.text_encoder(clip.config(), DType::F32).unwrap();
    let unet2 = sf.unet(unet.config(), DType::F32).unwrap();
    let vae2 = sf.vae(vae.config(), DType::F32).unwrap();
    assert_eq!(common::vals(&clip2.forward(&r("ids"), 0).unwrap()), common::vals(&ctx));
    assert_eq!(common::vals(&unet2.forward(&r("x"), &r("t"), Some(&r("context")), None).unwrap()), common::vals(&eps));
    assert_eq!(common::vals(&vae2.decode(&r("z")).unwrap()), common::vals(&img));
    // it is recognised as SD v1; the tiny sizes are not SD v1's, which loading says in one line
    assert!(sf.is_sd_v1());
    let e = ldm_engine::pipelines::txt2img::TextToImage::from_single_file(&sf, DType::F32).err().unwrap().to_string();
    assert!(e.contains("shape") && !e.contains('\n'), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Copies the tiny folder so a test can break one file of it.
fn copy_folder(tag: &str) -> PathBuf {
    let dst = tmpdir(tag);
    for c in ["", "unet", "vae", "text_encoder"] {
        let (from, to) = (fixtures().join("tiny_sd").join(c), dst.join(c));
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }
    dst
}

#[test]
fn broken_checkpoints_give_one_clear_error() {
    let one_line = |e: ldm_engine::Error| {
        let s = e.to_string();
        assert!(!s.contains('\n'), "{s}");
        s
    };
    let e = one_line(DiffusersFolder::open(fixtures()).err().unwrap());
    assert!(e.contains("model_index.json") && e.contains("not a diffusers pipeline folder"), "{e}");

    let d = copy_folder("nofp16");
    let e = one_line(DiffusersFolder::open(&d).unwrap().unet(DType::F32).err().unwrap());
    assert!(e.contains("no weights found") && e.contains("diffusion_pytorch_model.safetensors"), "{e}");

    // truncated weights
    let mut f = DiffusersFolder::open(&d).unwrap();
    f.variant = Some("fp16".into());
    let w = d.join("unet/diffusion_pytorch_model.fp16.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    let e = one_line(f.unet(DType::F32).err().unwrap());
    assert!(e.contains("diffusion_pytorch_model.fp16.safetensors"), "{e}");

    // a config the weights do not fit: every mismatch by name
    let cfgp = d.join("vae/config.json");
    let text = std::fs::read_to_string(&cfgp).unwrap().replace("\"latent_channels\": 4", "\"latent_channels\": 8");
    std::fs::write(&cfgp, text).unwrap();
    let e = one_line(f.vae(DType::F32).err().unwrap());
    assert!(e.contains("shape mismatches") && e.contains("decoder.conv_in.weight (model [32, 8, 3, 3], file [32, 4, 3, 3])"), "{e}");

    // an option the engine does not implement is refused, not ignored
    let cfgp = d.join("unet/config.json");
    let text = std::fs::read_to_string(&cfgp).unwrap().replace("\"resnet_time_scale_shift\": \"default\"", "\"resnet_time_scale_shift\": \"scale_shift\"");
    std::fs::write(&cfgp, text).unwrap();
    let e = one_line(f.unet(DType::F32).err().unwrap());
    assert!(e.contains("unet/config.json") && e.contains("'resnet_time_scale_shift' = \"scale_shift\" is not supported"), "{e}");

    // a single file that lacks a component
    let e = one_line(SingleFile::open(fixtures().join("vae_kl.safetensors")).unwrap().vae(&ldm_engine::models::autoencoder::AutoencoderConfig::sd_kl_f8(), DType::F32).err().unwrap());
    assert!(e.contains("missing: first_stage_model") || e.contains("missing: encoder"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// tests/fixtures/unknown_dtype.safetensors: written by the Python safetensors library with an
/// f8_e4m3 tensor `w` [2] beside an f32 tensor `ok` [2].
#[test]
fn a_dtype_the_engine_cannot_load_is_named() {
    let path = fixtures().join("unknown_dtype.safetensors");
    let vb = ldm_engine::nn::VarBuilder::from_safetensors(&[&path], DType::F32).unwrap();
    assert_eq!(common::vals(&vb.get(&[2], "ok").unwrap()), vec![1.0, 1.0]);
    let e = vb.get(&[2], "w").unwrap_err().to_string();
    assert!(e.contains("tensor 'w' has dtype F8_E4M3, which the engine cannot load") && !e.contains('\n'), "{e}");
}

/// tools/convert_ckpt.py writes what SingleFile reads: the tiny single file's tensors torch.save'd
/// as a CompVis .ckpt (state_dict with model_ema.* copies, global_step, optimizer state) and
/// converted back are the same bits, and load and compute as diffusers does. Needs a Python with
/// torch and safetensors:
/// `LDM_TORCH_PYTHON=.venv-torch/bin/python cargo test --release --test checkpoints -- --ignored`
#[test]
#[ignore = "needs a Python with torch and safetensors (LDM_TORCH_PYTHON, default .venv-torch/bin/python)"]
fn converted_ckpt_loads_like_the_single_file() {
    let python = std::env::var("LDM_TORCH_PYTHON").unwrap_or_else(|_| ".venv-torch/bin/python".into());
    let mut folder = DiffusersFolder::open(fixtures().join("tiny_sd")).unwrap();
    folder.variant = Some("fp16".into());
    let dir = tmpdir("convert");
    let (single, converted) = (dir.join("tiny_sd.safetensors"), dir.join("converted.safetensors"));
    folder.to_single_file(&single).unwrap();
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/test_convert_ckpt.py");
    let status = std::process::Command::new(&python).arg(tool).arg("--roundtrip").arg(&single).arg(&converted).status();
    assert!(status.as_ref().is_ok_and(|s| s.success()), "{python} tools/test_convert_ckpt.py --roundtrip: {status:?}");

    let (a, b) = (SafeTensorsFile::open(&single).unwrap(), SafeTensorsFile::open(&converted).unwrap());
    let listing = |f: &SafeTensorsFile| {
        let mut v: Vec<_> = f.entries().iter().map(|e| (e.name.clone(), e.file_dtype.clone(), e.shape.clone())).collect();
        v.sort();
        v
    };
    assert_eq!(listing(&a), listing(&b));
    for e in a.entries() {
        assert_eq!(common::vals(&a.get(&e.name).unwrap()), common::vals(&b.get(&e.name).unwrap()), "{}", e.name);
    }

    let reference = SafeTensorsFile::open(fixtures().join("tiny_sd_outputs.safetensors")).unwrap();
    let r = |n: &str| reference.get(n).unwrap();
    let sf = SingleFile::open(&converted).unwrap();
    let clip = sf.text_encoder(&clip_config(&folder.config("text_encoder").unwrap()).unwrap(), DType::F32).unwrap();
    let unet = sf.unet(&unet_config(&folder.config("unet").unwrap()).unwrap(), DType::F32).unwrap();
    let vae = sf.vae(&vae_config(&folder.config("vae").unwrap()).unwrap(), DType::F32).unwrap();
    assert_parity(&clip.forward(&r("ids"), 0).unwrap(), &r("context"), "text encoder (converted)");
    assert_parity(&unet.forward(&r("x"), &r("t"), Some(&r("context")), None).unwrap(), &r("eps"), "unet (converted)");
    assert_parity(&vae.decode(&r("z")).unwrap(), &r("image"), "vae decode (converted)");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The paper's diffusers pipelines (CompVis/ldm-* on the Hub) keep the first stage in `vqvae/` and
/// the text model in `bert/`: rebuilt from the VQModel and LDMBertModel fixtures (their
/// save_pretrained configs are stored in the fixtures), they load to the reference outputs.
#[test]
fn ldm_pipeline_folder_loads_vqvae_and_bert() {
    let dir = tmpdir("ldm-folder");
    std::fs::write(dir.join("model_index.json"), r#"{"_class_name": "LDMTextToImagePipeline", "vqvae": ["diffusers", "VQModel"], "bert": ["latent_diffusion", "LDMBertModel"]}"#).unwrap();
    for (component, fixture, file) in [("vqvae", "vq", "diffusion_pytorch_model.safetensors"), ("bert", "ldm_bert", "model.safetensors")] {
        let f = SafeTensorsFile::open(fixtures().join(format!("{fixture}.safetensors"))).unwrap();
        std::fs::create_dir_all(dir.join(component)).unwrap();
        std::fs::write(dir.join(component).join("config.json"), &f.metadata()["config_json"]).unwrap();
        let weights: Vec<(String, Tensor)> =
            f.entries().iter().filter_map(|e| e.name.strip_prefix("weights.").map(|n| (n.to_string(), f.get(&e.name).unwrap()))).collect();
        save(dir.join(component).join(file), &weights.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>(), None).unwrap();
    }
    let folder = DiffusersFolder::open(&dir).unwrap();
    let vq_ref = SafeTensorsFile::open(fixtures().join("vq.safetensors")).unwrap();
    let vq = folder.vqvae(DType::F32).unwrap();
    assert_parity(&vq.encode(&vq_ref.get("x").unwrap()).unwrap(), &vq_ref.get("latents").unwrap(), "folder vqvae encode");
    assert_parity(&vq.decode(&vq_ref.get("latents").unwrap()).unwrap(), &vq_ref.get("decoded").unwrap(), "folder vqvae decode");
    let bert_ref = SafeTensorsFile::open(fixtures().join("ldm_bert.safetensors")).unwrap();
    let bert = folder.ldm_bert(DType::F32).unwrap();
    assert_parity(&bert.forward(&bert_ref.get("ids").unwrap()).unwrap(), &bert_ref.get("last_hidden_state").unwrap(), "folder bert");

    // an option the engine does not implement is named, not silently ignored
    let cfg = dir.join("vqvae/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\"group\"", "\"spatial\"");
    std::fs::write(&cfg, text).unwrap();
    let err = folder.vqvae(DType::F32).err().unwrap().to_string();
    assert!(err.contains("vqvae/config.json") && err.contains("'norm_type' = \"spatial\" is not supported"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
