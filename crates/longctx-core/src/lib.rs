//! Plain data types shared by every stage of longctx, and the traits that connect them.
//!
//! Dependencies only point down to this crate: datasets (`longctx-bench`), models, context
//! strategies and backends all speak in these types, so that every arrow of the data flow
//! (sample → prompt → completion → prediction → score) is a value that can be written to disk.
//!
//! ```
//! use longctx_core::Sample;
//! let s = Sample {
//!     id: "x".into(), input: "Q?".into(), context: "C".into(),
//!     answers: vec!["A".into()], all_classes: None, length: 3,
//!     language: "en".into(), dataset: "qasper".into(),
//! };
//! assert_eq!(s.answers.len(), 1);
//! ```

mod backend;
mod chat;
pub mod fs;
mod prediction;
mod retrieval;
mod sample;
mod tokenizer;

pub use backend::{Backend, BackendError, Completion, FinishReason, GenerationRequest, PromptInput};
pub use chat::ChatMessage;
pub use prediction::Prediction;
pub use retrieval::{CallError, ChatModel, ChatReply, Embedder, Embeddings, Reranker, Scores, Usage};
pub use sample::Sample;
pub use tokenizer::{TokenizeError, Tokenizer};
