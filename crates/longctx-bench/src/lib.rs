//! LongBench and LongBench-E for longctx: the datasets, the official prompts and
//! truncation rule, exact ports of the official metrics, and a scorer whose `result.json` is
//! identical to LongBench's `eval.py`.
//!
//! ```
//! use longctx_bench::dataset::dataset;
//! use longctx_bench::metrics::MetricOptions;
//! use longctx_bench::score::sample_score;
//!
//! let trec = dataset("trec")?;
//! let classes = vec!["Location".to_string(), "City".to_string()];
//! let s = sample_score(trec, "City\nignored", &["City".into()], Some(&classes), &MetricOptions::default())?;
//! assert_eq!(s, 1.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod agreement;
pub mod chat;
pub mod dataset;
mod error;
pub mod metrics;
pub mod prompt;
pub mod pyfloat;
pub mod ruler;
pub mod score;

pub use error::{Error, Result};
