//! The built-in default model (weights/mnist_class_ldm.safetensors, trained by the engine with
//! tools/train_default_model.sh): `ldm-engine sample` needs no --model, draws one of every class
//! in a row without --class, one digit with it, and refuses classes it does not have.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ldm-engine");

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn sample_without_a_model_uses_the_built_in_one() {
    let dir = std::env::temp_dir().join(format!("ldm-default-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let grid = dir.join("digits.png");
    let (code, out, err) = run(&["sample", "--steps", "3", "--out", grid.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("10 images, 10x1 grid"), "{out}");
    let (_, w, h, _) = ldm_engine::io::image::load_png(&grid).unwrap();
    assert_eq!((w, h), (320, 32), "ten 32x32 digits in a row");

    let seven = dir.join("seven.png");
    let (code, _, err) = run(&["sample", "--class", "7", "--steps", "3", "--out", seven.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let png = ldm_engine::io::image::load_png(&seven).unwrap();
    assert_eq!((png.1, png.2), (32, 32));
    assert!(png.0.iter().any(|&v| v > 128) && png.0.iter().any(|&v| v < 64), "a light stroke on a dark ground");

    for (args, want) in [
        (vec!["--class", "10"], "--class 10: the built-in MNIST model has classes 0..9"),
        (vec!["--prompt", "a cat"], "--prompt: the built-in MNIST model takes --class"),
        (vec!["--preset", "cin256_v2"], "--preset names what a --model file is"),
    ] {
        let (code, _, err) = run(&[&["sample", "--out", seven.to_str().unwrap()][..], &args].concat());
        assert_ne!(code, 0, "{want}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "want {want:?}, got {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
