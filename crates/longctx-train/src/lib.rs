//! Fine-tuning on longctx's own runtime — the decoder that runs inference — for long inputs:
//!
//! - [`data`]: chat JSONL (LongAlign-10k's format) rendered with the model's chat template,
//!   the loss on assistant tokens only, over-long conversations dropped or truncated;
//! - [`batch`]: `naive`, `sorted` (LongAlign's sorted batching) and `packed` micro-batches —
//!   sequences are always packed one after another with block-diagonal attention, so no
//!   compute goes to padding;
//! - [`loss`]: `token-mean` and `longalign` (every sequence weighs the same), as per-token
//!   weights of one optimizer step, so the value does not depend on how the step is split;
//! - [`step`]: forward and backward of a micro-batch (gradient checkpointing per layer, the
//!   LM head only at target positions and in chunks);
//! - [`optim`]: AdamW, the learning-rate schedules and global-norm clipping as torch and
//!   transformers compute them;
//! - [`trainer`]: the training run (`longctx train`): LoRA in PEFT's format or full
//!   fine-tuning, checkpoints and exact resume, metrics;
//! - [`merge`]: an adapter merged into its base model;
//! - [`export`]: the run as a job for TRL, axolotl or torchtune, with LongAlign's loss hook.

pub mod batch;
pub mod bench;
pub mod config;
pub mod data;
pub mod export;
pub mod loss;
pub mod merge;
pub mod optim;
pub mod plan;
pub mod step;
pub mod trainer;

use std::path::PathBuf;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line of a data file that cannot be trained on.
    #[error("{}:{line}: {message}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// Why.
        message: String,
    },
    /// Data that cannot be trained on as a whole.
    #[error("{0}")]
    Data(String),
    /// A configuration that cannot run (the message says why).
    #[error("{0}")]
    Config(String),
    /// A TOML configuration that does not parse or has unknown keys.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// Something wrong with a file, named.
    #[error("{}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What.
        #[source]
        source: Box<Error>,
    },
    /// The model, tokenizer or adapter.
    #[error(transparent)]
    Model(#[from] longctx_models::ModelError),
    /// A tensor operation.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file-system error (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON that does not parse or serialize.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// This error, said of `path`.
    #[must_use]
    pub fn in_file(self, path: impl Into<PathBuf>) -> Self {
        Error::File { path: path.into(), source: Box::new(self) }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
