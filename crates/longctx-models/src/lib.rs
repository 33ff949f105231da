//! The model runtime of longctx (in progress): model configuration as Hugging Face writes it,
//! the rotary position embedding (RoPE) with every scaling variant transformers applies, and
//! one Llama-family decoder on candle with chunked attention over a KV cache.
//!
//! ```
//! use longctx_models::rope::{RopeParams, RopeScaling};
//! let p = RopeParams { head_dim: 64, partial_rotary_factor: 1.0, theta: 10_000.0,
//!     max_position_embeddings: 4096, scaling: RopeScaling::Linear { factor: 4.0 } };
//! let (inv_freq, attention_factor) = p.inv_freq(None);
//! assert_eq!(inv_freq.len(), 32);
//! assert_eq!(inv_freq[0], 0.25);
//! assert_eq!(attention_factor, 1.0);
//! ```

pub mod amx;
mod attention;
pub mod chat_template;
pub mod config;
mod dense;
pub mod encoder;
pub mod frozen;
mod fused;
pub mod generate;
pub mod gguf;
pub mod llama;
pub mod load;
pub mod lora;
pub mod nf4;
pub mod perplexity;
pub mod qmatmul;
pub mod quantize;
pub mod rope;
pub mod sgemm;
pub mod tokenizer;
mod zmm;

pub use config::{ConfigError, HfConfig};

/// A model and its tokenizer, as the loaders of model directories ([`load::load_hf_dir`])
/// and GGUF files ([`gguf::load_gguf`]) return them.
pub struct Loaded {
    /// The decoder.
    pub model: llama::Llama,
    /// Its tokenizer.
    pub tokenizer: tokenizer::HfTokenizer,
    /// Its chat template (`tokenizer_config.json`), if it has one.
    pub chat_template: Option<chat_template::ChatTemplate>,
    /// Bytes of the weight files.
    pub weight_bytes: u64,
}

/// Errors of the model runtime.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A bad or unsupported configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A model directory or file that cannot be loaded.
    #[error("{0}")]
    Load(String),
    /// A tensor operation failed (shapes, dtypes, missing weights).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] longctx_core::TokenizeError),
    /// A file-system error (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
