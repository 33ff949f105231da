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

pub mod config;
pub mod llama;
pub mod rope;

pub use config::{ConfigError, HfConfig};
