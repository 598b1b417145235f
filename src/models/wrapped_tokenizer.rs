//! What the CLIP and BERT tokenizers share: a `tokenizers` pipeline that wraps text in a start and
//! an end token ([BOS] … [EOS] / [CLS] … [SEP]), truncation that keeps the end token, padding to
//! the text encoder's length, and a range-checked decode.

use tokenizers::Tokenizer;

use crate::error::{Error, Result};

pub(crate) struct WrappedTokenizer {
    pub tok: Tokenizer,
    /// the token that closes every sequence, kept when truncating
    pub end: u32,
    pub pad: u32,
    /// the owner's name in error messages
    pub op: &'static str,
}

impl WrappedTokenizer {
    pub fn vocab_size(&self) -> usize {
        self.tok.get_vocab_size(true)
    }

    pub fn to_tokenizer_json(&self) -> Result<String> {
        self.tok.to_string(false).map_err(|e| Error::invalid(self.op, e.to_string()))
    }

    /// Ids of `text` with the start and end tokens, untruncated.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tok.encode_fast(text, true).map_err(|e| Error::invalid(self.op, e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Truncated to `max_len` with the end token last (the references cut the text to
    /// `max_len - 2` pieces, then wrap it: the same ids), then padded. Returns the ids and the
    /// number of real tokens, i.e. the attention mask is `i < length`.
    pub fn encode_padded(&self, text: &str, max_len: usize) -> Result<(Vec<u32>, usize)> {
        if max_len < 2 {
            crate::bail!(self.op, "max_len {max_len} leaves no room for the start and end tokens");
        }
        let mut ids = self.encode(text)?;
        if ids.len() > max_len {
            ids.truncate(max_len - 1);
            ids.push(self.end);
        }
        let length = ids.len();
        ids.resize(max_len, self.pad);
        Ok((ids, length))
    }

    /// The pipeline's decoder output, special tokens skipped; ids outside the vocabulary are an
    /// error, not a panic.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let n = self.vocab_size();
        if let Some(bad) = ids.iter().find(|&&i| i as usize >= n) {
            crate::bail!(self.op, "id {bad} is outside the vocabulary of {n}");
        }
        self.tok.decode(ids, true).map_err(|e| Error::invalid(self.op, e.to_string()))
    }
}
