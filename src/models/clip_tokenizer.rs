//! CLIP's text tokenizer (Radford et al. 2021, openai/CLIP `simple_tokenizer.py`), as Stable
//! Diffusion 1.x uses it through transformers' `CLIPTokenizer`: byte-level BPE over 49,408 tokens
//! with a `</w>` end-of-word suffix, `<|startoftext|>` (49406) / `<|endoftext|>` (49407) around the
//! text, sequences truncated and padded to 77.
//!
//! The pipeline is the `tokenizers` crate configured exactly as transformers builds its CLIP
//! tokenizer (models/clip/tokenization_clip.py, v5), so ids match the reference bit for bit:
//!   normalizer     NFC, every `\s+` run -> " ", lowercase
//!   pre-tokenizer  keep only the matches of CLIP's regex (contractions, letter runs, single digits,
//!                  punctuation runs; whitespace is dropped), then GPT-2 byte-to-unicode mapping
//!   model          BPE with end_of_word_suffix "</w>", unk "<|endoftext|>"
//!   post-process   <|startoftext|> ids <|endoftext|>
//! The literal special tokens are "added tokens" (matched before normalization, case-sensitive),
//! so a prompt containing `<|endoftext|>` gets id 49407 there, as in the reference.
//!
//! transformers v4's slow tokenizer additionally ran ftfy (or, without it, BERT's BasicTokenizer,
//! which puts spaces around CJK characters); v5 and `CLIPTokenizerFast` do not, and neither do we.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, Replace, Sequence as NormSeq, NFC};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSeq;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::wrapped_tokenizer::WrappedTokenizer;
use crate::error::{Error, Result};

pub const BOS_TOKEN: &str = "<|startoftext|>";
pub const EOS_TOKEN: &str = "<|endoftext|>";
/// CLIP's context length; SD1.x/2.x text encoders have 77 position embeddings.
pub const MAX_LEN: usize = 77;

/// CLIP's pre-tokenization pattern (simple_tokenizer.py, minus its IGNORECASE flag, which is moot
/// after lowercasing).
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

pub struct ClipTokenizer {
    inner: WrappedTokenizer,
    bos: u32,
}

impl ClipTokenizer {
    /// From a Hugging Face `vocab.json` (token -> id) and `merges.txt` ("#version" header, then one
    /// "a b" merge per line, highest priority first).
    pub fn from_files(vocab_json: impl AsRef<Path>, merges_txt: impl AsRef<Path>) -> Result<Self> {
        let (vocab_path, merges_path) = (vocab_json.as_ref(), merges_txt.as_ref());
        Self::from_texts(&read_text(vocab_path)?, &read_text(merges_path)?, vocab_path, merges_path)
    }

    /// CLIP's own vocabulary (weights/clip_tokenizer: 49,408 ids, what every SD1.x model uses),
    /// compiled into the binary so single-file checkpoints need no tokenizer files.
    pub fn builtin() -> Result<Self> {
        const VOCAB: &str = include_str!("../../weights/clip_tokenizer/vocab.json");
        const MERGES: &str = include_str!("../../weights/clip_tokenizer/merges.txt");
        Self::from_texts(VOCAB, MERGES, Path::new("<builtin>/vocab.json"), Path::new("<builtin>/merges.txt"))
    }

    /// From the two files' contents (`vocab_path`/`merges_path` name them in errors).
    fn from_texts(vocab_text: &str, merges_text: &str, vocab_path: &Path, merges_path: &Path) -> Result<Self> {
        let vocab = parse_vocab(vocab_text, vocab_path)?;
        let merges = parse_merges(merges_text, merges_path)?;
        for special in [BOS_TOKEN, EOS_TOKEN] {
            if !vocab.contains_key(special) {
                return Err(file_err(vocab_path, format!("vocabulary has no {special} token")));
            }
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab.into_iter().collect::<Vocab>(), merges)
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .unk_token(EOS_TOKEN.into())
            .fuse_unk(false)
            .build()
            // The only build failure for valid-looking files is a merge whose parts or result is
            // not in the vocabulary: the two files do not belong together.
            .map_err(|e| file_err(merges_path, format!("does not match {}: {e}", vocab_path.display())))?;

        let mut tok = Tokenizer::new(bpe);
        let ws = Replace::new(ReplacePattern::Regex(r"\s+".into()), " ").map_err(pipeline_err)?;
        tok.with_normalizer(Some(NormSeq::new(vec![NFC.into(), ws.into(), Lowercase.into()])))
            .map_err(pipeline_err)?;
        // invert = true with Removed: keep the regex matches, drop everything between them.
        let split = Split::new(SplitPattern::Regex(CLIP_PATTERN.into()), SplitDelimiterBehavior::Removed, true)
            .map_err(pipeline_err)?;
        // ByteLevel keeps transformers' use_regex = true: GPT-2's split never cuts a CLIP piece
        // further, but mirroring the reference config keeps tokenizer.json output identical.
        tok.with_pre_tokenizer(Some(PreSeq::new(vec![
            split.into(),
            ByteLevel::default().add_prefix_space(false).into(),
        ])));
        tok.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
        // Special, not normalized: matched verbatim in the raw text (so "<|ENDOFTEXT|>" is plain
        // text), exactly as transformers registers bos/eos.
        tok.add_special_tokens([AddedToken::from(BOS_TOKEN, true), AddedToken::from(EOS_TOKEN, true)])
            .map_err(pipeline_err)?;
        let (bos, eos) = special_ids(&tok, vocab_path)?;
        tok.with_post_processor(Some(
            RobertaProcessing::new((EOS_TOKEN.into(), eos), (BOS_TOKEN.into(), bos))
                .trim_offsets(false)
                .add_prefix_space(false),
        ));
        Ok(ClipTokenizer { inner: WrappedTokenizer { tok, end: eos, pad: eos, op: "clip_tokenizer" }, bos })
    }

    /// From a serialized `tokenizer.json` (the tokenizers library's own format). Padding and
    /// truncation stored in the file are dropped: `encode_padded` does both.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(file_err(path, "no such file"));
        }
        let mut tok = Tokenizer::from_file(path).map_err(|e| file_err(path, e.to_string()))?;
        tok.with_padding(None);
        tok.with_truncation(None).map_err(|e| file_err(path, e.to_string()))?;
        let (bos, eos) = special_ids(&tok, path)?;
        Ok(ClipTokenizer { inner: WrappedTokenizer { tok, end: eos, pad: eos, op: "clip_tokenizer" }, bos })
    }

    /// From a tokenizer folder (or a diffusers model folder holding `tokenizer/`). Prefers
    /// `tokenizer.json`, else `vocab.json` + `merges.txt`; real SD folders ship either. The pad
    /// token comes from `tokenizer_config.json` / `special_tokens_map.json` when they name one
    /// (SD2.x pads with "!", SD1.x with <|endoftext|>), else <|endoftext|>.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let mut dir = dir.as_ref().to_path_buf();
        let has_files = |d: &Path| d.join("tokenizer.json").is_file() || d.join("vocab.json").is_file();
        if !has_files(&dir) && has_files(&dir.join("tokenizer")) {
            dir = dir.join("tokenizer");
        }
        let mut t = if dir.join("tokenizer.json").is_file() {
            Self::from_tokenizer_json(dir.join("tokenizer.json"))?
        } else if dir.join("vocab.json").is_file() {
            Self::from_files(dir.join("vocab.json"), dir.join("merges.txt"))?
        } else {
            return Err(file_err(&dir, "no tokenizer.json or vocab.json + merges.txt"));
        };
        if let Some(pad) = configured_pad_token(&dir)? {
            t.inner.pad = t.inner.tok.token_to_id(&pad).ok_or_else(|| {
                file_err(&dir, format!("pad token {pad:?} is not in the vocabulary"))
            })?;
        }
        Ok(t)
    }

    pub fn bos_id(&self) -> u32 {
        self.bos
    }
    pub fn eos_id(&self) -> u32 {
        self.inner.end
    }
    pub fn pad_id(&self) -> u32 {
        self.inner.pad
    }
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The whole pipeline in the tokenizers library's `tokenizer.json` format (what
    /// `from_tokenizer_json` reads back, and what transformers writes next to vocab.json).
    pub fn to_tokenizer_json(&self) -> Result<String> {
        self.inner.to_tokenizer_json()
    }

    /// Token ids of `text` with BOS/EOS, untruncated.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode(text)
    }

    /// Ids for a `max_len`-position text encoder: truncated to `max_len` keeping EOS as the last
    /// real token, then padded with the pad id. Returns the ids and the number of real tokens
    /// (BOS..=EOS), i.e. the attention mask is `i < length`.
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Result<(Vec<u32>, usize)> {
        self.inner.encode_padded(text, max_len)
    }

    /// Text of `ids`, special tokens (BOS/EOS/padding) skipped; each `</w>` ends a word, so words
    /// come back space-separated ("it's" decodes as "it 's", as in the reference).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self.inner.decode(ids)?;
        Ok(text.replace("</w>", " ").trim().to_string())
    }
}

/// Only a bug in the fixed pipeline above could fail here (e.g. a regex the crate rejects).
fn pipeline_err(e: impl std::fmt::Display) -> Error {
    Error::invalid("clip_tokenizer", e.to_string())
}

fn file_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::File { path: path.display().to_string(), msg: msg.into() }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))
}

fn parse_vocab(text: &str, path: &Path) -> Result<HashMap<String, u32>> {
    serde_json::from_str(text).map_err(|e| file_err(path, format!("not a token -> id JSON object: {e}")))
}

fn parse_merges(text: &str, path: &Path) -> Result<Vec<(String, String)>> {
    let mut merges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // Only the header is a comment: "#" is itself a byte token that merges may contain.
        if (i == 0 && line.starts_with("#version")) || line.is_empty() {
            continue;
        }
        match line.split(' ').collect::<Vec<_>>()[..] {
            [a, b] if !a.is_empty() && !b.is_empty() => merges.push((a.to_string(), b.to_string())),
            _ => return Err(file_err(path, format!("line {}: expected \"a b\", got {line:?}", i + 1))),
        }
    }
    if merges.is_empty() {
        return Err(file_err(path, "no merges"));
    }
    Ok(merges)
}

fn special_ids(tok: &Tokenizer, path: &Path) -> Result<(u32, u32)> {
    let id = |t: &str| tok.token_to_id(t).ok_or_else(|| file_err(path, format!("no {t} token")));
    Ok((id(BOS_TOKEN)?, id(EOS_TOKEN)?))
}

/// The pad token named by transformers' side files, if any ("pad_token": "x" or {"content": "x"}).
fn configured_pad_token(dir: &Path) -> Result<Option<String>> {
    for name in ["tokenizer_config.json", "special_tokens_map.json"] {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(&read_text(&path)?).map_err(|e| file_err(&path, e.to_string()))?;
        let pad = match json.get("pad_token") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(v) => v.get("content").and_then(|c| c.as_str()).map(str::to_string),
            None => None,
        };
        if pad.is_some() {
            return Ok(pad);
        }
    }
    Ok(None)
}
