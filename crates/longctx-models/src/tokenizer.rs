//! A Hugging Face `tokenizer.json` (the `tokenizers` crate) behind longctx's
//! [`longctx_core::Tokenizer`] role.

use std::path::Path;

use longctx_core::{TokenizeError, Tokenizer};

/// A tokenizer loaded from `tokenizer.json`.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
}

impl HfTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, TokenizeError> {
        tokenizers::Tokenizer::from_file(path)
            .map(|inner| Self { inner })
            .map_err(|e| TokenizeError(format!("{}: {e}", path.display())))
    }

    /// Wraps a tokenizer built in memory.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer) -> Self {
        Self { inner }
    }

    /// The wrapped tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizeError> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TokenizeError(e.to_string()))
    }

    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizeError> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| TokenizeError(e.to_string()))
    }

    fn offsets(&self, text: &str) -> Result<Vec<(usize, usize)>, TokenizeError> {
        self.inner.encode(text, false).map(|e| e.get_offsets().to_vec()).map_err(|e| TokenizeError(e.to_string()))
    }
}
