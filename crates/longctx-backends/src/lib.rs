//! Generation backends: the [`Backend`](longctx_core::Backend) trait of `longctx-core`
//! implemented over the native candle runtime ([`native`]) and over OpenAI-compatible HTTP
//! servers ([`openai`]: vLLM, llama.cpp's server, `longctx serve`, hosted APIs), plus the
//! OpenAI-compatible embedder and chat model that advanced RAG plugs into its strategies.
//!
//! ```
//! use longctx_backends::openai::{Endpoint, EndpointConfig, OpenAiBackend};
//! use longctx_core::Backend;
//! let config = EndpointConfig {
//!     base_url: "http://127.0.0.1:8000".into(),
//!     model: "smollm2".into(),
//!     api_key_env: None,
//!     ..EndpointConfig::default()
//! };
//! let backend = OpenAiBackend::new(config, Endpoint::Auto, 8)?;
//! assert_eq!(backend.parallelism(), 8);
//! # Ok::<(), longctx_backends::Error>(())
//! ```

pub mod batch;
pub mod native;
pub mod openai;

/// Errors of setting up a backend (a failed request is a [`longctx_core::BackendError`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad settings (the message says which).
    #[error("{0}")]
    Config(String),
    /// A model that cannot be loaded.
    #[error("{0}")]
    Load(String),
}
