//! The error type of `longctx-report`.

use std::path::PathBuf;

/// Everything that can go wrong reading a run directory or writing its report. Each variant
/// names the file (and, for JSONL, the 1-based line) that was bad.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `manifest.json` does not parse, or holds a value this crate cannot use.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `result.json` that is not LongBench's `{dataset: score}` (or `{dataset: {bucket:
    /// score}}`) object.
    #[error("{}: {message}", path.display())]
    ResultJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A line of a JSONL file (predictions or failed samples) with a bad value.
    #[error("{}:{line}: {message}", path.display())]
    Jsonl {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The baseline named by the options or the manifest is not a variant of the run.
    #[error("baseline `{name}` is not a variant of this run; variants: {known}")]
    UnknownBaseline {
        /// The name given.
        name: String,
        /// The run's variants, comma-separated.
        known: String,
    },
    /// Drawing or encoding a plot failed.
    #[error("plot `{plot}`: {message}")]
    Plot {
        /// The plot's file stem.
        plot: String,
        /// What failed.
        message: String,
    },
    /// Reading or scoring prediction files failed (the message names the file and line).
    #[error(transparent)]
    Bench(#[from] longctx_bench::Error),
    /// A file-system error (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
