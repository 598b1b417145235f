//! The first-stage trainer: its config file, and that a run resumed from a checkpoint takes the
//! same steps as an uninterrupted one, bit for bit (same losses, same weights).

use ldm_engine::train::ae_trainer::{AeTrainConfig, AeTrainer, StepLog};
use ldm_engine::{DType, Tensor};
use rand::SeedableRng;

fn tiny() -> serde_json::Value {
    serde_json::json!({
        "model": {"ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "z_channels": 2, "embed_dim": 2, "groups": 8},
        "loss": {"disc_start": 2, "kl_weight": 1e-3, "perceptual_weight": 0.0},
        "disc": {"ndf": 8, "n_layers": 2},
        "train": {"lr": 2e-3, "batch_size": 2, "image_size": 16, "steps": 6, "warmup_steps": 2, "grad_clip": 10.0, "seed": 7}
    })
}

fn batch(i: u64) -> Tensor {
    Tensor::rand(&[2, 3, 16, 16], -1.0, 1.0, DType::F32, &mut rand::rngs::StdRng::seed_from_u64(100 + i))
}

/// Every weight of a trainer, through its checkpoint (`tag` keeps parallel tests' files apart).
fn weights(t: &AeTrainer, tag: &str) -> Vec<Vec<f32>> {
    let p = std::env::temp_dir().join(format!("ldm-ae-weights-{}-{tag}-{}.safetensors", std::process::id(), t.step));
    t.save(&p).unwrap();
    let f = ldm_engine::io::safetensors::SafeTensorsFile::open(&p).unwrap();
    let mut names: Vec<String> = f.entries().iter().map(|e| e.name.clone()).filter(|n| n.starts_with("ae.") || n.starts_with("disc.")).collect();
    names.sort();
    let out = names.iter().map(|n| f.get(n).unwrap().to_vec::<f32>().unwrap()).collect();
    std::fs::remove_file(&p).unwrap();
    out
}

#[test]
fn resumed_training_equals_uninterrupted_training() {
    resume_check(tiny());
}

/// The same for a VQ first stage (16 codes; its loss adds the codebook term).
#[test]
fn resumed_vq_training_equals_uninterrupted_training() {
    let mut v = tiny();
    v["model"]["kind"] = serde_json::json!("vq");
    v["model"]["n_embed"] = serde_json::json!(16);
    resume_check(v);
}

/// And with the EMA codebook: the codes move by their moving averages (taming's
/// EMAVectorQuantizer, tests/train_vq_ema.rs), which the checkpoint keeps and a resume restores.
#[test]
fn resumed_ema_vq_training_equals_uninterrupted_training() {
    let mut v = tiny();
    v["model"]["kind"] = serde_json::json!("vq");
    v["model"]["n_embed"] = serde_json::json!(16);
    v["model"]["codebook_ema_decay"] = serde_json::json!(0.9);
    let cfg = AeTrainConfig::from_json(&v).unwrap();
    let mut t = AeTrainer::new(cfg).unwrap();
    let codebook = |t: &AeTrainer| {
        let p = std::env::temp_dir().join(format!("ldm-ae-ema-codebook-{}-{}.safetensors", std::process::id(), t.step));
        t.save(&p).unwrap();
        let f = ldm_engine::io::safetensors::SafeTensorsFile::open(&p).unwrap();
        let (w, n) = (f.get("ae.quantize.embedding.weight").unwrap().to_vec::<f32>().unwrap(), f.get("ae.quantize.embedding.cluster_size").unwrap().to_vec::<f32>().unwrap());
        let has_opt = f.entries().iter().any(|e| e.name.contains("quantize.embedding") && e.name.starts_with("optim."));
        std::fs::remove_file(&p).unwrap();
        (w, n, has_opt)
    };
    let (w0, n0, _) = codebook(&t);
    assert!(n0.iter().all(|&c| c == 0.0), "counts start at 0");
    t.train_step(&batch(0)).unwrap();
    let (w1, n1, has_opt) = codebook(&t);
    assert_ne!(w0, w1, "the codes moved");
    // two training forwards per step (one per optimiser, as under Lightning), 2·8·8 positions each
    let total: f32 = n1.iter().sum();
    // 0.1·128 after the first, 0.9·12.8 + 0.1·128 = 24.32 after the second
    assert!((total - 24.32).abs() < 1e-3, "{total}");
    assert!(!has_opt, "the optimiser does not hold the EMA codebook");
    resume_check(v);
}

fn resume_check(json: serde_json::Value) {
    let cfg = AeTrainConfig::from_json(&json).unwrap();
    assert_eq!(AeTrainConfig::from_json(&cfg.to_json()).unwrap(), cfg, "the config round-trips through JSON");
    let mut a = AeTrainer::new(cfg.clone()).unwrap();
    let logs_a: Vec<StepLog> = (0..6).map(|i| a.train_step(&batch(i)).unwrap()).collect();
    assert!(logs_a.iter().all(|l| l.total.is_finite()));
    assert_eq!((logs_a[1].disc_factor, logs_a[2].disc_factor), (0.0, 1.0), "the GAN term starts at disc_start");

    let mut b = AeTrainer::new(cfg).unwrap();
    for i in 0..3 {
        assert_eq!(b.train_step(&batch(i)).unwrap(), logs_a[i as usize]);
    }
    let ck = std::env::temp_dir().join(format!("ldm-ae-resume-{}-{}.safetensors", std::process::id(), cfg_kind(&json)));
    b.save(&ck).unwrap();
    drop(b);
    let mut c = AeTrainer::resume(&ck).unwrap();
    assert_eq!(c.step, 3);
    for i in 3..6 {
        assert_eq!(c.train_step(&batch(i)).unwrap(), logs_a[i as usize], "step {i} after resuming");
    }
    let kind = cfg_kind(&json);
    assert!(weights(&c, &format!("{kind}-resumed")) == weights(&a, &format!("{kind}-straight")), "the weights after resuming equal the uninterrupted run's");
    std::fs::remove_file(&ck).unwrap();
}

#[test]
fn bad_configs_are_one_line_errors() {
    let err = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = tiny();
        edit(&mut v);
        AeTrainConfig::from_json(&v).unwrap_err().to_string()
    };
    assert!(err(&|v| v["model"].as_object_mut().unwrap().remove("ch").map(|_| ()).unwrap()).contains("missing \"model.ch\""));
    assert!(err(&|v| v["train"]["lr"] = serde_json::json!(-1.0)).contains("train.lr -1 must be a positive number"));
    assert!(err(&|v| v["train"]["image_size"] = serde_json::json!(15)).contains("image_size a positive multiple of 2"));
    assert!(err(&|v| v["model"]["groups"] = serde_json::json!(3)).contains("multiple of groups 3"));
    assert!(err(&|v| v["model"]["ch_mult"] = serde_json::json!("x")).contains("\"model.ch_mult\" must be a list"));
    assert!(err(&|v| v["model"]["kind"] = serde_json::json!("vae")).contains("model.kind \"vae\": expected \"kl\" or \"vq\""));
    assert!(err(&|v| v["model"]["kind"] = serde_json::json!("vq")).contains("missing \"model.n_embed\""));
}

#[test]
fn loss_plot_and_recon_grid_are_pictures() {
    use ldm_engine::io::image::load_png;
    use ldm_engine::train::plot::{save_loss_plot, save_recon_grid};
    let dir = std::env::temp_dir().join(format!("ldm-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let decay: Vec<(f64, f64)> = (0..50).map(|s| (s as f64, 2.0 * (-(s as f64) / 10.0).exp() + 0.01)).collect();
    let signed: Vec<(f64, f64)> = (0..50).map(|s| (s as f64, (s as f64 / 5.0).sin())).collect();
    save_loss_plot(&dir.join("loss.png"), &[("rec", decay), ("g", signed)]).unwrap();
    let (px, w, h, _) = load_png(&dir.join("loss.png")).unwrap();
    assert_eq!((w, h), (640, 320));
    assert!(px.chunks(3).any(|p| p == [31, 119, 180]) && px.chunks(3).any(|p| p == [214, 39, 40]), "both curves are drawn");
    let x = batch(0);
    save_recon_grid(&dir.join("grid.png"), &x, &x.neg().unwrap(), "step 0").unwrap();
    let (_, gw, gh, text) = load_png(&dir.join("grid.png")).unwrap();
    // 16 px images are enlarged 4× for viewing
    assert_eq!((gw, gh, text[0].1.as_str()), (2 * 66 + 2, 2 * 66 + 2, "step 0"));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn cfg_kind(v: &serde_json::Value) -> String {
    let ema = if v["model"]["codebook_ema_decay"].is_null() { "" } else { "-ema" };
    format!("{}{ema}", v["model"]["kind"].as_str().unwrap_or("kl"))
}

/// bf16 mixed precision (`train.precision: "bf16"`): the encoder and decoder in bf16, the weights,
/// optimiser state, regulariser and losses in f32. Three steps against the f32 run on the same
/// batches, for KL and VQ: the reconstruction loss within 2% (bf16 keeps 8 significant bits)
/// and every logged value finite.
#[test]
fn bf16_mixed_precision_follows_the_f32_run() {
    for kind in ["kl", "vq"] {
        let mut v = tiny();
        if kind == "vq" {
            v["model"]["kind"] = serde_json::json!("vq");
            v["model"]["n_embed"] = serde_json::json!(16);
        }
        let mut a = AeTrainer::new(AeTrainConfig::from_json(&v).unwrap()).unwrap();
        v["train"]["precision"] = serde_json::json!("bf16");
        let cfg = AeTrainConfig::from_json(&v).unwrap();
        assert_eq!(AeTrainConfig::from_json(&cfg.to_json()).unwrap(), cfg, "precision round-trips");
        let mut b = AeTrainer::new(cfg).unwrap();
        for i in 0..3 {
            let (la, lb) = (a.train_step(&batch(i)).unwrap(), b.train_step(&batch(i)).unwrap());
            println!("{kind} step {i}: rec f32 {:.6} bf16 {:.6}", la.rec, lb.rec);
            assert!(lb.total.is_finite() && lb.grad_norm_ae.is_finite() && lb.disc_loss.is_finite(), "{kind} step {i}: {lb:?}");
            assert!((lb.rec - la.rec).abs() <= 0.02 * la.rec.abs(), "{kind} step {i}: rec {} vs {}", lb.rec, la.rec);
        }
    }
}
