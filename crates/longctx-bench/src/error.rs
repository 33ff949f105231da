//! The error type of `longctx-bench`.

use std::path::PathBuf;

use crate::metrics::MetricError;

/// Everything that can go wrong loading datasets, building prompts or scoring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A dataset name that LongBench does not have.
    #[error("unknown dataset `{name}`{}; known datasets: {known}", closest.map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default())]
    UnknownDataset {
        /// The name given.
        name: String,
        /// The nearest known name, if one is close.
        closest: Option<&'static str>,
        /// All known names, comma-separated.
        known: String,
    },
    /// A dataset that LongBench-E does not include.
    #[error("dataset `{name}` is not part of LongBench-E; LongBench-E has: {known}")]
    NotInLongBenchE {
        /// The name given.
        name: String,
        /// The LongBench-E datasets, comma-separated.
        known: String,
    },
    /// A JSON file (LongBench-Chat's test cases) that does not parse or lacks a field.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A line of a JSONL file that does not parse or lacks a field.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A prediction the reference scorer cannot score.
    #[error("{}:{line}: {source}", path.display())]
    Metric {
        /// The prediction file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        source: MetricError,
    },
    /// A prediction directory without prediction files.
    #[error("{}: no prediction files (`<dataset>.jsonl`) found", path.display())]
    NoPredictionFiles {
        /// The directory.
        path: PathBuf,
    },
    /// A prediction file without predictions (eval.py divides by zero on it).
    #[error("{}: the file holds no predictions", path.display())]
    EmptyPredictionFile {
        /// The file.
        path: PathBuf,
    },
    /// Two files of one directory name the same dataset (`qasper.jsonl`, `qasper.old.jsonl`).
    #[error("{} and {} both hold predictions for `{dataset}` (eval.py names a file's dataset by the part before its first `.`)", first.display(), second.display())]
    DuplicateDataset {
        /// The dataset.
        dataset: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A dataset file missing from a data directory or archive.
    #[error("{location}: no `{file}` (expected LongBench's official `<dataset>.jsonl` / `<dataset>_e.jsonl` files)")]
    MissingDatasetFile {
        /// Directory or archive searched.
        location: String,
        /// The file name looked for.
        file: String,
    },
    /// Downloading from the Hugging Face hub failed.
    #[error("could not get `{file}` of the dataset repository `{repo}` from the Hugging Face hub: {message}. If this machine is offline, {offline}")]
    Hub {
        /// Repository id.
        repo: String,
        /// File in the repository.
        file: String,
        /// The underlying error.
        message: String,
        /// What to do instead on a machine without the hub.
        offline: &'static str,
    },
    /// The crate was built without a feature this call needs.
    #[error("longctx was built without the `{feature}` feature, which this needs")]
    NotCompiledWith {
        /// The feature.
        feature: &'static str,
    },
    /// A prompt template with a placeholder other than the sample's fields.
    #[error("prompt template for `{dataset}`: {message}")]
    Template {
        /// Dataset.
        dataset: String,
        /// What is wrong.
        message: String,
    },
    /// A task name that RULER does not have.
    #[error("unknown RULER task `{name}`; RULER's tasks: {known}")]
    UnknownRulerTask {
        /// The name given.
        name: String,
        /// The tasks, comma-separated.
        known: String,
    },
    /// Data a RULER task needs is missing or unusable.
    #[error("{message}")]
    RulerData {
        /// What is missing and how to get it.
        message: String,
    },
    /// A target length below what a task's prompt needs with the smallest haystack.
    #[error("RULER task `{task}` cannot be fitted to {length} tokens: its template and answer prefix with the smallest haystack, plus its tokens to generate, take {needed}")]
    RulerTooShort {
        /// The task.
        task: String,
        /// The target length.
        length: usize,
        /// Tokens the smallest sample takes.
        needed: usize,
    },
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] longctx_core::TokenizeError),
    /// A file-system error (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
