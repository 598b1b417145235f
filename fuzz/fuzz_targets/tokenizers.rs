//! Prompt text through the CLIP BPE tokenizer and the BERT WordPiece tokenizer (the built-in
//! vocabularies): any UTF-8 (and any bytes, read lossily) must give ids or an error.
#![no_main]
use ldm_engine::models::bert_tokenizer::BertTokenizer;
use ldm_engine::models::clip_tokenizer::ClipTokenizer;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static CLIP: OnceLock<ClipTokenizer> = OnceLock::new();
static BERT: OnceLock<BertTokenizer> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let clip = CLIP.get_or_init(|| ClipTokenizer::builtin().expect("built-in CLIP vocabulary"));
    let bert = BERT.get_or_init(|| BertTokenizer::builtin().expect("built-in BERT vocabulary"));
    let _ = clip.encode(&text);
    let _ = clip.encode_padded(&text, 77);
    let _ = bert.encode(&text);
    let _ = bert.encode_padded(&text, 16);
});
