//! BERT's WordPiece tokenizer (Devlin et al. 2018, google-research/bert `tokenization.py`), as the
//! LDM paper's text2img model (LDMBert) uses it: CompVis latent-diffusion's `BERTTokenizer` calls
//! `BertTokenizerFast.from_pretrained("bert-base-uncased")` with truncation, max_length 77 and
//! padding "max_length", so every prompt becomes [CLS] ids [SEP] [PAD]... in 77 positions.
//!
//! The pipeline is the `tokenizers` crate configured exactly as transformers builds its BERT
//! tokenizer (models/bert/tokenization_bert.py, v5; the v4 `BertTokenizerFast` is the same), so
//! ids match the reference bit for bit:
//!   normalizer     BertNormalizer: drop control chars and U+FFFD, whitespace -> " ", spaces
//!                  around CJK ideographs, strip accents (NFD, drop Mn) and lowercase when uncased
//!   pre-tokenizer  split on whitespace and around every punctuation character
//!   model          WordPiece: greedy longest-prefix match, "##" on word-internal pieces, a word
//!                  with no full match (or over 100 chars) becomes one [UNK]
//!   post-process   [CLS] ids [SEP]
//! The special tokens are "added tokens" (matched in the raw text before normalization,
//! case-sensitive), so a prompt containing "[MASK]" gets id 103 while "[mask]" is plain text.

use std::collections::HashMap;
use std::path::Path;

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
// bpe::Vocab is the crate's public name for the hash map type WordPiece takes too.
use tokenizers::models::bpe::Vocab;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{AddedToken, ModelWrapper, Tokenizer};

use super::wrapped_tokenizer::WrappedTokenizer;
use crate::error::{Error, Result};

pub const CLS_TOKEN: &str = "[CLS]";
pub const SEP_TOKEN: &str = "[SEP]";
pub const PAD_TOKEN: &str = "[PAD]";
pub const UNK_TOKEN: &str = "[UNK]";
pub const MASK_TOKEN: &str = "[MASK]";
/// LDMBert's context length (CompVis BERTTokenizer max_length; the model has 77 positions).
pub const MAX_LEN: usize = 77;
/// Entries in the built-in bert-base-uncased vocabulary (the paper text models' `vocab`).
pub const BERT_VOCAB_SIZE: usize = 30522;

/// Tokens the pipeline cannot work without: [UNK] for the model, [CLS]/[SEP] around every
/// sequence, [PAD] for `encode_padded`.
const REQUIRED: [&str; 4] = [UNK_TOKEN, CLS_TOKEN, SEP_TOKEN, PAD_TOKEN];

pub struct BertTokenizer {
    inner: WrappedTokenizer,
    cls: u32,
    unk: u32,
}

impl BertTokenizer {
    /// From a BERT `vocab.txt`: one token per line, line number (from 0) = id, as every
    /// bert-base-uncased folder ships it. Uncased: lowercases and strips accents.
    pub fn from_vocab_txt(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_vocab_txt_cased(path.as_ref(), true)
    }

    /// bert-base-uncased's vocabulary (weights/bert_tokenizer, 30,522 ids: the paper's text and
    /// layout models use it), compiled into the binary so single files need no tokenizer files.
    pub fn builtin() -> Result<Self> {
        const VOCAB: &str = include_str!("../../weights/bert_tokenizer/vocab.txt");
        Self::from_vocab_text(VOCAB, Path::new("<builtin>/vocab.txt"), true)
    }

    fn from_vocab_txt_cased(path: &Path, lowercase: bool) -> Result<Self> {
        Self::from_vocab_text(&read_text(path)?, path, lowercase)
    }

    /// From a vocab.txt's contents (`path` names it in errors).
    fn from_vocab_text(text: &str, path: &Path, lowercase: bool) -> Result<Self> {
        let vocab = parse_vocab_txt(text, path)?;
        for special in REQUIRED {
            if !vocab.contains_key(special) {
                return Err(file_err(path, format!("vocabulary has no {special} token")));
            }
        }
        let has_mask = vocab.contains_key(MASK_TOKEN);
        let wordpiece = WordPiece::builder()
            .vocab(vocab.into_iter().collect::<Vocab>())
            .unk_token(UNK_TOKEN.into())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(100)
            .build()
            .map_err(pipeline_err)?;

        let mut tok = Tokenizer::new(wordpiece);
        // strip_accents None = follow lowercase, as BERT's uncased models were trained.
        tok.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .map_err(pipeline_err)?;
        tok.with_pre_tokenizer(Some(BertPreTokenizer));
        tok.with_decoder(Some(WordPieceDecoder::default()));
        // Special, hence not normalized: matched verbatim in the raw text, as transformers
        // registers them ([MASK] too when the vocabulary has it, which BERT's always does).
        let mut specials = vec![PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN];
        if has_mask {
            specials.push(MASK_TOKEN);
        }
        tok.add_special_tokens(specials.into_iter().map(|s| AddedToken::from(s, true))).map_err(pipeline_err)?;
        Self::finish(tok, path)
    }

    /// From a serialized `tokenizer.json` (the tokenizers library's own format). It must hold a
    /// WordPiece model; its normalizer and pre-tokenizer are kept (so a cased file stays cased),
    /// padding and truncation are dropped (`encode_padded` does both) and the post-processor is
    /// set to [CLS] ids [SEP], which is what BERT's template says for one sequence.
    pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(file_err(path, "no such file"));
        }
        let mut tok = Tokenizer::from_file(path).map_err(|e| file_err(path, one_line(e)))?;
        if !matches!(tok.get_model(), ModelWrapper::WordPiece(_)) {
            return Err(file_err(path, "not a WordPiece tokenizer"));
        }
        tok.with_padding(None);
        tok.with_truncation(None).map_err(|e| file_err(path, e.to_string()))?;
        if tok.get_decoder().is_none() {
            tok.with_decoder(Some(WordPieceDecoder::default()));
        }
        Self::finish(tok, path)
    }

    /// From a tokenizer folder (or a model folder holding `tokenizer/`, as diffusers' LDM
    /// text2img pipeline ships it). Prefers `tokenizer.json`, else `vocab.txt`; for the latter,
    /// `tokenizer_config.json`'s `do_lower_case` is honoured (default true, bert-base-uncased).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let mut dir = dir.as_ref().to_path_buf();
        let has_files = |d: &Path| d.join("tokenizer.json").is_file() || d.join("vocab.txt").is_file();
        if !has_files(&dir) && has_files(&dir.join("tokenizer")) {
            dir = dir.join("tokenizer");
        }
        if dir.join("tokenizer.json").is_file() {
            Self::from_tokenizer_json(dir.join("tokenizer.json"))
        } else if dir.join("vocab.txt").is_file() {
            let lowercase = configured_lowercase(&dir)?.unwrap_or(true);
            Self::from_vocab_txt_cased(&dir.join("vocab.txt"), lowercase)
        } else {
            Err(file_err(&dir, "no tokenizer.json or vocab.txt"))
        }
    }

    /// Looks up the special ids and installs the BERT post-processor.
    fn finish(mut tok: Tokenizer, path: &Path) -> Result<Self> {
        let id = |t: &str| tok.token_to_id(t).ok_or_else(|| file_err(path, format!("vocabulary has no {t} token")));
        let (unk, cls, sep, pad) = (id(UNK_TOKEN)?, id(CLS_TOKEN)?, id(SEP_TOKEN)?, id(PAD_TOKEN)?);
        tok.with_post_processor(Some(BertProcessing::new((SEP_TOKEN.into(), sep), (CLS_TOKEN.into(), cls))));
        Ok(BertTokenizer { inner: WrappedTokenizer { tok, end: sep, pad, op: "bert_tokenizer" }, cls, unk })
    }

    pub fn cls_id(&self) -> u32 {
        self.cls
    }
    pub fn sep_id(&self) -> u32 {
        self.inner.end
    }
    pub fn pad_id(&self) -> u32 {
        self.inner.pad
    }
    pub fn unk_id(&self) -> u32 {
        self.unk
    }
    pub fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    /// The whole pipeline in the tokenizers library's `tokenizer.json` format (what
    /// `from_tokenizer_json` reads back).
    pub fn to_tokenizer_json(&self) -> Result<String> {
        self.inner.to_tokenizer_json()
    }

    /// Token ids of `text` with [CLS] and [SEP], untruncated.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner.encode(text)
    }

    /// Ids for a `max_len`-position text encoder: truncated to `max_len` keeping [SEP] as the
    /// last real token (transformers cuts the text to `max_len - 2` pieces, then wraps it: the
    /// same ids), then padded with [PAD]. Returns the ids and the number of real tokens
    /// ([CLS]..=[SEP]), i.e. the attention mask is `i < length`.
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Result<(Vec<u32>, usize)> {
        self.inner.encode_padded(text, max_len)
    }

    /// Text of `ids`, special tokens ([CLS]/[SEP]/[PAD]/[UNK]/[MASK]) skipped; "##" pieces join
    /// their word and the decoder's cleanup re-attaches punctuation and contractions ("it's"),
    /// as transformers' decode does. Lowercasing and accent stripping are not undone.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids)
    }
}

/// Only a bug in the fixed pipeline above could fail here.
fn pipeline_err(e: impl std::fmt::Display) -> Error {
    Error::invalid("bert_tokenizer", e.to_string())
}

fn file_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::File { path: path.display().to_string(), msg: msg.into() }
}

/// serde's messages can span lines; the error contract is one line.
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| file_err(path, e.to_string()))
}

/// vocab.txt -> token -> id. transformers strips only the line break, so a token keeps any other
/// whitespace; an empty line or a repeated token would silently shift or shadow ids there, so
/// both are errors here.
fn parse_vocab_txt(text: &str, path: &Path) -> Result<HashMap<String, u32>> {
    let mut vocab: HashMap<String, u32> = HashMap::new();
    // lines() drops "\n" and "\r\n", and yields no empty last line for a trailing newline.
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            return Err(file_err(path, format!("line {} is empty (one token per line expected)", i + 1)));
        }
        let id = u32::try_from(i).map_err(|_| file_err(path, "more than 2^32 tokens"))?;
        if let Some(first) = vocab.insert(line.to_string(), id) {
            return Err(file_err(path, format!("line {}: duplicate token {line:?} (first on line {})", i + 1, first + 1)));
        }
    }
    if vocab.is_empty() {
        return Err(file_err(path, "empty file: no tokens"));
    }
    Ok(vocab)
}

/// `do_lower_case` from transformers' tokenizer_config.json, if the folder has one that says.
fn configured_lowercase(dir: &Path) -> Result<Option<bool>> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let json: serde_json::Value =
        serde_json::from_str(&read_text(&path)?).map_err(|e| file_err(&path, e.to_string()))?;
    Ok(json.get("do_lower_case").and_then(|v| v.as_bool()))
}
