//! The error type of `longctx-runner`.

use std::path::PathBuf;

/// Everything that can stop an experiment before or while it runs. A sample that fails is
/// not an error of the run: it is recorded under `failed/` and the run goes on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An experiment file that parses but says something impossible (the message says what).
    #[error("{0}")]
    Invalid(String),
    /// An experiment file that is not valid TOML, or has unknown keys or wrong values.
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
    /// A model that cannot be loaded or reached.
    #[error("model `{name}`")]
    Model {
        /// The model's name in the experiment.
        name: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A variant whose strategy cannot be built (an embedder, reranker or compressor that
    /// does not load).
    #[error("variant `{name}`")]
    Variant {
        /// The variant.
        name: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// One sample that cannot be prepared.
    #[error("{dataset} sample {index} ({id})")]
    Sample {
        /// The dataset.
        dataset: String,
        /// The sample's index in the dataset file.
        index: usize,
        /// The sample's `_id`.
        id: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A bad line of a prediction or failure file (a torn last line is not an error).
    #[error("{}:{line}: {message}", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The run directory holds a run whose configuration differs for some variants.
    #[error(
        "{} holds a run whose configuration differs for the variant(s) {}; its predictions would not match the experiment file. Rerun with --force to start (or later resume) a new run in {}, or move the old run away",
        dir.display(), variants.join(", "), new_dir.display()
    )]
    ConfigChanged {
        /// The run directory.
        dir: PathBuf,
        /// The variants whose hash changed.
        variants: Vec<String>,
        /// Where `--force` runs instead.
        new_dir: PathBuf,
    },
    /// A file-system error (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON that does not serialize or parse.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Datasets, prompts or scoring.
    #[error(transparent)]
    Bench(#[from] longctx_bench::Error),
    /// A context strategy.
    #[error(transparent)]
    Context(#[from] longctx_context::Error),
    /// Setting up a backend.
    #[error(transparent)]
    Backend(#[from] longctx_backends::Error),
    /// Loading a tokenizer or model.
    #[error(transparent)]
    Models(#[from] longctx_models::ModelError),
    /// Rendering or generating.
    #[error(transparent)]
    Generation(#[from] longctx_core::BackendError),
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
