//! AdamW, clip_grad_norm_ and the linear warm-up against torch (tools/gen_optim_fixture.py):
//! 5 steps on three parameters, one of them without a gradient on one step, three of the steps
//! clipped. The arithmetic follows torch's op order in f32, so the bar is tight: 1e-6 relative.

mod common;
use common::fixture::assert_parity_within;
use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::train::optim::{clip_grad_norm, warmup_lr, AdamW, AdamWConfig};
use ldm_engine::Tensor;

/// A copy in memory the optimiser may write (fixture tensors are windows into the mapped file).
fn owned(t: &Tensor) -> Tensor {
    Tensor::from_vec(t.to_vec::<f32>().unwrap(), t.shape()).unwrap()
}

#[test]
fn adamw_with_clipping_and_warmup_matches_torch() {
    let f = SafeTensorsFile::open(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/train/adamw.safetensors")).unwrap();
    let m = f.metadata();
    let num = |k: &str| m[k].parse::<f64>().unwrap();
    let names = ["a", "b", "c"];
    let params: Vec<(String, Tensor)> = names.iter().map(|n| (n.to_string(), owned(&f.get(&format!("init.{n}")).unwrap()).requires_grad())).collect();
    let cfg = AdamWConfig { lr: num("base_lr"), weight_decay: num("weight_decay"), ..AdamWConfig::default() };
    let mut opt = AdamW::new(params.clone(), cfg).unwrap();
    let norms = f.get("norms").unwrap().to_vec::<f32>().unwrap();
    assert_eq!(norms.len(), num("steps") as usize);
    for (step, &torch_norm) in norms.iter().enumerate() {
        // a loss whose gradient is exactly the recorded one: Σ sum(p · g)
        let mut loss: Option<Tensor> = None;
        for (n, p) in &params {
            let Ok(g) = f.get(&format!("grad{step}.{n}")) else { continue };
            let term = p.mul(&g).unwrap().sum_all().unwrap();
            loss = Some(match loss {
                Some(l) => l.add(&term).unwrap(),
                None => term,
            });
        }
        let grads = loss.unwrap().backward().unwrap();
        let (norm, coef) = clip_grad_norm(&grads, &params, num("max_norm")).unwrap();
        assert!((norm as f32 - torch_norm).abs() <= 1e-6 * torch_norm, "step {step}: norm {norm} vs torch {torch_norm}");
        assert_eq!(coef < 1.0, torch_norm > 1.0, "step {step}: clipped exactly when torch clips");
        opt.step(&grads, warmup_lr(cfg.lr, step as u64, num("warmup") as u64), coef).unwrap();
        for (n, p) in &params {
            assert_parity_within(p, &f.get(&format!("after{step}.{n}")).unwrap(), &format!("adamw step {step} param {n}"), 1e-6);
        }
    }
}

#[test]
fn optimiser_state_round_trips_and_bad_state_is_named() {
    let p = Tensor::from_vec(vec![1f32, -2.0, 3.0], &[3]).unwrap().requires_grad();
    let params = vec![("w".to_string(), p.clone())];
    let mut opt = AdamW::new(params.clone(), AdamWConfig::default()).unwrap();
    let grads = p.mul(&Tensor::from_vec(vec![0.5f32, 1.0, -1.0], &[3]).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
    opt.step(&grads, 1e-2, 1.0).unwrap();
    let state: std::collections::HashMap<String, Tensor> = opt.state("opt.").unwrap().into_iter().collect();
    assert_eq!(state["opt.w.step"].to_vec::<i64>().unwrap(), [1]);
    let mut fresh = AdamW::new(params.clone(), AdamWConfig::default()).unwrap();
    fresh.load_state(&state, "opt.").unwrap();
    for k in ["exp_avg", "exp_avg_sq"] {
        let key = format!("opt.w.{k}");
        assert_eq!(fresh.state("opt.").unwrap().into_iter().find(|(n, _)| *n == key).unwrap().1.to_vec::<f32>().unwrap(), state[&key].to_vec::<f32>().unwrap());
    }
    let mut missing = state.clone();
    missing.remove("opt.w.exp_avg_sq");
    assert!(fresh.load_state(&missing, "opt.").unwrap_err().to_string().contains("no optimiser state 'opt.w.exp_avg_sq'"));
    // f16 parameters and memory-mapped ones cannot be trained in place
    let half = Tensor::from_vec(vec![1f32], &[1]).unwrap().to_dtype(ldm_engine::DType::F16).unwrap();
    assert!(AdamW::new(vec![("h".into(), half)], AdamWConfig::default()).err().unwrap().to_string().contains("train in f32"));
    let f = SafeTensorsFile::open(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/train/adamw.safetensors")).unwrap();
    let mapped = f.get("init.a").unwrap();
    assert!(AdamW::new(vec![("a".into(), mapped)], AdamWConfig::default()).err().unwrap().to_string().contains("memory-mapped file"));
}

/// A checkpoint restores weights and optimiser state so that the next steps equal an
/// uninterrupted run's, bit for bit; foreign files and missing entries are one-line errors.
#[test]
fn checkpoint_resume_continues_bit_for_bit() {
    use ldm_engine::train::checkpoint::{save_checkpoint, Checkpoint};
    let fresh = || -> Vec<(String, Tensor)> { (0..2).map(|i| (format!("w{i}"), Tensor::from_vec(vec![0.5f32 + i as f32, -1.0, 2.0, 0.25], &[2, 2]).unwrap().requires_grad())).collect() };
    let target = Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let step = |params: &[(String, Tensor)], opt: &mut AdamW, s: u64| {
        let mut loss = params[0].1.sub(&target).unwrap().sqr().unwrap().sum_all().unwrap();
        loss = loss.add(&params[1].1.mul(&params[0].1).unwrap().sum_all().unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        let (_, coef) = clip_grad_norm(&grads, params, 1.0).unwrap();
        opt.step(&grads, warmup_lr(0.05, s, 2), coef).unwrap();
    };
    let cfg = AdamWConfig { lr: 0.05, ..AdamWConfig::default() };
    // uninterrupted: 6 steps
    let a = fresh();
    let mut opt_a = AdamW::new(a.clone(), cfg).unwrap();
    for s in 0..6 {
        step(&a, &mut opt_a, s);
    }
    // 3 steps, checkpoint, a new process's worth of fresh objects, restore, 3 more
    let b = fresh();
    let mut opt_b = AdamW::new(b.clone(), cfg).unwrap();
    for s in 0..3 {
        step(&b, &mut opt_b, s);
    }
    let path = std::env::temp_dir().join(format!("ldm-ckpt-{}.safetensors", std::process::id()));
    save_checkpoint(&path, 3, &[("model", &b)], &[("ae", &opt_b)], &[("note", "test".into())]).unwrap();
    let c = fresh();
    let mut opt_c = AdamW::new(c.clone(), cfg).unwrap();
    let ck = Checkpoint::load(&path).unwrap();
    assert_eq!((ck.step, ck.metadata["note"].as_str()), (3, "test"));
    ck.restore_params("model", &c).unwrap();
    ck.restore_optimiser("ae", &mut opt_c).unwrap();
    for s in ck.step..6 {
        step(&c, &mut opt_c, s);
    }
    for ((_, x), (_, y)) in a.iter().zip(&c) {
        assert_eq!(x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap(), "resumed run equals the uninterrupted one");
    }
    assert!(ck.restore_params("disc", &c).unwrap_err().to_string().contains("no weight 'disc.w0'"));
    let foreign = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/train/adamw.safetensors");
    assert!(Checkpoint::load(std::path::Path::new(foreign)).err().unwrap().to_string().contains("not an ldm-engine training checkpoint"));
    std::fs::remove_file(&path).unwrap();
}
