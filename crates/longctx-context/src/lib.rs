//! Context strategies: how a long context is fitted to what the model receives.
//!
//! - [`truncate`]: cut the middle (LongBench's rule), the end or the start, in token space.
//! - [`chunk`]: split a context into retrieval chunks (200 characters by default).
//! - [`embed`] and [`index`]: native sentence embedders and an exact inner-product index.
//! - [`rag`]: naive RAG with a sweep of k served by one embedding pass; [`rerank`]: an LLM
//!   judge or a cross-encoder for advanced RAG (OpenAI-compatible embedders and chat models
//!   live in `longctx-backends` and plug in through the traits of `longctx-core`).
//! - [`llmlingua2`]: LLMLingua-2 compression, equal to the `llmlingua` package's output.
//! - [`strategy`]: the strategies as experiment axes: a sample and a token budget in, the
//!   prompt the model receives and what was done out.
//!
//! ```
//! use longctx_context::chunk::ChunkConfig;
//! let chunks = ChunkConfig::default().chunk(&"x".repeat(450), None).unwrap();
//! assert_eq!(chunks.len(), 3);
//! assert_eq!(chunks[2].end - chunks[2].start, 50);
//! ```

pub mod chunk;
pub mod embed;
pub mod index;
pub mod llmlingua2;
pub mod rag;
pub mod rerank;
pub mod strategy;
pub mod truncate;

use longctx_core::{CallError, TokenizeError};

#[cfg(test)]
pub(crate) mod testing {
    use longctx_core::{TokenizeError, Tokenizer};

    /// One token per character; id 0 is a BOS added with special tokens.
    pub(crate) struct Chars;

    impl Tokenizer for Chars {
        fn encode(&self, text: &str, special: bool) -> Result<Vec<u32>, TokenizeError> {
            Ok(special.then_some(0).into_iter().chain(text.chars().map(u32::from)).collect())
        }
        fn decode(&self, ids: &[u32], skip: bool) -> Result<String, TokenizeError> {
            Ok(ids.iter().filter(|&&i| !(skip && i == 0)).filter_map(|&i| char::from_u32(i)).collect())
        }
    }
}
use longctx_models::ModelError;

/// Errors of the context strategies.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad settings or inputs (the message says which).
    #[error("{0}")]
    Config(String),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// A model failed to load or run.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An embedder, reranker or chat model call failed.
    #[error(transparent)]
    Call(#[from] CallError),
}
