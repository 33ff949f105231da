//! The tokenizer role: what truncation and token budgets need from a model's tokenizer.

/// A tokenizer failure (an implementation's own error, as text).
#[derive(Debug, thiserror::Error)]
#[error("tokenizer error: {0}")]
pub struct TokenizeError(pub String);

/// Encodes text to token ids and back, as Hugging Face tokenizers do.
pub trait Tokenizer {
    /// Token ids of `text`; with `add_special_tokens` the model's BOS etc. are added as
    /// `tokenizer(text)` does in transformers.
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizeError>;
    /// Text of `ids`; with `skip_special_tokens` special tokens are dropped.
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizeError>;
    /// Byte spans of the tokens of `text` (without special tokens) in `text`, for tokenizers
    /// that track them; chunking by tokens needs them.
    fn offsets(&self, text: &str) -> Result<Vec<(usize, usize)>, TokenizeError> {
        let _ = text;
        Err(TokenizeError("this tokenizer does not report token offsets".into()))
    }
}
