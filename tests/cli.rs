//! The command line: `inspect` on real and corrupt files, and clear refusals.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ldm-engine");
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference_small.safetensors");

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

#[test]
fn inspect_lists_tensors_and_totals() {
    let (code, out, err) = run(&["inspect", FIXTURE]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("model.f16") && out.contains("[4, 6]") && out.contains("f16"), "{out}");
    // 24·4 + 5 + 5 + 3 + 1 parameters
    assert!(out.contains("8 tensors, 110 parameters"), "{out}");
    assert!(out.contains("metadata made_by = tools/make_safetensors_fixture.py"), "{out}");
    let (_, out, _) = run(&["inspect", FIXTURE, "--filter", "ids", "--summary"]);
    assert!(out.starts_with("2 tensors, 10 parameters"), "{out}");
}

#[test]
fn inspect_rejects_truncated_and_garbage_files_in_one_line() {
    let good = std::fs::read(FIXTURE).unwrap();
    let dir = std::env::temp_dir().join(format!("ldm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, bytes) in [good[..good.len() - 7].to_vec(), good[..100].to_vec(), b"garbage".to_vec(), vec![0xff; 4096]].iter().enumerate() {
        let p = dir.join(format!("bad{i}.safetensors"));
        std::fs::write(&p, bytes).unwrap();
        let (code, out, err) = run(&["inspect", p.to_str().unwrap()]);
        assert_ne!(code, 0);
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
    }
    let (code, _, err) = run(&["inspect", "/no/such/file.safetensors"]);
    assert!(code != 0 && err.contains("cannot open"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn incomplete_commands_say_what_is_missing_and_fail() {
    let (code, _, err) = run(&["train"]);
    assert_ne!(code, 0);
    assert!(err.starts_with("error: ") && err.contains("say what to train"), "{err}");
    let (code, _, err) = run(&["train", "ldm"]);
    assert!(code != 0 && err.contains("--out is required"), "{err}");
    let (code, _, err) = run(&["train", "gan"]);
    assert!(code != 0 && err.contains("train gan: expected `autoencoder` or `ldm`"), "{err}");
    let (code, _, err) = run(&["inspect"]);
    assert_eq!(code, 2, "clap usage error: {err}");
}
