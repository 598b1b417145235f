//! safetensors: reading a file written by the reference Python library, zero-copy mapping,
//! dtype conversion on load, round trips, and corrupt files giving one clear error.

mod common;
use common::*;
use ldm_engine::io::safetensors::{save, SafeTensorsFile};
use ldm_engine::{DType, Tensor};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference_small.safetensors");

fn expected(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 0.25 - 3.0).collect()
}

#[test]
fn reads_the_reference_writer_output() {
    let f = SafeTensorsFile::open(FIXTURE).unwrap();
    let names: Vec<&str> = f.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["ids.i32", "ids.i64", "mask.bool", "model.bf16", "model.f16", "model.f32", "model.f64", "scalar"]);
    assert_eq!(f.metadata().get("made_by").map(String::as_str), Some("tools/make_safetensors_fixture.py"));

    let t = f.get("model.f32").unwrap();
    assert_eq!((t.shape(), t.dtype()), (&[2usize, 3, 4][..], DType::F32));
    assert_eq!(vals(&t), expected(24));
    let h = f.get("model.f16").unwrap();
    assert_eq!((h.shape(), h.dtype()), (&[4usize, 6][..], DType::F16));
    assert_eq!(vals(&h), expected(24));
    let b = f.get("model.bf16").unwrap();
    assert_eq!(b.dtype(), DType::BF16);
    assert_eq!(vals(&b), expected(24));
    // f64 has no engine storage type: narrowed to f32 on load
    let d = f.get("model.f64").unwrap();
    assert_eq!((d.shape(), d.dtype()), (&[6usize, 4][..], DType::F32));
    assert_eq!(vals(&d), expected(24));
    assert_eq!(f.get("ids.i64").unwrap().to_vec::<i64>().unwrap(), (0..5).map(|i| i * 1_000_000_007).collect::<Vec<i64>>());
    assert_eq!(f.get("ids.i32").unwrap().to_vec::<i64>().unwrap(), vec![-2, -1, 0, 1, 2]);
    assert_eq!(f.get("mask.bool").unwrap().to_vec::<u8>().unwrap(), vec![1, 0, 1]);
    let s = f.get("scalar").unwrap();
    assert_eq!((s.shape(), s.to_scalar().unwrap()), (&[] as &[usize], 1.5));

    // dtype conversion on load
    let c = f.get_as("model.f16", DType::F32).unwrap();
    assert_eq!(c.dtype(), DType::F32);
    assert_eq!(vals(&c), expected(24));
    assert!(f.get("missing").unwrap_err().to_string().contains("no tensor named 'missing'"));
}

#[test]
fn aligned_tensors_are_zero_copy_and_usable() {
    let dir = std::env::temp_dir().join(format!("ldm-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("w.safetensors");
    let w = randn(&[64, 33], 1);
    let x = randn(&[5, 64], 2);
    save(&p, &[("w", &w), ("x_t", &x.t().unwrap())], None).unwrap();
    let f = SafeTensorsFile::open(&p).unwrap();
    let lw = f.get("w").unwrap();
    // The header is padded to 8 bytes, so an f32 tensor's data is aligned: borrowed, not copied.
    assert!(lw.is_memory_mapped());
    assert_eq!(vals(&lw), vals(&w));
    // strided tensors are written in logical order
    assert_eq!(vals(&f.get("x_t").unwrap()), vals(&x.t().unwrap()));
    // a mapped tensor computes like any other
    assert_close(&vals(&x.matmul(&lw).unwrap()), &vals(&x.matmul(&w).unwrap()), 0.0, 0.0, "matmul on mapped weights");
    // round trip of every engine dtype
    let all = [
        ("a", w.to_dtype(DType::F16).unwrap()),
        ("b", w.to_dtype(DType::BF16).unwrap()),
        ("c", Tensor::from_vec(vec![-7i64, 1 << 50], &[2]).unwrap()),
        ("d", Tensor::from_vec(vec![0u8, 255], &[2]).unwrap()),
    ];
    let refs: Vec<(&str, &Tensor)> = all.iter().map(|(n, t)| (*n, t)).collect();
    save(&p, &refs, Some([("k".to_string(), "v".to_string())].into())).unwrap();
    let f = SafeTensorsFile::open(&p).unwrap();
    for (n, t) in &all {
        let g = f.get(n).unwrap();
        assert_eq!(g.dtype(), t.dtype());
        assert_eq!(vals(&g), vals(t), "{n}");
    }
    assert_eq!(f.metadata()["k"], "v");
    assert!(save(&p, &[("a", &w), ("a", &w)], None).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_files_give_one_clear_error() {
    let good = std::fs::read(FIXTURE).unwrap();
    let dir = std::env::temp_dir().join(format!("ldm-st-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.safetensors");
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("garbage".into(), b"this is not a safetensors file at all".to_vec()),
        ("header length too big".into(), [&(1u64 << 40).to_le_bytes()[..], b"{}"].concat()),
        ("header not json".into(), [&8u64.to_le_bytes()[..], b"{{{{{{{{"].concat()),
        ("padded data".into(), [&good[..], &[0u8; 16][..]].concat()),
    ];
    for cut in [4, 8, 20, good.len() / 2, good.len() - 1] {
        cases.push((format!("truncated at {cut}"), good[..cut].to_vec()));
    }
    let mut bad_offsets = good.clone();
    let hl = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[8..8 + hl].to_vec()).unwrap().replacen("[0,", "[4,", 1);
    bad_offsets[8..8 + hl].copy_from_slice(header.as_bytes());
    cases.push(("bad offsets".into(), bad_offsets));
    for (what, bytes) in cases {
        std::fs::write(&p, &bytes).unwrap();
        let e = SafeTensorsFile::open(&p).err().unwrap_or_else(|| panic!("{what}: accepted a corrupt file")).to_string();
        assert!(e.starts_with(&p.display().to_string()) && !e.contains('\n'), "{what}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
