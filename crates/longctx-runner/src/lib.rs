//! The experiment runner of longctx: an experiment file (TOML) names models, data, context
//! strategies and prices; list-valued parameters expand into variants; every variant runs on
//! every dataset into a resumable run directory, with progress, cost, a budget and failed
//! samples recorded rather than fatal.
//!
//! - [`experiment`]: the file format and its expansion into [`Variant`]s.
//! - [`plan`]: the file resolved into what a run needs — datasets, loaded models
//!   ([`ModelRuntime`]: native or OpenAI-compatible backend with the tokenizer prompts are
//!   fitted with) and strategies.
//! - [`store`]: the run directory (`manifest.json`, append-only prediction files).
//! - [`run()`]: the run loop; [`inspect()`]: what the model receives for one sample.
//! - [`judge`]: LLM judges of open answers (LongBench-Chat), their agreement.
//!
//! ```
//! use longctx_runner::Experiment;
//! let e = Experiment::parse(r#"
//!     name = "demo"
//!     [model]
//!     backend = "native"
//!     path = "model.gguf"
//!     max_prompt_tokens = 4000
//!     [benchmark]
//!     [[strategy]]
//!     kind = "truncate"
//!     side = ["middle", "end"]
//! "#)?;
//! let names: Vec<String> = e.variants()?.into_iter().map(|v| v.name).collect();
//! assert_eq!(names, ["truncate-middle", "truncate-end"]);
//! # Ok::<(), longctx_runner::Error>(())
//! ```

/// Returns an [`Error::Invalid`] with a formatted message.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::Error::Invalid(format!($($arg)*)))
    };
}

mod error;
pub mod experiment;
mod inspect;
pub mod judge;
pub mod plan;
pub mod ruler;
mod run;
pub mod store;

pub use error::{Error, Result};
pub use experiment::{Experiment, Variant};
pub use inspect::{inspect, Inspection};
pub use plan::{ModelRuntime, Plan};
pub use run::{run, run_with, Outcome, RunOptions, RunSummary};
