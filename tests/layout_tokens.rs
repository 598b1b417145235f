//! Layout tokens vs taming-transformers' ObjectsBoundingBoxConditionalBuilder
//! (tests/fixtures/layout_tokens.json, made by tools/gen_layout_fixture.py with the vendored
//! reference code): ids equal exactly, and the inverse equals the reference's `inverse_build` +
//! `representation_to_annotation` bit for bit; plus the error paths.

use ldm_engine::models::layout::{BoundingBox, LayoutConfig, LayoutTokenizer, ObjectAttributes, Rect};
use ldm_engine::models::ldm_bert::{LdmBert, LdmBertConfig};
use ldm_engine::nn::VarBuilder;
use ldm_engine::{DType, Error};
use serde_json::Value;

fn fixture() -> Value {
    let path = format!("{}/tests/fixtures/layout_tokens.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Floats are stored as Python repr strings: std's parser is correctly rounded.
fn f(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

fn attrs(v: &Value) -> ObjectAttributes {
    let b: Vec<bool> = v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect();
    ObjectAttributes { group_of: b[0], occluded: b[1], depiction: b[2], inside: b[3] }
}

fn config(v: &Value) -> LayoutConfig {
    let u = |k: &str| v[k].as_u64().unwrap() as usize;
    let b = |k: &str| v[k].as_bool().unwrap();
    LayoutConfig {
        num_classes: u("no_object_classes"),
        max_objects: u("no_max_objects"),
        num_tokens: u("no_tokens"),
        encode_crop: b("encode_crop"),
        use_group: b("use_group_parameter"),
        use_additional: b("use_additional_parameters"),
    }
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn released_config_is_92_tokens_for_the_bert() {
    let tok = LayoutTokenizer::layout2img_openimages256();
    assert_eq!(tok.seq_len(), 92);
    assert_eq!(tok.seq_len(), LdmBertConfig::layout2img_openimages256().max_positions);
    assert_eq!(LdmBertConfig::layout2img_openimages256().vocab, tok.config().num_tokens);
    assert_eq!(tok.none(), 8191);
    let fx = fixture();
    assert_eq!(config(&fx["configs"]["openimages256"]), *tok.config());
}

#[test]
fn layout2img_bert_size() {
    let vb = VarBuilder::shapes_only(DType::F32);
    LdmBert::new(&vb, &LdmBertConfig::layout2img_openimages256()).unwrap();
    // 16 layers × (4·512·512 attention + 512 out bias + 2·512·2048 ffn + 2048 + 512 + 2·2·512 norms)
    // + embeddings (8192 + 92)·512 + final norm 2·512 + the to_logits head 512·8192 + 8192
    let per_layer = 4 * 512 * 512 + 512 + 2 * 512 * 2048 + 2048 + 512 + 4 * 512;
    assert_eq!(vb.num_params(), 16 * per_layer + (8192 + 92) * 512 + 2 * 512 + 512 * 8192 + 8192);
}

#[test]
fn build_matches_reference() {
    let fx = fixture();
    let mut n = 0;
    for case in fx["cases"].as_array().unwrap().iter().filter(|c| c.get("objects").is_some()) {
        let name = case["name"].as_str().unwrap();
        let tok = LayoutTokenizer::new(config(&fx["configs"][case["config"].as_str().unwrap()])).unwrap();
        let objects: Vec<BoundingBox> = case["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let b = floats(&o["box"]);
                let class_id = o["class_id"].as_u64().unwrap() as usize;
                BoundingBox { attrs: attrs(&o["attrs"]), ..BoundingBox::new(class_id, b[0], b[1], b[2], b[3]) }
            })
            .collect();
        let crop = case["crop"].as_array().map(|_| {
            let c = floats(&case["crop"]);
            Rect { x0: c[0], y0: c[1], x1: c[2], y1: c[3] }
        });
        let got = tok.build(&objects, crop, case["flip"].as_bool().unwrap()).unwrap();
        assert_eq!(got, ids(&case["ids"]), "{name}: ids");
        if crop.is_none() && !case["flip"].as_bool().unwrap() {
            assert_eq!(tok.encode(&objects).unwrap(), got, "{name}: encode");
        }
        n += 1;
    }
    assert!(n >= 10, "only {n} build cases");
}

#[test]
fn inverse_matches_reference() {
    let fx = fixture();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let tok = LayoutTokenizer::new(config(&fx["configs"][case["config"].as_str().unwrap()])).unwrap();
        let layout = tok.decode(&ids(&case["ids"])).unwrap();
        let want = case["inverse"]["objects"].as_array().unwrap();
        assert_eq!(layout.objects.len(), want.len(), "{name}: object count");
        for (i, (o, w)) in layout.objects.iter().zip(want).enumerate() {
            assert_eq!(o.class_id as u64, w["class_id"].as_u64().unwrap(), "{name} {i}: class");
            assert_eq!(o.attrs, attrs(&w["attrs"]), "{name} {i}: attributes");
            // exact: both sides divide the same integers and subtract the same f64s
            assert_eq!(o.rect().xywh().to_vec(), floats(&w["xywh"]), "{name} {i}: box");
        }
        let crop = layout.crop.map(|c| c.xywh().to_vec());
        assert_eq!(crop, case["inverse"]["crop_xywh"].as_array().map(|_| floats(&case["inverse"]["crop_xywh"])), "{name}: crop");
    }
}

#[test]
fn round_trip_snaps_to_the_grid() {
    let tok = LayoutTokenizer::layout2img_openimages256();
    let mut b = BoundingBox::new(339, 0.0, 0.5, 1.0, 1.0);
    b.attrs.inside = true;
    let objs = [b, BoundingBox::new(0, 0.25, 0.1, 0.3, 0.9)];
    let ids = tok.encode(&objs).unwrap();
    assert_eq!(&ids[..3], &[339 + 340 * 8, 44 * 90, 89 * 90 + 89]); // 0.5·89 = 44.5 → 44 (ties to even)
    let back = tok.decode(&ids).unwrap();
    assert_eq!(back.crop, Some(Rect::FULL));
    assert_eq!(back.objects.len(), 2);
    assert_eq!((back.objects[0].class_id, back.objects[0].attrs), (339, b.attrs));
    for (o, want) in back.objects.iter().zip(&objs) {
        for (g, w) in [(o.x0, want.x0), (o.y0, want.y0), (o.x1, want.x1), (o.y1, want.y1)] {
            assert!((g - w).abs() <= 0.5 / 89.0 + 1e-12, "{g} vs {w}");
        }
    }
    assert_eq!(tok.encode(&back.objects).unwrap(), ids, "grid points are fixed points");
}

fn assert_invalid<T: std::fmt::Debug>(r: ldm_engine::Result<T>, needle: &str) {
    match r {
        Err(Error::InvalidArgument { msg, .. }) => {
            assert!(msg.contains(needle), "message {msg:?} should mention {needle:?}");
            assert!(!msg.contains('\n'), "one line: {msg:?}");
        }
        other => panic!("expected InvalidArgument mentioning {needle:?}, got {other:?}"),
    }
}

#[test]
fn errors_are_invalid_argument() {
    let tok = LayoutTokenizer::layout2img_openimages256();
    let ok = BoundingBox::new(1, 0.1, 0.1, 0.5, 0.5);
    assert_invalid(tok.encode(&[BoundingBox { class_id: 340, ..ok }]), "class 340");
    assert_invalid(tok.encode(&[ok, BoundingBox { x1: 1.5, ..ok }]), "object 1");
    assert_invalid(tok.encode(&[BoundingBox { y0: -0.1, ..ok }]), "[0, 1]");
    assert_invalid(tok.encode(&[BoundingBox { x0: f64::NAN, ..ok }]), "[0, 1]");
    assert_invalid(tok.encode(&[BoundingBox { y1: f64::INFINITY, ..ok }]), "[0, 1]");
    assert_invalid(tok.encode(&[BoundingBox { x0: 0.6, ..ok }]), "x0 <= x1");
    assert_invalid(tok.encode(&[BoundingBox { y0: 0.6, ..ok }]), "y0 <= y1");
    assert_invalid(tok.encode(&vec![ok; 31]), "31 objects");
    assert!(tok.encode(&vec![ok; 30]).is_ok());
    let crop = |x0, y0, x1, y1| Some(Rect { x0, y0, x1, y1 });
    assert_invalid(tok.build(&[ok], crop(0.5, 0.0, 0.5, 1.0), false), "zero area");
    assert_invalid(tok.build(&[ok], crop(0.0, 0.0, 1.0, f64::NAN), false), "crop");
    assert_invalid(tok.build(&[ok], crop(0.8, 0.0, 0.2, 1.0), true), "crop");
    assert_invalid(tok.decode(&[8191; 91]), "91 ids");
    let mut ids = vec![8191; 92];
    ids[5] = 8192;
    assert_invalid(tok.decode(&ids), "8192");
    let cfg = LayoutConfig::layout2img_openimages256();
    assert_invalid(LayoutTokenizer::new(LayoutConfig { num_classes: 512, ..cfg.clone() }), "none");
    assert!(LayoutTokenizer::new(LayoutConfig { num_classes: 511, ..cfg.clone() }).is_ok()); // 511·16 − 1 = 8175
    assert_invalid(LayoutTokenizer::new(LayoutConfig { num_tokens: 3, ..cfg.clone() }), "num_tokens");
    assert_invalid(LayoutTokenizer::new(LayoutConfig { num_classes: usize::MAX, ..cfg.clone() }), "none");
    assert_invalid(LayoutTokenizer::new(LayoutConfig { num_classes: 0, ..cfg }), "num_classes");
}
