//! BERT WordPiece tokenizer parity: ids must equal transformers' BertTokenizerFast (and the slow
//! Python tokenizer, which the generator checked agrees) exactly
//! (tests/fixtures/bert_tokenizer_cases.json, made by tools/gen_bert_tokenizer_fixture.py from the
//! committed weights/bert_tokenizer/vocab.txt), plus error paths for bad files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ldm_engine::models::bert_tokenizer::{BertTokenizer, MAX_LEN};
use ldm_engine::Error;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn weights_dir() -> PathBuf {
    root().join("weights/bert_tokenizer")
}

/// Built once: loading 30k tokens is the slow part of these tests.
fn tok() -> &'static BertTokenizer {
    static TOK: OnceLock<BertTokenizer> = OnceLock::new();
    TOK.get_or_init(|| BertTokenizer::from_vocab_txt(weights_dir().join("vocab.txt")).unwrap())
}

const ASTRONAUT: [u32; 10] = [101, 1037, 9982, 1997, 2019, 19748, 5559, 1037, 3586, 102];

#[test]
fn specials_and_astronaut_prompt_match_reference_ids() {
    let t = tok();
    assert_eq!(t.vocab_size(), 30522);
    assert_eq!((t.cls_id(), t.sep_id(), t.pad_id(), t.unk_id()), (101, 102, 0, 100));
    assert_eq!(t.encode("a photograph of an astronaut riding a horse").unwrap(), ASTRONAUT);
    let (ids, len) = t.encode_padded("a photograph of an astronaut riding a horse", MAX_LEN).unwrap();
    assert_eq!(len, 10);
    assert_eq!(&ids[..10], &ASTRONAUT);
    assert!(ids[10..].iter().all(|&i| i == 0) && ids.len() == 77);
    // Well-known ids: "the" 1996, an accent stripped before a "##" piece ("ang" "##strom"), and
    // the special tokens written literally in the text.
    assert_eq!(t.encode("the Ångström").unwrap(), [101, 1996, 17076, 15687, 102]);
    assert_eq!(t.encode("[MASK] [UNK] [PAD]").unwrap(), [101, 103, 100, 0, 102]);
}

#[test]
fn builtin_vocabulary_is_bert_base_uncased() {
    let t = BertTokenizer::builtin().unwrap();
    assert_eq!(t.vocab_size(), 30522);
    assert_eq!(t.encode("a photograph of an astronaut riding a horse").unwrap(), ASTRONAUT);
}

#[test]
fn fixture_cases_match_transformers() {
    let path = root().join("tests/fixtures/bert_tokenizer_cases.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let max_len = json["max_length"].as_u64().unwrap() as usize;
    assert_eq!(max_len, MAX_LEN);
    let id = |k: &str| json[k].as_u64().unwrap() as u32;
    assert_eq!((id("cls_id"), id("sep_id"), id("pad_id"), id("unk_id")), (101, 102, 0, 100));
    let ids_of = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
    };
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let (mut truncated, mut unk) = (0, 0);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let unpadded = ids_of(&c["unpadded"]);
        assert_eq!(tok().encode(text).unwrap(), unpadded, "unpadded ids for {text:?}");
        let (ids, len) = tok().encode_padded(text, max_len).unwrap();
        assert_eq!(ids, ids_of(&c["ids"]), "padded ids for {text:?}");
        assert_eq!(len, c["length"].as_u64().unwrap() as usize, "length for {text:?}");
        assert_eq!(tok().decode(&unpadded).unwrap(), c["decoded"].as_str().unwrap(), "decode of {text:?}");
        truncated += (unpadded.len() > max_len) as usize;
        unk += unpadded.contains(&100) as usize;
    }
    assert!(truncated >= 2, "the fixture should exercise truncation");
    assert!(unk >= 2, "the fixture should exercise [UNK]");
}

#[test]
fn truncation_keeps_sep_last() {
    let long = "a ".repeat(200);
    let (ids, len) = tok().encode_padded(&long, MAX_LEN).unwrap();
    assert_eq!((ids.len(), len), (77, 77));
    assert_eq!((ids[0], ids[75], ids[76]), (101, 1037, 102));
    // A shorter context follows the same rule.
    let (ids, len) = tok().encode_padded("a photograph of an astronaut riding a horse", 5).unwrap();
    assert_eq!((ids, len), (vec![101, 1037, 9982, 1997, 102], 5));
    let (ids, len) = tok().encode_padded("a photograph", 2).unwrap();
    assert_eq!((ids, len), (vec![101, 102], 2));
    assert!(tok().encode_padded("x", 1).is_err());
}

#[test]
fn decode_skips_specials_and_joins_pieces() {
    for text in ["a photograph of an astronaut riding a horse", "a red car parked on a street", ""] {
        let ids = tok().encode(text).unwrap();
        assert_eq!(tok().decode(&ids).unwrap(), text);
        let (padded, _) = tok().encode_padded(text, MAX_LEN).unwrap();
        assert_eq!(tok().decode(&padded).unwrap(), text);
    }
    // Lowercasing and accent stripping are not undone; "##" pieces join their word.
    let ids = tok().encode("  Café   au LAIT, Ångström ").unwrap();
    assert_eq!(tok().decode(&ids).unwrap(), "cafe au lait, angstrom");
    assert!(tok().decode(&[30522]).is_err());
}

#[test]
fn from_dir_loads_vocab_txt_or_tokenizer_json() {
    let t = BertTokenizer::from_dir(weights_dir()).unwrap();
    assert_eq!(t.encode("a photograph of an astronaut riding a horse").unwrap(), ASTRONAUT);

    // A diffusers-style model folder: <model>/tokenizer/tokenizer.json, written by the crate.
    let model = tmp_dir("from_dir");
    let tdir = model.join("tokenizer");
    std::fs::create_dir_all(&tdir).unwrap();
    std::fs::write(tdir.join("tokenizer.json"), tok().to_tokenizer_json().unwrap()).unwrap();
    let t = BertTokenizer::from_dir(&model).unwrap();
    assert_eq!(t.encode("a photograph of an astronaut riding a horse").unwrap(), ASTRONAUT);
    assert_eq!(t.encode_padded("A HORSE", MAX_LEN).unwrap().0[..5], [101, 1037, 3586, 102, 0]);

    // vocab.txt with tokenizer_config.json saying cased: case (and accents) survive.
    let cased = tmp_dir("cased");
    std::fs::write(cased.join("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhorse\nHorse\n").unwrap();
    std::fs::write(cased.join("tokenizer_config.json"), r#"{"do_lower_case": false}"#).unwrap();
    let t = BertTokenizer::from_dir(&cased).unwrap();
    assert_eq!(t.encode("Horse horse HORSE").unwrap(), [2, 5, 4, 1, 3]);
    assert_eq!((t.pad_id(), t.unk_id(), t.cls_id(), t.sep_id(), t.vocab_size()), (0, 1, 2, 3, 6));

    let err = BertTokenizer::from_dir(model.join("nothing here")).err().unwrap();
    assert!(matches!(err, Error::File { .. }), "{err}");
}

#[test]
fn bad_files_are_one_line_errors_with_the_path() {
    let tmp = tmp_dir("errors");
    let check = |r: ldm_engine::Result<BertTokenizer>, path: &Path, needle: &str| {
        let err = r.err().expect("expected an error");
        let msg = err.to_string();
        assert!(matches!(err, Error::File { .. }), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(needle), "{msg} should mention {needle:?}");
        assert!(!msg.contains('\n'), "{msg:?} should be one line");
    };
    let write = |name: &str, bytes: &[u8]| {
        let p = tmp.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    let missing = tmp.join("no_vocab.txt");
    check(BertTokenizer::from_vocab_txt(&missing), &missing, "");
    let empty = write("empty.txt", b"");
    check(BertTokenizer::from_vocab_txt(&empty), &empty, "empty");
    for special in ["[UNK]", "[CLS]", "[SEP]", "[PAD]"] {
        let lines: Vec<&str> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a"].into_iter().filter(|t| *t != special).collect();
        let p = write(&format!("no_{}.txt", &special[1..4]), (lines.join("\n") + "\n").as_bytes());
        check(BertTokenizer::from_vocab_txt(&p), &p, special);
    }
    let dup = write("dup.txt", b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nhorse\ncat\nhorse\n");
    check(BertTokenizer::from_vocab_txt(&dup), &dup, "line 7: duplicate token \"horse\" (first on line 5)");
    let blank = write("blank.txt", b"[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n");
    check(BertTokenizer::from_vocab_txt(&blank), &blank, "line 3 is empty");
    let binary = write("binary.txt", b"[PAD]\n\xff\xfe\n");
    check(BertTokenizer::from_vocab_txt(&binary), &binary, "UTF-8");
    // A directory where a file should be.
    check(BertTokenizer::from_vocab_txt(&tmp), &tmp, "");

    // CRLF line ends are fine (transformers reads in text mode), and [MASK] is optional.
    let crlf = write("crlf.txt", b"[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhorse\r\n");
    let t = BertTokenizer::from_vocab_txt(&crlf).unwrap();
    assert_eq!(t.encode("horse zebra").unwrap(), [2, 4, 1, 3]);

    let bad_json = write("tokenizer.json", b"not json");
    check(BertTokenizer::from_tokenizer_json(&bad_json), &bad_json, "");
    let missing = tmp.join("missing.json");
    check(BertTokenizer::from_tokenizer_json(&missing), &missing, "no such file");
    // Well-formed tokenizer.json of another model type (CLIP's BPE).
    let clip = ldm_engine::models::clip_tokenizer::ClipTokenizer::from_files(
        root().join("weights/clip_tokenizer/vocab.json"),
        root().join("weights/clip_tokenizer/merges.txt"),
    )
    .unwrap();
    let bpe = write("bpe_tokenizer.json", clip.to_tokenizer_json().unwrap().as_bytes());
    check(BertTokenizer::from_tokenizer_json(&bpe), &bpe, "not a WordPiece tokenizer");
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ldm_bert_tok_{}_{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
