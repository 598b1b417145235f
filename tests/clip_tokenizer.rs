//! CLIP tokenizer parity: ids must equal transformers' CLIPTokenizer exactly
//! (tests/fixtures/clip_tokenizer_cases.json, made by tools/gen_tokenizer_fixture.py from the
//! committed weights/clip_tokenizer files), plus error paths for bad files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ldm_engine::models::clip_tokenizer::{ClipTokenizer, MAX_LEN};
use ldm_engine::Error;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn weights_dir() -> PathBuf {
    root().join("weights/clip_tokenizer")
}

/// Built once: loading 49k tokens and merges is the slow part of these tests.
fn tok() -> &'static ClipTokenizer {
    static TOK: OnceLock<ClipTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let d = weights_dir();
        ClipTokenizer::from_files(d.join("vocab.json"), d.join("merges.txt")).unwrap()
    })
}

const ASTRONAUT: [u32; 10] = [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407];

#[test]
fn astronaut_prompt_matches_reference_ids() {
    let t = tok();
    assert_eq!(t.vocab_size(), 49408);
    assert_eq!((t.bos_id(), t.eos_id(), t.pad_id()), (49406, 49407, 49407));
    assert_eq!(t.encode("a photograph of an astronaut riding a horse").unwrap(), ASTRONAUT);
    let (ids, len) = t.encode_padded("a photograph of an astronaut riding a horse", MAX_LEN).unwrap();
    assert_eq!(len, 10);
    assert_eq!(&ids[..10], &ASTRONAUT);
    assert!(ids[10..].iter().all(|&i| i == 49407) && ids.len() == 77);
}

#[test]
fn builtin_vocabulary_is_clips() {
    let t = ClipTokenizer::builtin().unwrap();
    assert_eq!(t.vocab_size(), 49408);
    assert_eq!(t.encode("a photograph of an astronaut riding a horse").unwrap(), ASTRONAUT);
}

#[test]
fn fixture_cases_match_transformers() {
    let path = root().join("tests/fixtures/clip_tokenizer_cases.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let max_len = json["max_length"].as_u64().unwrap() as usize;
    assert_eq!(max_len, MAX_LEN);
    let ids_of = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let mut truncated = 0;
    for c in cases {
        let prompt = c["prompt"].as_str().unwrap();
        let unpadded = ids_of(&c["unpadded"]);
        assert_eq!(tok().encode(prompt).unwrap(), unpadded, "unpadded ids for {prompt:?}");
        let (ids, len) = tok().encode_padded(prompt, max_len).unwrap();
        assert_eq!(ids, ids_of(&c["ids"]), "padded ids for {prompt:?}");
        assert_eq!(len, c["length"].as_u64().unwrap() as usize, "length for {prompt:?}");
        truncated += (unpadded.len() > max_len) as usize;
    }
    assert!(truncated >= 2, "the fixture should exercise truncation");
}

#[test]
fn truncation_keeps_eos_last() {
    let long = "a ".repeat(200);
    let (ids, len) = tok().encode_padded(&long, MAX_LEN).unwrap();
    assert_eq!((ids.len(), len), (77, 77));
    assert_eq!((ids[0], ids[75], ids[76]), (49406, 320, 49407));
    // A shorter context (some fine-tunes use other lengths) follows the same rule.
    let (ids, len) = tok().encode_padded("a photograph of an astronaut riding a horse", 5).unwrap();
    assert_eq!((ids, len), (vec![49406, 320, 8853, 539, 49407], 5));
    assert!(tok().encode_padded("x", 1).is_err());
}

#[test]
fn decode_round_trips_simple_text() {
    for text in ["a photograph of an astronaut riding a horse", "a red car parked on a street", ""] {
        let ids = tok().encode(text).unwrap();
        assert_eq!(tok().decode(&ids).unwrap(), text);
        // Padding is special too, so it vanishes.
        let (padded, _) = tok().encode_padded(text, MAX_LEN).unwrap();
        assert_eq!(tok().decode(&padded).unwrap(), text);
    }
    // Case and whitespace are normalized away; accents and CJK survive the byte-level round trip.
    let ids = tok().encode("  Café   au LAIT, 東京 ").unwrap();
    assert_eq!(tok().decode(&ids).unwrap(), "café au lait , 東京");
    assert!(tok().decode(&[49408]).is_err());
}

#[test]
fn from_dir_loads_vocab_and_merges_or_tokenizer_json() {
    let t = ClipTokenizer::from_dir(weights_dir()).unwrap();
    assert_eq!(t.encode("a photograph of an astronaut riding a horse").unwrap(), ASTRONAUT);

    // A diffusers-style model folder: <model>/tokenizer/tokenizer.json + special_tokens_map.json
    // naming "!" as the pad token (as SD2.x does); tokenizer.json is written by the crate itself.
    let model = tmp_dir("from_dir");
    let tdir = model.join("tokenizer");
    std::fs::create_dir_all(&tdir).unwrap();
    std::fs::write(tdir.join("tokenizer.json"), tok().to_tokenizer_json().unwrap()).unwrap();
    std::fs::write(tdir.join("special_tokens_map.json"), r#"{"pad_token": {"content": "!"}}"#).unwrap();
    let t = ClipTokenizer::from_dir(&model).unwrap();
    assert_eq!(t.encode("a photograph of an astronaut riding a horse").unwrap(), ASTRONAUT);
    assert_eq!(t.pad_id(), 0);
    let (ids, len) = t.encode_padded("a horse", MAX_LEN).unwrap();
    assert_eq!((&ids[..4], ids[4], len), (&[49406, 320, 4558, 49407][..], 0, 4));

    let err = ClipTokenizer::from_dir(model.join("nothing here")).err().unwrap();
    assert!(matches!(err, Error::File { .. }), "{err}");
}

#[test]
fn missing_or_corrupt_files_are_errors_with_the_path() {
    let d = weights_dir();
    let tmp = tmp_dir("errors");
    let check = |r: ldm_engine::Result<ClipTokenizer>, path: &Path, needle: &str| {
        let err = r.err().expect("expected an error");
        let msg = err.to_string();
        assert!(matches!(err, Error::File { .. }), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(needle), "{msg} should mention {needle:?}");
    };

    let missing = tmp.join("no_vocab.json");
    check(ClipTokenizer::from_files(&missing, d.join("merges.txt")), &missing, "");
    let missing = tmp.join("no_merges.txt");
    check(ClipTokenizer::from_files(d.join("vocab.json"), &missing), &missing, "");

    let corrupt = tmp.join("corrupt_vocab.json");
    std::fs::write(&corrupt, "{\"a\": 0, \"b\": ").unwrap();
    check(ClipTokenizer::from_files(&corrupt, d.join("merges.txt")), &corrupt, "JSON");

    let bad_merges = tmp.join("bad_merges.txt");
    std::fs::write(&bad_merges, "#version: 0.2\ni n\nt h e\n").unwrap();
    check(ClipTokenizer::from_files(d.join("vocab.json"), &bad_merges), &bad_merges, "line 3");

    // Well-formed files that do not belong together: a merge whose result is not a token.
    let foreign = tmp.join("foreign_merges.txt");
    std::fs::write(&foreign, "#version: 0.2\nq z\n").unwrap();
    check(ClipTokenizer::from_files(d.join("vocab.json"), &foreign), &foreign, "does not match");

    let no_specials = tmp.join("no_specials.json");
    std::fs::write(&no_specials, r#"{"i": 0, "n": 1, "in": 2}"#).unwrap();
    let merges = tmp.join("in_merges.txt");
    std::fs::write(&merges, "#version: 0.2\ni n\n").unwrap();
    check(ClipTokenizer::from_files(&no_specials, &merges), &no_specials, "<|startoftext|>");

    let bad_json = tmp.join("tokenizer.json");
    std::fs::write(&bad_json, "not json").unwrap();
    check(ClipTokenizer::from_tokenizer_json(&bad_json), &bad_json, "");
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ldm_clip_tok_{}_{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
